"""BentoML's request timeout without its leak: no timer outlives its request, and timeouts still answer 504."""

import asyncio
import gc

import pytest
from bentoml._internal.server.http.traffic import TimeoutMiddleware

from mlops_assets.lib.serving.request_timeout_fix import _call_with_cancelled_timer

HTTP_SCOPE = {"type": "http", "method": "POST", "path": "/predict", "headers": []}
# Each test takes well under a second; a request that never finishes fails here instead of hanging.
pytestmark = pytest.mark.timeout(60)


async def answer(scope: dict, receive, send) -> None:
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": b"ok"})


async def _serve(middleware: TimeoutMiddleware, requests: int) -> list[dict]:
    sent: list[dict] = []

    async def send(message: dict) -> None:
        sent.append(message)

    async def receive() -> dict:
        return {"type": "http.request", "body": b"", "more_body": False}

    for _ in range(requests):
        await middleware(HTTP_SCOPE, receive, send)
    return sent


def _live_timers() -> int:
    return sum(1 for item in gc.get_objects() if isinstance(item, asyncio.TimerHandle) and not item.cancelled())


async def _served_and_live_timers(middleware: TimeoutMiddleware, requests: int) -> tuple[list[dict], int]:
    sent = await _serve(middleware, requests)
    return sent, _live_timers()


def test_bentoml_keeps_one_live_timer_per_finished_request() -> None:
    # The upstream behaviour the fix exists for; when this fails, BentoML fixed it and the patch can go.
    sent, live = asyncio.run(_served_and_live_timers(TimeoutMiddleware(answer, timeout=30), 50))
    assert len(sent) == 100
    assert live >= 50


def test_with_the_fix_no_timer_outlives_its_request(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(TimeoutMiddleware, "__call__", _call_with_cancelled_timer)
    sent, live = asyncio.run(_served_and_live_timers(TimeoutMiddleware(answer, timeout=30), 50))
    assert [message["status"] for message in sent if message["type"] == "http.response.start"] == [200] * 50
    assert live == 0


def test_with_the_fix_a_request_past_the_timeout_still_gets_a_504(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(TimeoutMiddleware, "__call__", _call_with_cancelled_timer)

    async def never_answers(scope: dict, receive, send) -> None:
        await asyncio.sleep(60)

    sent = asyncio.run(_serve(TimeoutMiddleware(never_answers, timeout=0.05), 1))
    assert sent[0]["status"] == 504
    assert b"Not able to process the request in 0.05 seconds" in sent[1]["body"]


def test_with_the_fix_a_failing_request_fails_at_once_instead_of_waiting_for_the_timeout(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(TimeoutMiddleware, "__call__", _call_with_cancelled_timer)

    async def fails(scope: dict, receive, send) -> None:
        raise RuntimeError("broken handler")

    async def run() -> None:
        # A middleware that only woke on an answer or the timer would sit out the 30 s; 10 s is only a hang guard.
        await asyncio.wait_for(_serve(TimeoutMiddleware(fails, timeout=30), 1), 10)

    with pytest.raises(RuntimeError, match="broken handler"):
        asyncio.run(run())


def test_with_the_fix_an_answer_that_has_started_is_not_cut_by_the_timeout(monkeypatch: pytest.MonkeyPatch) -> None:
    # As in BentoML: the timeout bounds the wait for an answer to start, not a stream's length.
    monkeypatch.setattr(TimeoutMiddleware, "__call__", _call_with_cancelled_timer)

    async def slow_stream(scope: dict, receive, send) -> None:
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await asyncio.sleep(0.2)
        await send({"type": "http.response.body", "body": b"late but whole"})

    sent = asyncio.run(_serve(TimeoutMiddleware(slow_stream, timeout=0.05), 1))
    assert [message.get("status") for message in sent] == [200, None]
    assert sent[1]["body"] == b"late but whole"


def test_with_the_fix_a_timeout_error_raised_by_the_app_is_not_taken_for_the_request_timeout(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(TimeoutMiddleware, "__call__", _call_with_cancelled_timer)

    async def times_out_itself(scope: dict, receive, send) -> None:
        raise TimeoutError("the model store did not answer")

    with pytest.raises(TimeoutError, match="the model store did not answer"):
        asyncio.run(_serve(TimeoutMiddleware(times_out_itself, timeout=30), 1))
