"""Hostile access rules and principals files against a real ``dspex-notebook serve`` process:
oversized, malformed and deeply nested rules, too many rules, pathological globs, unknown
permissions and conditions, wrong types; each gets its precise status code within the 10 s
bound, the rules stay as they were, and the server keeps serving (Ping) throughout."""

from __future__ import annotations

import json
import time

import pytest
from hostile_cases import CALL_TIMEOUT, S, call, channel, ping, register, serve

from dspex_notebook._proto import snakepit_bridge_pb2 as pb
from dspex_notebook.server.principals import parse_principals

SESSION = "owner"


def set_rules(rules_json: str, ident: str = "x", session: str = SESSION) -> bytes:
    return pb.SetVariablePermissionsRequest(session_id=session, variable_identifier=ident,
                                            rules_json=rules_json).SerializeToString()


def check(permission: str, ident: str = "x", as_session: str = "") -> bytes:
    return pb.CheckVariableAccessRequest(session_id=SESSION, variable_identifier=ident,
                                         permission=permission,
                                         as_session=as_session).SerializeToString()


def rule(**fields) -> dict:
    return {"session_pattern": "any", "permissions": ["read"], **fields}


ATTACKS = [
    ("rules_json over 64 KiB", set_rules(json.dumps([rule()] * 2000)), S.INVALID_ARGUMENT),
    ("rules_json not JSON", set_rules("[{"), S.INVALID_ARGUMENT),
    ("rules_json nested 100k deep", set_rules("[" * 30000 + "]" * 30000), S.INVALID_ARGUMENT),
    ("65 rules", set_rules(json.dumps([rule()] * 65)), S.RESOURCE_EXHAUSTED),
    ("rules not a list", set_rules('"read"'), S.INVALID_ARGUMENT),
    ("a rule not an object", set_rules("[1]"), S.INVALID_ARGUMENT),
    ("unknown field", set_rules(json.dumps([rule(admin=True)])), S.INVALID_ARGUMENT),
    ("unknown permission", set_rules(json.dumps([rule(permissions=["delete"])])),
     S.INVALID_ARGUMENT),
    ("empty permissions", set_rules(json.dumps([rule(permissions=[])])), S.INVALID_ARGUMENT),
    ("permission not a string", set_rules(json.dumps([rule(permissions=[{"a": 1}])])),
     S.INVALID_ARGUMENT),
    ("session_pattern not a string", set_rules(json.dumps([rule(session_pattern=5)])),
     S.INVALID_ARGUMENT),
    ("session_pattern of 2000 characters", set_rules(json.dumps(
        [rule(session_pattern="*a" * 1000)])), S.INVALID_ARGUMENT),
    ("unknown condition", set_rules(json.dumps([rule(conditions={"ip": "10.0.0.0/8"})])),
     S.INVALID_ARGUMENT),
    ("condition not a string", set_rules(json.dumps([rule(conditions={"principal": ["a"]})])),
     S.INVALID_ARGUMENT),
    ("condition of 10 KiB", set_rules(json.dumps([rule(conditions={"principal": "a" * 10240})])),
     S.INVALID_ARGUMENT),
    ("time without UTC offset", set_rules(json.dumps(
        [rule(conditions={"not_after": "2030-01-01T00:00:00"})])), S.INVALID_ARGUMENT),
    ("time not a time", set_rules(json.dumps([rule(conditions={"not_before": "tomorrow"})])),
     S.INVALID_ARGUMENT),
    ("rules of another session's variable", set_rules("[]", session="intruder_s"),
     S.NOT_FOUND),
    ("rules of an unknown variable", set_rules("[]", ident="nope"), S.NOT_FOUND),
    ("check of an unknown permission", check("admin"), S.INVALID_ARGUMENT),
    ("check for an over-long session", check("read", as_session="s" * 300), S.INVALID_ARGUMENT),
]


async def test_hostile_access_rules(tmp_path):
    with serve(tmp_path, "--db", str(tmp_path / "store.sqlite3")) as srv:
        ch = channel(srv)
        try:
            code, details, _ = await call(ch, srv, "InitializeSession", pb.InitializeSessionRequest(
                session_id=SESSION).SerializeToString())
            assert code is S.OK, details
            code, details, _ = await call(ch, srv, "RegisterVariable",
                                          register(SESSION, "x", "integer", b"1"))
            assert code is S.OK, details
            # many pathological (but valid) globs: each check stays linear and bounded
            evil = [{"session_pattern": "*a" * 20 + "?" * 20 + "[!b]*" * 10,
                     "permissions": ["read"]}] * 64
            code, details, _ = await call(ch, srv, "SetVariablePermissions",
                                          set_rules(json.dumps(evil)))
            assert code is S.OK, details
            start = time.perf_counter()
            code, details, reply = await call(ch, srv, "CheckVariableAccess",
                                              check("read", as_session="a" * 19 + "b" * 231))
            assert code is S.OK, details
            assert not pb.CheckVariableAccessResponse.FromString(reply).allowed
            assert time.perf_counter() - start < CALL_TIMEOUT
            before = await call(ch, srv, "GetVariablePermissions",
                                pb.GetVariablePermissionsRequest(
                                    session_id=SESSION, variable_identifier="x").SerializeToString())
            wrong = []
            for label, body, expected in ATTACKS:
                start = time.perf_counter()
                method = ("CheckVariableAccess" if label.startswith("check")
                          else "SetVariablePermissions")
                code, details, _ = await call(ch, srv, method, body)
                if code is not expected or time.perf_counter() - start >= CALL_TIMEOUT:
                    wrong.append((label, expected, code, details[:200]))
                await ping(ch, srv)
            after = await call(ch, srv, "GetVariablePermissions",
                               pb.GetVariablePermissionsRequest(
                                   session_id=SESSION, variable_identifier="x").SerializeToString())
            assert not wrong, wrong
            assert after[2] == before[2], "a refused call changed the rules"
            assert srv.alive()
        finally:
            await ch.close()


@pytest.mark.parametrize("doc, expected", [
    ({"principals": [{"name": "a", "token": "t" * 20, "sessions": ["*a" * 200]}]},
     "glob of 1-256"),
    ({"principals": [{"name": "a", "token": "t" * 20, "sessions": ["*"] * 65}]},
     "65 session patterns"),
    ({"principals": [{"name": f"p{i}", "token": f"{i:020d}", "sessions": ["*"]}
                     for i in range(1001)]}, "1001 principals"),
    ({"principals": [{"name": "a", "token": "t" * 5000, "sessions": ["*"]}]}, "16-4096"),
    ({"principals": [{"name": "a", "token": "t" * 19 + " ", "sessions": ["*"]}]}, None),
    ({"principals": [{"name": "a", "token": "t" * 10 + " x" * 5, "sessions": ["*"]}]},
     "no spaces"),
    ({"principals": [{"name": "a", "token": "t" * 20, "token_file": "f", "sessions": ["*"]}]},
     "exactly one of token, token_file"),
    ({"principals": [{"name": "x" * 65, "token": "t" * 20, "sessions": ["*"]}]}, "name must"),
    ({"principals": [{"name": "a", "token": "t" * 20, "sessions": [7]}]}, "session pattern"),
    ({"principals": {"a": 1}}, "non-empty list"),
    ({"principals": [], "extra": 1}, "one key"),
    ([1, 2], "one key"),
])
def test_hostile_principals_documents(doc, expected):
    if expected is None:  # surrounding whitespace is not part of a token
        assert parse_principals(doc)[0].token == "t" * 19
        return
    with pytest.raises(ValueError, match=expected):
        parse_principals(doc)


def test_principals_file_size_limit(tmp_path):
    from dspex_notebook.server.principals import load_principals

    path = tmp_path / "p.yaml"
    path.write_text("# " + "x" * (1 << 20) + "\nprincipals: []\n")
    with pytest.raises(ValueError, match="bytes \\(limit 1048576\\)"):
        load_principals(path)
