"""Issue 9's probes, one test each; every one of them failed on the code before the fix.

1. a ReDoS ``pattern`` froze the server (and the client-side check);
2. a 2,000,000-character ListVariables glob held the server for ~25 s;
3. refused calls left memory behind (12 MiB binary metadata / type_urls), a 20 MiB ``choices``
   list was accepted, and over-long identifiers were answered NOT_FOUND and echoed in full.

The servers are ``serve`` subprocesses: a frozen server can be killed, a frozen thread cannot.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time

import pytest
from hostile_cases import MiB, S, call, channel, ping, register, serve, set_value

from dspex_notebook._proto import snakepit_bridge_pb2 as pb

URL = "type.googleapis.com/snakepit."


async def _init(ch, srv, session: str) -> None:
    code, details, _ = await call(ch, srv, "InitializeSession",
                                  pb.InitializeSessionRequest(session_id=session).SerializeToString())
    assert code is S.OK, details


async def test_1_redos_pattern_does_not_freeze_the_server(tmp_path):
    with serve(tmp_path, "--memory") as srv:
        ch = channel(srv)
        try:
            await _init(ch, srv, "s")
            evil = json.dumps({"pattern": "^(a+)+$"})
            code, details, _ = await call(ch, srv, "RegisterVariable",
                                          register("s", "v", "string", b'"aaa"', evil))
            assert code is S.OK, details
            start = time.monotonic()
            code, details, _ = await call(ch, srv, "SetVariable",
                                          set_value("s", "v", "string", b'"' + b"a" * 40 + b'!"'))
            assert code is S.INVALID_ARGUMENT, (code, details)  # before: DEADLINE_EXCEEDED
            assert "does not match" in details and "'v'" in details
            code, details, _ = await call(ch, srv, "RegisterVariable",
                                          register("s", "w", "string", b'"' + b"a" * 40 + b'!"', evil))
            assert code is S.INVALID_ARGUMENT, (code, details)
            assert time.monotonic() - start < 5
            await ping(ch, srv, timeout=5)
            for pattern, construct in (("(a)\\1", "backreference"), ("(?=a)", "lookahead"),
                                       ("(?<=a)b", "lookbehind")):
                code, details, _ = await call(ch, srv, "RegisterVariable", register(
                    "s", "x", "string", b'"a"', json.dumps({"pattern": pattern})))
                assert code is S.INVALID_ARGUMENT, (pattern, code)
                assert construct in details and "'x'" in details, details
        finally:
            await ch.close()


def test_1_redos_pattern_does_not_freeze_the_client_check():
    """The client validates locally with the same code: it must not hang either."""
    script = ("from dspex_notebook._constraints import validate\n"
              "try:\n    validate('string', 'a' * 40 + '!', {'pattern': '^(a+)+$'}, 'v')\n"
              "except ValueError as exc:\n    print(type(exc).__name__)\n")
    try:
        out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                             timeout=20)
    except subprocess.TimeoutExpired:
        pytest.fail("client-side pattern check did not finish in 20 s")
    assert out.stdout.strip() == "ConstraintViolation", out


async def test_2_huge_list_pattern_is_refused_at_once(tmp_path):
    with serve(tmp_path, "--memory") as srv:
        ch = channel(srv)
        try:
            await _init(ch, srv, "s")
            code, details, _ = await call(ch, srv, "RegisterVariable", register("s", "a", "float", b"1"))
            assert code is S.OK, details
            start = time.monotonic()
            code, details, _ = await call(ch, srv, "ListVariables", pb.ListVariablesRequest(
                session_id="s", pattern="*a" * 1_000_000).SerializeToString(), timeout=10)
            assert code is S.INVALID_ARGUMENT, (code, details)  # before: ~25 s, then OK
            assert "1024" in details and len(details) < 300
            for i in range(20):  # distinct long patterns: answered, nothing cached unboundedly
                code, details, _ = await call(ch, srv, "ListVariables", pb.ListVariablesRequest(
                    session_id="s", pattern=f"*{i}" + "*a" * 500).SerializeToString())
                assert code in (S.OK, S.RESOURCE_EXHAUSTED), (code, details)
            assert time.monotonic() - start < 10
            await ping(ch, srv, timeout=5)
        finally:
            await ch.close()


async def test_3_refused_calls_leave_no_memory_behind(tmp_path):
    with serve(tmp_path, "--memory") as srv:
        ch = channel(srv)
        try:
            await _init(ch, srv, "s")
            code, details, _ = await call(ch, srv, "RegisterVariable",
                                          register("s", "e", "embedding", b"[0.5]"))
            assert code is S.OK, details

            def meta(i: int) -> bytes:  # distinct 12 MiB metadata documents
                return (b'{"shape":[2],"dtype":"float32","binary_format":"raw","pad":"%d' % i
                        + b"p" * (12 * MiB) + b'"}')

            def bodies(i: int) -> list[bytes]:
                return [set_value("s", "e", "embedding", meta(i), URL + "embedding.binary", b"\0" * 12),
                        set_value("s", "e", "float", b"0.5", f"{i}" + "x" * (12 * MiB) + "/snakepit.float")]

            for body in bodies(-1):  # warm-up: the allocator's first big buffers
                await call(ch, srv, "SetVariable", body)
            for _ in range(300):
                await ping(ch, srv)
            before = srv.rss_mib()
            for i in range(10):
                for body in bodies(i):
                    code, details, _ = await call(ch, srv, "SetVariable", body)
                    assert code is S.RESOURCE_EXHAUSTED, (code, details)
                    assert len(details) < 300
            for _ in range(300):
                await ping(ch, srv)
            grown = srv.rss_mib() - before
            print(f"\nRSS after 20 refused 12 MiB calls: {grown:+.0f} MiB (before the fix: +190 MB)")
            assert grown < 100, grown  # before: +190 MB (84 from metadata, 108 from type_urls)
        finally:
            await ch.close()


async def test_3_constraints_and_identifiers_are_bounded(tmp_path):
    with serve(tmp_path, "--memory") as srv:
        ch = channel(srv)
        try:
            await _init(ch, srv, "s")
            huge = json.dumps({"choices": [f"c{i:07d}" for i in range(1_800_000)]})  # ~20 MiB
            assert len(huge) > 19 * MiB
            code, details, _ = await call(ch, srv, "RegisterVariable",
                                          register("s", "c", "choice", b'"c0000000"', huge))
            assert code is S.RESOURCE_EXHAUSTED, (code, details)  # before: OK, +360 MB
            code, details, _ = await call(ch, srv, "RegisterVariable", register(
                "s", "c", "choice", b'"c0"', json.dumps({"choices": [f"c{i}" for i in range(1001)]})))
            assert code is S.INVALID_ARGUMENT and "1000" in details, (code, details)
            long_id = "v" * 100_000
            for method, body in (
                ("GetVariable", pb.GetVariableRequest(session_id="s", variable_identifier=long_id)),
                ("SetVariable", pb.SetVariableRequest(session_id="s", variable_identifier=long_id)),
            ):
                code, details, _ = await call(ch, srv, method, body.SerializeToString())
                assert code is S.INVALID_ARGUMENT, (method, code)  # before: NOT_FOUND
                assert "256" in details and len(details) < 300, details  # before: echoed 100 KB
            code, details, _ = await call(ch, srv, "SetVariable", set_value(
                "s", "c", "string", json.dumps("x" * 200_000).encode(), "y" * 200_000))
            assert code is S.INVALID_ARGUMENT and len(details) < 300, (code, details[:300])
        finally:
            await ch.close()
