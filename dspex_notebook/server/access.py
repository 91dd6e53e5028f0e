"""Access control: who may use a session, and which session may reach which variable.

Two layers, both checked by the server on every call (no grpc here):

1. **Principals and sessions.** A token authenticates a *principal* (``server/principals.py``
   reads the principals file of ``dspex-notebook serve --principals FILE``). Each principal
   has session-name patterns (globs): it may create, and use, exactly the sessions whose
   names match one of them (a session created by another principal included: that is
   "joining"). A session is owned by the principal that created it (``SessionRow.principal``).
   A principal without patterns (the embedded server's single local user, a bare
   ``--token-file``) may create any session and use only its own.
2. **Variable rules** (the spec's ``set_variable_permissions``). Variable ids are global; a
   call from session S reaches a variable V of session O by V's id:

   * S == O (the owning session): every permission, whatever the rules say;
   * otherwise the permission is granted when at least one rule of V matches:
     ``session_pattern`` is ``'any'`` or a glob (``fnmatch`` semantics, whole name,
     case-sensitive, matched in linear time) that matches S's **name**, ``permissions``
     holds the permission, and every entry of ``conditions`` holds. No rules: nothing.

   ``session_pattern`` is matched against the calling session's name only after layer 1
   admitted the caller to that session, so a name is a right, not a label: a principal whose
   patterns do not allow ``admin_*`` can neither create nor join ``admin_x`` and gains nothing
   from ``admin_*`` rules.

Conditions (``Dict[str, str]``; the spec names no keys, these are the ones defined here; any
other key is refused when the rules are set):

* ``principal``: a glob the caller's principal name must match (so a rule can require both
  a session name AND who is calling);
* ``not_before`` / ``not_after``: ISO-8601 times with a UTC offset (``2026-12-01T09:00:00Z``);
  the rule holds only inside that window, judged by the server's clock at each call (and at
  each event a cross-session watch delivers).

Permissions: ``read`` (get, batch get, history, statistics), ``write`` (set, batch set,
rollback), ``observe`` (watch), ``optimize`` (start, drive, stop, query runs). Deleting a
variable, registering over it and changing its rules stay with the owning session.

Atomicity: a call's check and its effect happen in one commit. A write from another session
carries a :class:`DocCompare` on the rules document it was allowed by, checked by the backend
in the write's transaction, so a revoke committed in between fails the write instead of both
winning. A revoke also re-checks every live cross-session watch of the variable and ends
those no longer allowed (PERMISSION_DENIED).

Rules are stored as a document ``DocRow("rules", <variable id>, <owning session>,
{"rules": [...]})``: it goes with the variable (deleted in the same commit) and with its
session.

API for other server modules (export/import):

* :func:`rules_of(view, var_id) <rules_of>` → the variable's rules (normalized, JSON-able;
  ``[]`` when none);
* :func:`checked_rules(raw, var_name) <checked_rules>` → validated, normalized rules (raises
  :class:`InvalidArgument` naming the variable, the rule and the field);
* :func:`stage_rules(commit, view, var_id, session_id, rules) <stage_rules>` → add to a commit
  being built the rules document of an EXISTING variable (``[]``: its deletion) and the
  :class:`DocCompare` on its current revision;
* :func:`stage_rules_for_put(commit, put, rules) <stage_rules_for_put>` → the same for a
  variable the same commit registers (``put.var.id`` is still empty: the document's key is
  the id the backend assigns, read after :meth:`Commit.stamp`), so an import writes variables
  and their rules as one atomic commit.

Both take checked rules; the store's commit pipeline does the rest (persisting, applying to
``view.docs``, re-checking live cross-session watches).
"""

from __future__ import annotations

import datetime as _dt
from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING, Any

from .._errors import AccessDenied, DspexError, InvalidArgument, ResourceLimitExceeded
from .._patterns import MAX_PATTERN_LENGTH, glob_matcher
from .backends.base import Commit, DocCompare, DocRow, Put, StoredVariable

if TYPE_CHECKING:
    from .events import Subscription
    from .store import Store
    from .view import SessionState, View

KIND = "rules"
PERMISSIONS = ("read", "write", "observe", "optimize")
CONDITIONS = ("principal", "not_before", "not_after")
ANY = "any"
MAX_RULES = 64
MAX_CONDITION_VALUE = 256


def _short(value: Any, limit: int = 60) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


# ----------------------------------------------------------------------------------------------
# principals and sessions


class Rights:
    """Each principal's session-name patterns (None: any new name, own sessions only)."""

    def __init__(self, patterns: Mapping[str, Iterable[str] | None] | None = None) -> None:
        self._patterns = {p: (None if pats is None else tuple(pats))
                          for p, pats in (patterns or {}).items()}

    def patterns(self, principal: str) -> tuple[str, ...] | None:
        return self._patterns.get(principal)

    def _matches(self, pats: tuple[str, ...], session_id: str) -> bool:
        return any(glob_matcher(p)(session_id) for p in pats)

    def check_create(self, principal: str, session_id: str) -> None:
        pats = self.patterns(principal)
        if pats is not None and not self._matches(pats, session_id):
            raise AccessDenied(
                f"principal {principal!r} may not create session {session_id!r}: its session "
                f"patterns are {list(pats)} (principals file)")

    def check_use(self, principal: str, session_id: str, owner: str) -> None:
        pats = self.patterns(principal)
        if pats is None:
            if owner != principal:
                raise AccessDenied(f"session {session_id!r} belongs to another principal")
        elif not self._matches(pats, session_id):
            raise AccessDenied(
                f"principal {principal!r} may not use session {session_id!r}: its session "
                f"patterns are {list(pats)} (principals file)")

    def may_use(self, principal: str, session_id: str, owner: str) -> bool:
        try:
            self.check_use(principal, session_id, owner)
        except AccessDenied:
            return False
        return True


# ----------------------------------------------------------------------------------------------
# rules


def _when(text: str, where: str) -> float:
    try:
        when = _dt.datetime.fromisoformat(text)
    except ValueError:
        raise InvalidArgument(f"{where} is not an ISO-8601 time: {_short(text)}") from None
    if when.tzinfo is None:
        raise InvalidArgument(f"{where} needs a UTC offset (e.g. '2026-12-01T09:00:00Z'), got "
                              f"{_short(text)}")
    return when.timestamp()


def checked_rules(raw: Any, var_name: str) -> list[dict[str, Any]]:
    """Validate the spec's rule list; return it normalized (``permissions`` sorted in the
    spec's order, ``conditions`` always present).

    Raises:
        InvalidArgument: names the variable, the rule (by index) and the offending field.
        ResourceLimitExceeded: more than :data:`MAX_RULES` rules.
    """
    if isinstance(raw, Mapping):
        raw = [raw]  # one rule given as a dict
    if not isinstance(raw, list):
        raise InvalidArgument(f"rules of {var_name!r} must be a list of rules, got "
                              f"{type(raw).__name__}")
    if len(raw) > MAX_RULES:
        raise ResourceLimitExceeded(f"{len(raw)} rules for {var_name!r} (limit {MAX_RULES})")
    out = []
    for i, rule in enumerate(raw):
        where = f"rule {i} of {var_name!r}"
        if not isinstance(rule, Mapping):
            raise InvalidArgument(f"{where} must be an object, got {type(rule).__name__}")
        unknown = sorted(set(map(str, rule)) - {"session_pattern", "permissions", "conditions"})
        if unknown:
            raise InvalidArgument(f"{where}: unknown field {unknown[0]!r} (fields: "
                                  "session_pattern, permissions, conditions)")
        pattern = rule.get("session_pattern")
        if not isinstance(pattern, str) or not pattern:
            raise InvalidArgument(f"{where}: session_pattern must be a glob or 'any', got "
                                  f"{_short(pattern)}")
        if len(pattern) > MAX_PATTERN_LENGTH:
            raise InvalidArgument(f"{where}: session_pattern is {len(pattern)} characters "
                                  f"(limit {MAX_PATTERN_LENGTH})")
        glob_matcher(pattern)  # refuses what cannot be compiled, now rather than at a call
        perms = rule.get("permissions")
        if isinstance(perms, str):
            perms = [perms]
        if not isinstance(perms, list) or not perms:
            raise InvalidArgument(f"{where}: permissions must be a non-empty list of "
                                  f"{', '.join(PERMISSIONS)}, got {_short(perms)}")
        for p in perms:
            if p not in PERMISSIONS:
                raise InvalidArgument(f"{where}: unknown permission {_short(p)} (known: "
                                      f"{', '.join(PERMISSIONS)})")
        conditions = rule.get("conditions") or {}
        if not isinstance(conditions, Mapping):
            raise InvalidArgument(f"{where}: conditions must be an object, got "
                                  f"{type(conditions).__name__}")
        for key, value in conditions.items():
            if key not in CONDITIONS:
                raise InvalidArgument(f"{where}: unknown condition {_short(key)} (known: "
                                      f"{', '.join(CONDITIONS)})")
            if not isinstance(value, str) or len(value) > MAX_CONDITION_VALUE:
                raise InvalidArgument(f"{where}: condition {key!r} must be a string of at most "
                                      f"{MAX_CONDITION_VALUE} characters, got {_short(value)}")
            if key == "principal":
                glob_matcher(value)
            else:
                _when(value, f"{where}: condition {key!r}")
        out.append({"session_pattern": pattern,
                    "permissions": [p for p in PERMISSIONS if p in perms],
                    "conditions": {k: conditions[k] for k in sorted(conditions)}})
    return out


def _holds(rule: Mapping[str, Any], session_id: str, principal: str, permission: str,
           now: float) -> bool:
    if permission not in rule["permissions"]:
        return False
    pattern = rule["session_pattern"]
    if pattern != ANY and not glob_matcher(pattern)(session_id):
        return False
    cond = rule["conditions"]
    if "principal" in cond and not glob_matcher(cond["principal"])(principal):
        return False
    if "not_before" in cond and now < _when(cond["not_before"], "not_before"):
        return False
    return not ("not_after" in cond and now > _when(cond["not_after"], "not_after"))


def rules_of(view: View, var_id: str) -> list[dict[str, Any]]:
    """The variable's rules (``[]`` when it has none)."""
    doc = view.docs.get((KIND, var_id))
    return list(doc.doc.get("rules", [])) if doc is not None and doc.doc else []


def rules_doc(var_id: str, session_id: str, rules: list[dict[str, Any]]) -> DocRow:
    """The document row holding ``rules`` (``[]``: the row that deletes the document)."""
    return DocRow(KIND, var_id, session_id, {"rules": rules} if rules else None)


def stage_rules(commit: Commit, view: View, var_id: str, session_id: str,
                rules: list[dict[str, Any]]) -> None:
    """Add the rules document (already :func:`checked_rules`) and the compare on its current
    revision to ``commit``: a concurrent rules change makes the commit fail, not both win."""
    current = view.docs.get((KIND, var_id))
    commit.doc_compares.append(DocCompare(KIND, var_id, current.mod_revision if current else 0))
    commit.docs.append(rules_doc(var_id, session_id, rules))


class _PendingRules(DocRow):
    """The rules document of a variable registered in the same commit: its key is the
    variable's id, which the backend assigns when it stamps the commit."""

    __slots__ = ("_put",)

    def __init__(self, put: Put, rules: list[dict[str, Any]]) -> None:
        self._put = put
        DocRow.__init__(self, KIND, "", put.var.session_id, {"rules": rules})

    @property
    def key(self) -> str:
        return self._put.var.id

    @key.setter
    def key(self, value: str) -> None:  # DocRow's __init__ sets it; the put's id wins
        pass


def stage_rules_for_put(commit: Commit, put: Put, rules: list[dict[str, Any]]) -> None:
    """Add the rules (already :func:`checked_rules`; ``[]``: none) of the variable ``put``
    registers in ``commit`` (no compare: a document of a new id cannot exist yet)."""
    if rules:
        commit.docs.append(_PendingRules(put, rules))


def allowed(view: View, var: StoredVariable, session_id: str, principal: str,
            permission: str, now: float) -> bool:
    """Whether session ``session_id`` (already admitted for ``principal``) has ``permission``
    on ``var``."""
    if var.session_id == session_id:
        return True
    return any(_holds(r, session_id, principal, permission, now) for r in rules_of(view, var.id))


def guard(view: View, var: StoredVariable, session_id: str, principal: str,
          permission: str, now: float) -> list[DocCompare]:
    """Check ``permission``; return the compares a write must carry (none for the owner).

    Raises:
        AccessDenied: names the variable id, the session and the permission.
    """
    if permission not in PERMISSIONS:
        raise InvalidArgument(f"unknown permission {_short(permission)} (known: "
                              f"{', '.join(PERMISSIONS)})")
    if var.session_id == session_id:
        return []
    if not allowed(view, var, session_id, principal, permission, now):
        raise AccessDenied(
            f"session {session_id!r} has no {permission!r} permission on variable {var.id!r} "
            "(it belongs to another session and no rule of it allows this)")
    doc = view.docs.get((KIND, var.id))
    return [DocCompare(KIND, var.id, doc.mod_revision if doc else 0)]


def foreign(view: View, sess: SessionState, ident: str) -> StoredVariable | None:
    """The variable of ANOTHER session that ``ident`` names by id, or None."""
    var = view.vars.get(ident)
    if var is None or var.session_id == sess.row.session_id or ident in sess.by_name:
        return None
    return var


def check_owner(var: StoredVariable, session_id: str, what: str) -> None:
    if var.session_id != session_id:
        raise AccessDenied(f"only the owning session may {what} variable {var.id!r}; "
                           f"session {session_id!r} does not own it")


# ----------------------------------------------------------------------------------------------
# live watches of another session's variables


class WatchGuards:
    """Cross-session watches (``observe``): each subscription's ``guard`` re-checks the
    permission at every delivery (time windows) and :meth:`recheck` after every commit that
    changes rules or deletes a watched variable, ending those no longer allowed."""

    def __init__(self, store: Store) -> None:
        self._store = store
        #: variable id -> live watches of it from other sessions
        self.watched: dict[str, set[Subscription]] = {}

    def subscribe(self, principal: str, session_id: str, idents: list[str],
                  others: list[StoredVariable], progress_interval: float) -> Subscription:
        owners = {v.session_id for v in others}
        if len(others) != len(idents) or len(owners) != 1:
            raise InvalidArgument(
                "a watch of another session's variables names only variables of that one "
                "session, by id: open one watch per session")
        store = self._store
        now = store._clock()
        for var in others:
            guard(store.view, var, session_id, principal, "observe", now)
        ids = frozenset(v.id for v in others)
        sub = store.hub.subscribe(owners.pop(), {v.name for v in others}, progress_interval)
        sub.guard = lambda: self.denied(ids, session_id, principal)
        for vid in ids:
            self.watched.setdefault(vid, set()).add(sub)
        return sub

    def denied(self, ids: frozenset[str], session_id: str, principal: str) -> str | None:
        """Why a cross-session watch must end now (None: it may go on)."""
        view = self._store.view
        if session_id not in view.sessions:
            return f"session {session_id!r} was closed"
        now = self._store._clock()
        for vid in sorted(ids):
            var = view.vars.get(vid)
            if var is None:
                return f"variable {vid!r} was deleted (its rules went with it)"
            if not allowed(view, var, session_id, principal, "observe", now):
                return (f"session {session_id!r} no longer has 'observe' permission on variable "
                        f"{vid!r} (its rules changed)")
        return None

    def recheck(self, commit: Commit) -> None:
        touched = {d.key for d in commit.docs if d.kind == KIND}
        touched.update(d.var.id for d in commit.deletes)
        for vid in touched & self.watched.keys():
            for sub in list(self.watched.get(vid, ())):
                try:
                    reason = sub.guard() if sub.guard is not None else None
                except DspexError as exc:  # e.g. this request's work budget: end it, safely
                    reason = f"access could not be re-checked ({exc}); watch again"
                if reason is not None:
                    sub.denied = reason
                    self._store.unsubscribe(sub)

    def forget(self, sub: Subscription) -> None:
        for vid in [k for k, subs in self.watched.items() if sub in subs]:
            subs = self.watched[vid]
            subs.discard(sub)
            if not subs:
                del self.watched[vid]


# ----------------------------------------------------------------------------------------------
# the operations (the servicer's AccessHandlers call these)


def _own_or_foreign(store: Store, principal: str, session_id: str,
                    ident: str) -> tuple[SessionState, StoredVariable]:
    from .writes import resolve

    sess = store._session(principal, session_id)
    var = foreign(store.view, sess, ident)
    return sess, var if var is not None else resolve(store.view, sess, ident)


def set_permissions(store: Store, principal: str, session_id: str, ident: str,
                    raw_rules: Any) -> tuple[StoredVariable, list[dict[str, Any]], int]:
    """Replace the variable's rules (owning session only); ``[]`` removes them. One commit,
    with a compare on the variable (a concurrent delete wins or this does) and on the rules
    document (a concurrent rules change wins or this does)."""
    from .backends.base import Compare

    _, var = _own_or_foreign(store, principal, session_id, ident)
    check_owner(var, session_id, "change the rules of")
    rules = checked_rules(raw_rules, var.name)
    commit = Commit(compares=[Compare(var.session_id, var.name, var.id, var.version)],
                    ts=store._clock())
    stage_rules(commit, store.view, var.id, var.session_id, rules)
    revision = store._commit(commit, principal)
    return var, rules, revision


def get_permissions(store: Store, principal: str, session_id: str,
                    ident: str) -> tuple[StoredVariable, list[dict[str, Any]]]:
    """The variable's rules (owning session only: rules name other sessions)."""
    _, var = _own_or_foreign(store, principal, session_id, ident)
    check_owner(var, session_id, "read the rules of")
    return var, rules_of(store.view, var.id)


def check_access(store: Store, principal: str, session_id: str, ident: str, permission: str,
                 as_session: str = "") -> tuple[bool, str]:
    """``(allowed, why)`` for the calling session, or (owning session only) for the session
    named ``as_session`` (its owner's principal for ``principal`` conditions; a session that
    does not exist yet meets no ``principal`` condition)."""
    if permission not in PERMISSIONS:
        raise InvalidArgument(f"unknown permission {_short(permission)} (known: "
                              f"{', '.join(PERMISSIONS)})")
    _, var = _own_or_foreign(store, principal, session_id, ident)
    who, caller = session_id, principal
    if as_session and as_session != session_id:
        check_owner(var, session_id, "judge other sessions' access to")
        row = store.view.sessions.get(as_session)
        who, caller = as_session, (row.row.principal if row is not None else "")
    if var.session_id == who:
        return True, f"session {who!r} owns variable {var.id!r}"
    now = store._clock()
    for i, rule in enumerate(rules_of(store.view, var.id)):
        if _holds(rule, who, caller, permission, now):
            return True, f"rule {i} ({rule['session_pattern']!r}) allows {permission!r}"
    return False, f"no rule of variable {var.id!r} gives session {who!r} {permission!r}"
