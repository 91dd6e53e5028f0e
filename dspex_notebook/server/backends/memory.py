"""In-memory backend: nothing survives the process. For tests and throwaway servers."""

from __future__ import annotations

import bisect
import json
import uuid
from dataclasses import replace

from .base import (
    Backend,
    Commit,
    CompareFailed,
    DocRow,
    HistoryRow,
    RunRow,
    SessionRow,
    Snapshot,
    StoredVariable,
    TrialRow,
    compacted_error,
    doc_compare_failed,
)


def _copy(doc: dict) -> dict:
    """A private copy of a JSON document, as SQLite would store and return it (also faster
    than ``copy.deepcopy`` for plain data)."""
    return json.loads(json.dumps(doc))


class MemoryBackend(Backend):
    """Keeps committed rows in dicts and the change log in a list; same contract as SQLite."""

    name = "memory"

    def __init__(self) -> None:
        self.store_id = uuid.uuid4().hex
        self._revision = 0
        self._compact = 0
        self._sessions: dict[str, SessionRow] = {}
        self._variables: dict[str, StoredVariable] = {}
        self._names: dict[tuple[str, str], str] = {}  # (session, name) -> id
        self._log: list[HistoryRow] = []  # in revision order
        self._log_revs: list[int] = []  # parallel to _log, for bisect
        self._by_var: dict[str, list[HistoryRow]] = {}  # var id -> its rows, oldest first
        self._runs: dict[str, RunRow] = {}
        self._trials: dict[tuple[str, int], TrialRow] = {}
        self._docs: dict[tuple[str, str], DocRow] = {}

    def load(self) -> Snapshot:
        return Snapshot(
            self.store_id, self._revision, self._compact,
            [replace(s) for s in self._sessions.values()],
            [replace(v, value=None, constraints={}) for v in self._variables.values()],
            [RunRow(r.id, r.session_id, r.var_id, _copy(r.doc)) for r in self._runs.values()],
            [TrialRow(t.run_id, t.iteration, _copy(t.doc)) for _, t in sorted(self._trials.items())],
            [DocRow(d.kind, d.key, d.session_id, _copy(d.doc or {}), d.mod_revision)
             for d in self._docs.values()],
        )

    def _check(self, commit: Commit) -> None:
        for c in commit.compares:
            if c.var_id:
                var = self._variables.get(c.var_id)
                if var is None or var.version != c.version:
                    raise CompareFailed(
                        f"variable {c.name!r} changed concurrently (expected version {c.version})"
                    )
            elif (c.session_id, c.name) in self._names:
                raise CompareFailed(f"variable {c.name!r} was registered concurrently")
        for dc in commit.doc_compares:
            row = self._docs.get((dc.kind, dc.key))
            found = row.mod_revision if row is not None else 0
            if found != dc.mod_revision:
                raise doc_compare_failed(dc, found)

    def commit(self, commit: Commit) -> int:
        self._check(commit)
        revision = self._revision + 1
        commit.stamp(revision)
        self.apply_at(commit, revision)
        return revision

    def apply_at(self, commit: Commit, revision: int) -> None:
        """Take a checked, stamped ``commit`` as ``revision`` (> the current one): what
        :meth:`commit` does after its compares, and how an etcd server's local mirror
        (``etcd.py``) follows commits that etcd has already checked and numbered."""
        for sid in commit.session_deletes:  # a session goes with its variables (as in SQLite)
            self._sessions.pop(sid, None)
            for vid in [k for k, v in self._variables.items() if v.session_id == sid]:
                var = self._variables.pop(vid)
                self._names.pop((sid, var.name), None)
        for s in commit.session_upserts:
            self._sessions[s.session_id] = replace(s)
        for d in commit.deletes:
            if self._variables.pop(d.var.id, None) is not None:
                self._names.pop((d.var.session_id, d.var.name), None)
        for p in commit.puts:
            self._variables[p.var.id] = p.var
            self._names[(p.var.session_id, p.var.name)] = p.var.id
        for run in commit.runs:
            self._runs[run.id] = RunRow(run.id, run.session_id, run.var_id, _copy(run.doc))
        for t in commit.trials:
            self._trials[(t.run_id, t.iteration)] = TrialRow(t.run_id, t.iteration, _copy(t.doc))
        for doc in commit.docs:
            if doc.doc is None:
                self._docs.pop((doc.kind, doc.key), None)
            else:
                self._docs[(doc.kind, doc.key)] = DocRow(doc.kind, doc.key, doc.session_id,
                                                         _copy(doc.doc), doc.mod_revision)
        for sid in commit.session_deletes:  # runs, trials and documents go with their session
            for rid in [k for k, r in self._runs.items() if r.session_id == sid]:
                del self._runs[rid]
                for key in [k for k in self._trials if k[0] == rid]:
                    del self._trials[key]
            for dkey in [k for k, d in self._docs.items() if d.session_id == sid]:
                del self._docs[dkey]
        for row in commit.history(revision):
            self._log.append(row)
            self._log_revs.append(revision)
            self._by_var.setdefault(row.var_id, []).append(row)
        self._revision = revision

    def changes(self, after: int, limit: int = 1000) -> list[HistoryRow]:
        if after < self._compact:
            raise compacted_error(after, self._compact)
        start = bisect.bisect_right(self._log_revs, after)
        end = min(start + limit, len(self._log))
        while end < len(self._log) and end > start and self._log_revs[end] == self._log_revs[end - 1]:
            end += 1  # finish the last revision
        return self._log[start:end]

    def history(self, var_id: str, limit: int = 100, offset: int = 0) -> list[HistoryRow]:
        rows = self._by_var.get(var_id, [])[::-1]
        return rows[offset: offset + limit]

    def history_length(self, var_id: str) -> int:
        return len(self._by_var.get(var_id, ()))

    @property
    def compact_revision(self) -> int:
        return self._compact

    def revision_before(self, ts: float) -> int:
        found = 0
        for row in self._log:  # revision order; commit times only grow with it
            if row.ts > ts:
                break
            found = row.revision
        return found

    def compact(self, revision: int) -> int:
        revision = min(revision, self._revision)
        if revision <= self._compact:
            return self._compact
        newest: dict[str, int] = {}
        for i, r in enumerate(self._log):
            if r.revision <= revision:
                newest[r.var_id] = i
        keep = {i for i in newest.values() if self._log[i].op != "delete"}
        log = [r for i, r in enumerate(self._log) if r.revision > revision or i in keep]
        self._log, self._log_revs = log, [r.revision for r in log]
        self._by_var = {}
        for r in log:
            self._by_var.setdefault(r.var_id, []).append(r)
        self._compact = revision
        return revision

    def read_at(self, session_id: str, revision: int) -> list[HistoryRow]:
        if revision < self._compact:
            raise compacted_error(revision - 1, self._compact)
        latest: dict[str, HistoryRow] = {}
        for r in self._log:
            if r.revision > revision:
                break
            if r.session_id == session_id:
                latest[r.var_id] = r
        return [r for r in latest.values() if r.op != "delete"]
