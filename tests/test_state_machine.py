"""A Hypothesis state machine over the write paths, checked against a plain-dict model.

Operations: register, set, atomic batch, rollback, add/remove dependency, delete (refused while
others depend on it, or forced), export → import, restore to an earlier revision. After every
step the server must agree with the model: values, versions (strictly increasing by one per
write), history (append-only: what was there stays, newest first), rollback = a new version equal
to its target, the dependency graph (cycles and duplicates refused). It runs through the real
server on the in-memory and the SQLite backend (the same contract on both).
"""

from __future__ import annotations

import asyncio
import json

import pytest
from backends import KINDS, server_of
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    invariant,
    precondition,
    rule,
    run_state_machine_as_test,
)

from dspex_notebook.testing import session_for

NAMES = ("a", "b", "c", "d")
VALUES = st.integers(min_value=-1000, max_value=1000)


def _reaches(edges: set[tuple[str, str]], start: str, goal: str) -> bool:
    """Is ``goal`` reachable from ``start`` along ``from → to`` edges?"""
    seen, todo = set(), [start]
    while todo:
        node = todo.pop()
        if node == goal:
            return True
        if node not in seen:
            seen.add(node)
            todo.extend(t for f, t in edges if f == node)
    return False


class Writes(RuleBasedStateMachine):
    server = None  # set by the test
    count = 0

    def __init__(self) -> None:
        super().__init__()
        type(self).count += 1
        self.loop = asyncio.new_event_loop()
        self.cm = session_for(self.server, f"sm-{self.count}", cache_ttl=0)
        self.ctx = self.loop.run_until_complete(self.cm.__aenter__())
        self.values: dict[str, list[int]] = {}  # name -> value of each version (index = version)
        self.edges: set[tuple[str, str]] = set()
        self.snapshots: list[tuple[int, dict[str, int]]] = []  # (revision, name -> value)

    def run(self, coro):
        return self.loop.run_until_complete(coro)

    def teardown(self) -> None:
        try:
            self.run(self.ctx.cleanup())
            self.run(self.cm.__aexit__(None, None, None))
        finally:
            self.loop.close()

    def _snap(self) -> None:
        """Remember the store revision of the write just made and the values as of it."""
        self.snapshots.append((self.ctx.last_revision,
                               {n: vs[-1] for n, vs in self.values.items()}))

    def _write(self, name: str, value: int) -> None:
        self.values.setdefault(name, []).append(value)

    # ------------------------------------------------------------------------------------------

    @rule(name=st.sampled_from(NAMES), value=VALUES)
    def register(self, name: str, value: int) -> None:
        if name in self.values:
            with pytest.raises(ValueError, match="already"):
                self.run(self.ctx.register_variable(name, "integer", value))
            return
        self.run(self.ctx.register_variable(name, "integer", value))
        self.values[name] = [value]
        self._snap()

    @precondition(lambda self: self.values)
    @rule(data=st.data(), value=VALUES)
    def set(self, data, value: int) -> None:
        name = data.draw(st.sampled_from(sorted(self.values)))
        version = self.run(self.ctx.set_variable(name, value))
        assert version == len(self.values[name])
        self._write(name, value)
        self._snap()

    @precondition(lambda self: len(self.values) >= 2)
    @rule(data=st.data())
    def batch(self, data) -> None:
        names = data.draw(st.lists(st.sampled_from(sorted(self.values)), min_size=1,
                                   unique=True))
        updates = {n: data.draw(VALUES) for n in names}
        result = self.run(self.ctx.update_variables(updates, atomic=True))
        assert all(v is True for v in result.values()), result
        for name, value in updates.items():
            self._write(name, value)
        self._snap()

    @precondition(lambda self: self.values)
    @rule(data=st.data())
    def rollback(self, data) -> None:
        name = data.draw(st.sampled_from(sorted(self.values)))
        target = data.draw(st.integers(0, len(self.values[name]) + 1))
        if target >= len(self.values[name]):
            with pytest.raises(ValueError):
                self.run(self.ctx.rollback_variable(name, target))
            return
        version = self.run(self.ctx.rollback_variable(name, target, reason="sm"))
        assert version == len(self.values[name])
        self._write(name, self.values[name][target])
        self._snap()

    @precondition(lambda self: len(self.values) >= 2)
    @rule(data=st.data())
    def add_dependency(self, data) -> None:
        a, b = data.draw(st.lists(st.sampled_from(sorted(self.values)), min_size=2,
                                  max_size=2, unique=True))
        if (a, b) in self.edges or _reaches(self.edges, b, a):
            with pytest.raises(ValueError):
                self.run(self.ctx.add_dependency(a, b))
            return
        self.run(self.ctx.add_dependency(a, b))
        self.edges.add((a, b))

    @precondition(lambda self: self.edges)
    @rule(data=st.data())
    def remove_dependency(self, data) -> None:
        a, b = data.draw(st.sampled_from(sorted(self.edges)))
        self.run(self.ctx.remove_dependency(a, b))
        self.edges.discard((a, b))

    @precondition(lambda self: self.values)
    @rule(data=st.data(), force=st.booleans())
    def delete(self, data, force: bool) -> None:
        name = data.draw(st.sampled_from(sorted(self.values)))
        users = {f for f, t in self.edges if t == name}
        if users and not force:
            with pytest.raises(ValueError, match="cannot be deleted"):
                self.run(self.ctx.delete_variable(name))
            return
        self.run(self.ctx.delete_variable(name, force=force))
        del self.values[name]
        self.edges = {(f, t) for f, t in self.edges if name not in (f, t)}
        self.snapshots.clear()  # restoring across a delete is not part of this model

    @precondition(lambda self: self.values)
    @rule()
    def export_then_import(self) -> None:
        """Export everything; a dry-run import of it reports no error, and importing it with
        ``keep`` skips every variable (they all exist) and changes nothing."""
        data = self.run(self.ctx.export_variables(format="json"))
        doc = json.loads(data)
        exported = {v["name"] for v in doc["variables"]}
        assert exported == set(self.values)
        summary = self.run(self.ctx.import_variables(data, format="json", dry_run=True))
        assert not summary["errors"], summary
        kept = self.run(self.ctx.import_variables(data, format="json", merge_strategy="keep"))
        assert (kept["imported"], kept["skipped"], kept["errors"]) == (0, len(self.values), 0)
        # the session already has every variable: `keep` writes no version, the graph stays
        # (the invariant checks values, histories and edges)

    def _restorable(self) -> list[tuple[int, dict[str, int]]]:
        # revisions with the same variables as now: restore then only writes values (creating
        # or deleting variables on restore is covered by tests/test_revisions.py)
        return [s for s in self.snapshots if set(s[1]) == set(self.values)]

    @precondition(lambda self: self._restorable())
    @rule(data=st.data(), dry_run=st.booleans())
    def restore(self, data, dry_run: bool) -> None:
        revision, values = data.draw(st.sampled_from(self._restorable()))
        changed = {n for n, v in values.items() if self.values[n][-1] != v}
        summary = self.run(self.ctx.restore_session(revision, dry_run=dry_run))
        assert set(summary["set"]) == changed, (summary, changed)
        if dry_run:
            return
        for name in changed:
            self._write(name, values[name])
        if changed:
            self._snap()

    # ------------------------------------------------------------------------------------------

    @invariant()
    def server_agrees(self) -> None:
        if not self.values:
            return
        got = self.run(self.ctx.get_variables(sorted(self.values)))
        assert got == {n: vs[-1] for n, vs in self.values.items()}
        for name, versions in self.values.items():
            history = self.run(self.ctx.get_variable_history(name, limit=1000))
            assert [e["version"] for e in history] == list(range(len(versions)))[::-1]
            assert [e["value"] for e in history] == versions[::-1]
        edges = set()
        for name in self.values:
            for dep in self.run(self.ctx.get_dependencies(name)):
                edges.add((name, dep["name"]))
        assert edges == self.edges


@pytest.mark.timeout(600)
@pytest.mark.parametrize("backend", KINDS)
def test_writes_agree_with_a_plain_dict_model(backend, tmp_path, request):
    with server_of(backend, request, tmp_path) as srv:
        Writes.server = srv
        run_state_machine_as_test(Writes, settings=settings(
            max_examples=25, stateful_step_count=25, deadline=None,
            suppress_health_check=[HealthCheck.too_slow]))
