"""etcd backend: several stateless servers over one etcd v3 cluster (docs/scale-out.md).

etcd holds the truth; each server holds a *mirror* (a :class:`MemoryBackend`) and its view,
both kept coherent by following etcd's watch:

* **commit** = one etcd transaction: a compare on every touched key (a variable's state key is
  at the ``mod_revision`` the server staged against, a new name's key is absent, a document's
  key is at its revision), then every state key written or deleted, plus the commit record on
  ``l/log``. The store revision *is* etcd's revision. A failed compare means this server's view
  was behind (another server wrote first): the backend catches up from the watch and raises
  :class:`StaleView`, and the request is staged again on the fresh view (``rpc`` in
  ``_wire/servicer/base.py``), so a plain ``set`` wins as last writer while ``expected_version``
  and compare-and-set stay exact.
* **follow**: a watch on ``l/`` from the mirror's revision; every other server's commit record
  is decoded, stamped and applied to the mirror, then handed to the store
  (:meth:`follow`), which applies it to its view and publishes the same events the writing
  server did. A commit of our own is applied only after every earlier revision has been, so
  each server's view goes through the same sequence of revisions.
* **reads of the change log** (``changes``, ``history``, ``read_at``) are the mirror's: at start
  it is rebuilt from etcd's history of the log key (and, after an etcd compaction, from the
  state keys at the compaction revision, keeping each live variable's newest entry).

A server whose watch falls behind etcd's compaction cannot make its view coherent again and
stops serving (``on_fatal``): it is restarted, and its clients move to another server.
"""

from __future__ import annotations

import asyncio
import json
import logging
import queue
import time
import uuid
from collections.abc import Callable, Sequence
from typing import Any

from ..._wire import etcd_client as ec
from .base import (
    Backend,
    Commit,
    HistoryRow,
    Snapshot,
    StaleView,
    doc_compare_failed,
)
from .etcd_codec import (
    Keys,
    decode_commit,
    decode_variable,
    doc_doc,
    doc_from,
    encode,
    encode_commit,
    encode_variable,
    record_nonce,
    run_doc,
    run_from,
    session_doc,
    session_from,
    trial_doc,
    trial_from,
)
from .memory import MemoryBackend

log = logging.getLogger("dspex_notebook.server")

#: how long a commit waits for the watch to deliver the revisions before its own
CATCH_UP_SECONDS = 10.0


class EtcdBackend(Backend):
    """Sessions, variables, runs and documents in etcd; reads from a followed local mirror.

    Parameters:
        endpoints: etcd client addresses (``host:port``), one channel across them.
        prefix: the key prefix of this store (several stores may share one etcd).
    """

    name = "etcd"
    #: several servers write this store: the store follows the backend (``Store.__init__``)
    shared = True

    def __init__(self, endpoints: Sequence[str], prefix: str = "/dspex/",
                 timeout: float = ec.DEFAULT_TIMEOUT) -> None:
        self.keys = Keys(prefix)
        self.client = ec.EtcdClient(endpoints, timeout)
        self.endpoints = list(endpoints)
        #: how servers and clients name this store (runtime files, ``dspex-notebook list``)
        self.url = f"etcd://{','.join(self.endpoints)}{prefix}"
        self.mirror = MemoryBackend()
        self._follower: ec.Follower | None = None
        self._on_commit: Callable[[Commit, int], None] | None = None
        self._on_lock_lost: Callable[[str, int], None] = lambda run_id, revision: None
        self.on_fatal: Callable[[str], None] = self._default_fatal
        self.wake: Callable[[], None] = lambda: None
        self.fatal: str | None = None
        self.head = 0  # the newest etcd revision delivered by the watch
        self._own = 0  # the revision of our commit while waiting for the ones before it
        #: (pipelined commits) ours, sent to etcd and not applied yet, by nonce: the watch
        #: may bring one before its transaction's answer does
        self._inflight: dict[str, Commit] = {}
        self._waiters: dict[int, list[asyncio.Future[None]]] = {}
        self._on_own: Callable[[Commit, int], None] = lambda commit, revision: None
        self._run_revs: dict[str, int] = {}  # run id -> revision that last wrote its record

    # ------------------------------------------------------------------------------------------
    # start

    def _store_id(self) -> str:
        new = uuid.uuid4().hex
        resp = self.client.txn([ec.absent(self.keys.store_id)],
                               [ec.put(self.keys.store_id, new.encode())],
                               [ec.get(self.keys.store_id)])
        if resp.succeeded:
            return new
        return resp.responses[0].response_range.kvs[0].value.decode()

    def load(self) -> Snapshot:
        if self._follower is not None:  # loaded already: what etcd holds, by a fresh reader
            other = EtcdBackend(self.endpoints, self.keys.prefix.decode(), self.client.timeout)
            try:
                return other.load()
            finally:
                other.close()
        self.mirror.store_id = self._store_id()
        resp = self.client.range(self.keys.log)
        target = int(resp.kvs[0].mod_revision) if resp.kvs else 0  # the newest commit
        if not target:  # nothing committed under this prefix yet: follow from now on (the
            # store's revision is etcd's, so a new store starts at etcd's current one)
            self.mirror._revision = int(resp.header.revision)
            follower = self._follow_from(int(resp.header.revision) + 1)
        start = 1
        while target:  # a watch from 1 is told where etcd's history starts, if compacted
            follower = self._follow_from(start)
            try:
                item = follower.items.get(timeout=self.client.timeout)
            except queue.Empty:
                follower.close()
                raise ec.EtcdUnavailable(
                    f"etcd at {','.join(self.endpoints)} did not replay its history") from None
            if item[0] != "compacted":
                self._take(item)
                break
            follower.close()
            start = int(item[1])
            self._load_state(start)
            start += 1
            if start > target:  # nothing after the compaction point to replay
                follower = self._follow_from(start)
                break
        self._follower = follower
        self.head = max(self.head, self.mirror._revision)
        self.drain(until=target, timeout=CATCH_UP_SECONDS)
        return self.mirror.load()

    def _load_state(self, revision: int) -> None:
        """The mirror from the state keys at ``revision`` (after an etcd compaction there is
        no older log to replay): each live variable's newest entry becomes its history."""
        m = MemoryBackend()
        m.store_id = self.mirror.store_id
        k = self.keys
        for kv in self.client.scan(k.prefix, revision):
            key = kv.key
            if key.startswith(k.sessions):
                s = session_from(json.loads(kv.value))
                m._sessions[s.session_id] = s
            elif key.startswith(k.variables):
                v = decode_variable(kv.value, int(kv.mod_revision))
                m._variables[v.id] = v
                m._names[(v.session_id, v.name)] = v.id
                row = HistoryRow(v.id, v.session_id, v.name, v.type, v.version, v.mod_revision,
                                 "register" if v.version == 0 else "set", v.type_url, v.data,
                                 v.binary, v.constraints_json, v.updated_at, v.source,
                                 dict(v.metadata))
                m._log.append(row)
                m._by_var.setdefault(v.id, []).append(row)
            elif key.startswith(k.runs):
                r = run_from(json.loads(kv.value))
                m._runs[r.id] = r
                self._run_revs[r.id] = int(kv.mod_revision)
            elif key.startswith(k.trials):
                t = trial_from(json.loads(kv.value))
                m._trials[(t.run_id, t.iteration)] = t
            elif key.startswith(k.docs):
                d = doc_from(json.loads(kv.value), int(kv.mod_revision))
                m._docs[(d.kind, d.key)] = d
        m._log.sort(key=lambda r: r.revision)
        m._log_revs = [r.revision for r in m._log]
        m._revision = m._compact = revision
        self.mirror = m

    def _follow_from(self, start: int) -> ec.Follower:
        return ec.Follower(self.client, self.keys.followed, ec.prefix_end(self.keys.followed),
                           start, on_item=lambda: self.wake())

    # ------------------------------------------------------------------------------------------
    # following

    def follow(self, on_commit: Callable[[Commit, int], None],
               on_lock_lost: Callable[[str, int], None],
               on_own: Callable[[Commit, int], None] | None = None) -> None:
        """Hand every other server's commit (decoded, stamped, already in the mirror) to
        ``on_commit(commit, revision)``, every lock whose lease expired to
        ``on_lock_lost(run_id, revision)``, and each pipelined commit of ours to
        ``on_own(commit, revision)`` once every revision before it has been: all in revision
        order, from :meth:`drain` (or :meth:`commit_async`)."""
        self._on_commit, self._on_lock_lost = on_commit, on_lock_lost
        if on_own is not None:
            self._on_own = on_own

    def drain(self, until: int = 0, timeout: float = 0.0) -> None:
        """Apply what the watch delivered (``until`` 0), or wait (at most ``timeout``) until
        every revision up to ``until`` has been and stop there: a commit waiting for the ones
        before its own must not apply a later one ahead of it. On the server's loop thread."""
        follower = self._follower
        if self.fatal:
            raise ec.EtcdUnavailable(self.fatal)
        if follower is None:
            return
        deadline = time.monotonic() + timeout
        while not until or self.head < until:
            try:
                item = follower.items.get_nowait() if not until else follower.items.get(timeout=0.05)
            except queue.Empty:
                if not until:
                    return
                if time.monotonic() > deadline:
                    raise ec.EtcdUnavailable(
                        f"etcd's watch is {until - self.head} revisions behind after "
                        f"{timeout:g}s; try again") from None
                continue
            self._take(item)

    def _take(self, item: tuple[Any, Any]) -> None:
        kind, value = item
        if kind in ("compacted", "failed"):
            self.fatal = (f"etcd watch ended ({kind} {value}): this server's view can no longer "
                          "follow the store; restart it")
            self.on_fatal(self.fatal)
            raise ec.EtcdUnavailable(self.fatal)
        revision, events = int(kind), value
        self.head = max(self.head, revision)
        if revision <= self.mirror._revision or revision == self._own:
            return  # our own commit: applied by commit() once every earlier one is
        logged = [ev for ev in events if ev.kv.key == self.keys.log and ev.type == 0]
        for ev in logged:
            nonce = record_nonce(ev.kv.value) if self._inflight else ""
            own = self._inflight.pop(nonce, None) if nonce else None
            if own is not None:  # a pipelined commit of ours: everything before it is in
                self._apply_own(own, revision)
                self._on_own(own, revision)
                continue
            commit = decode_commit(ev.kv.value)
            commit.stamp(revision)
            self._mirror(commit, revision)
            if self._on_commit is not None:
                self._on_commit(commit, revision)
        if not logged:  # a lock deleted by no commit of ours: its lease expired
            for ev in events:
                if ev.kv.key.startswith(self.keys.locks) and ev.type == 1:
                    self._on_lock_lost(self.keys.run_of_lock(ev.kv.key), revision)
        self.mirror._revision = max(self.mirror._revision, revision)

    def _default_fatal(self, message: str) -> None:
        log.error("%s", message)

    # ------------------------------------------------------------------------------------------
    # commit

    def _compares(self, commit: Commit) -> list[Any]:
        """The etcd compares of ``commit``, checked first against the mirror (the view the
        commit was staged on) so that an already-visible conflict needs no round trip."""
        m, k = self.mirror, self.keys
        out = []
        for c in commit.compares:
            key = k.variable(c.session_id, c.name)
            if c.var_id:
                var = m._variables.get(c.var_id)
                if var is None or var.version != c.version:
                    raise StaleView(
                        f"variable {c.name!r} changed concurrently (expected version {c.version})")
                out.append(ec.mod_is(key, var.mod_revision))
            else:
                if (c.session_id, c.name) in m._names:
                    raise StaleView(f"variable {c.name!r} was registered concurrently")
                out.append(ec.absent(key))
        for dc in commit.doc_compares:
            row = m._docs.get((dc.kind, dc.key))
            found = row.mod_revision if row is not None else 0
            if found != dc.mod_revision:
                raise StaleView(str(doc_compare_failed(dc, found)))
            out.append(ec.mod_is(k.doc(dc.kind, dc.key), dc.mod_revision))
        for r in commit.runs:  # a run record is read-modify-write: one writer at a time
            out.append(ec.mod_is(k.run(r.session_id, r.id), self._run_revs.get(r.id, 0)))
        return out

    def _ops(self, commit: Commit) -> list[Any]:
        k, m = self.keys, self.mirror
        ops: dict[bytes, Any] = {}  # key -> op: etcd refuses two ops on one key in a txn
        ranges = []
        for sid in commit.session_deletes:
            ops[k.session(sid)] = ec.delete(k.session(sid))
            for prefix in (k.session_variables(sid), k.session_runs(sid), k.session_trials(sid)):
                ranges.append(ec.delete(prefix, ec.prefix_end(prefix)))
            for row in m._docs.values():
                if row.session_id == sid:
                    ops[k.doc(row.kind, row.key)] = ec.delete(k.doc(row.kind, row.key))
        for d in commit.deletes:
            key = k.variable(d.var.session_id, d.var.name)
            ops[key] = ec.delete(key)
        for s in commit.session_upserts:
            ops[k.session(s.session_id)] = ec.put(k.session(s.session_id), encode(session_doc(s)))
        for p in commit.puts:
            ops[k.variable(p.var.session_id, p.var.name)] = ec.put(
                k.variable(p.var.session_id, p.var.name), encode_variable(p.var))
        for r in commit.runs:
            ops[k.run(r.session_id, r.id)] = ec.put(k.run(r.session_id, r.id), encode(run_doc(r)))
            lease = r.doc.get("lease_id")
            if lease and r.doc.get("state") == "running" and r.id not in self._run_revs:
                ops[k.lock(r.id)] = ec.put(k.lock(r.id), b"", int(lease))
            elif lease and r.doc.get("state") != "running":
                ops[k.lock(r.id)] = ec.delete(k.lock(r.id))
        runs = {r.id: r for r in commit.runs}
        for t in commit.trials:  # a trial's run is in this commit, or already known
            run = runs.get(t.run_id) or m._runs[t.run_id]
            key = k.trial(run.session_id, t.run_id, t.iteration)
            ops[key] = ec.put(key, encode(trial_doc(t)))
        for doc in commit.docs:
            key = k.doc(doc.kind, doc.key)
            if doc.doc is None:
                ops[key] = ec.delete(key)
            else:
                ops[key] = ec.put(key, encode(doc_doc(doc)))
        ops[k.log] = ec.put(k.log, encode_commit(commit))
        return ranges + list(ops.values())

    def commit(self, commit: Commit) -> int:
        self.drain()  # stage errors below see what the watch has already delivered
        compares = self._compares(commit)
        ops = self._ops(commit)
        resp = self.client.txn(compares, ops, [ec.get(self.keys.log)])
        revision = int(resp.header.revision)
        if not resp.succeeded:
            self.drain(until=_newest_commit(resp), timeout=CATCH_UP_SECONDS)
            raise StaleView("another server wrote first; this server has caught up")
        if revision > self.mirror._revision + 1:  # others committed in between: apply theirs
            self._own = revision                   # first (our own event marks the end)
            try:
                self.drain(until=revision, timeout=CATCH_UP_SECONDS)
            finally:
                self._own = 0
        self._apply_own(commit, revision)
        return revision

    def _apply_own(self, commit: Commit, revision: int) -> None:
        """A commit of ours that etcd numbered ``revision``: stamped, into the mirror."""
        commit.stamp(revision)
        self._mirror(commit, revision)
        self.head = max(self.head, revision)

    def _mirror(self, commit: Commit, revision: int) -> None:
        self.mirror.apply_at(commit, revision)
        for fut in self._waiters.pop(revision, ()):
            if not fut.done():
                fut.set_result(None)
        for r in commit.runs:
            self._run_revs[r.id] = revision
        for sid in commit.session_deletes:
            for rid in [rid for rid, row in self.mirror._runs.items() if row.session_id == sid]:
                self._run_revs.pop(rid, None)

    async def commit_async(self, commit: Commit) -> int:
        """:meth:`commit` without holding the loop while etcd works: the transaction is sent
        and awaited, so one server has many commits in flight (etcd batches their fsyncs).
        The commit is applied — mirror, then ``on_own`` (the store's view and events) — in
        revision order, when the watch has delivered every revision before it; returns then.

        Raises:
            StaleView: a compare failed (the view was behind); the view has caught up.
        """
        self.drain()
        compares = self._compares(commit)
        commit.nonce = uuid.uuid4().hex
        ops = self._ops(commit)
        self._inflight[commit.nonce] = commit
        try:
            resp = await self.client.txn_async(compares, ops, [ec.get(self.keys.log)])
        except BaseException:
            # it may still have been committed: then the watch brings it as any other record
            self._inflight.pop(commit.nonce, None)
            raise
        revision = int(resp.header.revision)
        if not resp.succeeded:
            self._inflight.pop(commit.nonce, None)
            await self.caught_up(_newest_commit(resp))
            raise StaleView("another server wrote first; this server has caught up")
        if (self._inflight.get(commit.nonce) is commit
                and revision == self.mirror._revision + 1):
            del self._inflight[commit.nonce]  # nothing can lie between: apply it now
            self._apply_own(commit, revision)
            self._on_own(commit, revision)
        await self.caught_up(revision)  # else the watch brings it, after what comes before
        return revision

    async def caught_up(self, revision: int) -> None:
        """Wait (on the loop; at most ``CATCH_UP_SECONDS``) until the mirror holds
        ``revision``, the watch delivering what comes before."""
        if not revision or self.mirror._revision >= revision:
            return
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        waiting = self._waiters.setdefault(revision, [])
        waiting.append(fut)
        deadline = time.monotonic() + CATCH_UP_SECONDS
        try:
            while not fut.done():
                self.drain()
                if self.mirror._revision >= revision:
                    break
                if time.monotonic() > deadline:
                    raise ec.EtcdUnavailable(
                        f"etcd's watch did not deliver revision {revision} within "
                        f"{CATCH_UP_SECONDS:g}s")
                try:  # woken by the watch (Store.attach drains on every delivery)
                    await asyncio.wait_for(asyncio.shield(fut), 0.05)
                except TimeoutError:
                    pass
        finally:  # a wait that ended otherwise leaves no future behind
            if fut in waiting:
                waiting.remove(fut)
            if not waiting and self._waiters.get(revision) is waiting:
                del self._waiters[revision]

    async def current_revision_async(self) -> int:
        """:meth:`current_revision` on the loop, no thread."""
        return await self.client.mod_revision_async(self.keys.log)

    # ------------------------------------------------------------------------------------------
    # reads (the mirror's)

    def changes(self, after: int, limit: int = 1000) -> list[HistoryRow]:
        return self.mirror.changes(after, limit)

    def history(self, var_id: str, limit: int = 100, offset: int = 0) -> list[HistoryRow]:
        return self.mirror.history(var_id, limit, offset)

    def history_length(self, var_id: str) -> int:
        return self.mirror.history_length(var_id)

    @property
    def compact_revision(self) -> int:
        return self.mirror.compact_revision

    def revision_before(self, ts: float) -> int:
        return self.mirror.revision_before(ts)

    def compact(self, revision: int) -> int:
        revision = min(revision, self.mirror._revision)
        if revision <= self.mirror.compact_revision:
            return self.mirror.compact_revision
        # etcd ends a watch it has not sent up to the compaction point yet: let ours get there
        # first (our own commits are applied before the watch brings them)
        self.drain(until=revision, timeout=CATCH_UP_SECONDS)
        self.client.compact(revision)
        return self.mirror.compact(revision)

    def read_at(self, session_id: str, revision: int) -> list[HistoryRow]:
        return self.mirror.read_at(session_id, revision)

    def current_revision(self) -> int:
        """The newest commit's revision, read linearizably from etcd: a read barrier waits
        for the view to reach it (every write acknowledged before is then visible)."""
        return self.client.mod_revision(self.keys.log)

    # ------------------------------------------------------------------------------------------
    # optimization locks: a running run's ``l/lock/<run>`` key lives on an etcd lease

    def grant_lock(self, ttl: float) -> int:
        """A new lease of ``ttl`` seconds for a run about to start (its start commit puts the
        lock key on it). When neither the run's driver nor any server keeps it alive, etcd
        deletes the key and every server ends the run as ``abandoned``."""
        return self.client.grant(ttl)

    def refresh_lock(self, lease_id: int) -> None:
        self.client.keep_alive(lease_id)

    def release_lock(self, lease_id: int) -> None:
        self.client.revoke(lease_id)

    def lost_locks(self) -> list[str]:
        """Runs recorded as running whose lock key is gone (their lease expired while no
        server followed the store): the store ends them at start."""
        held = {self.keys.run_of_lock(kv.key) for kv in self.client.scan(
            self.keys.locks, 0)}
        return [r.id for r in self.mirror._runs.values()
                if r.doc.get("state") == "running" and r.doc.get("lease_id") and r.id not in held]

    def close(self) -> None:
        if self._follower is not None:
            self._follower.close()
        self.client.close()


def _newest_commit(resp: Any) -> int:
    """The log key's revision read by a refused transaction's failure branch: the newest
    commit, the winner's included; catching up to it makes the view current again."""
    kvs = resp.responses[0].response_range.kvs
    return int(kvs[0].mod_revision) if kvs else 0
