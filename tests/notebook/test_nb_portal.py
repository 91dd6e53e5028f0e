"""The IO-thread portal (``dspex_notebook._loop.Portal``): run / submit / call, timeouts,
misuse from the IO thread, stop, restart, close. Real threads and loops; no IPython needed."""

from __future__ import annotations

import asyncio
import concurrent.futures
import signal
import threading

import pytest

from dspex_notebook._loop import Portal, PortalClosed

NAME = "portal-under-test"  # not "dspex-*": the shell fixtures count those


@pytest.fixture
def portal():
    p = Portal(NAME)
    yield p
    p.stop()
    assert p._thread is None


def _threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name == NAME]


async def _where(value=None):
    """Returns the name of the thread it ran on (and ``value``)."""
    await asyncio.sleep(0)
    return threading.current_thread().name, value


def test_lazy_start_and_run_returns_the_result(portal):
    assert not portal.running and not _threads()  # nothing at construction
    assert portal.run(_where(41)) == (NAME, 41)
    assert portal.running
    [thread] = _threads()
    assert thread.daemon


def test_run_reraises_the_coroutine_exception(portal):
    async def boom():
        raise KeyError("nope")

    with pytest.raises(KeyError, match="nope"):
        portal.run(boom())
    assert portal.run(_where(1)) == (NAME, 1)  # the loop survives


def test_submit_returns_a_thread_safe_future(portal):
    future = portal.submit(_where("x"))
    assert isinstance(future, concurrent.futures.Future)
    assert future.result(10) == (NAME, "x")


def test_call_from_another_running_loop(portal):
    async def cell():  # what a notebook cell does with top-level await
        main = threading.current_thread().name
        where, value = await portal.call(_where(7))
        return main, where, value

    main, where, value = asyncio.run(cell())
    assert (main, where, value) == ("MainThread", NAME, 7)


def test_call_from_the_io_thread_awaits_in_place(portal):
    async def outer():
        return await portal.call(_where("inner"))

    assert portal.run(outer()) == (NAME, "inner")


def test_timeout_raises_timeout_error_and_cancels_the_coroutine(portal):
    started, cancelled = threading.Event(), threading.Event()

    async def slow():
        started.set()
        try:
            await asyncio.sleep(3600)
        except asyncio.CancelledError:
            cancelled.set()
            raise

    with pytest.raises(TimeoutError, match="no answer within 0.2 s"):
        portal.run(slow(), timeout=0.2)
    assert started.is_set()
    assert cancelled.wait(10), "the timed-out coroutine was not cancelled"
    assert portal.run(_where(2)) == (NAME, 2)


def test_run_from_the_io_thread_is_refused(portal):
    async def inner():  # must be closed, not leaked (an un-awaited coroutine warns -> error)
        return 1

    async def misuse():
        try:
            portal.run(inner())
        except RuntimeError as exc:
            return str(exc)
        return "no error"

    assert "called from the IO thread" in portal.run(misuse())


def test_stop_joins_the_thread_and_cancels_pending_tasks(portal):
    started, cancelled = threading.Event(), threading.Event()

    async def forever():
        started.set()
        try:
            await asyncio.Event().wait()
        finally:
            cancelled.set()

    future = portal.submit(forever())
    assert started.wait(10)
    [thread] = _threads()
    portal.stop()
    assert not thread.is_alive()
    assert not portal.running and not _threads()
    assert cancelled.is_set()
    assert future.cancelled()
    portal.stop()  # idempotent


def test_stop_before_start_is_a_no_op():
    p = Portal(NAME)
    p.stop()
    assert not p.running and not _threads()


def test_restart_after_stop(portal):
    portal.run(_where())
    [first] = _threads()
    portal.stop()
    assert portal.run(_where(3)) == (NAME, 3)
    [second] = _threads()
    assert second is not first and not first.is_alive()


def test_stop_from_the_io_thread_does_not_deadlock(portal):
    async def stop_me():
        portal.stop()  # cannot join itself: just stops the loop after this callback

    portal.run(_where())  # started; read the thread before stop_me() can clear it
    thread = portal._thread
    future = portal.submit(stop_me())
    thread.join(10)
    assert not thread.is_alive()
    assert future.done()


def test_concurrent_first_use_starts_one_thread(portal):
    barrier = threading.Barrier(8)
    results: list[object] = []

    def use() -> None:
        barrier.wait(10)
        results.append(portal.run(_where())[0])

    workers = [threading.Thread(target=use) for _ in range(8)]
    for w in workers:
        w.start()
    for w in workers:
        w.join(20)
    assert results == [NAME] * 8
    assert len(_threads()) == 1


def test_close_refuses_later_use_without_starting_a_thread():
    p = Portal(NAME)
    p.run(_where())
    p.close()
    assert not p.running and not _threads()
    for attempt in (lambda: p.run(_where()), lambda: p.submit(_where())):
        with pytest.raises(PortalClosed, match="closed"):  # and the coroutine is closed, no warning
            attempt()

    async def cell():
        return await p.call(_where())

    with pytest.raises(PortalClosed):
        asyncio.run(cell())
    assert issubclass(PortalClosed, RuntimeError)
    assert not _threads()


def test_interrupting_run_cancels_the_coroutine(portal):
    """A kernel interrupt (SIGINT -> KeyboardInterrupt in the main thread) while a magic waits
    must not leave the call running on the IO thread (an interrupted write would land later)."""
    started, cancelled = threading.Event(), threading.Event()

    async def hangs():
        started.set()
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            cancelled.set()
            raise

    def interrupt() -> None:
        if started.wait(10):
            signal.pthread_kill(threading.main_thread().ident, signal.SIGINT)

    assert threading.current_thread() is threading.main_thread()
    if signal.getsignal(signal.SIGINT) is not signal.default_int_handler:
        pytest.skip("SIGINT is handled by someone else in this process")
    helper = threading.Thread(target=interrupt)
    helper.start()
    with pytest.raises(KeyboardInterrupt):
        portal.run(hangs(), timeout=30)
    helper.join(10)
    assert cancelled.wait(10), "the interrupted coroutine is still running"
