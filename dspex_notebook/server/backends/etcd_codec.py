"""The etcd backend's key layout and value encodings (JSON; never pickle).

Keys, under a prefix (default ``/dspex/``), each path component percent-encoded so that no
session id or name can reach into another's range::

    meta/store_id                   the store's id (written once)
    l/log                           the commit record of the newest commit: etcd's history of
                                    this key IS the change log (one revision per commit)
    l/lock/<run>                    a running optimization's lock, attached to a lease
    s/<session>                     a session row
    v/<session>/<name>              a variable's current state
    r/<session>/<run>               an optimization run record
    t/<session>/<run>/<iteration>   a trial record (iteration zero-padded: key order = order)
    d/<kind>/<key>                  a document (dependency graph, access rules, ...)

A commit record holds the :class:`Commit` as staged (before :meth:`Commit.stamp`): every server
decodes it, stamps it with the etcd revision it came at and applies it exactly as the writing
server did, so all views and events agree. Values that only the revision determines (a new
variable's id and ``create_revision``, every ``mod_revision``) are not stored: they are read
from etcd's own key metadata or stamped from the record's revision.
"""

from __future__ import annotations

import base64
import json
from typing import Any
from urllib.parse import quote, unquote

from .base import Commit, Delete, DocRow, Put, RunRow, SessionRow, StoredVariable, TrialRow


class Keys:
    """Key construction for one prefix."""

    def __init__(self, prefix: str) -> None:
        if not prefix.startswith("/") or not prefix.endswith("/"):
            raise ValueError(f"etcd prefix must start and end with '/', got {prefix!r}")
        self.prefix = prefix.encode()
        p = self.prefix
        self.store_id = p + b"meta/store_id"
        self.followed = p + b"l/"  # what every server watches: the log and the locks
        self.log = p + b"l/log"
        self.locks = p + b"l/lock/"
        self.sessions = p + b"s/"
        self.variables = p + b"v/"
        self.runs = p + b"r/"
        self.trials = p + b"t/"
        self.docs = p + b"d/"

    @staticmethod
    def _q(part: str) -> bytes:
        return quote(part, safe="").encode()

    def session(self, sid: str) -> bytes:
        return self.sessions + self._q(sid)

    def variable(self, sid: str, name: str) -> bytes:
        return self.variables + self._q(sid) + b"/" + self._q(name)

    def session_variables(self, sid: str) -> bytes:
        return self.variables + self._q(sid) + b"/"

    def run(self, sid: str, run_id: str) -> bytes:
        return self.runs + self._q(sid) + b"/" + self._q(run_id)

    def session_runs(self, sid: str) -> bytes:
        return self.runs + self._q(sid) + b"/"

    def trial(self, sid: str, run_id: str, iteration: int) -> bytes:
        return self.trials + self._q(sid) + b"/" + self._q(run_id) + b"/" + b"%010d" % iteration

    def session_trials(self, sid: str) -> bytes:
        return self.trials + self._q(sid) + b"/"

    def doc(self, kind: str, key: str) -> bytes:
        return self.docs + self._q(kind) + b"/" + self._q(key)

    def lock(self, run_id: str) -> bytes:
        return self.locks + self._q(run_id)

    def run_of_lock(self, key: bytes) -> str:
        return unquote(key[len(self.locks):].decode())


def _dumps(obj: Any) -> bytes:
    return json.dumps(obj, separators=(",", ":")).encode()


# ----------------------------------------------------------------------------------------------
# variables


def var_doc(v: StoredVariable) -> dict[str, Any]:
    """A variable's persisted fields (not ``mod_revision``: etcd keeps it; ``create_revision``
    and ``id`` are empty for a variable this very commit creates)."""
    return {
        "id": v.id, "session": v.session_id, "name": v.name, "type": v.type,
        "type_url": v.type_url, "data": v.data.decode("utf-8", "surrogateescape"),
        "binary": base64.b64encode(v.binary).decode() if v.binary else "",
        "constraints": v.constraints_json, "metadata": v.metadata, "source": v.source,
        "version": v.version, "create_revision": v.create_revision, "updated_at": v.updated_at,
    }


def var_from(d: dict[str, Any], mod_revision: int = 0) -> StoredVariable:
    """A variable from :func:`var_doc` (``value``/``constraints`` still to decode)."""
    return StoredVariable(
        d["id"], d["session"], d["name"], d["type"], d["type_url"],
        d["data"].encode("utf-8", "surrogateescape"),
        base64.b64decode(d["binary"]) if d["binary"] else b"", d["constraints"],
        dict(d["metadata"]), d["source"], int(d["version"]), mod_revision,
        int(d["create_revision"]), float(d["updated_at"]),
    )


def encode_variable(v: StoredVariable) -> bytes:
    return _dumps(var_doc(v))


def decode_variable(value: bytes, mod_revision: int) -> StoredVariable:
    """The state key's variable; one registered by the commit that wrote it gets its id and
    ``create_revision`` from that revision (as :meth:`Commit.stamp` gave them)."""
    var = var_from(json.loads(value), mod_revision)
    if not var.id:
        from ..._names import make_id

        var.id = make_id(var.name, mod_revision)
        var.create_revision = mod_revision
    return var


# ----------------------------------------------------------------------------------------------
# rows and documents


def session_doc(s: SessionRow) -> dict[str, Any]:
    return {"session": s.session_id, "principal": s.principal, "metadata": s.metadata,
            "created_at": s.created_at, "last_access": s.last_access}


def session_from(d: dict[str, Any]) -> SessionRow:
    return SessionRow(d["session"], d["principal"], dict(d["metadata"]), float(d["created_at"]),
                      float(d["last_access"]))


def run_doc(r: RunRow) -> dict[str, Any]:
    return {"id": r.id, "session": r.session_id, "var": r.var_id, "doc": r.doc}


def run_from(d: dict[str, Any]) -> RunRow:
    return RunRow(d["id"], d["session"], d["var"], d["doc"])


def trial_doc(t: TrialRow) -> dict[str, Any]:
    return {"run": t.run_id, "iteration": t.iteration, "doc": t.doc}


def trial_from(d: dict[str, Any]) -> TrialRow:
    return TrialRow(d["run"], int(d["iteration"]), d["doc"])


def doc_doc(d: DocRow) -> dict[str, Any]:
    return {"kind": d.kind, "key": d.key, "session": d.session_id, "doc": d.doc}


def doc_from(d: dict[str, Any], mod_revision: int = 0) -> DocRow:
    return DocRow(d["kind"], d["key"], d["session"], d["doc"], mod_revision)


# ----------------------------------------------------------------------------------------------
# commit records


_NONCE_HEAD = b'{"nonce":"'


def record_nonce(value: bytes) -> str:
    """A commit record's nonce without decoding the record (it is the first key)."""
    if not value.startswith(_NONCE_HEAD):
        return ""
    end = value.find(b'"', len(_NONCE_HEAD))
    return value[len(_NONCE_HEAD):end].decode() if end > 0 else ""


def encode_commit(c: Commit) -> bytes:
    """The commit record (before stamping; compares are etcd's business, not recorded)."""
    return _dumps({
        "nonce": c.nonce, "ts": c.ts, "principal": c.principal,
        "puts": [{"var": var_doc(p.var), "op": p.op, "by": p.changed_by, "md": p.metadata,
                  "ts": p.ts} for p in c.puts],
        "deletes": [{"var": var_doc(d.var), "by": d.changed_by, "md": d.metadata,
                     "mod": d.var.mod_revision} for d in c.deletes],
        "sessions": [session_doc(s) for s in c.session_upserts],
        "session_deletes": list(c.session_deletes),
        "runs": [run_doc(r) for r in c.runs],
        "trials": [trial_doc(t) for t in c.trials],
        "docs": [doc_doc(d) for d in c.docs],
    })


def decode_commit(value: bytes) -> Commit:
    """A commit record back as the :class:`Commit` its server committed (not yet stamped)."""
    d = json.loads(value)
    return Commit(
        puts=[Put(var_from(p["var"]), p["op"], p["by"], dict(p["md"]), p["ts"])
              for p in d["puts"]],
        deletes=[Delete(var_from(x["var"], int(x["mod"])), x["by"], dict(x["md"]))
                 for x in d["deletes"]],
        session_upserts=[session_from(s) for s in d["sessions"]],
        session_deletes=list(d["session_deletes"]),
        runs=[run_from(r) for r in d["runs"]],
        trials=[trial_from(t) for t in d["trials"]],
        docs=[doc_from(x) for x in d["docs"]],
        ts=float(d["ts"]), principal=d["principal"], nonce=d.get("nonce", ""),
    )


def encode(obj: dict[str, Any]) -> bytes:
    return _dumps(obj)
