"""Variable history and rollback through the public API (and the v0.4.x messages)."""

from __future__ import annotations

import asyncio

import grpc
import pytest

import dspex_notebook as dn
from dspex_notebook._proto import snakepit_bridge_pb2 as pb
from dspex_notebook._proto import snakepit_bridge_pb2_grpc as pb_grpc
from dspex_notebook.server import Store
from dspex_notebook.testing import running_server, session_for


@pytest.fixture
def server():
    with running_server() as srv:
        yield srv


async def test_history_newest_first_with_metadata_and_pagination(server):
    async with session_for(server, "h") as s:
        await s.register_variable("x", "integer", 0, metadata={"source": "notebook"})
        for i in range(1, 6):
            await s.set_variable("x", i, metadata={"step": str(i)})
        entries = await s.get_variable_history("x")
        assert [e["version"] for e in entries] == [5, 4, 3, 2, 1, 0]
        assert [e["value"] for e in entries] == [5, 4, 3, 2, 1, 0]
        assert entries[0]["metadata"] == {"step": "5"} and entries[0]["updated_by"] == "owner"
        assert all(e["updated_at"] is not None for e in entries)
        revisions = [e["revision"] for e in entries]
        assert revisions == sorted(revisions, reverse=True)
        page = await s.get_variable_history("x", limit=2, offset=2)
        assert [e["version"] for e in page] == [3, 2]
        assert "metadata" not in (await s.get_variable_history("x", include_metadata=False))[0]
        with pytest.raises(dn.InvalidArgument, match="limit"):
            await s.get_variable_history("x", limit=0)
        with pytest.raises(dn.VariableNotFoundError):
            await s.get_variable_history("nope")


async def test_rollback_writes_a_new_version_that_watchers_see(server):
    async with session_for(server, "r") as s, session_for(server, "r") as other:
        await s.register_variable("t", "float", 0.5, constraints={"min": 0, "max": 1})
        await s.set_variable("t", 0.9)
        watch = other.watch_variable("t")
        assert (await asyncio.wait_for(watch.__anext__(), 10)).value == 0.9  # the snapshot
        assert await s.rollback_variable("t", 0, reason="diverged") == 2
        update = await asyncio.wait_for(watch.__anext__(), 10)
        assert (update.value, update.version) == (0.5, 2)
        assert update.metadata["rollback_to"] == "0" and update.metadata["reason"] == "diverged"
        await watch.aclose()
        entries = await s.get_variable_history("t")
        assert [e["version"] for e in entries] == [2, 1, 0]  # append-only
        assert await other.get_variable("t", bypass_cache=True) == 0.5
        with pytest.raises(ValueError, match="no version 7"):
            await s.rollback_variable("t", 7)


async def test_rollback_is_refused_while_an_optimization_holds_the_variable(server):
    async with session_for(server, "o") as s:
        await s.register_variable("t", "float", 0.5, constraints={"min": 0, "max": 1})
        await s.set_variable("t", 0.6)
        await s.start_optimization("t", "bayesian")
        with pytest.raises(dn.OptimizationConflict):
            await s.rollback_variable("t", 0)
        await s.stop_optimization("t")
        await s.rollback_variable("t", 0)


async def test_compacted_versions_are_gone_and_say_so(tmp_path):
    with running_server(tmp_path / "c.sqlite3") as srv:
        async with session_for(srv, "c") as s:
            await s.register_variable("x", "integer", 0)
            for i in range(1, 10):
                await s.set_variable("x", i)
            srv.call(Store.compact, srv.call(lambda st: st.revision) - 3)
            versions = [e["version"] for e in await s.get_variable_history("x")]
            assert versions == [9, 8, 7, 6]  # the newest entry at the watermark stays (etcd's rule)
            with pytest.raises(ValueError, match="versions 6–9 are kept"):
                await s.rollback_variable("x", 2)


async def test_v04_messages(server):
    async with session_for(server, "w") as s:
        await s.register_variable("x", "integer", 1)
        await s.set_variable("x", 2)
    channel = grpc.aio.insecure_channel(server.address)
    try:
        stub = pb_grpc.BridgeServiceStub(channel)
        md = (("authorization", f"Bearer {server.token}"),)
        reply = await stub.GetVariableHistory(pb.GetVariableHistoryRequest(
            session_id="w", variable_identifier="x", limit=10), metadata=md)
        assert [(e.version, e.value.value) for e in reply.entries] == [(1, b"2"), (0, b"1")]
        rolled = await stub.RollbackVariable(pb.RollbackVariableRequest(
            session_id="w", variable_identifier="x", target_version=0), metadata=md)
        assert rolled.success and rolled.variable.version == 2 and rolled.variable.value.value == b"1"
    finally:
        await channel.close()
