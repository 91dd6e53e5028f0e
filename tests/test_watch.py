"""Watches through the public API: ``watch_variable(s)``, :class:`Watch`, ``cancel_watch``.

What a watch promises (docs in ``dspex_notebook/_watch.py``): ``include_initial`` is a snapshot
at revision R followed by every change after R (a write racing the start is neither lost nor
delivered twice); ``filter_fn`` runs client-side; throttle/debounce coalesce to the latest
value per variable on the watch's clock; and the etcd watch validators hold over every
watcher's log (ordered, unique, atomic, reliable). Real server on 127.0.0.1:0, loops bounded.
"""

from __future__ import annotations

import asyncio
import json
import random

import pytest
from waiting import TIMEOUT, take, until

from dspex_notebook import Watch
from dspex_notebook.server import Store
from dspex_notebook.testing import FakeClock, session_for


async def caught_up(watcher, writer) -> None:
    """Wait until ``watcher``'s hub has applied every revision committed so far.

    Needed before a watch with ``include_initial=False``: such a watch gets every update its
    hub applies after it was created, and the hub may still be delivering revisions committed
    just before (e.g. the registration a test just made through another client).
    """
    head = (await writer.ping())["revision"]
    async with asyncio.timeout(TIMEOUT):
        while watcher._hub.revision < head:
            await asyncio.sleep(0.002)


async def settle(rounds: int = 5) -> None:
    """Let every ready task run (watch consumers woken by an update or a clock advance)."""
    for _ in range(rounds):
        await asyncio.sleep(0.002)


@pytest.fixture
async def pair(server, request):
    """Two clients of one fresh session: a writer and a watcher (separate channels)."""
    sid = f"w-{request.node.name}"[:200]
    async with session_for(server, sid) as writer, session_for(server, sid) as watcher:
        yield writer, watcher
        await writer.cleanup()


# ----------------------------------------------------------------------------------------------
# include_initial racing a writer


async def test_include_initial_racing_a_writer_loses_and_repeats_nothing(pair):
    writer, watcher = pair
    n, runs, raced = 12, 30, 0
    for run in range(runs):
        name = f"x{run}"
        await writer.register_variable(name, "integer", 0)

        async def write(name: str = name) -> None:
            for i in range(1, n + 1):
                await writer.set_variable(name, i)

        task = asyncio.create_task(write())
        for _ in range(run % 6):  # start the watch at different points of the writes
            await asyncio.sleep(0.0005)
        got = []
        async with watcher.watch_variable(name) as watch:
            async with asyncio.timeout(TIMEOUT):
                async for update in watch:
                    got.append((update.kind, update.value))
                    if update.value == n:
                        break
        await task
        first_kind, first = got[0]
        assert first_kind == "initial", got
        assert got[1:] == [("set", i) for i in range(first + 1, n + 1)], f"run {run}: {got}"
        raced += 0 < first < n
    print(f"\ninclude_initial: {raced}/{runs} runs started the watch in the middle of the writes")


async def test_include_initial_of_a_variable_registered_later(pair):
    writer, watcher = pair
    watch = watcher.watch_variable("later")
    try:
        consumer = asyncio.create_task(take(watch, 2))
        await settle()
        await writer.register_variable("later", "integer", 1)
        await writer.set_variable("later", 2)
        got = await consumer
        assert [(u.kind, u.value) for u in got] == [("register", 1), ("set", 2)]
    finally:
        await watch.aclose()


# ----------------------------------------------------------------------------------------------
# filter_fn


async def test_filter_fn_single_gets_old_and_new(pair):
    writer, watcher = pair
    await writer.register_variable("t", "integer", 0)
    seen = []

    def rising(old, new):
        seen.append((old, new))
        return new > old

    # include_initial: the watch starts at the snapshot's revision, after the registration
    async with watcher.watch_variable("t", filter_fn=rising) as watch:
        assert [(u.kind, u.value) for u in await take(watch, 1)] == [("initial", 0)]
        for value in (1, 5, 3, 2, 7, 6):
            await writer.set_variable("t", value)
        got = await take(watch, 3)
    assert [(u.value, u.old_value) for u in got] == [(1, 0), (5, 1), (7, 2)]
    assert seen[:5] == [(0, 1), (1, 5), (5, 3), (3, 2), (2, 7)]


async def test_the_spec_filter_survives_delete_and_re_register(pair):
    """The spec's ``filter_fn=lambda old, new: abs(new - old) > 0.05``: a registration (no old
    value, or one of another type) is not a change to filter and must not break the watch."""
    writer, watcher = pair
    await writer.register_variable("temp", "float", 0.5)
    watch = watcher.watch_variable("temp", filter_fn=lambda old, new: abs(new - old) > 0.05)
    async with watch:
        assert [u.value for u in await take(watch, 1)] == [0.5]
        await writer.set_variable("temp", 0.52)  # filtered out
        await writer.delete_variable("temp")
        await writer.register_variable("temp", "float", 0.9)
        await writer.set_variable("temp", 0.91)  # filtered out
        await writer.register_variable("temp", "string", "hot", replace=True)
        await writer.register_variable("temp", "float", 0.1, replace=True)
        await writer.set_variable("temp", 0.3)
        got = await take(watch, 7)
    assert [(u.kind, u.value) for u in got] == [
        ("delete", None), ("register", 0.9), ("delete", None), ("register", "hot"),
        ("delete", None), ("register", 0.1), ("set", 0.3)]


async def test_filter_fn_multi_gets_the_name(pair):
    writer, watcher = pair
    await writer.register_variables([{"name": n, "type": "integer", "initial_value": 0}
                                     for n in ("a", "b", "c")])
    calls = []

    def keep(name, old, new):
        calls.append((name, old, new))
        return name == "a" or new >= 10

    watch = watcher.watch_variables(["a", "b", "c"], include_initial=True, filter_fn=keep)
    async with watch:
        initial = await take(watch, 3)
        assert sorted((u.kind, u.name, u.value) for u in initial) == [
            ("initial", "a", 0), ("initial", "b", 0), ("initial", "c", 0)]  # not filtered
        await writer.update_variables({"a": 1, "b": 2, "c": 30})
        await writer.set_variable("b", 10)
        await writer.set_variable("c", 3)
        await writer.set_variable("a", 2)
        got = await take(watch, 4)
    # a batch's updates share its revision; their order within it is not specified
    assert got[0].revision == got[1].revision
    assert {(u.name, u.old_value, u.value) for u in got[:2]} == {("a", 0, 1), ("c", 0, 30)}
    assert [(u.name, u.old_value, u.value) for u in got[2:]] == [("b", 2, 10), ("a", 1, 2)]
    assert ("b", 0, 2) in calls and ("c", 30, 3) in calls


async def test_a_failing_filter_is_raised_to_the_consumer(pair):
    writer, watcher = pair
    await writer.register_variable("f", "integer", 0)

    def broken(old, new):
        raise ZeroDivisionError("filter bug")

    await caught_up(watcher, writer)
    async with watcher.watch_variable("f", include_initial=False, filter_fn=broken) as watch:
        consumer = asyncio.create_task(take(watch, 1))
        await settle()
        await writer.set_variable("f", 1)
        with pytest.raises(ZeroDivisionError, match="filter bug"):
            await consumer


# ----------------------------------------------------------------------------------------------
# throttle and debounce on a FakeClock


class Scripted:
    """A watch under test plus an unthrottled probe watch on the same client, so the test knows
    when an update has reached the hub (and so, at that same instant, the watch under test)."""

    def __init__(self, writer, watcher, clock: FakeClock, watch: Watch, names: list[str]) -> None:
        self.writer, self.clock, self.watch = writer, clock, watch
        self.probe = watcher.watch_variables(names)
        self.names = names
        self.delivered: list[tuple[float, str, object, object]] = []
        self.task: asyncio.Task | None = None

    async def start(self) -> None:
        assert {u.name for u in await take(self.probe, len(self.names))} == set(self.names)
        async def consume() -> None:
            async for u in self.watch:
                self.delivered.append((self.clock.now(), u.name, u.value, u.old_value))

        self.task = asyncio.create_task(consume())
        await settle()

    async def write(self, name: str, value: int) -> None:
        await self.writer.set_variable(name, value)
        update = (await take(self.probe, 1))[0]
        assert (update.name, update.value) == (name, value)
        await settle()

    async def advance(self, seconds: float) -> None:
        self.clock.advance(seconds)
        await settle()

    async def close(self) -> list:
        await self.watch.aclose()
        await self.probe.aclose()
        assert self.task is not None
        await asyncio.wait_for(self.task, TIMEOUT)
        return self.delivered


@pytest.fixture
async def fake(server, request):
    sid = f"f-{request.node.name}"[:200]
    clock = FakeClock()
    async with session_for(server, sid) as writer, session_for(server, sid, clock=clock) as watcher:
        await writer.register_variables([{"name": n, "type": "integer", "initial_value": 0}
                                         for n in ("a", "b")])
        await caught_up(watcher, writer)
        yield writer, watcher, clock
        await writer.cleanup()


async def test_throttle_delivers_the_latest_value_at_most_once_per_interval(fake):
    writer, watcher, clock = fake
    s = Scripted(writer, watcher, clock,
                 watcher.watch_variable("a", include_initial=False, throttle_ms=250), ["a"])
    await s.start()
    await s.write("a", 1)  # the first update goes out at once
    assert s.delivered == [(0.0, "a", 1, 0)]
    await s.write("a", 2)
    await s.write("a", 3)
    await s.advance(0.125)
    assert len(s.delivered) == 1  # still inside the interval: held back
    await s.advance(0.125)  # t = 0.25: the latest value, with the old value of the first held
    assert s.delivered[1:] == [(0.25, "a", 3, 1)]
    await s.advance(0.5)  # t = 0.75, idle for longer than the interval
    await s.write("a", 4)  # goes out at once again
    await s.write("a", 5)
    assert s.delivered[2:] == [(0.75, "a", 4, 3)]
    await s.advance(0.25)
    assert await s.close() == [(0.0, "a", 1, 0), (0.25, "a", 3, 1), (0.75, "a", 4, 3),
                               (1.0, "a", 5, 4)]


async def test_throttle_is_per_variable(fake):
    writer, watcher, clock = fake
    watch = watcher.watch_variables(["a", "b"], include_initial=False, throttle_ms=500)
    s = Scripted(writer, watcher, clock, watch, ["a", "b"])
    await s.start()
    await s.write("a", 1)
    await s.write("b", 1)  # another variable: not held back by a's interval
    await s.write("a", 2)
    await s.write("b", 2)
    await s.write("a", 3)
    assert s.delivered == [(0.0, "a", 1, 0), (0.0, "b", 1, 0)]
    await s.advance(0.25)
    await s.write("b", 3)
    assert len(s.delivered) == 2
    await s.advance(0.25)
    assert sorted(s.delivered[2:]) == [(0.5, "a", 3, 1), (0.5, "b", 3, 1)]
    await s.advance(1.0)
    assert len(await s.close()) == 4


async def test_debounce_waits_for_quiet(fake):
    writer, watcher, clock = fake
    s = Scripted(writer, watcher, clock,
                 watcher.watch_variable("a", include_initial=False, debounce_ms=250), ["a"])
    await s.start()
    await s.write("a", 1)
    await s.write("a", 2)
    assert s.delivered == []
    await s.advance(0.125)
    await s.write("a", 3)  # restarts the quiet period: now due at 0.375
    await s.advance(0.125)  # t = 0.25: would have been due for 2
    assert s.delivered == []
    await s.advance(0.125)  # t = 0.375
    assert s.delivered == [(0.375, "a", 3, 0)]
    await s.advance(1.0)
    await s.write("a", 4)
    await s.advance(0.125)
    assert len(s.delivered) == 1
    await s.advance(0.125)
    assert await s.close() == [(0.375, "a", 3, 0), (1.625, "a", 4, 3)]


async def test_initial_value_is_not_throttled(fake):
    writer, watcher, clock = fake
    watch = watcher.watch_variable("a", throttle_ms=1000, debounce_ms=1000)
    s = Scripted(writer, watcher, clock, watch, ["a"])
    await s.start()
    assert s.delivered == [(0.0, "a", 0, None)]
    await s.write("a", 1)
    await s.advance(0.5)
    assert len(s.delivered) == 1
    await s.advance(0.5)
    assert await s.close() == [(0.0, "a", 0, None), (1.0, "a", 1, 0)]


# ----------------------------------------------------------------------------------------------
# lifecycle: async with, aclose, cancel_watch


async def test_async_with_and_aclose(pair):
    writer, watcher = pair
    await writer.register_variable("x", "integer", 0)
    async with watcher.watch_variable("x") as watch:
        assert [u.value for u in await take(watch, 1)] == [0]
        assert watch.status == "live" and not watch.closed
    assert watch.closed and watch.status == "closed"
    assert [u async for u in watch] == []  # a closed watch ends at once

    # aclose ends an `async for` that another task is blocked in
    await caught_up(watcher, writer)
    watch = watcher.watch_variable("x", include_initial=False)
    seen = []

    async def consume() -> str:
        async for u in watch:
            seen.append(u.value)
        return "ended"

    task = asyncio.create_task(consume())
    await settle()
    await writer.set_variable("x", 1)
    async with asyncio.timeout(TIMEOUT):
        while not seen:
            await asyncio.sleep(0.002)
    await watch.aclose()
    await watch.aclose()  # idempotent
    assert await asyncio.wait_for(task, TIMEOUT) == "ended" and seen == [1]


async def _values_after(ctx, writer, name: str, value: int) -> None:
    """Write ``value`` and wait until ``ctx``'s hub has applied it (a probe watch saw it)."""
    async with ctx.watch_variable(name) as probe:
        assert (await take(probe, 1))[0].kind == "initial"
        await writer.set_variable(name, value)
        assert (await take(probe, 1))[0].value == value


async def test_cancel_watch_of_a_watch_running_as_a_task(pair):
    """``create_task(session.watch_variable(x))`` with callbacks, stopped by
    ``cancel_watch(watch)``: the task ends normally with the number of updates it handled."""
    writer, watcher = pair
    await writer.register_variable("x", "integer", 0)
    sync_seen, async_seen = [], []

    async def slow_callback(update) -> None:
        await asyncio.sleep(0)
        async_seen.append(update.value)

    watch = watcher.watch_variable("x").on_update(lambda u: sync_seen.append(u.value))
    watch.on_update(slow_callback)
    task = asyncio.create_task(watch)
    await until(lambda: async_seen == [0])  # the snapshot is taken once the task runs
    await _values_after(watcher, writer, "x", 1)
    await until(lambda: async_seen == [0, 1])
    assert sync_seen == [0, 1]
    watcher.cancel_watch(watch)
    assert watch.closed
    assert await asyncio.wait_for(task, TIMEOUT) == 2
    await _values_after(watcher, writer, "x", 2)
    assert sync_seen == [0, 1]


async def test_cancel_watch_from_its_own_callback(pair):
    writer, watcher = pair
    await writer.register_variable("x", "integer", 0)
    seen = []
    watch = watcher.watch_variable("x")

    def callback(update) -> None:
        seen.append(update.value)
        if update.value == 1:
            watcher.cancel_watch(watch)  # from inside the task that runs the watch

    task = asyncio.create_task(watch.on_update(callback))
    await until(lambda: seen == [0])
    await writer.set_variable("x", 1)
    assert await asyncio.wait_for(task, TIMEOUT) == 2 and watch.closed
    assert seen == [0, 1]


async def test_cancel_watch_of_the_task_that_runs_a_watch(pair):
    writer, watcher = pair
    await writer.register_variable("x", "integer", 0)
    seen = []
    watch = watcher.watch_variable("x").on_update(lambda u: seen.append(u.value))
    task = asyncio.create_task(watch)
    await until(lambda: seen == [0])
    await _values_after(watcher, writer, "x", 1)
    await until(lambda: seen == [0, 1])
    watcher.cancel_watch(task)
    with pytest.raises(asyncio.CancelledError):
        await asyncio.wait_for(task, TIMEOUT)
    assert task.cancelled() and watch.closed
    await _values_after(watcher, writer, "x", 2)
    assert seen == [0, 1]


async def test_cancel_watch_of_a_task_iterating_watches(pair):
    writer, watcher = pair
    await writer.register_variables([{"name": n, "type": "integer", "initial_value": 0}
                                     for n in ("x", "y")])
    made: list[Watch] = []
    seen = []

    async def consume() -> None:
        watch = watcher.watch_variable("x")  # created inside the task
        made.append(watch)
        async for u in watch:
            seen.append(u.value)

    await caught_up(watcher, writer)
    outside = watcher.watch_variable("y", include_initial=False)  # created here, read there

    async def consume_outside() -> None:
        async for u in outside:
            seen.append(("y", u.value))

    task = asyncio.create_task(consume())
    task2 = asyncio.create_task(consume_outside())
    await until(lambda: seen == [0])
    await _values_after(watcher, writer, "x", 1)
    await until(lambda: seen == [0, 1])
    watcher.cancel_watch(task)
    watcher.cancel_watch(task2)
    for t in (task, task2):
        with pytest.raises(asyncio.CancelledError):
            await asyncio.wait_for(t, TIMEOUT)
    assert made[0].closed and seen == [0, 1]
    assert outside.closed  # the watch the task was reading is stopped too, not leaked
    assert all(w not in watcher._hub._watches for w in (made[0], outside))
    with pytest.raises(TypeError):
        watcher.cancel_watch("x")  # type: ignore[arg-type]


# ----------------------------------------------------------------------------------------------
# delete, re-register, replace


async def test_delete_and_re_register_events(pair):
    writer, watcher = pair
    first = await writer.register_variable("x", "integer", 1, constraints={"max": 5})
    async with watcher.watch_variable("x") as watch:
        initial = (await take(watch, 1))[0]
        assert (initial.kind, initial.value, initial.variable_id) == ("initial", 1, first)
        assert initial.constraints == {"max": 5}
        await writer.set_variable("x", 2)
        await writer.delete_variable("x")
        second = await writer.register_variable("x", "string", "two")
        await writer.set_variable("x", "three")
        third = await writer.register_variable("x", "string", "four", replace=True)
        fourth = await writer.register_variable("x", "float", 4.0, constraints={"min": 0.0},
                                                replace=True)
        await writer.set_variable("x", 5.0)
        got = await take(watch, 9)
    assert [(u.kind, u.value, u.old_value, u.variable_id) for u in got] == [
        ("set", 2, 1, first),
        ("delete", None, 2, first),
        ("register", "two", None, second),
        ("set", "three", "two", second),
        ("delete", None, "three", second),  # a replace: the old variable goes first ...
        ("register", "four", "three", third),  # ... in the same revision, old value with it
        ("delete", None, "four", third),
        ("register", 4.0, None, fourth),  # the old value was of another type: none
        ("set", 5.0, 4.0, fourth),
    ]
    assert got[4].revision == got[5].revision and got[6].revision == got[7].revision
    assert [u.version for u in got] == [1, 1, 0, 1, 1, 0, 0, 0, 1]
    assert got[2].constraints == {} and got[7].constraints == {"min": 0.0}
    assert got[7].type == "float" and got[2].type == "string"
    # the watcher's own cache and catalog follow: the new id and type
    assert await watcher.get_variable("x") == 5.0
    assert await watcher.set_variable("x", 6.5) == 2


# ----------------------------------------------------------------------------------------------
# watch validators (etcd validate/watch.go): ordered, unique, atomic, reliable


NAMES = [f"v{i}" for i in range(6)]
SELECTORS = {
    "all": NAMES, "low": NAMES[:3], "high": NAMES[3:], "one": ["v0"], "odd": ["v1", "v4"],
}


async def test_watch_validators_over_several_watchers(server):
    sid = "validators"
    async with session_for(server, sid) as setup:
        await setup.register_variables([{"name": n, "type": "integer", "initial_value": 0}
                                        for n in NAMES])
    logs: dict[str, list] = {key: [] for key in SELECTORS}
    async with (session_for(server, sid) as c1, session_for(server, sid) as c2,
                session_for(server, sid) as c3, session_for(server, sid) as w1,
                session_for(server, sid) as w2):
        owners = {"all": c1, "low": c1, "high": c2, "one": c3, "odd": c2}
        watches = {key: (owners[key].watch_variable(names[0]) if len(names) == 1
                         else owners[key].watch_variables(names))
                   for key, names in SELECTORS.items()}

        async def record(key: str) -> None:
            async for u in watches[key]:
                logs[key].append((u.revision, u.name, u.kind, u.value))

        tasks = [asyncio.create_task(record(key)) for key in SELECTORS]

        async def writer(ctx, seed: int) -> None:
            rnd = random.Random(seed)
            for i in range(40):
                kind = rnd.random()
                if kind < 0.5:
                    names = rnd.sample(NAMES, rnd.randint(2, 4))
                    result = await ctx.update_variables({n: seed * 1000 + i for n in names})
                    assert all(v is True for v in result.values())
                elif kind < 0.8:
                    await ctx.set_variable(rnd.choice(NAMES), seed * 1000 + i)
                else:  # non-atomic with a bad entry: the valid part is still one revision
                    names = rnd.sample(NAMES, 2)
                    result = await ctx.update_variables({**{n: seed * 1000 + i for n in names},
                                                         "ghost": 1}, atomic=False)
                    assert result["ghost"] is not True

        await asyncio.gather(writer(w1, 1), writer(w2, 2))
        head = (await w1.ping())["revision"]
        batches = []
        after = 0
        while after < head:  # the merged history, from the server's change log
            chunk, after = server.call(Store.changes, sid, after, head, 1000)
            batches += chunk
        expected_all = [(b.revision, e.name, e.kind, json.loads(e.new.data))
                        for b in batches for e in b.events]

        def expected(key: str, start: int) -> list:
            return [x for x in expected_all if x[0] > start and x[1] in SELECTORS[key]]

        async with asyncio.timeout(TIMEOUT):
            for key in SELECTORS:
                while True:
                    initial = [x for x in logs[key] if x[2] == "initial"]
                    if len(initial) == len(SELECTORS[key]) and (
                            len(logs[key]) - len(initial) >= len(expected(key, initial[0][0]))):
                        break
                    await asyncio.sleep(0.005)
        await settle()
        for watch in watches.values():
            await watch.aclose()
        await asyncio.gather(*tasks)

    changed_at: dict[int, set[str]] = {}
    for rev, name, _kind, _value in expected_all:
        changed_at.setdefault(rev, set()).add(name)
    for key, log in logs.items():
        names = set(SELECTORS[key])
        initial = log[:len(names)]
        start = initial[0][0]
        assert all(x[2] == "initial" and x[0] == start for x in initial), key
        assert {x[1] for x in initial} == names
        snapshot = server.call(lambda st, start=start: st.backend.read_at(sid, start))
        assert {(r.name, json.loads(r.data)) for r in snapshot if r.name in names} == {
            (x[1], x[3]) for x in initial}, f"{key}: initial values are the state at {start}"
        events = log[len(names):]
        revs = [x[0] for x in events]
        # ordered
        assert revs == sorted(revs), key
        # unique
        assert len({(x[0], x[1]) for x in events}) == len(events), key
        # atomic: a revision's updates arrive together and complete
        seen_revs = list(dict.fromkeys(revs))
        for rev in seen_revs:
            positions = [i for i, r in enumerate(revs) if r == rev]
            assert positions == list(range(positions[0], positions[-1] + 1)), (key, rev)
            assert {events[i][1] for i in positions} == changed_at[rev] & names, (key, rev)
        # reliable: exactly the merged history after the snapshot, filtered by the selector
        assert events == expected(key, start), key
    assert sum(len(log) for log in logs.values()) > 100
