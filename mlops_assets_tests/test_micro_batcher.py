"""The in-process adaptive batcher: merging, bounds, order, errors, load shedding and cancelled requests."""

import asyncio
import re
import threading

import numpy as np
import pytest

from mlops_assets.lib.serving.micro_batcher import MicroBatcher, Overloaded

# Each test takes well under a second; a stalled batcher (a future never resolved) fails here instead of hanging.
pytestmark = pytest.mark.timeout(60)


class GatedForward:
    """A forward pass that doubles its input and, while `gate` is closed, blocks so requests pile up behind it."""

    def __init__(self) -> None:
        self.gate = threading.Event()
        self.started = threading.Event()
        self.batches: list[np.ndarray] = []
        self.fail_next = False

    def __call__(self, batch: np.ndarray) -> np.ndarray:
        self.batches.append(batch.copy())
        self.started.set()
        if not self.gate.wait(timeout=30):
            raise TimeoutError("the test never opened the gate")
        if self.fail_next:
            self.fail_next = False
            raise RuntimeError("forward pass failed")
        return batch * 2


def _inputs(first: int, count: int) -> np.ndarray:
    return np.arange(first, first + count, dtype=np.int64).reshape(count, 1)


async def _wait_for_first_forward(forward: GatedForward) -> None:
    started = await asyncio.get_running_loop().run_in_executor(None, forward.started.wait, 30)
    assert started, "the batcher never started a forward pass"


def test_requests_arriving_during_a_forward_pass_share_the_next_one_and_get_their_own_rows() -> None:
    forward = GatedForward()
    batcher = MicroBatcher(forward, max_batch_size=64, max_latency_ms=30_000)

    async def run() -> list[np.ndarray]:
        first = asyncio.create_task(batcher.predict(_inputs(0, 1)))
        await _wait_for_first_forward(forward)
        queued = [asyncio.create_task(batcher.predict(_inputs(100 * i, i))) for i in range(1, 6)]
        await asyncio.sleep(0.05)
        forward.gate.set()
        return await asyncio.gather(first, *queued)

    try:
        results = asyncio.run(run())
    finally:
        batcher.close()
    # The first request ran alone, at once; the five that queued behind it ran as one batch of 1+2+3+4+5 images.
    assert [len(batch) for batch in forward.batches] == [1, 15]
    assert np.array_equal(results[0], _inputs(0, 1) * 2)
    for i, result in enumerate(results[1:], start=1):
        assert np.array_equal(result, _inputs(100 * i, i) * 2)


def test_batches_never_exceed_the_bound_and_a_large_request_is_split_in_order() -> None:
    forward = GatedForward()
    batcher = MicroBatcher(forward, max_batch_size=8, max_latency_ms=30_000)

    async def run() -> tuple[np.ndarray, list[np.ndarray]]:
        blocker = asyncio.create_task(batcher.predict(_inputs(0, 1)))
        await _wait_for_first_forward(forward)
        large = asyncio.create_task(batcher.predict(_inputs(1000, 20)))
        small = [asyncio.create_task(batcher.predict(_inputs(100 * i, 3))) for i in range(1, 5)]
        await asyncio.sleep(0.05)
        forward.gate.set()
        await blocker
        return await large, await asyncio.gather(*small)

    try:
        large, small = asyncio.run(run())
    finally:
        batcher.close()
    assert max(len(batch) for batch in forward.batches) <= 8
    assert sum(len(batch) for batch in forward.batches) == 1 + 20 + 12
    assert np.array_equal(large, _inputs(1000, 20) * 2)
    for i, result in enumerate(small, start=1):
        assert np.array_equal(result, _inputs(100 * i, 3) * 2)


def test_a_failed_forward_pass_fails_only_its_own_batch_and_the_batcher_keeps_serving() -> None:
    forward = GatedForward()
    forward.gate.set()
    forward.fail_next = True
    batcher = MicroBatcher(forward, max_batch_size=8, max_latency_ms=30_000)

    async def run() -> np.ndarray:
        with pytest.raises(RuntimeError, match="forward pass failed"):
            await batcher.predict(_inputs(0, 2))
        return await batcher.predict(_inputs(10, 2))

    try:
        assert np.array_equal(asyncio.run(run()), _inputs(10, 2) * 2)
    finally:
        batcher.close()


def test_a_request_queued_past_the_latency_bound_is_shed_not_served_late() -> None:
    forward = GatedForward()
    batcher = MicroBatcher(forward, max_batch_size=8, max_latency_ms=20)

    async def run() -> tuple[np.ndarray, BaseException | np.ndarray, np.ndarray]:
        first = asyncio.create_task(batcher.predict(_inputs(0, 1)))
        await _wait_for_first_forward(forward)
        late = asyncio.create_task(batcher.predict(_inputs(5, 1)))
        await asyncio.sleep(0.1)  # five times the bound, while the model is busy
        forward.gate.set()
        answers = await asyncio.gather(first, late, return_exceptions=True)
        after = await batcher.predict(_inputs(7, 1))
        return answers[0], answers[1], after

    try:
        first, late, after = asyncio.run(run())
    finally:
        batcher.close()
    assert np.array_equal(first, _inputs(0, 1) * 2)
    assert isinstance(late, Overloaded) and "overloaded" in str(late)
    assert np.array_equal(after, _inputs(7, 1) * 2)
    # The shed request never reached the model.
    assert all(5 not in batch for batch in forward.batches)


def test_a_cancelled_request_is_dropped_before_the_model_sees_it() -> None:
    forward = GatedForward()
    batcher = MicroBatcher(forward, max_batch_size=8, max_latency_ms=30_000)

    async def run() -> np.ndarray:
        first = asyncio.create_task(batcher.predict(_inputs(0, 1)))
        await _wait_for_first_forward(forward)
        gone = asyncio.create_task(batcher.predict(_inputs(50, 1)))
        kept = asyncio.create_task(batcher.predict(_inputs(60, 1)))
        await asyncio.sleep(0.01)
        gone.cancel()
        await asyncio.sleep(0.01)
        forward.gate.set()
        await first
        return await kept

    try:
        assert np.array_equal(asyncio.run(run()), _inputs(60, 1) * 2)
    finally:
        batcher.close()
    assert [batch.ravel().tolist() for batch in forward.batches] == [[0], [60]]


def test_a_lone_request_runs_as_its_own_batch_and_the_batch_is_reported() -> None:
    forward = GatedForward()
    reported: list[tuple[int, float]] = []
    batcher = MicroBatcher(
        forward, max_batch_size=4, max_latency_ms=1000, on_batch=lambda n, w: reported.append((n, w))
    )

    async def run() -> np.ndarray:
        request = asyncio.create_task(batcher.predict(_inputs(0, 3)))
        await _wait_for_first_forward(forward)
        forward.gate.set()
        return await request

    try:
        assert np.array_equal(asyncio.run(run()), _inputs(0, 3) * 2)
    finally:
        batcher.close()
    assert len(reported) == 1 and reported[0][0] == 3 and reported[0][1] >= 0


@pytest.mark.parametrize(
    ("size", "latency", "message"),
    [(0, 100, "max_batch_size must be at least 1, got 0."), (8, 0, "max_latency_ms must be positive, got 0.")],
)
def test_bounds_must_be_positive(size: int, latency: float, message: str) -> None:
    with pytest.raises(ValueError, match=re.escape(message)):
        MicroBatcher(lambda batch: batch, max_batch_size=size, max_latency_ms=latency)


def test_when_one_piece_of_a_split_request_fails_its_queued_siblings_are_dropped() -> None:
    blocker_gate, sibling_gate, started = threading.Event(), threading.Event(), threading.Event()
    seen: list[list[int]] = []

    def forward(batch: np.ndarray) -> np.ndarray:
        seen.append(batch.ravel().tolist())
        started.set()
        if 0 in batch:
            blocker_gate.wait(timeout=30)
        elif 1000 in batch:
            raise RuntimeError("bad piece")
        else:
            sibling_gate.wait(timeout=30)  # the next piece is still running when the caller learns of the failure
        return batch * 2

    batcher = MicroBatcher(forward, max_batch_size=2, max_latency_ms=30_000)

    async def run() -> None:
        blocker = asyncio.create_task(batcher.predict(_inputs(0, 1)))
        assert await asyncio.get_running_loop().run_in_executor(None, started.wait, 30), "no forward pass started"
        large = asyncio.create_task(batcher.predict(_inputs(1000, 8)))  # four pieces of two images
        await asyncio.sleep(0.05)
        blocker_gate.set()
        await blocker
        with pytest.raises(RuntimeError, match="bad piece"):
            await large
        sibling_gate.set()

    try:
        asyncio.run(run())
    finally:
        batcher.close()
    # The failed piece and the one already running reached the model; the two queued behind them never did.
    assert seen == [[0], [1000, 1001], [1002, 1003]]


def test_a_failing_batch_callback_does_not_stall_the_queue() -> None:
    def broken_metrics(size: int, waited_s: float) -> None:
        raise RuntimeError("metrics backend down")

    batcher = MicroBatcher(lambda batch: batch * 3, max_batch_size=4, max_latency_ms=30_000, on_batch=broken_metrics)

    async def run() -> list[np.ndarray]:
        return await asyncio.gather(*(batcher.predict(_inputs(10 * i, 2)) for i in range(6)))

    try:
        results = asyncio.run(run())
    finally:
        batcher.close()
    for i, result in enumerate(results):
        assert np.array_equal(result, _inputs(10 * i, 2) * 3)


def test_a_forward_pass_that_loses_rows_fails_its_batch_instead_of_misassigning_answers() -> None:
    batcher = MicroBatcher(lambda batch: batch[:-1], max_batch_size=4, max_latency_ms=30_000)

    async def run() -> None:
        with pytest.raises(RuntimeError, match="returned 1 rows for a batch of 2"):
            await batcher.predict(_inputs(0, 2))

    try:
        asyncio.run(run())
    finally:
        batcher.close()


def test_a_closed_batcher_refuses_new_requests_with_a_message() -> None:
    batcher = MicroBatcher(lambda batch: batch, max_batch_size=4, max_latency_ms=30_000)
    batcher.close()
    with pytest.raises(RuntimeError, match="closed"):
        asyncio.run(batcher.predict(_inputs(0, 1)))


def test_pending_work_is_reported_while_a_pass_runs_or_requests_wait_and_not_when_idle() -> None:
    forward = GatedForward()
    batcher = MicroBatcher(forward, max_batch_size=64, max_latency_ms=30_000)

    async def run() -> list[bool]:
        seen = [batcher.has_pending_work]
        first = asyncio.create_task(batcher.predict(_inputs(0, 1)))
        await _wait_for_first_forward(forward)
        seen.append(batcher.has_pending_work)
        forward.gate.set()
        await first
        seen.append(batcher.has_pending_work)
        return seen

    try:
        assert asyncio.run(run()) == [False, True, False]
    finally:
        batcher.close()


# With `inline_when_idle`: a lone client's requests are computed on the event loop, what batches goes to the thread.
CLIENT = ("127.0.0.1", 50000)


class ThreadRecordingForward:
    """Doubles its input and records each pass's size and thread."""

    def __init__(self) -> None:
        self.passes: list[tuple[int, int]] = []

    def __call__(self, batch: np.ndarray) -> np.ndarray:
        self.passes.append((len(batch), threading.get_ident()))
        return batch * 2


def test_requests_from_the_same_client_in_a_row_are_computed_on_the_event_loop() -> None:
    forward = ThreadRecordingForward()
    recorded: list[int] = []
    batcher = MicroBatcher(
        forward, 64, 30_000, on_batch=lambda size, waited_s: recorded.append(size), inline_when_idle=True
    )

    async def run() -> tuple[list[np.ndarray], int]:
        results = [await batcher.predict(_inputs(10 * i, 3), source=CLIENT) for i in range(3)]
        return results, threading.get_ident()

    try:
        results, loop_thread = asyncio.run(run())
    finally:
        batcher.close()
    for i, result in enumerate(results):
        assert np.array_equal(result, _inputs(10 * i, 3) * 2)
    # The first request of a connection goes to the thread (nothing says it is alone yet); the next ones run inline.
    assert [thread == loop_thread for _, thread in forward.passes] == [False, True, True]
    assert recorded == [3, 3, 3]
    assert not batcher.has_pending_work


def test_requests_from_alternating_clients_or_without_a_source_go_to_the_worker_thread() -> None:
    forward = ThreadRecordingForward()
    batcher = MicroBatcher(forward, 64, 30_000, inline_when_idle=True)
    other = ("127.0.0.1", 50001)

    async def run() -> int:
        for source in (CLIENT, other, CLIENT, other, None, None):
            await batcher.predict(_inputs(0, 1), source=source)
        return threading.get_ident()

    try:
        loop_thread = asyncio.run(run())
    finally:
        batcher.close()
    assert len(forward.passes) == 6
    assert all(thread != loop_thread for _, thread in forward.passes)


def test_without_the_option_a_lone_client_is_computed_on_the_worker_thread() -> None:
    forward = ThreadRecordingForward()
    batcher = MicroBatcher(forward, 64, 30_000)

    async def run() -> int:
        for _ in range(3):
            await batcher.predict(_inputs(0, 1), source=CLIENT)
        return threading.get_ident()

    try:
        loop_thread = asyncio.run(run())
    finally:
        batcher.close()
    assert [thread == loop_thread for _, thread in forward.passes] == [False, False, False]


def test_requests_ready_in_the_same_pass_of_the_loop_batch_on_the_worker_thread() -> None:
    forward = ThreadRecordingForward()
    batcher = MicroBatcher(forward, 64, 30_000, inline_when_idle=True)

    async def run() -> tuple[list[np.ndarray], int]:
        await batcher.predict(_inputs(0, 1), source=CLIENT)  # now the batcher has seen this client before
        forward.passes.clear()
        results = await asyncio.gather(*(batcher.predict(_inputs(10 * i, 1), source=CLIENT) for i in range(4)))
        return results, threading.get_ident()

    try:
        results, loop_thread = asyncio.run(run())
    finally:
        batcher.close()
    assert [size for size, _ in forward.passes] == [4]
    assert forward.passes[0][1] != loop_thread
    for i, result in enumerate(results):
        assert np.array_equal(result, _inputs(10 * i, 1) * 2)


def test_an_inline_pass_that_fails_fails_its_request_and_leaves_the_batcher_idle() -> None:
    def broken(batch: np.ndarray) -> np.ndarray:
        raise RuntimeError("forward pass failed")

    batcher = MicroBatcher(broken, 64, 30_000, inline_when_idle=True)

    async def run() -> None:
        for _ in range(2):  # the first on the thread, the second inline
            with pytest.raises(RuntimeError, match="forward pass failed"):
                await batcher.predict(_inputs(0, 1), source=CLIENT)

    try:
        asyncio.run(run())
        assert not batcher.has_pending_work
    finally:
        batcher.close()


def test_a_request_cancelled_while_others_join_it_leaves_them_served() -> None:
    forward = ThreadRecordingForward()
    batcher = MicroBatcher(forward, 64, 30_000, inline_when_idle=True)

    async def run() -> list[np.ndarray]:
        await batcher.predict(_inputs(0, 1), source=CLIENT)
        forward.passes.clear()
        first = asyncio.create_task(batcher.predict(_inputs(0, 1), source=CLIENT))
        others = [asyncio.create_task(batcher.predict(_inputs(10 * i, 1), source=CLIENT)) for i in range(1, 3)]
        await asyncio.sleep(0)  # the first request is now waiting for the others to join
        first.cancel()
        with pytest.raises(asyncio.CancelledError):
            await first
        return await asyncio.gather(*others)

    try:
        results = asyncio.run(run())
    finally:
        batcher.close()
    assert [size for size, _ in forward.passes] == [2]
    for i, result in enumerate(results, start=1):
        assert np.array_equal(result, _inputs(10 * i, 1) * 2)
