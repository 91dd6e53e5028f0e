"""Change-log retention: ``Store(retain_revisions=N)`` / ``serve --retain-revisions N``."""

from __future__ import annotations

import pytest
from backends import KINDS, backend_of

from dspex_notebook import VariableSpec
from dspex_notebook._errors import Compacted
from dspex_notebook.server import ServerConfig, Store


@pytest.mark.parametrize("kind", KINDS)
def test_retention_compacts_in_steps_and_keeps_the_newest_rows(kind, tmp_path, request):
    backend = backend_of(kind, request, tmp_path)
    store = Store(backend, retain_revisions=50)
    try:
        store.init_session("p", "s", {})
        store.register("p", "s", VariableSpec("kept", "integer", 0))
        store.register("p", "s", VariableSpec("busy", "integer", 0))
        for i in range(1, 301):
            store.set("p", "s", "busy", i, {})
        watermark = store.compact_revision
        assert store.revision - 50 - 100 <= watermark <= store.revision - 50  # steps of >= 100
        with pytest.raises(Compacted) as info:
            backend.changes(watermark - 1)
        assert info.value.compact_revision == watermark
        assert [r.revision for r in backend.changes(watermark)] == list(
            range(watermark + 1, store.revision + 1))
        # "kept" was last written long before the watermark: its newest row survives
        kept = store.resolve("p", "s", "kept")
        assert [r.op for r in backend.history(kept.id)] == ["register"]
        state = {r.name: r.data for r in backend.read_at("s", store.revision)}
        assert state == {"kept": b"0", "busy": b"300"}
    finally:
        store.close()


def test_retain_revisions_must_be_positive():
    with pytest.raises(ValueError, match="at least 1"):
        ServerConfig(retain_revisions=0).check()


@pytest.mark.parametrize("kind", KINDS)
def test_retention_by_age_compacts_what_is_older_than_retain_seconds(kind, tmp_path, request):
    backend = backend_of(kind, request, tmp_path)
    now = [1000.0]
    store = Store(backend, clock=lambda: now[0], retain_seconds=60)
    try:
        store.init_session("p", "s", {})
        store.register("p", "s", VariableSpec("x", "integer", 0))
        for i in range(1, 6):  # five writes an hour ago
            store.set("p", "s", "x", i, {})
        old = store.revision
        assert store.compact_revision == 0
        now[0] += 3600
        store.set("p", "s", "x", 6, {})  # a write now: what is older than 60 s goes
        assert store.compact_revision == old
        x = store.resolve("p", "s", "x")
        assert [r.version for r in backend.history(x.id)] == [6, 5]  # the newest old row stays
        with pytest.raises(Compacted):
            backend.changes(old - 1)
        now[0] += 5  # within the check interval (a tenth of 60 s): nothing more is compacted
        store.set("p", "s", "x", 7, {})
        assert store.compact_revision == old
    finally:
        store.close()


def test_retain_seconds_must_be_positive():
    with pytest.raises(ValueError, match="more than 0"):
        ServerConfig(retain_seconds=0).check()
