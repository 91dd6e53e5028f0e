"""The IO thread ("portal") that owns every grpc.aio object in a Jupyter kernel.

grpc.aio channels and calls are bound to the loop that created them, and the kernel's own loop
is busy running cells (``asyncio.run`` and ``run_until_complete`` fail there). So, as
jupyter_core's task runner, ipyparallel and fsspec do, the notebook layer runs one private
asyncio loop on a daemon thread and sends coroutines to it:

* magics and widget callbacks (sync code) block on :meth:`Portal.run` with a timeout;
* a cell's ``await`` hops over with :meth:`Portal.call` (``asyncio.wrap_future``), so the kernel
  loop stays free to process widget messages while it waits;
* cache hits never get here: they are answered synchronously in the caller's thread.

No ``nest_asyncio``: it patches asyncio process-wide and is unmaintained.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import os
import threading
from collections.abc import Coroutine
from typing import Any, TypeVar

T = TypeVar("T")


class PortalClosed(RuntimeError):
    """The IO thread was stopped (``%unload_ext``, kernel shutdown)."""


class Portal:
    """An asyncio loop running forever in a daemon thread, started on first use."""

    def __init__(self, name: str = "dspex-io") -> None:
        self.name = name
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()
        self._pid = os.getpid()
        self._closed = False

    @property
    def loop(self) -> asyncio.AbstractEventLoop:
        """The IO loop, starting the thread if needed.

        Raises:
            PortalClosed: :meth:`close` was called (a restart is only possible after :meth:`stop`).
        """
        if self._closed:
            raise PortalClosed(
                f"the {self.name} IO thread was closed (%unload_ext / %reload_ext): objects bound to "
                "it, such as an old `session`, cannot be used any more"
            )
        if self._pid != os.getpid():  # forked child (e.g. `!cmd`): the thread did not survive
            self._loop = self._thread = None
            self._pid = os.getpid()
        loop = self._loop
        if loop is not None and self._thread is not None and self._thread.is_alive():
            return loop
        with self._lock:
            if self._loop is None or self._thread is None or not self._thread.is_alive():
                ready = threading.Event()
                new_loop = asyncio.new_event_loop()

                def run() -> None:
                    asyncio.set_event_loop(new_loop)
                    new_loop.call_soon(ready.set)
                    new_loop.run_forever()
                    # drain: cancel what is left so nothing leaks past stop()
                    pending = asyncio.all_tasks(new_loop)
                    for task in pending:
                        task.cancel()
                    if pending:
                        new_loop.run_until_complete(asyncio.gather(*pending, return_exceptions=True))
                    new_loop.run_until_complete(new_loop.shutdown_asyncgens())
                    new_loop.close()

                thread = threading.Thread(target=run, name=self.name, daemon=True)
                thread.start()
                ready.wait()
                self._loop, self._thread = new_loop, thread
            return self._loop

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def in_portal_thread(self) -> bool:
        return self._thread is not None and threading.current_thread() is self._thread

    def submit(self, coro: Coroutine[Any, Any, T],
               future: concurrent.futures.Future[T] | None = None) -> concurrent.futures.Future[T]:
        """Schedule ``coro`` on the IO loop; return a thread-safe future (``future`` if given:
        a caller that made it first can cancel it even if an interrupt lands mid-call)."""
        try:
            loop = self.loop
        except PortalClosed:
            coro.close()  # never awaited: close it so Python does not warn about it
            raise
        if future is None:
            return asyncio.run_coroutine_threadsafe(coro, loop)
        done = future

        def start() -> None:
            if done.cancelled():  # interrupted before it started: it never runs
                coro.close()
                return
            task = loop.create_task(coro)

            def copy(t: asyncio.Task[T]) -> None:
                if done.cancelled():
                    return
                if t.cancelled():
                    done.cancel()
                elif t.exception() is not None:
                    done.set_exception(t.exception())
                else:
                    done.set_result(t.result())

            task.add_done_callback(copy)
            done.add_done_callback(
                lambda f: loop.call_soon_threadsafe(task.cancel) if f.cancelled() else None)

        loop.call_soon_threadsafe(start)
        return done

    def run(self, coro: Coroutine[Any, Any, T], timeout: float | None = 30.0) -> T:
        """Run ``coro`` on the IO loop and block until it is done (from any other thread).

        Raises:
            TimeoutError: not done within ``timeout`` seconds (the coroutine is cancelled).
            KeyboardInterrupt: the wait was interrupted (kernel interrupt); the coroutine is
                cancelled too, so an interrupted write does not land later.
            RuntimeError: called from the IO thread itself (it would deadlock).
        """
        if self.in_portal_thread():
            coro.close()
            raise RuntimeError("Portal.run() called from the IO thread; await the coroutine instead")
        # made before scheduling, so an interrupt at any point below can still cancel it
        future: concurrent.futures.Future[T] = concurrent.futures.Future()
        try:
            self.submit(coro, future)
            return future.result(timeout)
        except concurrent.futures.TimeoutError:
            future.cancel()
            raise TimeoutError(f"no answer within {timeout} s") from None
        except BaseException:  # KeyboardInterrupt while waiting: don't leave it running
            future.cancel()
            raise

    async def call(self, coro: Coroutine[Any, Any, T]) -> T:
        """Await ``coro`` on the IO loop from another running loop (a notebook cell)."""
        if self.in_portal_thread():
            return await coro
        return await asyncio.wrap_future(self.submit(coro))

    def stop(self, timeout: float = 5.0) -> None:
        """Stop the loop, cancel its tasks and join the thread. Idempotent."""
        with self._lock:
            loop, thread = self._loop, self._thread
            self._loop = self._thread = None
        if loop is None or thread is None:
            return
        if thread.is_alive():
            loop.call_soon_threadsafe(loop.stop)
            if thread is not threading.current_thread():
                thread.join(timeout)

    def close(self, timeout: float = 5.0) -> None:
        """Stop for good: unlike after :meth:`stop`, later calls raise :class:`PortalClosed`
        instead of starting a new thread (which nothing would ever stop)."""
        self._closed = True
        self.stop(timeout)
