"""In-memory backend: nothing survives the process. For tests and throwaway servers."""

from __future__ import annotations

import uuid
from dataclasses import replace

from .base import Backend, Commit, HistoryRow, SessionRow, Snapshot, VariableRow


class MemoryBackend(Backend):
    """Keeps committed rows in dicts; same contract as the durable backends."""

    name = "memory"

    def __init__(self) -> None:
        self.store_id = uuid.uuid4().hex
        self._revision = 0
        self._sessions: dict[str, SessionRow] = {}
        self._variables: dict[str, VariableRow] = {}
        self._history: dict[str, list[HistoryRow]] = {}

    def load(self) -> Snapshot:
        return Snapshot(
            self.store_id,
            self._revision,
            [replace(s) for s in self._sessions.values()],
            [replace(v) for v in self._variables.values()],
        )

    def commit(self, commit: Commit) -> None:
        for sid in commit.session_deletes:  # a session goes with its variables (as in SQLite)
            self._sessions.pop(sid, None)
            for vid in [k for k, v in self._variables.items() if v.session_id == sid]:
                del self._variables[vid]
        for s in commit.session_upserts:
            self._sessions[s.session_id] = s
        for vid in commit.variable_deletes:
            self._variables.pop(vid, None)
        for v in commit.variable_upserts:
            self._variables[v.id] = v
        for h in commit.history:
            self._history.setdefault(h.var_id, []).append(h)
        for sid in commit.session_deletes:
            for vid in [k for k, rows in self._history.items() if rows and rows[0].session_id == sid]:
                del self._history[vid]
        self._revision = commit.revision

    def history(self, var_id: str, limit: int = 100, offset: int = 0) -> list[HistoryRow]:
        rows = self._history.get(var_id, [])
        newest_first = rows[::-1]
        return newest_first[offset : offset + limit]
