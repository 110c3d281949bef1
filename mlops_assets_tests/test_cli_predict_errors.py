"""`mlops predict` without a service to answer: one `error:` line naming the URL and what to do, never a traceback;
a file that cannot be sent is named with its reason before that."""

import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import numpy as np
import pytest

from mlops_assets.cli import main
from mlops_assets_tests.conftest import free_port, write_png


@pytest.fixture
def image(tmp_path: Path) -> Path:
    return write_png(tmp_path / "a.png", np.full((8, 8), 40))


def test_a_url_nothing_answers_at_is_one_error_line(image: Path, capsys: pytest.CaptureFixture) -> None:
    url = f"http://127.0.0.1:{free_port()}"  # bound and released: nothing listens there
    assert main(["predict", str(image), str(image), "--url", url]) == 1
    output = capsys.readouterr()
    assert output.out == ""
    assert output.err == (
        f"error: cannot reach the service at {url} ([Errno 111] Connection refused); 2 files were not sent. Start it "
        "with `mlops deploy local`, or pass the URL it serves at with --url (e.g. http://127.0.0.1:3030, where "
        "`mlops deploy local` serves).\n"
    )


def test_the_hint_gives_the_selected_environments_local_server_url(
    image: Path, capsys: pytest.CaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MLOPS_ENV", "staging")  # deployments/staging.yaml: server.port 3031
    url = f"http://127.0.0.1:{free_port()}"
    assert main(["predict", str(image), "--url", url]) == 1
    assert capsys.readouterr().err.endswith("(e.g. http://127.0.0.1:3031, where `mlops deploy local` serves).\n")


def test_a_url_without_its_scheme_is_one_error_line(image: Path, capsys: pytest.CaptureFixture) -> None:
    assert main(["predict", str(image), "--url", "localhost:3000"]) == 1
    assert capsys.readouterr().err == (
        "error: cannot reach the service at localhost:3000 (Request URL has an unsupported protocol 'localhost://'.); "
        "1 file was not sent. Start it with `mlops deploy local`, or pass the URL it serves at with --url (e.g. "
        "http://127.0.0.1:3030, where `mlops deploy local` serves).\n"
    )


def test_a_folder_is_named_with_what_to_do_and_the_next_file_is_still_sent(
    image: Path, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    folder = tmp_path / "photos"
    folder.mkdir()
    url = f"http://127.0.0.1:{free_port()}"
    assert main(["predict", str(folder), str(image), "--url", url]) == 1
    assert capsys.readouterr().err.splitlines() == [
        f"error: {folder}: is a folder, not an image file; pass the image files in it (e.g. {folder / '*.png'})",
        f"error: cannot reach the service at {url} ([Errno 111] Connection refused); 1 file was not sent. Start it "
        "with `mlops deploy local`, or pass the URL it serves at with --url (e.g. http://127.0.0.1:3030, where "
        "`mlops deploy local` serves).",
    ]


def test_without_a_deployment_or_url_the_error_says_what_to_do(
    image: Path, tmp_path: Path, capsys: pytest.CaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MLOPS_HOME", str(tmp_path / "home"))  # a home where nothing was ever deployed
    assert main(["predict", str(image)]) == 1
    assert capsys.readouterr().err == (
        "error: No local deployment is running; start one with `mlops deploy local`, or pass --url.\n"
    )


def test_without_a_local_deployment_the_error_names_the_live_stages_urls(
    image: Path, tmp_path: Path, capsys: pytest.CaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    from mlops_assets import settings
    from mlops_assets.lib.deploy.release import DeploymentRecord
    from mlops_assets.resources.local_target import LocalDeployer, StageState

    monkeypatch.setenv("MLOPS_HOME", str(tmp_path / "home"))
    # What the local deployer records once a version went live in staging (production: nothing deployed).
    deployer = LocalDeployer("staging", settings.environment_settings("local"))
    record = DeploymentRecord("staging", "local", 1, "image-classifier-service:x", "v1", "http://127.0.0.1:3107", ())
    deployer._save(StageState(record=record))
    assert main(["predict", str(image)]) == 1
    assert capsys.readouterr().err == (
        "error: No local deployment is running; start one with `mlops deploy local`, or pass --url. Live stages (pass "
        "one's URL with --url): staging at http://127.0.0.1:3107.\n"
    )


class _Answers(BaseHTTPRequestHandler):
    """A server that is not the image classifier: every POST gets the status and body set on the server."""

    def do_POST(self) -> None:  # noqa: N802 - the standard library's handler name
        self.rfile.read(int(self.headers.get("content-length", 0)))
        status, content_type, body = self.server.answer  # type: ignore[attr-defined]
        self.send_response(status)
        self.send_header("content-type", content_type)
        self.send_header("content-length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def other_server() -> Iterator[ThreadingHTTPServer]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Answers)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()


HTML_PAGE = (
    b"<!DOCTYPE html>\n<html>\n<head>\n<title>502 Bad Gateway</title>\n</head>\n<body>\n<center>\n<h1>502 Bad "
    b"Gateway</h1>\n</center>\n<hr>\n<center>nginx</center>\n</body>\n</html>\n"
)


@pytest.mark.parametrize(
    ("status", "content_type", "body", "message"),
    [
        (502, "text/html", HTML_PAGE, "HTTP 502: Bad Gateway (not an answer of the image classifier)"),
        (500, "text/plain", b"line one\n  line two\n", "HTTP 500: line one line two"),
        (503, "text/plain", b"x" * 500, "HTTP 503: " + "x" * 117 + "..."),
        (400, "application/json", b'{"error": "not an image:\\nPNG header"}', "HTTP 400: not an image: PNG header"),
    ],
)
def test_a_refusal_that_is_not_the_service_json_is_one_short_line(
    image: Path,
    other_server: ThreadingHTTPServer,
    capsys: pytest.CaptureFixture,
    status: int,
    content_type: str,
    body: bytes,
    message: str,
) -> None:
    other_server.answer = (status, content_type, body)  # type: ignore[attr-defined]
    url = f"http://127.0.0.1:{other_server.server_address[1]}"
    assert main(["predict", str(image), "--url", url]) == 1
    output = capsys.readouterr()
    assert (output.out, output.err) == ("", f"error: {image}: {message}\n")
