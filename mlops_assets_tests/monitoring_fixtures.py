"""Shared pieces of the monitoring tests: prediction-log records as the service writes them, and a webhook receiver."""

from __future__ import annotations

import datetime as dt
import json
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import numpy as np
import pandas as pd

from mlops_assets.lib.serving.prediction_log import prediction_record
from mlops_assets.lib.serving.prediction_store import log_file_name


def records_like(
    inputs: pd.DataFrame, predictions: pd.DataFrame, count: int, model_tag: str, seed: int = 0
) -> list[dict]:
    """`count` records drawn from a baseline's own rows (in distribution), built by the service's record function."""
    rng = np.random.default_rng(seed)
    rows = inputs.iloc[rng.integers(0, len(inputs), count)].to_dict("records")
    answers = predictions.iloc[rng.integers(0, len(predictions), count)].to_dict("records")
    return [
        prediction_record(model_tag, str(answer["label"]), float(answer["confidence"]), row, "/predict")
        for row, answer in zip(rows, answers, strict=True)
    ]


def write_log(
    folder: Path, day: dt.date, records: list[dict], pid: int = 4242, tail: str = "", stage: str | None = None
) -> Path:
    """A log file named as the service names it (`<day>.<stage>.<pid>.jsonl`; without `stage` as it did before
    stages were logged, `<day>.<pid>.jsonl`), one JSON object per line, then `tail`."""
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / (f"{day.isoformat()}.{pid}.jsonl" if stage is None else log_file_name(day.isoformat(), stage, pid))
    text = "".join(json.dumps(record) + "\n" for record in records)
    path.write_text(text + tail, encoding="utf-8")
    return path


@dataclass
class WebhookReceiver:
    """A real HTTP server on loopback that keeps every JSON body posted to it and answers `status`."""

    url: str
    received: list[dict] = field(default_factory=list)
    status: int = 200
    # The answer's JSON body (Slack's Web API answers {"ok": ...}); None: an empty body.
    reply: dict | None = None
    # The path of each request, beside `received`.
    paths: list[str] = field(default_factory=list)


@contextmanager
def webhook_receiver(status: int = 200, reply: dict | None = None) -> Iterator[WebhookReceiver]:
    receiver = WebhookReceiver(url="", reply=reply)

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:  # noqa: N802 - the name http.server calls
            body = self.rfile.read(int(self.headers["Content-Length"]))
            receiver.received.append(json.loads(body))
            receiver.paths.append(self.path)
            answer = b"" if receiver.reply is None else json.dumps(receiver.reply).encode()
            self.send_response(receiver.status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(answer)))
            self.end_headers()
            self.wfile.write(answer)

        def log_message(self, *_args: object) -> None:
            return None

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    receiver.url = f"http://127.0.0.1:{server.server_address[1]}/alerts"
    receiver.status = status
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield receiver
    finally:
        server.shutdown()
        server.server_close()


def baseline_frames(
    count: int = 2000, seed: int = 1, rng: np.random.Generator | None = None
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """A baseline's `count` input statistics (8x8 greyscale PNGs) and held-out answers (ten labels, confident), drawn
    from `rng` (default: a generator seeded with `seed`)."""
    rng = rng if rng is not None else np.random.default_rng(seed)
    inputs = pd.DataFrame(
        {
            "format": "PNG",
            "width": 8,
            "height": 8,
            "mode": "L",
            "brightness": rng.normal(0.3, 0.05, count).clip(0, 1),
            "contrast": rng.normal(0.4, 0.04, count).clip(0, 1),
        }
    )
    predictions = pd.DataFrame(
        {"label": rng.choice([str(d) for d in range(10)], count), "confidence": rng.beta(8, 1, count)}
    )
    return inputs, predictions
