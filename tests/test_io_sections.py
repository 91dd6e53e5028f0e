"""Export/import carry the dependency graph and the access rules (the document's optional
``dependencies`` and ``rules`` sections), in one atomic import."""

from __future__ import annotations

import json

import pytest
from backends import KINDS, server_of

import dspex_notebook as dn
from dspex_notebook.testing import session_for

RULES = [{"session_pattern": "reader_*", "permissions": ["read", "observe"]}]


@pytest.mark.parametrize("backend", KINDS)
async def test_dependencies_and_rules_round_trip(backend, tmp_path, request):
    with server_of(backend, request, tmp_path) as srv:
        async with session_for(srv, "src") as src, session_for(srv, "dst") as dst:
            for name in ("a", "b", "c"):
                await src.register_variable(name, "float", 1.0)
            await src.add_dependency("b", "a")
            await src.add_dependency("c", "b", "constraint", {"w": 2})
            await src.set_variable_permissions("a", RULES)
            data = await src.export_variables(format="json")
            doc = json.loads(data)
            assert doc["dependencies"] == [
                {"from": "b", "to": "a", "type": "data", "metadata": {}},
                {"from": "c", "to": "b", "type": "constraint", "metadata": {"w": 2}}]
            assert doc["rules"][0]["name"] == "a"
            # a filtered export keeps only edges between exported variables
            part = json.loads(await src.export_variables(format="json", filter_pattern="^[ab]$"))
            assert [(e["from"], e["to"]) for e in part["dependencies"]] == [("b", "a")]

            summary = await dst.import_variables(data, format="json")
            assert summary["errors"] == 0 and summary["imported"] == 3
            assert [d["name"] for d in await dst.get_dependencies("c", True)] == ["b", "a"]
            [edge] = await dst.get_dependencies("c")
            assert edge["type"] == "constraint" and edge["metadata"] == {"w": 2}
            got = await dst.get_variable_permissions("a")
            assert [(r["session_pattern"], r["permissions"]) for r in got] == [
                ("reader_*", ["read", "observe"])]

            # a section that breaks a rule (a cycle) fails the whole import; nothing changes
            doc["dependencies"].append({"from": "a", "to": "c", "type": "data"})
            def state(raw: bytes) -> tuple:
                d = json.loads(raw)
                return d["variables"], d.get("dependencies"), d.get("rules")

            before = state(await dst.export_variables(format="json"))
            with pytest.raises(dn.InvalidArgument, match="cycle"):
                await dst.import_variables(json.dumps(doc).encode(), format="json")
            assert state(await dst.export_variables(format="json")) == before
            await src.cleanup()
            await dst.cleanup()
