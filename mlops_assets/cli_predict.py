"""`mlops predict`: send image files to a running service, one request per file, and report each file's answer."""

from __future__ import annotations

import mimetypes
import sys
from dataclasses import dataclass, field
from pathlib import Path

from mlops_assets.lib.errors import MLOpsError

# Seconds to wait for each answer (a 24-megapixel photo is decoded by the service before it answers).
TIMEOUT_S = 30


@dataclass
class Predictions:
    """What `predict_files` got: each answered file with the service's answer, in order, and one message per file
    that got none (`<file>: <why>`); `unreachable` says why files after it were not sent, when the service could
    not be reached at all."""

    answers: list[tuple[Path, dict]] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    unreachable: str | None = None

    @property
    def failed(self) -> bool:
        return bool(self.errors) or self.unreachable is not None


def predict_files(url: str, files: list[Path], api_key: str | None = None) -> Predictions:
    """The service's answer to `POST /predict` for each file (each sent with the content type its suffix names).

    A file that cannot be read (missing, a folder, no permission) or that the service refuses is an error naming
    the file and the reason, and the next file is sent; when the service cannot be reached, the files not sent yet
    are left and `unreachable` names the URL and what to do.
    """
    import httpx

    outcome = Predictions()
    headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
    try:
        client = httpx.Client(base_url=url, timeout=TIMEOUT_S, headers=headers)
    except httpx.InvalidURL as error:
        outcome.unreachable = _unreachable(url, error, len(files))
        return outcome
    with client:
        for index, path in enumerate(files):
            data = _read(path)
            if isinstance(data, str):
                outcome.errors.append(f"{path}: {data}")
                continue
            content_type = mimetypes.guess_type(path.name)[0] or "application/octet-stream"
            try:
                response = client.post("/predict", files={"images": (path.name, data, content_type)})
            except (httpx.ConnectError, httpx.ConnectTimeout, httpx.UnsupportedProtocol) as error:
                outcome.unreachable = _unreachable(url, error, len(files) - index)
                return outcome
            except httpx.TimeoutException:
                outcome.errors.append(f"{path}: no answer from {url} within {TIMEOUT_S} s; try again later")
                continue
            except httpx.TransportError as error:
                outcome.errors.append(f"{path}: the connection to {url} failed ({error}); try again")
                continue
            answer = _answer(response)
            if isinstance(answer, str):
                outcome.errors.append(f"{path}: {answer}")
            else:
                outcome.answers.append((path, answer))
    return outcome


def _read(path: Path) -> bytes | str:
    """The file's bytes, or why it cannot be sent (with what to do)."""
    try:
        return path.read_bytes()
    except IsADirectoryError:
        return f"is a folder, not an image file; pass the image files in it (e.g. {path / '*.png'})"
    except FileNotFoundError:
        return "no such file; check the path"
    except PermissionError:
        return "cannot be read (permission denied); check the file's permissions"
    except OSError as error:
        return f"cannot be read ({error.strerror or error})"


def _answer(response) -> dict | str:  # noqa: ANN001 - an httpx.Response, imported lazily
    """The prediction in a 200 answer, or the service's refusal (its status and message)."""
    if response.status_code != 200:
        return f"HTTP {response.status_code}: {_error_message(response)}"
    try:
        answer = response.json()
        answer["predictions"][0]["label"]  # noqa: B018 - checks the shape before it is printed
    except (ValueError, KeyError, IndexError, TypeError):
        return f"the answer is not a prediction ({response.text[:200]!r}); is the URL the image classifier's?"
    return answer


# The most of a refusal that is not the service's JSON error shown on the one `error:` line.
EXCERPT_CHARS = 120


def _error_message(response) -> str:  # noqa: ANN001 - an httpx.Response, imported lazily
    """The service's `error` message whole, else (a proxy's or another server's page) its reason phrase or a short
    excerpt; on one line."""
    try:
        message = response.json()["error"]
    except (ValueError, KeyError, TypeError):
        message = None
    if isinstance(message, str):
        return " ".join(message.split())  # the service's own message, whole, on one line
    if "html" in response.headers.get("content-type", "").lower() or not response.text.strip():
        return f"{response.reason_phrase or 'no reason given'} (not an answer of the image classifier)"
    text = " ".join(response.text.split())
    return text if len(text) <= EXCERPT_CHARS else text[: EXCERPT_CHARS - 3] + "..."


def _unreachable(url: str, error: Exception, not_sent: int) -> str:
    files = "file was" if not_sent == 1 else "files were"
    return (
        f"cannot reach the service at {url} ({error}); {not_sent} {files} not sent. Start it with "
        f"`mlops deploy local`, or pass the URL it serves at with --url ({_local_url_example()})."
    )


def _local_url_example() -> str:
    """Where `mlops deploy local` serves in the selected environment (its `server:` settings), for a hint."""
    from mlops_assets import settings
    from mlops_assets.lib.deploy.supervisor import url_for

    try:
        server = settings.environment_settings().server
    except MLOpsError:  # the hint must not fail; the settings' own error comes with the command that needs them
        return "`mlops deploy local` serves at the environment's server.port"
    return f"e.g. {url_for(server.host, server.port)}, where `mlops deploy local` serves"


def format_prediction(path: str | Path, answer: dict) -> str:
    """One line per file: the top label exactly as the model names it (non-ASCII included), confidence, model, and
    the request id `mlops feedback --label REQUEST_ID LABEL` names (when the service answered one)."""
    top = answer["predictions"][0]
    line = f"{path}: label {top['label']}, confidence {top['confidence']:.3f}, model {answer['model_version']}"
    request_id = answer.get("request_id")
    return f"{line}, request_id {request_id}" if request_id else line


def report(outcome: Predictions) -> int:
    """Print a line per answered file (stdout), then one `error:` line per file that got none and for an unreachable
    service (stderr); the exit status: 1 if anything failed, else 0."""
    for path, answer in outcome.answers:
        print(format_prediction(path, answer))
    for message in [*outcome.errors, *([outcome.unreachable] if outcome.unreachable else [])]:
        print(f"error: {message}", file=sys.stderr)
    return 1 if outcome.failed else 0


def service_url(given: str | None) -> str:
    """`--url`, else the local deployment's; an MLOpsError says what to do when there is neither."""
    from mlops_assets.resources.local_deployer import current_deployment

    if given:
        return given
    deployment = current_deployment()
    if deployment is None:
        live = _live_stage_urls()
        message = "No local deployment is running; start one with `mlops deploy local`, or pass --url."
        if live:
            message += f" Live stages (pass one's URL with --url): {'; '.join(live)}."
        raise MLOpsError(message)
    return deployment.url


def _live_stage_urls() -> list[str]:
    """`<stage> at <url>` for each deployment stage with a recorded deployment (the deployers' status: the local state
    file, one Cloud Run lookup), or `<stage>: not read (<why>)` when its status cannot be read."""
    from mlops_assets import settings
    from mlops_assets.lib.deploy.stage_settings import STAGES
    from mlops_assets.resources.deployer import deployer_for

    environment = settings.environment_settings()
    live = []
    for stage in STAGES:
        try:
            record = deployer_for(stage, environment).status()
        except Exception as error:  # noqa: BLE001 - the hint must not hide the error it is part of; the reason is shown
            live.append(f"{stage}: not read ({type(error).__name__}: {error})")
            continue
        if record is not None:
            live.append(f"{stage} at {record.url}")
    return live
