"""The canary: held-out test images sent to a freshly started revision, whose answers must match the predictions
recorded for its model version before it gets any traffic."""

from __future__ import annotations

import json
import mimetypes
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from mlops_assets.lib.deploy.release import CanaryCase, CanaryResult

if TYPE_CHECKING:  # run_canary imports it: `mlops deployments` loads this module without sending anything
    import httpx

CASES_FILE = "cases.json"


def spread_over_labels(labels: Sequence[int], limit: int) -> list[int]:
    """Up to `limit` indices into `labels`, taken round-robin over the labels in ascending order (first index of
    each label, then the second, ...), so a split sorted by label still gives a canary of every class; deterministic."""
    by_label: dict[int, list[int]] = {}
    for index, label in enumerate(labels):
        by_label.setdefault(int(label), []).append(index)
    queues = [by_label[label] for label in sorted(by_label)]
    chosen: list[int] = []
    for depth in range(max((len(queue) for queue in queues), default=0)):
        for queue in queues:
            if len(chosen) == limit:
                return chosen
            if depth < len(queue):
                chosen.append(queue[depth])
    return chosen


def run_canary(url: str, cases: Sequence[CanaryCase], api_key: str | None, timeout_s: float = 30) -> CanaryResult:
    """POST each case's image to `url`/predict (Bearer `api_key` when given) and compare the top label with the
    recorded one. Never raises for a wrong or failed answer: the result counts matches and names the first misses
    (file, what came back); no cases is a failed canary (`passed` is False)."""
    import httpx

    headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
    failures: list[str] = []
    matched = 0
    with httpx.Client(base_url=url, headers=headers, timeout=timeout_s) as client:
        for case in cases:
            path = Path(case.image_path)
            content_type = mimetypes.guess_type(path.name)[0] or "application/octet-stream"
            try:
                response = client.post("/predict", files={"images": (path.name, path.read_bytes(), content_type)})
            except (httpx.TransportError, OSError) as error:
                failures.append(f"{path.name}: no answer ({error})")
                continue
            label = _label(response)
            if label == case.expected_label:
                matched += 1
            else:
                failures.append(f"{path.name}: expected {case.expected_label!r}, got {label}")
    return CanaryResult(url=url, sent=len(cases), matched=matched, failures=tuple(failures[:5]))


def _label(response: httpx.Response) -> str:
    """The top label (as a string), or a description of the answer that holds none."""
    if response.status_code != 200:
        return f"HTTP {response.status_code} {response.text[:120]!r}"
    try:
        return str(response.json()["predictions"][0]["label"])
    except (ValueError, KeyError, IndexError, TypeError):
        return f"no prediction in {response.text[:120]!r}"


def save_cases(directory: Path, cases: Sequence[CanaryCase]) -> None:
    """Write the cases' list (the images are already in `directory`)."""
    (directory / CASES_FILE).write_text(
        json.dumps([{"image": Path(c.image_path).name, "label": c.expected_label} for c in cases], indent=1)
    )


def load_cases(directory: Path) -> tuple[CanaryCase, ...] | None:
    """The cases recorded in `directory`, or None when none were."""
    path = directory / CASES_FILE
    if not path.exists():
        return None
    return tuple(CanaryCase(str(directory / item["image"]), item["label"]) for item in json.loads(path.read_text()))
