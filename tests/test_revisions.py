"""Revisions as a user feature: ``get_variables(at_revision=R)`` and ``restore_session(R)``,
through the public API on the memory and the SQLite store."""

from __future__ import annotations

import asyncio

import numpy as np
import pytest
from backends import KINDS, server_of

import dspex_notebook as dn
from dspex_notebook.server import Store
from dspex_notebook.testing import running_server, session_for


@pytest.fixture(params=KINDS)
def server(request, tmp_path):
    with server_of(request.param, request, tmp_path) as srv:
        yield srv


async def rev(s) -> int:
    return (await s.ping())["revision"]


async def test_get_variables_at_a_revision_is_a_consistent_snapshot(server):
    async with session_for(server, "a") as s:
        await s.register_variable("t", "float", 0.5, metadata={"d": "temp"})
        await s.register_variable("e", "embedding", np.zeros(3, dtype=np.float32))
        await s.update_variables({"t": 0.6, "e": np.ones(3, dtype=np.float32)})
        r1 = await rev(s)
        await s.update_variables({"t": 0.7, "e": np.full(3, 2, dtype=np.float32)})
        await s.register_variable("late", "integer", 1)
        then = await s.get_variables(["t", "e"], at_revision=r1)
        assert then["t"] == 0.6 and then["e"].tolist() == [1.0, 1.0, 1.0]
        assert then["e"].dtype == np.float32
        now = await s.get_variables(["t", "e"])
        assert now["t"] == 0.7
        info = await s.get_variables(["t"], include_metadata=True, at_revision=r1)
        assert info["t"]["value"] == 0.6
        meta = info["t"]["metadata"]
        assert meta["version"] == 1 and meta["metadata"] == {"d": "temp"}
        assert meta["mod_revision"] == r1
        # by id too
        tid = (await s.get_variable_info("t")).id
        assert (await s.get_variables([tid], at_revision=r1))[tid] == 0.6
        # a variable that did not exist then: named, with the revision; defaults apply
        with pytest.raises(dn.VariableNotFoundError, match=f"at revision {r1}: 'late'"):
            await s.get_variables(["t", "late"], at_revision=r1)
        got = await s.get_variables(["late"], defaults={"late": 0}, at_revision=r1)
        assert got == {"late": 0}
        with pytest.raises(dn.InvalidArgument, match="ahead of the store"):
            await s.get_variables(["t"], at_revision=10**9)
        with pytest.raises(dn.InvalidArgument, match=">= 0"):
            await s.get_variables(["t"], at_revision=-1)
        with pytest.raises(dn.InvalidArgument, match="include_stats"):
            await s.get_variables(["t"], include_stats=True, at_revision=r1)
        # a deleted variable is still readable at a revision when it existed
        await s.delete_variable("t")
        assert (await s.get_variables(["t"], at_revision=r1))["t"] == 0.6


async def test_below_retention_is_the_explicit_compacted_error(tmp_path):
    with running_server(tmp_path / "c.sqlite3") as srv:
        async with session_for(srv, "c") as s:
            await s.register_variable("x", "integer", 0)
            early = await rev(s)
            for i in range(1, 10):
                await s.set_variable("x", i)
            watermark = srv.call(Store.compact, (await rev(s)) - 3)
            with pytest.raises(dn.Compacted, match="compacted") as caught:
                await s.get_variables(["x"], at_revision=early)
            assert isinstance(caught.value, LookupError)
            with pytest.raises(dn.Compacted):
                await s.restore_session(early)
            # at and above the watermark still answers
            assert (await s.get_variables(["x"], at_revision=watermark))["x"] == 6


async def test_restore_session_is_one_new_revision(server):
    async with session_for(server, "r") as s, session_for(server, "r") as other:
        await s.register_variable("t", "float", 0.5, constraints={"min": 0.0, "max": 1.0})
        await s.register_variable("gone", "string", "was here", metadata={"why": "test"})
        await s.register_variable("same", "integer", 7)
        await s.register_variable("retyped", "integer", 1)
        r = await rev(s)
        await s.set_variable("t", 0.9)
        await s.delete_variable("gone")
        await s.register_variable("retyped", "string", "now text", replace=True)
        await s.register_variable("new", "integer", 3)
        watch = other.watch_variables(["t", "gone", "retyped", "new"], include_initial=False)

        dry = await s.restore_session(r, dry_run=True)
        assert dry["dry_run"] and dry["revision"] == 0
        assert (sorted(dry["set"]), sorted(dry["recreated"]), dry["deleted"], dry["unchanged"]) \
            == (["t"], ["gone", "retyped"], ["new"], ["same"])
        before = await rev(s)
        assert await s.get_variable("new", bypass_cache=True) == 3  # nothing changed

        done = await s.restore_session(r)
        assert done["revision"] == before + 1 and not done["dry_run"]
        assert await rev(s) == before + 1
        names = await s.list_variables()
        assert sorted(v.name for v in names) == ["gone", "retyped", "same", "t"]
        assert await s.get_variable("t") == 0.5
        t = await s.get_variable_info("t")
        assert t.version == 2  # a new version: history is append-only
        gone = await s.get_variable_info("gone")
        assert gone.value == "was here" and gone.metadata == {"why": "test"}
        retyped = await s.get_variable_info("retyped")
        assert (retyped.type, retyped.value) == ("integer", 1)
        history = await s.get_variable_history("t")
        assert [h["version"] for h in history] == [2, 1, 0]
        assert history[0]["metadata"] == {"source": "restore", "restored_to": str(r)}
        seen = []  # the watch may first replay writes before `before` (it started earlier)
        for _ in range(50):
            update = await asyncio.wait_for(watch.__anext__(), 10)
            if update.revision > before:
                seen.append(update)
            if len({u.name for u in seen}) == 4:
                break
        await watch.aclose()
        assert {u.name for u in seen} == {"t", "gone", "retyped", "new"}
        assert {u.revision for u in seen} == {before + 1}  # one revision
        # restoring the revision before the restore undoes it
        await s.restore_session(before)
        assert await s.get_variable("new", bypass_cache=True) == 3
        assert await s.get_variable("t", bypass_cache=True) == 0.9
        # nothing to change: no new revision
        again = await s.restore_session(await rev(s))
        assert again["revision"] == 0 and not (again["set"] or again["deleted"])


async def test_restore_is_refused_while_an_optimization_holds_a_variable(server):
    async with session_for(server, "o") as s:
        await s.register_variable("t", "float", 0.5, constraints={"min": 0.0, "max": 1.0})
        r = await rev(s)
        await s.set_variable("t", 0.6)
        await s.start_optimization("t", "bayesian")
        try:
            before = await rev(s)
            with pytest.raises(dn.OptimizationConflict, match="'t' is being optimized by run"):
                await s.restore_session(r)
            assert await rev(s) == before
        finally:
            await s.stop_optimization("t")
        await s.restore_session(r)
        assert await s.get_variable("t", bypass_cache=True) == 0.5
