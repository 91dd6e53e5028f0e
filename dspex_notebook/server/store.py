"""The server's store: sessions and variables, one commit pipeline, events for watchers.

Transport-free (no grpc here): the servicer in ``dspex_notebook._wire`` decodes requests into
domain values (:class:`~.._values.VariableSpec`, decoded Python values), calls these methods
and encodes the :class:`~.backends.base.StoredVariable` objects it gets back. Everything runs on
the server's event-loop thread, so nothing locks. Every write, of any kind, takes one path,
:meth:`Store._commit`:

1. stage: validate against the in-memory view and build a :class:`Commit` (``writes.py``);
2. ``backend.commit``: compares checked, revision assigned, durable — or it raises and nothing
   changed anywhere;
3. ``view.apply``: the in-memory view takes the commit (the only place it changes);
4. ``hub.publish``: one :class:`~.events.EventBatch` per session for that revision.

Nothing is published before it is durable, and nothing is applied in more than one place.
"""

from __future__ import annotations

import asyncio
import logging
import operator
import threading
import time
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from typing import Any, TypeVar

from .._errors import AccessDenied, DspexError, ResourceLimitExceeded, SessionNotFoundError
from .._names import check_identifier
from .._patterns import glob_matcher
from .._values import VariableSpec
from . import access, dependencies
from .access import Rights
from .backends.base import (
    Backend,
    Commit,
    Delete,
    DocCompare,
    SessionRow,
    StaleView,
    StoredVariable,
)
from .events import EventBatch, EventHub, Subscription, batches_from_rows, row_variable
from .limits import Limits
from .optimization import Optimizations
from .prepared import PreparedSpec
from .view import SessionState, View, decoded
from .writes import resolve, stage_batch, stage_delete, stage_register, stage_set

log = logging.getLogger("dspex_notebook.server")
_T = TypeVar("_T")
#: how often a write is staged again when other servers keep winning the race to its variables
STALE_RETRIES = 8

_by_creation = operator.attrgetter("create_revision")
List = list  # `Store.list` and `Store.set` (RPCs) shadow the builtins inside the class body


class Store:
    """Sessions and variables of one server, persisted through a :class:`Backend`.

    Parameters:
        backend: where commits go.
        limits: size and count limits.
        clock: wall-clock seconds (timestamps of writes and sessions).
        retain_revisions: keep the change log of at least this many recent revisions and compact
            older ones (None: keep everything). Watchers that fall further behind resync.
        retain_seconds: also (or instead) compact what was committed more than this many
            seconds ago, checked at most every tenth of it (at least every second) on a write.
        rights: each principal's session-name patterns (``server/access.py``; a principal not
            listed may create any session and use only its own).
    """

    def __init__(self, backend: Backend, limits: Limits | None = None,
                 clock: Callable[[], float] = time.time,
                 retain_revisions: int | None = None,
                 rights: Rights | None = None, retain_seconds: float | None = None) -> None:
        self.backend = backend
        self.rights = rights or Rights()
        #: live watches of other sessions' variables (re-checked when rules change)
        self.watch_guards = access.WatchGuards(self)
        self.limits = limits or Limits()
        self._clock = clock
        snap = backend.load()
        self.view = View(snap)
        self.hub = EventHub()
        self.hub.set_head(lambda: self.view.revision)
        self.retain_revisions = retain_revisions
        self.retain_seconds = retain_seconds
        self._age_checked = 0.0
        self.reads: Counter[str] = Counter()  # var id -> reads served (since server start)
        self.writes: Counter[str] = Counter()
        #: streaming RPC handlers running (a stopping server lets them return first)
        self.open_streams = 0
        self.optimizations = Optimizations(self)
        self.optimizations.load(snap.runs, snap.trials)
        #: (shared backend) unary reads wait for :meth:`read_barrier` first; False: reads
        #: are served from this server's view as the watch has brought it (may lag, see
        #: docs/scale-out.md)
        self.linearizable = True
        self._barrier_next: asyncio.Future[None] | None = None
        self._barrier_task: asyncio.Task[None] | None = None
        if getattr(backend, "shared", False):
            backend.follow(self._follow_remote,  # type: ignore[attr-defined]
                           self.optimizations.lock_lost,
                           lambda commit, revision: self._applied(commit, revision,
                                                                  commit.principal))
            for run_id in backend.lost_locks():  # type: ignore[attr-defined]
                self.optimizations.lock_lost(run_id, 0)
        if self.optimizations.active:
            self.optimizations._ensure_ticker()

    @property
    def store_id(self) -> str:
        return self.view.store_id

    @property
    def revision(self) -> int:
        return self.view.revision

    @property
    def compact_revision(self) -> int:
        return self.backend.compact_revision

    # ------------------------------------------------------------------------------------------
    # the commit pipeline

    def _commit(self, commit: Commit, principal: str) -> int:
        self._prepare(commit, principal)
        revision = self.backend.commit(commit)
        self._applied(commit, revision, principal)
        self._retain()
        return revision

    def _prepare(self, commit: Commit, principal: str) -> None:
        """What every commit carries besides what its stage put in."""
        dependencies.drop_deleted(self.view, commit)  # no edge outlives its variables
        docs = self.view.docs
        staged = {(d.kind, d.key) for d in commit.docs}
        for d in commit.deletes:  # a variable's rules go with it
            key = (access.KIND, d.var.id)
            if key in docs and key not in staged:
                commit.docs.append(access.rules_doc(d.var.id, d.var.session_id, []))
        commit.principal = principal

    def _retain(self) -> None:
        if self.retain_revisions is not None:
            self._maybe_compact()
        if self.retain_seconds is not None:
            self._maybe_compact_by_age()

    async def _commit_pipelined(self, stage: Callable[[], tuple[Commit | None, _T]],
                                principal: str) -> tuple[_T, int]:
        """(Shared backend) stage on the view, then commit without holding the loop while
        etcd works (``EtcdBackend.commit_async``): the hot writes (``set``, batches) of many
        callers are in flight together. A stage that met another server's newer write
        (:class:`StaleView`) is staged again on the caught-up view. Returns the stage's
        result and the revision (0: nothing to commit)."""
        backend: Any = self.backend
        for attempt in range(STALE_RETRIES):
            commit, result = stage()
            if commit is None:
                return result, 0
            self._prepare(commit, principal)
            try:
                revision = await backend.commit_async(commit)
            except StaleView:
                if attempt == STALE_RETRIES - 1:
                    raise
                continue
            self._retain()
            return result, revision
        raise AssertionError("unreachable")

    async def set_pipelined(self, principal: str, session_id: str, ident: str, raw_value: Any,
                            metadata: Mapping[str, str],
                            expected_version: int | None = None) -> StoredVariable:
        """:meth:`set` for a shared backend (see :meth:`_commit_pipelined`)."""
        new, _ = await self._commit_pipelined(
            lambda: self._stage_set(principal, session_id, ident, raw_value, metadata,
                                    expected_version), principal)
        return new

    async def set_many_pipelined(self, principal: str, session_id: str,
                                 updates: Mapping[str, Any], metadata: Mapping[str, str],
                                 atomic: bool) -> tuple[dict[str, int], dict[str, str], int]:
        """:meth:`set_many` for a shared backend (see :meth:`_commit_pipelined`)."""
        (staged, errors), revision = await self._commit_pipelined(
            lambda: self._stage_batch(principal, session_id, updates, metadata, atomic),
            principal)
        return {ident: new.version for ident, new in staged.items()}, errors, revision

    def _stage_set(self, principal: str, session_id: str, ident: str, raw_value: Any,
                   metadata: Mapping[str, str],
                   expected_version: int | None) -> tuple[Commit, StoredVariable]:
        sess = self._session(principal, session_id)
        return stage_set(self.view, self.limits, sess, ident, raw_value, metadata,
                         expected_version, principal, self._clock())

    def _stage_batch(self, principal: str, session_id: str, updates: Mapping[str, Any],
                     metadata: Mapping[str, str], atomic: bool
                     ) -> tuple[Commit | None, tuple[dict[str, StoredVariable], dict[str, str]]]:
        sess = self._session(principal, session_id)
        commit, staged, errors = stage_batch(self.view, self.limits, sess, updates, metadata,
                                             atomic, principal, self._clock())
        return commit, (staged, errors)

    def _applied(self, commit: Commit, revision: int, principal: str) -> None:
        """Steps 3 and 4 for a commit the backend holds: ours, or (a shared backend) another
        server's, handed over by :meth:`_follow_remote` in revision order."""
        batches = self.view.apply(commit, revision, principal)
        for put in commit.puts:
            self.writes[put.var.id] += 1
        for batch in batches:
            self.hub.publish(batch)
        if self.watch_guards.watched:
            self.watch_guards.recheck(commit)
        for sid in commit.session_deletes:
            self.hub.close_session(sid)

    # ------------------------------------------------------------------------------------------
    # several servers over one shared backend (etcd): follow the others' commits

    def _follow_remote(self, commit: Commit, revision: int) -> None:
        """Another server's commit (already in the backend's mirror): into the view, to the
        watchers, to the optimization runs — as if it had been committed here."""
        for p in commit.puts:  # the record carries encodings; the view holds decoded values
            decoded(p.var)
        self._applied(commit, revision, commit.principal)
        self.optimizations.followed(commit)

    def attach(self, loop: asyncio.AbstractEventLoop) -> None:
        """Follow a shared backend's other writers from ``loop`` (the server's): when its
        watch delivers, the loop drains it (coalesced: one callback per burst)."""
        backend = self.backend
        if not getattr(backend, "shared", False):
            return
        pending = threading.Event()

        def drain() -> None:
            pending.clear()
            try:
                backend.drain()  # type: ignore[attr-defined]
            except DspexError as exc:
                log.error("following the store failed: %s", exc)

        def wake() -> None:  # on the watch thread
            if not pending.is_set():
                pending.set()
                loop.call_soon_threadsafe(drain)

        backend.wake = wake  # type: ignore[attr-defined]
        loop.call_soon(drain)

    async def read_barrier(self) -> None:
        """Wait until this server's view holds every commit acknowledged (by any server)
        before the call: one linearizable etcd read, shared by the calls that arrive while it
        is in flight, then the watch catching up. A no-op for a backend of one server."""
        if not getattr(self.backend, "shared", False):
            return
        if self._barrier_next is None:
            self._barrier_next = asyncio.get_running_loop().create_future()
            if self._barrier_task is None or self._barrier_task.done():
                self._barrier_task = asyncio.get_running_loop().create_task(self._barriers())
        await asyncio.shield(self._barrier_next)

    async def _barriers(self) -> None:
        backend: Any = self.backend
        while self._barrier_next is not None:
            fut, self._barrier_next = self._barrier_next, None  # later callers: the next round
            try:
                target = await backend.current_revision_async()
                await backend.caught_up(target)  # bounded (the backend's catch-up timeout)
                fut.set_result(None)
            except Exception as exc:  # noqa: BLE001 - handed to every waiting caller
                fut.set_exception(exc)

    def _maybe_compact(self) -> None:
        keep = self.retain_revisions or 0
        target = self.view.revision - keep
        # compact in steps, not on every write: one DELETE per max(100, keep/10) revisions
        if target - self.backend.compact_revision >= max(100, keep // 10):
            self.compact(target)

    def _maybe_compact_by_age(self) -> None:
        now = self._clock()
        age = float(self.retain_seconds or 0.0)
        if now - self._age_checked < max(1.0, age / 10):
            return
        self._age_checked = now
        target = self.backend.revision_before(now - age)
        if target > self.backend.compact_revision:
            self.compact(target)

    def compact(self, revision: int) -> int:
        """Drop change-log entries a reader at ``revision`` no longer needs (etcd's rule: each
        live variable's newest entry stays); return the new watermark. Watches resuming below
        it are told ``compacted`` and resync."""
        return self.backend.compact(revision)

    # ------------------------------------------------------------------------------------------
    # sessions

    def _session(self, principal: str, session_id: str) -> SessionState:
        sess = self.view.sessions.get(session_id)
        if sess is None:
            check_identifier(session_id, "session id", self.limits.max_name_length)
            raise SessionNotFoundError(f"Session not found: {session_id}")
        self.rights.check_use(principal, session_id, sess.row.principal)
        sess.row.last_access = self._clock()
        return sess

    def init_session(self, principal: str, session_id: str, metadata: Mapping[str, str]) -> int:
        """Create the session, or touch it if this principal already has it (idempotent)."""
        check_identifier(session_id, "session id", self.limits.max_name_length)
        self.limits.check_metadata(metadata)
        if session_id in self.view.sessions:
            self._session(principal, session_id)
            return self.revision
        self.rights.check_create(principal, session_id)
        if len(self.view.sessions) >= self.limits.max_sessions:
            raise ResourceLimitExceeded(f"too many sessions (limit {self.limits.max_sessions})")
        now = self._clock()
        row = SessionRow(session_id, principal, dict(metadata), now, now)
        return self._commit(Commit(session_upserts=[row], ts=now), principal)

    def cleanup_session(self, principal: str, session_id: str) -> tuple[int, int]:
        """Delete the session and its variables; return ``(variables_removed, revision)``."""
        if session_id not in self.view.sessions:
            return 0, self.revision
        sess = self._session(principal, session_id)
        if sess.row.principal != principal:  # joining a session is not owning it
            raise AccessDenied(f"only the principal that created session {session_id!r} may "
                               "clean it up")
        now = self._clock()
        deletes = [Delete(self.view.vars[vid], principal, {}) for vid in sess.by_name.values()]
        removed = len(deletes)
        runs = self.optimizations.finish_session(session_id, principal)
        revision = self._commit(Commit(deletes=deletes, session_deletes=[session_id], runs=runs,
                                       ts=now), principal)
        return removed, revision

    def get_session(self, principal: str, session_id: str) -> tuple[SessionRow, int]:
        sess = self._session(principal, session_id)
        return sess.row, len(sess.by_name)

    def list_sessions(self, principal: str) -> List[tuple[SessionRow, int]]:
        """The sessions the principal may use (its own, and those its session patterns let it
        join), sorted by id, with their variable counts; not an access."""
        may_use = self.rights.may_use
        return [(s.row, len(s.by_name)) for sid, s in sorted(self.view.sessions.items())
                if may_use(principal, sid, s.row.principal)]

    def heartbeat(self, principal: str, session_id: str) -> bool:
        try:
            self._session(principal, session_id)
        except DspexError:
            return False
        return True

    # ------------------------------------------------------------------------------------------
    # reads

    def peek(self, session_id: str, ident: str) -> StoredVariable | None:
        """The variable a write to ``ident`` in ``session_id`` would most likely reach, with
        no checks at all and nothing raised: what to prepare its value against off the loop
        (``prepared.py``); the write itself resolves and checks everything again."""
        var = self.view.vars.get(ident)
        if var is None:
            sess = self.view.sessions.get(session_id)
            vid = sess.by_name.get(ident) if sess is not None else None
            var = self.view.vars.get(vid) if vid is not None else None
        return var

    def resolve(self, principal: str, session_id: str, ident: str) -> StoredVariable:
        """Find a variable of the session by id, then by name (not counted as a read)."""
        return resolve(self.view, self._session(principal, session_id), ident)

    def reach(self, principal: str, session_id: str, ident: str,
              permission: str) -> tuple[StoredVariable, List[DocCompare]]:
        """A variable of the session (id, then name), or of another session by id where its
        rules give this session ``permission`` (``server/access.py``); returns it and the
        compares a write must carry."""
        sess = self._session(principal, session_id)
        compares: List[DocCompare] = []
        var = resolve(self.view, sess, ident, permission, principal, self._clock(), compares)
        return var, compares

    def get(self, principal: str, session_id: str, ident: str) -> StoredVariable:
        """A variable by id or name (or another session's by id, with ``read``), counted as
        a read in the statistics."""
        var, _ = self.reach(principal, session_id, ident, "read")
        self.reads[var.id] += 1
        return var

    def get_many(self, principal: str, session_id: str,
                 idents: List[str]) -> tuple[dict[str, StoredVariable], List[str]]:
        sess = self._session(principal, session_id)
        found: dict[str, StoredVariable] = {}
        missing: List[str] = []
        vars_ = self.view.vars
        vars_get, name_get = vars_.get, sess.by_name.get
        for ident in idents:
            var = vars_get(ident)
            if var is None or var.session_id != session_id:
                vid = name_get(ident)
                if vid is None:
                    if var is None:
                        missing.append(ident)
                        continue
                    access.guard(self.view, var, session_id, principal, "read", self._clock())
                else:
                    var = vars_[vid]
            found[ident] = var
        # one C-level pass instead of a Counter increment per variable
        self.reads.update([var.id for var in found.values()])
        return found, missing

    def list(self, principal: str, session_id: str, pattern: str = "") -> List[StoredVariable]:
        """Variables of the session in registration order; ``pattern`` is a glob on names."""
        sess = self._session(principal, session_id)
        vars_ = self.view.vars
        if pattern and pattern != "*":
            test = glob_matcher(pattern)
            found = [vars_[vid] for name, vid in sess.by_name.items() if test(name)]
        else:
            found = [vars_[vid] for vid in sess.by_name.values()]
        found.sort(key=_by_creation)
        return found

    def stats(self, principal: str, session_id: str, idents: List[str]) -> tuple[
            dict[str, dict[str, Any]], List[str], int]:
        """Server-side counters per variable (all clients, since this server started):
        ``({ident: stats}, missing, session_watchers)``; no identifiers = every variable."""
        sess = self._session(principal, session_id)
        if idents:
            found, missing = {}, []
            now = self._clock()
            for ident in idents:
                try:
                    found[ident] = resolve(self.view, sess, ident, "read", principal, now)
                except DspexError:
                    missing.append(ident)
        else:
            found = {v.name: v for v in (self.view.vars[i] for i in sess.by_name.values())}
            missing = []
        out = {
            ident: {
                "variable_id": var.id, "name": var.name, "read_count": self.reads[var.id],
                "write_count": self.writes[var.id],
                "watchers": self.hub.watchers(session_id, var.name), "version": var.version,
                "history_length": self.backend.history_length(var.id),
            }
            for ident, var in found.items()
        }
        return out, missing, self.hub.watchers(session_id)

    # ------------------------------------------------------------------------------------------
    # writes

    def register(self, principal: str, session_id: str, spec: VariableSpec) -> StoredVariable:
        """Create a variable (version 0). Raises VariableExistsError unless ``spec.replace``."""
        return self.register_many(principal, session_id, [spec])[0]

    def register_many(self, principal: str, session_id: str,
                      specs: Sequence[VariableSpec | PreparedSpec],
                      updates: Mapping[str, Any] | None = None,
                      update_metadata: Mapping[str, str] | None = None,
                      depends_on: Mapping[str, List[str]] | None = None) -> List[StoredVariable]:
        """Register ``specs`` and apply ``updates`` (identifier -> value) in one transaction:
        all or nothing, one revision. ``depends_on``: name -> identifiers it depends on
        (``server/dependencies.py``)."""
        sess = self._session(principal, session_id)
        updates = updates or {}
        if not specs and not updates:  # nothing to write: no new revision
            return []
        commit, created = stage_register(self.view, self.limits, sess, specs, updates,
                                         update_metadata or {}, principal, self._clock())
        if depends_on:
            dependencies.stage_declared(self.view, self.limits, commit, sess, depends_on)
        self._commit(commit, principal)
        return created

    def set(self, principal: str, session_id: str, ident: str, raw_value: Any,
            metadata: Mapping[str, str], expected_version: int | None = None) -> StoredVariable:
        """Write a new value (version + 1). Honours ``expected_version`` (optimistic locking)."""
        commit, new = self._stage_set(principal, session_id, ident, raw_value, metadata,
                                      expected_version)
        self._commit(commit, principal)
        return new

    def set_many(self, principal: str, session_id: str, updates: Mapping[str, Any],
                 metadata: Mapping[str, str],
                 atomic: bool) -> tuple[dict[str, int], dict[str, str], int]:
        """Batch write; return ``(new_versions, errors, revision)`` keyed by identifier.
        Atomic: any error → nothing written, revision 0. Non-atomic: the valid entries are
        written together as one revision."""
        commit, (staged, errors) = self._stage_batch(principal, session_id, updates, metadata,
                                                     atomic)
        if commit is None:
            return {}, errors, 0
        revision = self._commit(commit, principal)
        return {ident: new.version for ident, new in staged.items()}, errors, revision

    def delete(self, principal: str, session_id: str, ident: str, force: bool = False) -> int:
        """Delete a variable; refused while others depend on it unless ``force`` (which
        removes those dependencies in the same commit)."""
        sess = self._session(principal, session_id)
        other = access.foreign(self.view, sess, ident)
        if other is not None:
            access.check_owner(other, session_id, "delete")
        commit = stage_delete(self.view, sess, ident, principal, self._clock())
        gone = commit.deletes[0].var
        dependencies.check_delete(self.view, gone.session_id, gone.name, force)
        return self._commit(commit, principal)

    # ------------------------------------------------------------------------------------------
    # watches

    def subscribe(self, principal: str, session_id: str, idents: List[str],
                  progress_interval: float,
                  include_upstream: bool = False) -> tuple[Subscription, int]:
        """Start receiving the session's event batches (those touching ``idents``' names, or
        all); returns the subscription and the revision it starts after. Identifiers that are
        ids are watched by their variable's name. ``include_upstream``: also the changes of
        variables they depend on (transitively, in the graph when the event is sent), each
        event annotated with the names that depend on it (not for other sessions' variables,
        which are watched by id through their access rules)."""
        sess = self._session(principal, session_id)
        others = [v for v in (access.foreign(self.view, sess, i) for i in idents) if v is not None]
        if others:
            sub = self.watch_guards.subscribe(principal, session_id, idents, others,
                                              progress_interval)
            return sub, self.view.revision
        names = None
        if idents:
            names = set()
            for ident in idents:
                var = self.view.vars.get(ident)
                names.add(var.name if var is not None and var.session_id == session_id else ident)
        upstream = dependencies.downstream_of(self.view, session_id) if include_upstream else None
        sub = self.hub.subscribe(session_id, names, progress_interval, upstream)
        return sub, self.view.revision

    def unsubscribe(self, sub: Subscription) -> None:
        self.hub.unsubscribe(sub)
        if sub.guard is not None:
            self.watch_guards.forget(sub)

    def snapshot(self, session_id: str, names: frozenset[str] | None) -> List[StoredVariable]:
        """Current variables of a session (all, or those with these names), in order."""
        sess = self.view.sessions.get(session_id)
        if sess is None:
            return []
        found = [self.view.vars[vid] for name, vid in sess.by_name.items()
                 if names is None or name in names]
        found.sort(key=lambda v: v.create_revision)
        return found

    def changes(self, session_id: str, after: int, upto: int,
                limit: int = 1000) -> tuple[List[EventBatch], int]:
        """Event batches of the session with ``after < revision <= upto`` from the change
        log, at most about ``limit`` rows; returns them and the revision read up to.

        Raises:
            Compacted: ``after`` is below the compaction watermark.
        """
        rows = self.backend.changes(after, limit)
        reached = upto if len(rows) < limit else min(upto, rows[-1].revision if rows else upto)
        rows = [r for r in rows if r.revision <= upto and r.session_id == session_id]
        return batches_from_rows(rows, self._previous), reached

    def _previous(self, var_id: str, revision: int) -> StoredVariable | None:
        for row in self.backend.history(var_id, limit=8):
            if row.revision < revision and row.op != "delete":
                return row_variable(row)
        return None

    def close(self) -> None:
        self.hub.close()
        self.optimizations.close()
        self.backend.touch_sessions({s: x.row.last_access for s, x in self.view.sessions.items()})
        self.backend.close()
