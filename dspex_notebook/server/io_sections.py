"""The optional sections of an export document: ``dependencies`` (the session's graph, by
name) and ``rules`` (each variable's access rules), registered with :mod:`.io`.

Export writes the edges whose two ends are both exported, and the rules of exported variables
that have any. Import stages them into the import's one commit: edges through
:func:`.dependencies.stage_edges` (cycles and unknown names refused as for ``add_dependency``;
an edge of the document replaces the same edge of the session), rules through
:func:`.access.stage_rules` (an existing variable, with a compare on its rules document) or
:func:`.access.stage_rules_for_put` (one the same import creates). A section that breaks a rule
fails the whole import with the reason, and nothing is written.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from .._errors import InvalidArgument
from . import access, dependencies
from .io import SECTION_EXPORTERS, SECTION_IMPORTERS

if TYPE_CHECKING:
    from .backends.base import Commit, StoredVariable
    from .store import Store


def _objects(section: Any, what: str) -> list[dict[str, Any]]:
    """``section`` when it is a list of JSON objects, else the error saying what it must be."""
    if not isinstance(section, list) or not all(isinstance(e, dict) for e in section):
        raise InvalidArgument(f"the document's {what}")
    return section


def _export_dependencies(store: Store, session_id: str,
                         variables: list[StoredVariable]) -> list[dict[str, Any]]:
    names = {v.name for v in variables}
    return [e for e in dependencies.read_edges(store.view, session_id)
            if e["from"] in names and e["to"] in names]


def _import_dependencies(store: Store, principal: str, session_id: str, section: Any,
                         commit: Commit) -> str:
    edges = _objects(section, "'dependencies' must be a list of objects {from, to, type, metadata}")
    dependencies.stage_edges(store.view, store.limits, commit, session_id, edges)
    return f"{len(section)} dependencies applied"


def _export_rules(store: Store, session_id: str,
                  variables: list[StoredVariable]) -> list[dict[str, Any]]:
    out = []
    for var in variables:
        rules = access.rules_of(store.view, var.id)
        if rules:
            out.append({"name": var.name, "rules": rules})
    return out


def _import_rules(store: Store, principal: str, session_id: str, section: Any,
                  commit: Commit) -> str:
    items = _objects(section, "'rules' must be a list of objects {name, rules}")
    sess = store.view.sessions[session_id]
    created = {p.var.name: p for p in commit.puts if not p.var.id}
    for item in items:
        name = item.get("name")
        if not isinstance(name, str):
            raise InvalidArgument("an entry of the document's 'rules' has no variable name")
        rules = access.checked_rules(item.get("rules"), name)
        if name in created:
            access.stage_rules_for_put(commit, created[name], rules)
        elif name in sess.by_name:
            access.stage_rules(commit, store.view, sess.by_name[name], session_id, rules)
        else:
            raise InvalidArgument(f"rules for {name!r}: no such variable in the session or the "
                                  "document")
    return f"rules of {len(section)} variables applied"


SECTION_EXPORTERS.update(dependencies=_export_dependencies, rules=_export_rules)
SECTION_IMPORTERS.update(dependencies=_import_dependencies, rules=_import_rules)
