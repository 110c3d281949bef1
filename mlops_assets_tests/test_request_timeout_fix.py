"""BentoML's request timeout without its leak: one timer per worker, not per request; timeouts still answer 504."""

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


async def answers_after(scope: dict, receive, send) -> None:
    """Answers after the number of seconds its path names (`/0.5`)."""
    await asyncio.sleep(float(scope["path"].strip("/")))
    await answer(scope, receive, send)


async def _status_after(middleware: TimeoutMiddleware, delay: str) -> int:
    """The status `answers_after` behind `middleware` answers for a request of `delay` seconds."""
    sent: list[dict] = []

    async def send(message: dict) -> None:
        sent.append(message)

    await middleware({**HTTP_SCOPE, "path": f"/{delay}"}, None, send)
    return sent[0]["status"]


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


def test_with_the_fix_one_timer_serves_every_request_and_none_is_left_once_they_are_done(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(TimeoutMiddleware, "__call__", _call_with_cancelled_timer)
    middleware = TimeoutMiddleware(answer, timeout=0.5)

    async def run() -> tuple[list[dict], int, int, int]:
        sent = await _serve(middleware, 50)
        just_after = _live_timers()
        deadlines = middleware.__dict__["_request_deadlines"]
        await asyncio.sleep(deadlines.interval_s * 2)  # the timer's next check finds nothing waiting
        return sent, just_after, _live_timers(), len(deadlines._queue)

    sent, just_after, later, queued = asyncio.run(run())
    assert [message["status"] for message in sent if message["type"] == "http.response.start"] == [200] * 50
    assert just_after <= 1  # one per worker, whatever the number of requests
    assert later == 0 and queued == 0


def test_with_the_fix_only_requests_past_their_deadline_are_cancelled(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(TimeoutMiddleware, "__call__", _call_with_cancelled_timer)

    middleware = TimeoutMiddleware(answers_after, timeout=0.3)

    async def run() -> list[int]:
        return await asyncio.gather(*(_status_after(middleware, delay) for delay in ("0.01", "5", "0.1", "5", "0.05")))

    assert asyncio.run(run()) == [200, 504, 200, 504, 200]


def test_with_the_fix_a_cancellation_from_outside_is_not_answered_as_a_timeout(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # The client went away or the server stops: the request ends cancelled, with no 504 sent.
    monkeypatch.setattr(TimeoutMiddleware, "__call__", _call_with_cancelled_timer)

    async def never_answers(scope: dict, receive, send) -> None:
        await asyncio.sleep(60)

    async def run() -> list[dict]:
        sent: list[dict] = []

        async def send(message: dict) -> None:
            sent.append(message)

        request = asyncio.ensure_future(TimeoutMiddleware(never_answers, timeout=30)(HTTP_SCOPE, None, send))
        await asyncio.sleep(0.05)
        request.cancel()
        with pytest.raises(asyncio.CancelledError):
            await request
        return sent

    assert asyncio.run(run()) == []


def test_with_the_fix_an_app_that_absorbs_the_cancellation_keeps_its_task_uncancelled(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(TimeoutMiddleware, "__call__", _call_with_cancelled_timer)

    async def absorbs(scope: dict, receive, send) -> None:
        try:
            await asyncio.sleep(60)
        except asyncio.CancelledError:
            await answer(scope, receive, send)

    async def run() -> tuple[list[dict], int]:
        sent = await _serve(TimeoutMiddleware(absorbs, timeout=0.05), 1)
        return sent, asyncio.current_task().cancelling()

    sent, cancelling = asyncio.run(run())
    assert sent[0]["status"] == 200
    assert cancelling == 0  # a later await in the same task is not cancelled by a leftover request


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


def test_with_the_fix_the_timer_starts_again_after_the_worker_was_idle(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(TimeoutMiddleware, "__call__", _call_with_cancelled_timer)

    middleware = TimeoutMiddleware(answers_after, timeout=0.2)

    async def run() -> list[int]:
        statuses = []
        for delay in ("0.01", "5"):
            statuses.append(await _status_after(middleware, delay))
            # Idle: the timer's next check finds nothing waiting and the worker schedules nothing.
            await asyncio.sleep(middleware.__dict__["_request_deadlines"].interval_s * 3)
            assert middleware.__dict__["_request_deadlines"]._timer is None
        return statuses

    assert asyncio.run(run()) == [200, 504]


def test_with_the_fix_a_cancellation_from_outside_after_the_deadline_is_not_swallowed(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # The deadline has cancelled the request, and while it cleans up the server cancels it too (it stops): the
    # request must end cancelled, not answer 504 and carry on.
    monkeypatch.setattr(TimeoutMiddleware, "__call__", _call_with_cancelled_timer)

    async def run() -> list[dict]:
        cleaning_up = asyncio.Event()  # made on the test's own event loop
        sent: list[dict] = []

        async def slow_cleanup(scope: dict, receive, send) -> None:
            try:
                await asyncio.sleep(60)
            finally:
                cleaning_up.set()
                await asyncio.sleep(0.5)  # cleanup, cancelled from outside below

        async def send(message: dict) -> None:
            sent.append(message)

        request = asyncio.ensure_future(TimeoutMiddleware(slow_cleanup, timeout=0.05)(HTTP_SCOPE, None, send))
        await cleaning_up.wait()
        request.cancel()
        with pytest.raises(asyncio.CancelledError):
            await request
        return sent

    assert asyncio.run(run()) == []
