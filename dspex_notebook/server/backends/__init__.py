"""Storage backends: :class:`Backend` ABC, in-memory and SQLite implementations."""

from .base import Backend, Commit, HistoryRow, SessionRow, Snapshot, VariableRow
from .memory import MemoryBackend
from .sqlite import SQLiteBackend, StoreLocked

__all__ = [
    "Backend", "Commit", "HistoryRow", "MemoryBackend", "SQLiteBackend", "SessionRow",
    "Snapshot", "StoreLocked", "VariableRow",
]
