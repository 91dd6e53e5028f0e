"""A small synchronous client for etcd v3's gRPC API: KV, Lease and a followed watch.

Only what the etcd backend (``server/backends/etcd.py``) needs, here because grpc is confined
to ``_wire/``; over the message subset in ``protos/etcd_rpc.proto`` (etcd's own field numbers
and service names, so any etcd >= 3.4 answers). Synchronous on purpose: the ``Backend``
contract is synchronous (a commit is one short transaction on the server's loop thread), and
the watch runs on a thread of its own (:class:`Follower`).

Endpoints are ``host:port`` strings; several are one gRPC channel that picks the first member
that answers and moves on when it goes away (``ipv4:a,b,c``), so a 3-member cluster survives a
member's death without our help.
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import queue
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import grpc

from .._errors import DspexError, InvalidArgument
from .._proto import etcd_rpc_pb2 as pb
from .._proto import etcd_rpc_pb2_grpc as pb_grpc

log = logging.getLogger("dspex_notebook.server")

#: etcd's default --max-request-bytes is 1.5 MiB; a commit over it is refused by etcd
DEFAULT_TIMEOUT = 10.0


class EtcdUnavailable(DspexError, ConnectionError):
    """etcd did not answer (every endpoint down, or a timeout): nothing was committed."""

    kind = "StoreUnavailable"


class EtcdCompacted(DspexError, LookupError):
    """A watch or read asked for a revision etcd has compacted away."""

    kind = "Compacted"

    def __init__(self, message: str, compact_revision: int) -> None:
        super().__init__(message)
        self.compact_revision = compact_revision


def prefix_end(prefix: bytes) -> bytes:
    """The ``range_end`` that makes a range "every key starting with ``prefix``"."""
    end = bytearray(prefix)
    for i in range(len(end) - 1, -1, -1):
        if end[i] < 0xFF:
            end[i] += 1
            return bytes(end[: i + 1])
    return b"\0"


def channel_target(endpoints: Sequence[str]) -> str:
    """The gRPC target for ``endpoints`` (one name, or IP literals joined as ``ipv4:a,b``)."""
    cleaned = [e.strip() for e in endpoints]
    for e in cleaned:
        host, sep, port = e.rpartition(":")
        if not e or not sep or not host or not port.isdigit():
            raise InvalidArgument(f"etcd endpoint {e!r} is not host:port (e.g. 127.0.0.1:2379)")
    if len(cleaned) == 1:
        return cleaned[0]
    try:
        for e in cleaned:
            ipaddress.IPv4Address(e.rpartition(":")[0])
    except ValueError:
        raise InvalidArgument(
            f"several etcd endpoints must be IPv4 addresses (got {','.join(cleaned)}); "
            "give one DNS name or IP:port literals"
        ) from None
    return "ipv4:" + ",".join(cleaned)


def _unavailable(exc: grpc.RpcError, what: str, where: str = "") -> DspexError:
    code = exc.code() if hasattr(exc, "code") else None
    details = exc.details() if hasattr(exc, "details") else str(exc)
    if code == grpc.StatusCode.OUT_OF_RANGE and "compacted" in (details or ""):
        return EtcdCompacted(f"etcd: {details}", 0)
    if code == grpc.StatusCode.INVALID_ARGUMENT and "too large" in (details or ""):
        return InvalidArgument(f"etcd refused {what}: {details} (etcd --max-request-bytes)")
    return EtcdUnavailable(f"etcd{' at ' + where if where else ''} did not complete {what} "
                           f"({code.name if code else ''}: {details}); nothing was committed")


class EtcdClient:
    """KV and Lease calls over one channel; each raises :class:`EtcdUnavailable` when etcd
    cannot be reached within ``timeout`` seconds."""

    def __init__(self, endpoints: Sequence[str], timeout: float = DEFAULT_TIMEOUT) -> None:
        self.endpoints = list(endpoints)
        self.target = channel_target(self.endpoints)
        self.timeout = timeout
        self.channel = grpc.insecure_channel(self.target, options=[
            ("grpc.max_receive_message_length", 64 * 1024 * 1024),
            ("grpc.lb_policy_name", "pick_first"),
        ])
        self.kv = pb_grpc.KVStub(self.channel)
        self.lease = pb_grpc.LeaseStub(self.channel)
        self.watch = pb_grpc.WatchStub(self.channel)
        self._aio: tuple[Any, Any] | None = None

    def _call(self, fn: Callable[..., Any], request: Any, what: str,
              idempotent: bool = False) -> Any:
        """One call; an idempotent one (a read) is retried while etcd is electing a leader
        or a member is down, within ``timeout``. A write is not: it may have been applied."""
        deadline = time.monotonic() + self.timeout
        delay = 0.05
        while True:
            left = deadline - time.monotonic()
            try:
                return fn(request, timeout=max(left, 0.01), wait_for_ready=True)
            except grpc.RpcError as exc:
                if (not idempotent or exc.code() != grpc.StatusCode.UNAVAILABLE
                        or time.monotonic() + delay > deadline):
                    raise _unavailable(exc, what, ",".join(self.endpoints)) from None
                time.sleep(delay)
                delay = min(delay * 2, 0.5)

    def get(self, key: bytes, revision: int = 0) -> pb.KeyValue | None:
        kvs = self.range(key, revision=revision).kvs
        return kvs[0] if kvs else None

    def range(self, key: bytes, end: bytes = b"", revision: int = 0, limit: int = 0,
              count_only: bool = False) -> pb.RangeResponse:
        return self._call(self.kv.Range, pb.RangeRequest(
            key=key, range_end=end, revision=revision, limit=limit, count_only=count_only),
            "a read", idempotent=True)

    def scan(self, prefix: bytes, revision: int, page: int = 2000) -> Iterator[pb.KeyValue]:
        """Every key under ``prefix`` as of ``revision``, in key order, ``page`` at a time."""
        start, end = prefix, prefix_end(prefix)
        while True:
            resp = self.range(start, end, revision=revision, limit=page)
            yield from resp.kvs
            if not resp.more or not resp.kvs:
                return
            start = resp.kvs[-1].key + b"\0"

    def mod_revision(self, key: bytes) -> int:
        """The revision that last wrote ``key`` (0: absent), by a linearizable read: a write
        acknowledged before this call started is at or below it."""
        kv = self.get(key)
        return int(kv.mod_revision) if kv is not None else 0

    def txn(self, compares: list[pb.Compare], success: list[pb.RequestOp],
            failure: list[pb.RequestOp] | None = None) -> pb.TxnResponse:
        return self._call(self.kv.Txn, pb.TxnRequest(
            compare=compares, success=success, failure=failure or []), "a transaction")

    def compact(self, revision: int) -> None:
        try:
            self.kv.Compact(pb.CompactionRequest(revision=revision), timeout=self.timeout)
        except grpc.RpcError as exc:
            details = exc.details() or "" if hasattr(exc, "details") else ""
            if "compacted" in details:  # another server compacted at or past it first
                return
            raise _unavailable(exc, "a compaction") from None

    def grant(self, ttl: float) -> int:
        resp = self._call(self.lease.LeaseGrant, pb.LeaseGrantRequest(TTL=max(1, round(ttl))),
                          "a lease grant")
        return int(resp.ID)

    def keep_alive(self, lease_id: int) -> int:
        """Refresh a lease once; its remaining TTL (0: the lease is gone)."""
        try:
            responses = self.lease.LeaseKeepAlive(iter([pb.LeaseKeepAliveRequest(ID=lease_id)]),
                                                  timeout=self.timeout)
            for resp in responses:
                return int(resp.TTL)
        except grpc.RpcError as exc:
            raise _unavailable(exc, "a lease keep-alive") from None
        return 0

    def revoke(self, lease_id: int) -> None:
        try:
            self.lease.LeaseRevoke(pb.LeaseRevokeRequest(ID=lease_id), timeout=self.timeout)
        except grpc.RpcError as exc:
            if exc.code() != grpc.StatusCode.NOT_FOUND:
                raise _unavailable(exc, "a lease revoke") from None

    # -- asyncio (on the server's loop): commits that do not hold the loop while etcd works

    def _aio_stub(self) -> Any:
        if self._aio is None:  # created on the loop that uses it (grpc.aio channels are bound)
            channel = grpc.aio.insecure_channel(self.target, options=[
                ("grpc.max_receive_message_length", 64 * 1024 * 1024),
                ("grpc.lb_policy_name", "pick_first"),
            ])
            self._aio = (channel, pb_grpc.KVStub(channel))
        return self._aio[1]

    async def txn_async(self, compares: list[pb.Compare], success: list[pb.RequestOp],
                        failure: list[pb.RequestOp] | None = None) -> pb.TxnResponse:
        try:
            return await self._aio_stub().Txn(
                pb.TxnRequest(compare=compares, success=success, failure=failure or []),
                timeout=self.timeout, wait_for_ready=True)
        except grpc.RpcError as exc:
            raise _unavailable(exc, "a transaction", ",".join(self.endpoints)) from None

    async def mod_revision_async(self, key: bytes) -> int:
        """:meth:`mod_revision` without a thread (retried while etcd elects a leader)."""
        deadline = time.monotonic() + self.timeout
        delay = 0.05
        while True:
            try:
                resp = await self._aio_stub().Range(
                    pb.RangeRequest(key=key), timeout=max(deadline - time.monotonic(), 0.01),
                    wait_for_ready=True)
                return int(resp.kvs[0].mod_revision) if resp.kvs else 0
            except grpc.RpcError as exc:
                if exc.code() != grpc.StatusCode.UNAVAILABLE or time.monotonic() + delay > deadline:
                    raise _unavailable(exc, "a read", ",".join(self.endpoints)) from None
                await asyncio.sleep(delay)
                delay = min(delay * 2, 0.5)

    def close(self) -> None:
        self.channel.close()
        if self._aio is not None:
            channel, self._aio = self._aio[0], None
            try:
                asyncio.get_running_loop().create_task(channel.close())
            except RuntimeError:  # no loop running any more: the channel goes with it
                pass


# ----------------------------------------------------------------------------------------------
# transaction pieces


def put(key: bytes, value: bytes, lease: int = 0) -> pb.RequestOp:
    return pb.RequestOp(request_put=pb.PutRequest(key=key, value=value, lease=lease))


def delete(key: bytes, end: bytes = b"") -> pb.RequestOp:
    return pb.RequestOp(request_delete_range=pb.DeleteRangeRequest(key=key, range_end=end))


def get(key: bytes) -> pb.RequestOp:
    return pb.RequestOp(request_range=pb.RangeRequest(key=key))


def mod_is(key: bytes, revision: int) -> pb.Compare:
    """``key`` was last written at ``revision`` (0: it does not exist)."""
    return pb.Compare(key=key, target=pb.Compare.MOD, result=pb.Compare.EQUAL,
                      mod_revision=revision)


def absent(key: bytes) -> pb.Compare:
    return pb.Compare(key=key, target=pb.Compare.CREATE, result=pb.Compare.EQUAL,
                      create_revision=0)


# ----------------------------------------------------------------------------------------------
# the followed watch


class Follower:
    """One etcd watch on a key range from a revision, on a daemon thread, feeding a queue.

    Items are ``(revision, events)`` per etcd revision (etcd never splits a revision across
    responses unless asked to fragment, and we do not), in revision order, then
    ``("compacted", revision)`` or ``("failed", message)`` when the watch cannot go on.
    No progress notifications: etcd before 3.4.25/3.5.8 may answer a progress request ahead of
    the history it is still replaying (etcd issue 15220), so a reader that needs "everything up
    to R" waits for an event at R that it knows exists (its own commit, or the log key's
    ``mod_revision`` read from etcd).
    The watch is re-created from the next revision when the stream breaks (etcd restarted, a
    member died), so nothing is lost and nothing repeats; it keeps trying while etcd is down
    (``give_up_after`` seconds, then ``("failed", ...)``; None: forever). ``on_item`` is called (from the
    thread) after each put, e.g. to wake the server's loop.
    """

    def __init__(self, client: EtcdClient, key: bytes, end: bytes, start: int,
                 on_item: Callable[[], None] | None = None,
                 give_up_after: float | None = None) -> None:
        self.client = client
        self.key, self.end = key, end
        self.next = start  # the first revision not yet delivered
        self.items: queue.SimpleQueue[tuple[Any, Any]] = queue.SimpleQueue()
        self.on_item = on_item
        self.give_up_after = give_up_after
        self._stop = threading.Event()
        self._outbox: queue.SimpleQueue[pb.WatchRequest | None] = queue.SimpleQueue()
        self._call: Any = None
        self.thread = threading.Thread(target=self._run, name="dspex-etcd-watch", daemon=True)
        self.thread.start()

    def _deliver(self, item: tuple[Any, Any]) -> None:
        self.items.put(item)
        if self.on_item is not None:
            self.on_item()

    def _requests(self) -> Iterator[pb.WatchRequest]:
        yield pb.WatchRequest(create_request=pb.WatchCreateRequest(
            key=self.key, range_end=self.end, start_revision=self.next))
        while True:  # hold the request stream open until close()
            req = self._outbox.get()
            if req is None:
                return
            yield req

    def _run(self) -> None:
        down_since: float | None = None
        delay = 0.05
        while not self._stop.is_set():
            try:
                self._call = self.client.watch.Watch(self._requests(), wait_for_ready=True)
                for resp in self._call:
                    down_since, delay = None, 0.05
                    if resp.compact_revision:
                        self._deliver(("compacted", int(resp.compact_revision)))
                        return
                    if resp.canceled:
                        self._deliver(("failed", f"etcd canceled the watch: {resp.cancel_reason}"))
                        return
                    self._take(resp)
            except ValueError:  # the channel was closed under us: the backend is closing
                return
            except grpc.RpcError as exc:
                if self._stop.is_set():
                    return
                now = time.monotonic()
                down_since = down_since or now
                if self.give_up_after is not None and now - down_since > self.give_up_after:
                    self._deliver(("failed", f"etcd watch down for {self.give_up_after:g}s: "
                                             f"{exc.code().name} {exc.details()}"))
                    return
                log.warning("etcd watch broke (%s); resuming from revision %d",
                            exc.code().name, self.next)
                self._outbox.put(None)  # end the old request iterator
                self._outbox = queue.SimpleQueue()
                time.sleep(delay)
                delay = min(delay * 2, 1.0)

    def _take(self, resp: pb.WatchResponse) -> None:
        by_rev: dict[int, list[pb.Event]] = {}
        for ev in resp.events:
            by_rev.setdefault(int(ev.kv.mod_revision), []).append(ev)
        for rev in sorted(by_rev):
            if rev >= self.next:
                self.next = rev + 1
                self._deliver((rev, by_rev[rev]))
    def close(self) -> None:
        self._stop.set()
        self._outbox.put(None)
        if self._call is not None:
            self._call.cancel()
        self.thread.join(timeout=2)
