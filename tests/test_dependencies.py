"""Dependencies between variables through the public API, on memory and SQLite servers."""

from __future__ import annotations

import asyncio

import grpc
import pytest
from backends import KINDS, server_of

import dspex_notebook as dn
from dspex_notebook._proto import snakepit_bridge_pb2 as pb
from dspex_notebook._proto import snakepit_bridge_pb2_grpc as pb_grpc
from dspex_notebook.server import dependencies
from dspex_notebook.server.backends.base import Commit, CompareFailed
from dspex_notebook.server.backends.memory import MemoryBackend
from dspex_notebook.server.limits import Limits
from dspex_notebook.server.store import Store
from dspex_notebook.testing import running_server, session_for


@pytest.fixture(params=KINDS)
def server(request, tmp_path):
    with server_of(request.param, request, tmp_path) as srv:
        yield srv


async def _chain(s, *names: str) -> None:
    for name in names:
        await s.register_variable(name, "float", 1.0)


def _names(entries):
    return [(e["name"], e["type"], e["depth"], e["via"]) for e in entries]


async def test_direct_and_transitive_in_the_spec_shape(server):
    async with session_for(server, "shape") as s:
        base = await s.register_variable("base_temperature", "float", 0.7)
        style = await s.register_variable("style", "choice", "a", {"choices": ["a", "b"]})
        eff = await s.register_variable("effective_temperature", "float", 0.7,
                                        dependencies=[base, "style"])
        await s.register_variable("top", "float", 0.0)
        await s.add_dependency("top", "effective_temperature", "optimization",
                               {"weight": 0.5, "note": "tuned", "on": True, "none": None})
        direct = await s.get_dependencies("effective_temperature")
        assert [(d["variable_id"], d["type"]) for d in direct] == [(base, "data"), (style, "data")]
        top = await s.get_dependencies("top")
        assert top == [{"variable_id": eff, "name": "effective_temperature", "type": "optimization",
                        "metadata": {"weight": 0.5, "note": "tuned", "on": True, "none": None},
                        "depth": 1, "via": "top"}]
        assert _names(await s.get_dependencies(eff, include_transitive=True)) == [
            ("base_temperature", "data", 1, "effective_temperature"),
            ("style", "data", 1, "effective_temperature")]
        assert _names(await s.get_dependencies("top", include_transitive=True)) == [
            ("effective_temperature", "optimization", 1, "top"),
            ("base_temperature", "data", 2, "effective_temperature"),
            ("style", "data", 2, "effective_temperature")]
        assert _names(await s.get_dependents("base_temperature")) == [
            ("effective_temperature", "data", 1, "base_temperature")]
        assert _names(await s.get_dependents(base, include_transitive=True)) == [
            ("effective_temperature", "data", 1, "base_temperature"),
            ("top", "optimization", 2, "effective_temperature")]
        assert await s.get_dependencies("base_temperature") == []
        await s.remove_dependency("top", eff)
        assert await s.get_dependencies("top") == []
        assert await s.get_dependents("effective_temperature") == []


async def test_cycles_are_refused_naming_the_cycle(server):
    async with session_for(server, "cyc") as s:
        await _chain(s, "a", "b", "c")
        await s.add_dependency("b", "c")
        await s.add_dependency("c", "a")
        with pytest.raises(ValueError, match="cycle: a → b → c → a$"):
            await s.add_dependency("a", "b")
        with pytest.raises(dn.InvalidArgument, match="cycle: a → c → a$"):
            await s.add_dependency("a", "c", "constraint")
        with pytest.raises(ValueError, match="cycle"):
            await s.register_variable("c", "float", 2.0, dependencies=["b"], replace=True)
        assert await s.get_dependencies("a") == []  # nothing of the refused edits stayed
        assert _names(await s.get_dependencies("c")) == [("a", "data", 1, "c")]


async def test_bad_edges_give_clear_errors(server):
    async with session_for(server, "bad") as s:
        await _chain(s, "a", "b")
        with pytest.raises(KeyError, match="nope"):
            await s.add_dependency("a", "nope")
        with pytest.raises(dn.VariableNotFoundError, match="ghost"):
            await s.add_dependency("ghost", "a")
        with pytest.raises(ValueError, match="'a' cannot depend on itself"):
            await s.add_dependency("a", "a")
        await s.add_dependency("a", "b", metadata={"k": "v"})
        with pytest.raises(ValueError, match=r"'a' already depends on 'b' \(data\)"):
            await s.add_dependency("a", "b", "constraint")
        with pytest.raises(ValueError, match="one of data, constraint, optimization"):
            await s.add_dependency("b", "a", "causal")
        with pytest.raises(ValueError, match="JSON scalar"):
            await s.add_dependency("b", "a", metadata={"nested": {"x": 1}})
        with pytest.raises(ValueError, match="JSON scalar"):
            await s.add_dependency("b", "a", metadata={"x": float("nan")})
        with pytest.raises(ValueError, match="'b' does not depend on 'a'"):
            await s.remove_dependency("b", "a")
        with pytest.raises(KeyError, match="missing"):
            await s.register_variable("d", "float", 1.0, dependencies=["missing"])
        with pytest.raises(KeyError):
            await s.get_variable("d")  # the registration was refused as a whole
        with pytest.raises(ValueError, match="list of variable ids or names"):
            await s.register_variable("d", "float", 1.0, dependencies="a")


async def test_register_with_dependencies_and_replace(server):
    async with session_for(server, "reg") as s:
        await _chain(s, "a", "b")
        ids = await s.register_variables([{"name": "x", "type": "float", "initial_value": 1.0}])
        await s.register_variable("y", "float", 1.0, dependencies=["a", ids["x"]])
        assert [d["name"] for d in await s.get_dependencies("y")] == ["a", "x"]
        # re-registering keeps the edges by name; with dependencies it replaces its own
        await s.register_variable("y", "integer", 3, replace=True)
        assert [d["name"] for d in await s.get_dependencies("y")] == ["a", "x"]
        await s.register_variable("y", "float", 1.0, dependencies=["b"], replace=True)
        assert [d["name"] for d in await s.get_dependencies("y")] == ["b"]
        await s.register_variable("a", "float", 5.0, replace=True)  # a dependency replaced
        assert [d["name"] for d in await s.get_dependents("b")] == ["y"]


async def test_delete_is_refused_while_others_depend_unless_forced(server):
    async with session_for(server, "del") as s:
        await _chain(s, "a", "b", "c", "d")
        await s.add_dependency("b", "a")
        await s.add_dependency("c", "a", "constraint")
        await s.add_dependency("a", "d")
        with pytest.raises(ValueError, match=r"'a' cannot be deleted: 'b', 'c' depend on it"):
            await s.delete_variable("a")
        assert await s.get_variable("a") == 1.0
        before = server.call(lambda st: st.revision)
        await s.delete_variable("a", force=True)
        assert server.call(lambda st: st.revision) == before + 1  # one commit: variable + edges
        assert await s.get_dependencies("b") == [] and await s.get_dependents("d") == []
        with pytest.raises(KeyError):
            await s.get_variable("a", bypass_cache=True)
        await s.register_variable("a", "float", 1.0)  # a new `a` inherits nothing
        assert await s.get_dependents("a") == []
        # a variable that only depends on others deletes freely, and its edges go with it
        await s.add_dependency("b", "c")
        await s.delete_variable("b")
        assert await s.get_dependents("c") == []
        edges = server.call(lambda st: dependencies.read_edges(st.view, "del"))
        assert edges == []


async def test_the_graph_survives_restart_and_goes_with_the_session(tmp_path):
    db = tmp_path / "restart.sqlite3"
    with running_server(db) as srv:
        async with session_for(srv, "keep") as s:
            await _chain(s, "a", "b")
            await s.add_dependency("b", "a", "constraint", {"n": 2})
        async with session_for(srv, "gone") as g:
            await _chain(g, "a", "b")
            await g.add_dependency("b", "a")
            await g.cleanup()
    with running_server(db) as srv:
        async with session_for(srv, "keep") as s:
            assert await s.get_dependents("a") == [
                {"variable_id": (await s.get_variable_info("b")).id, "name": "b",
                 "type": "constraint", "metadata": {"n": 2}, "depth": 1, "via": "a"}]
            with pytest.raises(ValueError, match="cycle: a → b → a"):
                await s.add_dependency("a", "b")
        assert srv.call(lambda st: sorted(st.view.docs)) == [("dependencies", "keep")]


async def test_concurrent_adds_that_close_a_cycle_never_both_succeed(server):
    async with session_for(server, "race") as s1, session_for(server, "race") as s2:
        for trial in range(40):
            a, b, c = f"a{trial}", f"b{trial}", f"c{trial}"
            await _chain(s1, a, b, c)
            if trial % 2:  # two-edge cycle
                adds = [s1.add_dependency(a, b), s2.add_dependency(b, a)]
            else:  # a → b exists; b → c and c → a race
                await s1.add_dependency(a, b)
                adds = [s1.add_dependency(b, c), s2.add_dependency(c, a)]
            results = await asyncio.gather(*adds, return_exceptions=True)
            failures = [r for r in results if isinstance(r, BaseException)]
            assert len(failures) == 1, results
            assert isinstance(failures[0], ValueError) and "cycle" in str(failures[0])


def test_a_stale_graph_edit_fails_the_compare_two_servers_one_backend():
    """Two stores over one backend (as two servers over one store would be): each stages its
    edge from the graph it read; the second commit's DocCompare refuses it."""
    backend = MemoryBackend()
    one = Store(backend)
    one.init_session("p", "s", {})
    from dspex_notebook._values import VariableSpec

    one.register_many("p", "s", [VariableSpec("a", "float", 1.0), VariableSpec("b", "float", 1.0)])
    two = Store(backend)  # loads the same state
    dependencies.add(one, "p", "s", "a", "b")
    commit = dependencies.stage_add(two.view, two.limits, two._session("p", "s"), "b", "a",
                                    "data", None)  # two's view has no edge yet: no cycle seen
    with pytest.raises(CompareFailed, match="dependencies 's' changed concurrently"):
        two._commit(commit, "p")
    assert dependencies.read_edges(one.view, "s") == [
        {"from": "a", "to": "b", "type": "data", "metadata": {}}]


def test_stage_edges_and_read_edges_for_import():
    store = Store(MemoryBackend())
    store.init_session("p", "s", {})
    from dspex_notebook._values import VariableSpec
    from dspex_notebook.server.writes import stage_register

    sess = store._session("p", "s")
    commit, _ = stage_register(store.view, store.limits, sess,
                               [VariableSpec("a", "float", 1.0), VariableSpec("b", "float", 1.0)],
                               {}, {}, "p", 0.0)
    dependencies.stage_edges(store.view, store.limits, commit, "s",
                             [{"from": "b", "to": "a", "metadata": {"w": 1}}])
    dependencies.stage_edges(store.view, store.limits, commit, "s",  # builds on the first
                             [{"from": "b", "to": "a", "type": "constraint"}])
    with pytest.raises(ValueError, match="cycle: a → b → a"):
        dependencies.stage_edges(store.view, store.limits, commit, "s", [{"from": "a", "to": "b"}])
    with pytest.raises(KeyError, match="zz"):
        dependencies.stage_edges(store.view, store.limits, commit, "s", [{"from": "a", "to": "zz"}])
    store._commit(commit, "p")
    assert dependencies.read_edges(store.view, "s") == [
        {"from": "b", "to": "a", "type": "constraint", "metadata": {}}]
    commit = Commit()
    dependencies.stage_edges(store.view, store.limits, commit, "s", [], replace=True)
    store._commit(commit, "p")
    assert dependencies.read_edges(store.view, "s") == []


async def test_edge_and_metadata_limits():
    limits = Limits(max_edges_per_session=3, max_edge_metadata_bytes=64)
    with running_server(limits=limits) as srv:
        async with session_for(srv, "lim") as s:
            await _chain(s, "a", "b", "c", "d")
            await s.add_dependency("a", "b")
            await s.add_dependency("a", "c")
            await s.add_dependency("a", "d")
            with pytest.raises(dn.ResourceLimitExceeded, match="limit 3"):
                await s.add_dependency("b", "c")
            await s.remove_dependency("a", "d")
            with pytest.raises(dn.ResourceLimitExceeded, match="bytes of JSON"):
                await s.add_dependency("b", "c", metadata={"text": "x" * 100})


async def test_watch_include_upstream_marks_upstream_changes(server):
    async with session_for(server, "up") as s, session_for(server, "up") as w:
        await _chain(s, "base", "mid", "top", "other")
        await s.add_dependency("mid", "base")
        await s.add_dependency("top", "mid")
        plain = w.watch_variable("top", include_initial=False)
        upstream = w.watch_variables(["top"], include_initial=False, include_upstream=True,
                                     filter_fn=lambda name, old, new: False)
        assert await w._hub.wait_live(10)
        await s.set_variable("other", 2.0)  # unrelated: nobody sees it
        await s.set_variable("base", 2.0)
        await s.set_variable("top", 3.0)
        first = await asyncio.wait_for(upstream.__anext__(), 10)
        assert (first.name, first.value, first.upstream_of, first.is_upstream) == (
            "base", 2.0, ("top",), True)
        own = await asyncio.wait_for(plain.__anext__(), 10)
        assert (own.name, own.value, own.is_upstream) == ("top", 3.0, False)
        # the filter refuses writes of `top` itself; upstream changes are not filtered
        await s.add_dependency("top", "other")  # the graph as it is when a change is sent
        await s.set_variable("other", 4.0)
        nxt = await asyncio.wait_for(upstream.__anext__(), 10)
        assert (nxt.name, nxt.upstream_of) == ("other", ("top",))
        await plain.aclose()
        await upstream.aclose()


async def test_watch_rpc_include_upstream_and_v04_add_dependency(server):
    async with session_for(server, "raw") as s:
        await _chain(s, "x", "y", "z")
    channel = grpc.aio.insecure_channel(server.address)
    md = (("authorization", f"Bearer {server.token}"),)
    try:
        stub = pb_grpc.BridgeServiceStub(channel)
        # a v0.4.x client: fields 1-4 only, empty type = data
        reply = await stub.AddDependency(pb.AddDependencyRequest(
            session_id="raw", from_variable="y", to_variable="x"), metadata=md)
        assert reply.success and reply.revision > 0
        await stub.AddDependency(pb.AddDependencyRequest(
            session_id="raw", from_variable="z", to_variable="y", dependency_type="data"),
            metadata=md)
        with pytest.raises(grpc.aio.AioRpcError) as info:
            await stub.AddDependency(pb.AddDependencyRequest(
                session_id="raw", from_variable="x", to_variable="z"), metadata=md)
        assert info.value.code() is grpc.StatusCode.INVALID_ARGUMENT
        assert "x → z → y → x" in info.value.details()
        call = stub.Watch(pb.WatchRequest(session_id="raw", variable_identifiers=["z"],
                                          include_upstream=True), metadata=md)
        created = await asyncio.wait_for(call.read(), 10)
        assert created.created
        async with session_for(server, "raw") as s:
            await s.set_variable("x", 5.0)
        msg = await asyncio.wait_for(call.read(), 10)
        assert [(e.name, list(e.dependents)) for e in msg.events] == [("x", ["y", "z"])]
        call.cancel()
        got = await stub.GetDependencies(pb.GetDependenciesRequest(
            session_id="raw", variable_identifier="z", include_transitive=True), metadata=md)
        assert [(d.name, d.depth) for d in got.dependencies] == [("y", 1), ("x", 2)]
        with pytest.raises(grpc.aio.AioRpcError) as info:
            await stub.DeleteVariable(pb.DeleteVariableRequest(
                session_id="raw", variable_identifier="x"), metadata=md)
        assert "'y' depends on it" in info.value.details()
        await stub.DeleteVariable(pb.DeleteVariableRequest(
            session_id="raw", variable_identifier="x", force=True), metadata=md)
    finally:
        await channel.close()


def test_edited_graphs_equal_freshly_built_ones():
    """The incremental adjacency (Graph.derived) against a graph built from its edges, over
    random adds, removes and deletes; and a long cycle is named by its ends."""
    import random

    from dspex_notebook._values import VariableSpec

    rng = random.Random(7)
    store = Store(MemoryBackend())
    store.init_session("p", "s", {})
    names = [f"v{i}" for i in range(30)]
    store.register_many("p", "s", [VariableSpec(n, "float", 1.0) for n in names])
    for _ in range(400):
        a, b = rng.sample(names, 2)
        op = rng.random()
        try:
            if op < 0.6:
                dependencies.add(store, "p", "s", a, b)
            elif op < 0.9:
                dependencies.remove(store, "p", "s", a, b)
            else:
                store.delete("p", "s", a, force=True)
                store.register_many("p", "s", [VariableSpec(a, "float", 1.0)])
        except ValueError:
            pass
        got = dependencies.graph(store.view, "s")
        fresh = dependencies.Graph.from_doc(got.to_doc())
        for adjacency in ("out", "inc"):
            assert {k: sorted((e.source, e.target) for e in v) for k, v in getattr(got, adjacency).items()} \
                == {k: sorted((e.source, e.target) for e in v) for k, v in getattr(fresh, adjacency).items()}
    chain = [f"c{i}" for i in range(40)]
    store.register_many("p", "s", [VariableSpec(n, "float", 1.0) for n in chain])
    for x, y in zip(chain[1:], chain, strict=False):
        dependencies.add(store, "p", "s", x, y)
    with pytest.raises(ValueError, match=r"cycle: c0 → c39 → c38 → c37 → c36 → c35 → … 29 more …"
                                         r" → c5 → c4 → c3 → c2 → c1 → c0$"):
        dependencies.add(store, "p", "s", "c0", "c39")
