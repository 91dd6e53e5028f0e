"""Storage backends: :class:`Backend` ABC, in-memory and SQLite implementations."""

from .base import (
    Backend,
    Commit,
    Compacted,
    Compare,
    CompareFailed,
    Delete,
    DocCompare,
    DocRow,
    HistoryRow,
    Put,
    SessionRow,
    Snapshot,
    StoredVariable,
)
from .memory import MemoryBackend
from .sqlite import SQLiteBackend, StoreLocked

__all__ = [
    "Backend", "Commit", "Compacted", "Compare", "CompareFailed", "Delete", "DocCompare",
    "DocRow", "HistoryRow",
    "MemoryBackend", "Put", "SQLiteBackend", "SessionRow", "Snapshot", "StoreLocked",
    "StoredVariable",
]
