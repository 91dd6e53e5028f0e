"""Export/import through the public API, on the memory and the SQLite store."""

from __future__ import annotations

import asyncio
import hashlib
import json
import math
import pickle

import numpy as np
import pytest
from backends import KINDS, server_of

import dspex_notebook as dn
from dspex_notebook.testing import session_for

FORMATS = ("json", "yaml", "pickle", "parquet")


@pytest.fixture(params=KINDS)
def server(request, tmp_path):
    with server_of(request.param, request, tmp_path) as srv:
        srv.db_path = tmp_path / "store.sqlite3" if request.param == "sqlite" else None
        yield srv


def has_pyarrow() -> bool:
    try:
        import pyarrow  # noqa: F401
    except ImportError:
        return False
    return True


async def fill(s) -> None:
    """One variable of every type, with constraints, metadata and some history."""
    await s.register_variable("temperature", "float", 0.7, constraints={"min": 0.0, "max": 2.0},
                              metadata={"description": "sampling"})
    await s.set_variable("temperature", 0.9, metadata={"step": "1"})
    await s.set_variable("temperature", 1.25)
    await s.register_variable("odd", "float", math.inf, constraints={"allow_nonfinite": True})
    await s.register_variable("tokens", "integer", 2**53 + 1)
    await s.register_variable("model", "choice", "gpt-4", constraints={"choices": ["gpt-4", "o1"]})
    await s.register_variable("prompt", "string", "héllo\n\"quoted\" ✓")
    await s.register_variable("module_ref", "module", "ChainOfThought")
    await s.register_variable("flag", "boolean", False)
    await s.register_variable("items", "list", [1, "two", [3.5, None], {"k": True}])
    await s.register_variable("cfg", "dict", {"a": 1, "nested": {"b": [1, 2], "c": "x"}})
    await s.register_variable("emb", "embedding",
                              np.array([0.1, -0.0, np.float32(1e-30), 3.0], dtype=np.float32))
    await s.register_variable("tensor64", "tensor",
                              np.arange(24, dtype=np.float64).reshape(2, 3, 4) / 7)
    await s.register_variable("ints", "tensor", np.arange(6, dtype=np.int16).reshape(3, 2))


def described(doc: bytes) -> list[dict]:
    """What a round trip must keep, per variable (ids, revisions and export time differ)."""
    out = []
    for v in json.loads(doc)["variables"]:
        keep = {k: v[k] for k in ("name", "type", "value", "constraints", "metadata", "version",
                                  "updated_at", "source")}
        if "history" in v:
            keep["history"] = [{k: h[k] for k in ("version", "op", "value", "updated_at",
                                                  "updated_by", "metadata")} for h in v["history"]]
        out.append(keep)
    return out


@pytest.mark.parametrize("fmt", FORMATS)
async def test_round_trip_is_lossless_for_every_type(server, fmt, requires):
    if fmt == "parquet":
        requires(has_pyarrow(), "pyarrow (the parquet extra)")
    async with session_for(server, "src") as src, session_for(server, "dst") as dst:
        await fill(src)
        for history in (False, True):
            data = await src.export_variables(fmt, include_history=history)
            assert isinstance(data, bytes)
            if fmt == "json":
                assert json.loads(data)["format"] == "dspex-notebook/export"
            summary = await dst.import_variables(data, fmt, allow_pickle=True,
                                                 merge_strategy="replace")
            assert summary["errors"] == 0
            again = await dst.export_variables("json", include_history=history)
            original = await src.export_variables("json", include_history=history)
            if history:  # a fresh session: every variable is created with its history
                assert described(again) == described(original)
            await dst.cleanup()
            await dst.initialize()
        # the values themselves, arrays bit for bit
        await dst.import_variables(await src.export_variables(fmt, include_history=True), fmt,
                                   allow_pickle=True)
        emb = await dst.get_variable("emb")
        want = await src.get_variable("emb")
        assert emb.dtype == want.dtype and emb.shape == want.shape
        assert emb.tobytes() == want.tobytes()
        t = await dst.get_variable("ints")
        assert t.dtype == np.int16 and t.shape == (3, 2)
        assert (await dst.get_variable("odd")) == math.inf
        assert (await dst.get_variable("tokens")) == 2**53 + 1
        info = await dst.get_variable_info("temperature")
        assert info.constraints == {"min": 0.0, "max": 2.0}
        assert info.metadata == {"description": "sampling"} and info.version == 2
        history = await dst.get_variable_history("temperature")
        assert [h["value"] for h in history] == [1.25, 0.9, 0.7]
        assert history[1]["metadata"] == {"step": "1"}


async def test_import_is_one_revision_that_watchers_see(server):
    async with session_for(server, "src") as src, session_for(server, "dst") as dst:
        await fill(src)
        data = await src.export_variables(include_history=True)
        await dst.register_variable("watched_anchor", "integer", 0)
        watch = dst.watch_variables(["temperature", "cfg", "emb"], include_initial=False)
        before = (await dst.ping())["revision"]
        summary = await dst.import_variables(data)
        assert summary["revision"] == before + 1 and summary["imported"] == 12
        seen = []
        while {u.name for u in seen} != {"temperature", "cfg", "emb"}:
            seen.append(await asyncio.wait_for(watch.__anext__(), 10))
        await watch.aclose()
        assert {u.revision for u in seen} == {before + 1}
        assert [u.value for u in seen if u.name == "temperature"][-1] == 1.25
        history = await dst.get_variable_history("temperature")
        assert {h["revision"] for h in history} == {before + 1}
        assert (await dst.ping())["revision"] == before + 1


async def test_filter_pattern_is_an_re2_regex(server):
    async with session_for(server, "f") as s:
        await s.register_variable("base_temperature", "float", 0.5)
        await s.register_variable("temperature", "float", 0.7)
        await s.register_variable("model_name", "string", "x")
        await s.register_variable("my_model", "string", "y")

        def names(doc: bytes) -> list[str]:
            return [v["name"] for v in json.loads(doc)["variables"]]

        assert names(await s.export_variables(filter_pattern=r".*model.*")) == ["model_name",
                                                                                  "my_model"]
        assert names(await s.export_variables(filter_pattern="^temp")) == ["temperature"]
        assert names(await s.export_variables(filter_pattern="temperature$")) == [
            "base_temperature", "temperature"]
        with pytest.raises(dn.InvalidArgument, match="filter_pattern"):
            await s.export_variables(filter_pattern=r"(a)\1")
        with pytest.raises(dn.InvalidArgument, match="format"):
            await s.export_variables("xml")


async def test_merge_strategies(server):
    async with session_for(server, "m") as s:
        await s.register_variable("cfg", "dict", {"a": 1, "n": {"x": 1, "y": 2}},
                                  metadata={"owner": "me"})
        await s.register_variable("tags", "list", ["a", "b"])
        await s.register_variable("t", "float", 0.5, constraints={"min": 0.0, "max": 1.0})
        await s.register_variable("name", "string", "old")
        doc = await s.export_variables()
        await s.set_variable("cfg", {"a": 2, "n": {"x": 9}, "mine": True})
        await s.set_variable("tags", ["b", "c"])
        await s.set_variable("t", 0.9)
        await s.set_variable("name", "new")
        await s.register_variable("extra", "integer", 1)  # not in the document: untouched

        keep = await s.import_variables(doc, merge_strategy="keep", dry_run=True)
        assert (keep["imported"], keep["skipped"], keep["errors"]) == (0, 4, 0)
        assert all("keep" in d["reason"] for d in keep["details"])

        merged = await s.import_variables(doc, merge_strategy="merge")
        assert merged["imported"] == 4 and merged["errors"] == 0
        assert await s.get_variable("cfg", bypass_cache=True) == {
            "a": 1, "n": {"x": 1, "y": 2}, "mine": True}  # document wins on shared keys
        assert await s.get_variable("tags", bypass_cache=True) == ["b", "c", "a"]
        assert await s.get_variable("t", bypass_cache=True) == 0.5
        assert await s.get_variable("name", bypass_cache=True) == "old"
        assert await s.get_variable("extra") == 1
        info = await s.get_variable_info("cfg")
        assert info.metadata == {"owner": "me"}

        await s.set_variable("name", "newer")
        replaced = await s.import_variables(doc, merge_strategy="replace")
        by = {d["name"]: d for d in replaced["details"]}
        assert by["name"]["action"] == "replace"
        assert by["t"]["action"] == "skip" and "unchanged" in by["t"]["reason"]
        assert await s.get_variable("name", bypass_cache=True) == "old"

        # merge across types is an error for that variable; the import is refused as a whole
        await s.register_variable("cfg", "string", "now a string", replace=True)
        dry = await s.import_variables(doc, merge_strategy="merge", dry_run=True)
        assert dry["errors"] == 1
        bad = [d for d in dry["details"] if d["action"] == "error"]
        assert bad[0]["name"] == "cfg" and "use merge_strategy='replace'" in bad[0]["reason"]
        rev = (await s.ping())["revision"]
        with pytest.raises(dn.InvalidArgument, match="nothing was imported.*'cfg'"):
            await s.import_variables(doc, merge_strategy="merge")
        assert (await s.ping())["revision"] == rev
        # replace re-registers a variable whose type differs
        summary = await s.import_variables(doc)
        assert {d["name"]: d["action"] for d in summary["details"]}["cfg"] == "replace"
        assert (await s.get_variable_info("cfg")).type == "dict"


def _files(path) -> dict[str, str]:
    out = {}
    for suffix in ("", "-wal", "-shm"):
        p = path.parent / (path.name + suffix)
        if p.exists() and suffix != "-shm":  # -shm is SQLite's shared-memory index, not data
            out[suffix] = hashlib.sha256(p.read_bytes()).hexdigest()
    return out


async def test_dry_run_leaves_the_store_byte_identical(server):
    async with session_for(server, "d") as s, session_for(server, "e") as other:
        await fill(s)
        data = await s.export_variables(include_history=True)
        await other.register_variable("temperature", "float", 0.1)
        rev = (await s.ping())["revision"]
        files = _files(server.db_path) if server.db_path else None
        exported = await other.export_variables(include_history=True)
        for strategy in ("replace", "keep", "merge"):
            summary = await other.import_variables(data, merge_strategy=strategy, dry_run=True)
            assert summary["dry_run"] and summary["revision"] == 0
            assert len(summary["details"]) == 12
            assert all(d["name"] and d["action"] and d["reason"] for d in summary["details"])
        restore = await s.restore_session(3, dry_run=True)
        assert restore["dry_run"] and restore["deleted"]
        assert (await s.ping())["revision"] == rev
        assert json.loads(await other.export_variables(include_history=True))["variables"] == \
            json.loads(exported)["variables"]
        if files is not None:
            assert _files(server.db_path) == files


async def test_bad_documents_say_where_and_change_nothing(server):
    async with session_for(server, "b") as s:
        await s.register_variable("x", "float", 0.5, constraints={"min": 0.0, "max": 1.0})
        rev = (await s.ping())["revision"]
        doc = json.loads(await s.export_variables())
        with pytest.raises(dn.InvalidArgument, match="line 1 column 12"):
            await s.import_variables(b'{"format": }')
        with pytest.raises(dn.InvalidArgument, match="not a dspex-notebook export"):
            await s.import_variables(b'{"hello": 1}')
        with pytest.raises(dn.InvalidArgument, match="version 2 is newer"):
            await s.import_variables(json.dumps({**doc, "version": 2}).encode())
        doc["variables"][0]["value"] = 7.0
        dry = await s.import_variables(json.dumps(doc).encode(), dry_run=True)
        assert dry["errors"] == 1 and "variables[0] ('x')" not in dry["details"][0]["reason"]
        assert "7.0" in dry["details"][0]["reason"] or "max" in dry["details"][0]["reason"]
        doc["variables"][0]["value"] = 0.25
        doc["variables"].append({"name": "y", "type": "embedding", "value": [1, 2]})
        dry = await s.import_variables(json.dumps(doc).encode(), dry_run=True)
        assert "variables[1] ('y').value" in dry["details"][1]["reason"]
        with pytest.raises(dn.InvalidArgument, match="YAML.*line 2 column"):
            await s.import_variables(b"format: x\n  bad: [", "yaml")
        with pytest.raises(dn.ResourceLimitExceeded):
            await s.import_variables(b" " * (65 * 1024 * 1024))
        assert (await s.ping())["revision"] == rev


async def test_optional_sections_are_optional(server):
    """A document without dependencies/rules imports; one whose section names a variable that
    is neither in the session nor in the document is refused as a whole (tests/test_io_sections.py
    has the round trip)."""
    async with session_for(server, "o") as s:
        await s.register_variable("x", "integer", 1)
        doc = json.loads(await s.export_variables(include_dependencies=True))
        assert "dependencies" not in doc and "rules" not in doc  # none in this session
        summary = await s.import_variables(json.dumps(doc).encode(), dry_run=True)
        assert summary["errors"] == 0 and summary["sections"] == {}
        doc["dependencies"] = [{"from": "x", "to": "y", "type": "data"}]
        with pytest.raises(dn.VariableNotFoundError, match="y"):
            await s.import_variables(json.dumps(doc).encode(), dry_run=True)


async def test_import_refuses_a_variable_an_optimization_holds(server):
    async with session_for(server, "opt") as s:
        await s.register_variable("t", "float", 0.5, constraints={"min": 0.0, "max": 1.0})
        doc = await s.export_variables()
        await s.set_variable("t", 0.6)
        await s.start_optimization("t", "bayesian")
        try:
            dry = await s.import_variables(doc, dry_run=True)
            assert dry["errors"] == 1 and "being optimized" in dry["details"][0]["reason"]
            keep = await s.import_variables(doc, merge_strategy="keep")
            assert keep["skipped"] == 1
        finally:
            await s.stop_optimization("t")


# ----------------------------------------------------------------------------------------------
# pickle and YAML safety


class _Marker:
    path = ""

    def __reduce__(self):
        import os

        return (os.system, (f"touch {self.path}",))


async def test_malicious_pickle_never_runs(server, tmp_path):
    marker = tmp_path / "pwned"
    _Marker.path = str(marker)
    payloads = [pickle.dumps(_Marker(), protocol=p) for p in (0, 2, 4, 5)]
    payloads.append(pickle.dumps({"format": "dspex-notebook/export", "version": 1,
                                  "variables": [_Marker()]}))
    async with session_for(server, "p") as s:
        await s.register_variable("x", "integer", 1)
        for payload in payloads:
            with pytest.raises(dn.InvalidArgument, match="refused unless enabled"):
                await s.import_variables(payload, "pickle")
            with pytest.raises(dn.InvalidArgument, match=r"refers to (posix|os|nt)\.system"):
                await s.import_variables(payload, "pickle", allow_pickle=True)
            with pytest.raises(dn.InvalidArgument, match="refers to"):
                await s.import_variables(payload, "pickle", dry_run=True, allow_pickle=True)
        with pytest.raises(dn.InvalidArgument, match="numpy"):
            await s.import_variables(pickle.dumps(np.zeros(3)), "pickle", allow_pickle=True)
        with pytest.raises(dn.InvalidArgument, match="malformed|truncated"):
            await s.import_variables(b"\x80\x04garbage", "pickle", allow_pickle=True)
        # our own pickles are plain data and import
        mine = await s.export_variables("pickle")
        summary = await s.import_variables(mine, "pickle", allow_pickle=True)
        assert summary["errors"] == 0
    assert not marker.exists()


async def test_yaml_python_tags_and_aliases_are_refused(server, tmp_path):
    marker = tmp_path / "pwned"
    async with session_for(server, "y") as s:
        evil = (f"!!python/object/apply:os.system ['touch {marker}']\n").encode()
        with pytest.raises(dn.InvalidArgument, match="safe_load"):
            await s.import_variables(evil, "yaml")
        evil = b"format: dspex-notebook/export\nversion: 1\nvariables:\n- !!python/object:object {}\n"
        with pytest.raises(dn.InvalidArgument, match="line 4 column 3"):
            await s.import_variables(evil, "yaml")
        bomb = b'a: &a ["x","x"]\nb: &b [*a,*a]\nc: &c [*b,*b]\n'
        with pytest.raises(dn.InvalidArgument, match="aliases"):
            await s.import_variables(bomb, "yaml")
    assert not marker.exists()
