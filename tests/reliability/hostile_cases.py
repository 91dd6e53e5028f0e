"""Helpers of the hostile-input suite: a ``dspex-notebook serve`` subprocess, raw RPCs, and the
attack requests with the precise status code each must get.

Requests are built as serialized bytes and sent through ``channel.unary_unary(path)`` with
identity serializers (as tests/test_fuzz.py does), so malformed bodies reach the server as-is.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import secrets
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass

import grpc

from dspex_notebook._proto import snakepit_bridge_pb2 as pb

SERVICE = "/snakepit.bridge.BridgeService/"
URL = "type.googleapis.com/snakepit."
S = grpc.StatusCode
MiB = 1024 * 1024
CALL_TIMEOUT = 10.0  # no call may wait longer than this (the bound)
CHANNEL_OPTIONS = (("grpc.max_receive_message_length", 80 * MiB),
                   ("grpc.max_send_message_length", 80 * MiB))


@dataclass
class Serve:
    """A running ``dspex-notebook serve`` subprocess."""

    proc: subprocess.Popen
    address: str
    token: str

    @property
    def metadata(self) -> tuple[tuple[str, str], ...]:
        return (("authorization", f"Bearer {self.token}"), ("dspex-codec", "raw"))

    def rss_mib(self) -> float:
        """Resident memory of the server process (VmRSS), MiB."""
        with open(f"/proc/{self.proc.pid}/status") as fh:
            for line in fh:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) / 1024
        raise AssertionError("no VmRSS")

    def alive(self) -> bool:
        return self.proc.poll() is None


@contextlib.contextmanager
def serve(tmp_path, *args: str) -> Iterator[Serve]:
    """``python -m dspex_notebook serve --port 0 --token-file F *args``; killed afterwards."""
    token = secrets.token_urlsafe(16)
    token_file = tmp_path / "token"
    token_file.write_text(token)
    env = dict(os.environ, DSPEX_RUNTIME_DIR=str(tmp_path / "runtime"))
    proc = subprocess.Popen(
        [sys.executable, "-m", "dspex_notebook", "serve", "--port", "0", "--token-file",
         str(token_file), *args],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
    )
    try:
        address = ""
        deadline = time.monotonic() + 60
        assert proc.stdout is not None
        while time.monotonic() < deadline and not address:
            line = proc.stdout.readline()
            if not line:
                break
            if " serving " in line:
                address = line.rsplit(" on ", 1)[1].strip()
        assert address, f"serve did not start: {proc.stderr.read() if proc.poll() is not None else ''}"
        yield Serve(proc, address, token)
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGKILL)  # a frozen server ignores SIGTERM's graceful stop
        proc.wait(10)
        for stream in (proc.stdout, proc.stderr):
            if stream is not None:
                stream.close()


def channel(srv: Serve) -> grpc.aio.Channel:
    return grpc.aio.insecure_channel(srv.address, options=CHANNEL_OPTIONS)


async def call(ch: grpc.aio.Channel, srv: Serve, method: str, body: bytes,
               timeout: float = CALL_TIMEOUT) -> tuple[grpc.StatusCode, str, bytes]:
    """One raw unary call: ``(code, details, reply bytes)``."""
    try:
        reply = await ch.unary_unary(SERVICE + method)(body, metadata=srv.metadata, timeout=timeout)
        return S.OK, "", reply
    except grpc.aio.AioRpcError as err:
        return err.code(), err.details() or "", b""


async def ping(ch: grpc.aio.Channel, srv: Serve, timeout: float = CALL_TIMEOUT) -> float:
    """Seconds for one Ping round trip (raises if it fails)."""
    start = time.perf_counter()
    code, details, _ = await call(ch, srv, "Ping", pb.PingRequest(message="wd").SerializeToString(),
                                  timeout)
    assert code is S.OK, (code, details)
    return time.perf_counter() - start


class Watchdog:
    """Pings back to back from a separate process (``watchdog.py``) while an attack runs."""

    def __init__(self, srv: Serve) -> None:
        self.srv = srv
        self.latencies: list[float] = []
        self.failures: list[str] = []

    async def __aenter__(self) -> Watchdog:
        script = os.path.join(os.path.dirname(os.path.abspath(__file__)), "watchdog.py")
        self._proc = await asyncio.create_subprocess_exec(
            sys.executable, script, self.srv.address, self.srv.token,
            stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE)
        assert self._proc.stdout is not None
        line = await asyncio.wait_for(self._proc.stdout.readline(), 60)
        assert line.strip() == b"ready", line
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self._proc.stdin is not None
        self._proc.stdin.close()
        out, _ = await asyncio.wait_for(self._proc.communicate(), 60)
        report = json.loads(out.decode().strip().splitlines()[-1])
        self.latencies, self.failures = report["latencies"], report["failures"]

    def p99(self) -> float:
        lat = sorted(self.latencies)
        return lat[min(len(lat) - 1, int(0.99 * len(lat)))] if lat else float("nan")


# ----------------------------------------------------------------------------------------------
# request builders


def any_value(msg, type_name: str, data: bytes, type_url: str | None = None) -> None:
    msg.type_url = type_url if type_url is not None else URL + type_name
    msg.value = data


def register(session: str, name: str, type_name: str, data: bytes, constraints: str = "",
             type_url: str | None = None, binary: bytes = b"") -> bytes:
    req = pb.RegisterVariableRequest(session_id=session, name=name, type=type_name,
                                     constraints_json=constraints, initial_binary_value=binary)
    any_value(req.initial_value, type_name, data, type_url)
    return req.SerializeToString()


def set_value(session: str, ident: str, type_name: str, data: bytes, type_url: str | None = None,
              binary: bytes = b"") -> bytes:
    req = pb.SetVariableRequest(session_id=session, variable_identifier=ident, binary_value=binary)
    any_value(req.value, type_name, data, type_url)
    return req.SerializeToString()


def with_raw_string(field_number: int, raw: bytes, prefix: bytes = b"") -> bytes:
    """A message body whose string field ``field_number`` holds ``raw`` (e.g. invalid UTF-8)."""
    return prefix + bytes([field_number << 3 | 2]) + _varint(len(raw)) + raw


def _varint(n: int) -> bytes:
    out = bytearray()
    while True:
        byte, n = n & 0x7F, n >> 7
        out.append(byte | (0x80 if n else 0))
        if not n:
            return bytes(out)


def attacks(session: str) -> list[tuple[str, str, bytes, grpc.StatusCode]]:
    """``(label, method, body, expected code)``: every one a refusal, so the store is unchanged.

    ``session`` must hold ``s`` (string, pattern ``^(a+)+$``), ``l`` (list), ``e`` (embedding)
    and ``f`` (float in [0, 1]) as :func:`victim_setup` registers them.
    """
    long_id = "x" * 300
    out: list[tuple[str, str, bytes, grpc.StatusCode]] = []
    add = out.append
    # oversized
    add(("message over the 16 MiB limit", "SetVariable",
         set_value(session, "s", "string", json.dumps("x" * (17 * MiB)).encode()), S.RESOURCE_EXHAUSTED))
    add(("JSON value over 256 KiB", "SetVariable",
         set_value(session, "s", "string", json.dumps("a" * (300 * 1024)).encode()), S.RESOURCE_EXHAUSTED))
    add(("9 MiB type_url", "SetVariable",  # the type_url counts toward the 8 MiB value limit
         set_value(session, "f", "float", b"0.5", "x" * (9 * MiB) + "/snakepit.float"), S.RESOURCE_EXHAUSTED))
    add(("1 KiB type_url", "SetVariable",
         set_value(session, "f", "float", b"0.5", "x" * 1024 + "/snakepit.float"), S.INVALID_ARGUMENT))
    for size, code in ((6 * MiB, S.RESOURCE_EXHAUSTED), (100_000, S.INVALID_ARGUMENT)):
        add((f"{size:,}-byte binary metadata", "SetVariable",
             set_value(session, "e", "embedding", b'{"shape":[2],"dtype":"float32","pad":"' + b"p" * size
                       + b'"}', URL + "embedding.binary", b"\0" * 8), code))
    add(("4 MiB choices", "RegisterVariable",
         register(session, "c", "choice", b'"a"', json.dumps({"choices": ["a"] + [f"c{i}" for i in range(500_000)]})),
         S.RESOURCE_EXHAUSTED))
    add(("1001 choices", "RegisterVariable",
         register(session, "c", "choice", b'"a"', json.dumps({"choices": [f"c{i}" for i in range(1001)]})),
         S.INVALID_ARGUMENT))
    add(("metadata with 100 entries", "SetVariable", _with_metadata(session, 100), S.RESOURCE_EXHAUSTED))
    # identifiers
    for method, body in (
        ("GetVariable", pb.GetVariableRequest(session_id=session, variable_identifier=long_id)),
        ("SetVariable", pb.SetVariableRequest(session_id=session, variable_identifier=long_id)),
        ("DeleteVariable", pb.DeleteVariableRequest(session_id=session, variable_identifier=long_id)),
        ("GetVariables", pb.BatchGetVariablesRequest(session_id=session, variable_identifiers=[long_id])),
        ("GetSession", pb.GetSessionRequest(session_id=long_id)),
        ("Heartbeat", pb.HeartbeatRequest(session_id=long_id)),
        ("CleanupSession", pb.CleanupSessionRequest(session_id=long_id)),
        ("InitializeSession", pb.InitializeSessionRequest(session_id=long_id)),
        ("ListVariables", pb.ListVariablesRequest(session_id=long_id)),
        ("Ping", pb.PingRequest(message="m" * 5000)),
    ):
        add((f"{method} with an over-long identifier", method, body.SerializeToString(), S.INVALID_ARGUMENT))
    # malformed protobuf and invalid UTF-8
    add(("truncated protobuf", "RegisterVariable", register(session, "n", "float", b"0.5")[:-3], S.INVALID_ARGUMENT))
    add(("garbage body", "SetVariables", b"\xff" * 64, S.INVALID_ARGUMENT))
    add(("invalid UTF-8 session id", "GetVariable", with_raw_string(1, b"\xff\xfe"), S.INVALID_ARGUMENT))
    add(("invalid UTF-8 name", "RegisterVariable",
         with_raw_string(2, b"n\xc3(", with_raw_string(1, session.encode())), S.INVALID_ARGUMENT))
    add(("invalid UTF-8 inside a JSON string", "SetVariable", set_value(session, "s", "string", b'"\xff"'),
         S.INVALID_ARGUMENT))
    # NaN / inf, deep nesting
    add(("NaN float", "SetVariable", set_value(session, "f", "float", b'"NaN"'), S.INVALID_ARGUMENT))
    add(("inf float", "SetVariable", set_value(session, "f", "float", b"1e999"), S.INVALID_ARGUMENT))
    add(("NaN in a list", "SetVariable", set_value(session, "l", "list", b"[1, NaN]"), S.INVALID_ARGUMENT))
    add(("inf in an embedding", "SetVariable", set_value(session, "e", "embedding", b"[1, Infinity]"),
         S.INVALID_ARGUMENT))
    add(("list nested 150 deep", "SetVariable", set_value(session, "l", "list", b"[" * 150 + b"]" * 150),
         S.INVALID_ARGUMENT))
    add(("list nested 100,000 deep", "SetVariable", set_value(session, "l", "list", b"[" * 100_000 + b"]" * 100_000),
         S.INVALID_ARGUMENT))
    add(("constraints nested 100,000 deep", "RegisterVariable",
         register(session, "n", "float", b"0.5", "[" * 30_000 + "]" * 30_000), S.INVALID_ARGUMENT))
    # names: path separators, SQL quotes
    add(("SQL quote in a name", "RegisterVariable",
         register(session, "x'; DROP TABLE variables; --", "float", b"0.5"), S.INVALID_ARGUMENT))
    add(("path traversal in a name", "RegisterVariable", register(session, "../../etc/passwd", "float", b"0.5"),
         S.INVALID_ARGUMENT))
    add(("backslash in a name", "RegisterVariable", register(session, "a\\b", "float", b"0.5"), S.INVALID_ARGUMENT))
    add(("NUL in a name", "RegisterVariable", register(session, "a\x00b", "float", b"0.5"), S.INVALID_ARGUMENT))
    # huge batches
    big_set = pb.BatchSetVariablesRequest(session_id=session, atomic=True)
    for i in range(501):
        any_value(big_set.updates[f"v{i}"], "float", b"0.5")
    add(("SetVariables with 501 updates", "SetVariables", big_set.SerializeToString(), S.RESOURCE_EXHAUSTED))
    big_reg = pb.BatchRegisterVariablesRequest(session_id=session)
    for i in range(501):
        any_value(big_reg.variables.add(name=f"r{i}", type="float").initial_value, "float", b"0.5")
    add(("RegisterVariables with 501 entries", "RegisterVariables", big_reg.SerializeToString(),
         S.RESOURCE_EXHAUSTED))
    add(("GetVariables with 1,000,000 identifiers", "GetVariables",
         pb.BatchGetVariablesRequest(session_id=session,
                                     variable_identifiers=[str(i) for i in range(1_000_000)]).SerializeToString(),
         S.INVALID_ARGUMENT))  # refused unparsed: larger than any admissible request
    # pathological regular expressions and globs
    add(("ReDoS value against ^(a+)+$", "SetVariable", set_value(session, "s", "string", b'"' + b"a" * 40 + b'!"'),
         S.INVALID_ARGUMENT))
    add(("ReDoS pattern, 100 KB value", "RegisterVariable",
         register(session, "r", "string", json.dumps("a" * 100_000 + "!").encode(),
                  json.dumps({"pattern": "^(a|aa)+$"})), S.INVALID_ARGUMENT))
    for pattern in ("(a)\\1", "(?=a)b", "(?<!a)b", "a++", "(?>a)"):
        add((f"refused construct {pattern}", "RegisterVariable",
             register(session, "r", "string", b'"a"', json.dumps({"pattern": pattern})), S.INVALID_ARGUMENT))
    add(("2 KiB regex", "RegisterVariable",
         register(session, "r", "string", b'"a"', json.dumps({"pattern": "a" * 2048})), S.INVALID_ARGUMENT))
    add(("pathological regex, long value", "RegisterVariable",
         register(session, "r", "string", json.dumps("ab" * 20_000).encode(),
                  json.dumps({"pattern": "(a|b)*a[ab]{900}x"})), S.RESOURCE_EXHAUSTED))
    # the live-data, history and optimization RPCs
    for method, body in (
        ("GetVariableStats", pb.GetVariableStatsRequest(session_id=session, variable_identifiers=[long_id])),
        ("GetVariableHistory", pb.GetVariableHistoryRequest(session_id=session, variable_identifier=long_id)),
        ("RollbackVariable", pb.RollbackVariableRequest(session_id=session, variable_identifier=long_id)),
        ("StartOptimization", pb.StartOptimizationRequest(session_id=session, variable_identifier=long_id)),
        ("NextTrial", pb.NextTrialRequest(session_id=session, variable_identifier=long_id)),
        ("GetOptimizationStatus", pb.OptimizationQuery(session_id=session, variable_identifier=long_id)),
    ):
        add((f"{method} with an over-long identifier", method, body.SerializeToString(), S.INVALID_ARGUMENT))
    add(("GetVariableStats with 1,000,000 identifiers", "GetVariableStats",
         pb.GetVariableStatsRequest(session_id=session,
                                    variable_identifiers=[str(i) for i in range(1_000_000)]).SerializeToString(),
         S.INVALID_ARGUMENT))  # refused unparsed: larger than any admissible request
    add(("history limit of 2 billion", "GetVariableHistory",
         pb.GetVariableHistoryRequest(session_id=session, variable_identifier="f",
                                      limit=2_000_000_000).SerializeToString(), S.INVALID_ARGUMENT))
    add(("negative history offset", "GetVariableHistory",
         pb.GetVariableHistoryRequest(session_id=session, variable_identifier="f",
                                      offset=-1).SerializeToString(), S.INVALID_ARGUMENT))
    add(("rollback to a version never written", "RollbackVariable",
         pb.RollbackVariableRequest(session_id=session, variable_identifier="f",
                                    target_version=2_000_000_000).SerializeToString(), S.INVALID_ARGUMENT))
    add(("2 MiB optimizer config", "StartOptimization",
         pb.StartOptimizationRequest(session_id=session, variable_identifier="f",
                                     optimizer_config_json=json.dumps({"xi": "x" * (2 * MiB)})).SerializeToString(),
         S.INVALID_ARGUMENT))
    add(("optimizer config nested 100,000 deep", "StartOptimization",
         pb.StartOptimizationRequest(session_id=session, variable_identifier="f",
                                     optimizer_config_json="[" * 100_000 + "]" * 100_000).SerializeToString(),
         S.INVALID_ARGUMENT))
    add(("optimizer config not an object", "StartOptimization",
         pb.StartOptimizationRequest(session_id=session, variable_identifier="f",
                                     optimizer_config_json="[1, 2]").SerializeToString(), S.INVALID_ARGUMENT))
    add(("optimizing a string variable", "StartOptimization",
         pb.StartOptimizationRequest(session_id=session, variable_identifier="s",
                                     optimizer_id="bayesian").SerializeToString(), S.INVALID_ARGUMENT))
    add(("a year-long optimization lease", "StartOptimization",
         pb.StartOptimizationRequest(session_id=session, variable_identifier="f", optimizer_id="bayesian",
                                     lease_seconds=3e7).SerializeToString(), S.INVALID_ARGUMENT))
    add(("report to a variable that is not optimized", "ReportTrial",
         pb.ReportTrialRequest(session_id=session, variable_identifier="f", trial_id=1,
                               metrics_json="1").SerializeToString(), S.INVALID_ARGUMENT))
    add(("next trial of a variable that is not optimized", "NextTrial",
         pb.NextTrialRequest(session_id=session, variable_identifier="f").SerializeToString(), S.INVALID_ARGUMENT))
    # dependencies
    for method, body in (
        ("AddDependency", pb.AddDependencyRequest(session_id=session, from_variable=long_id, to_variable="f")),
        ("AddDependency", pb.AddDependencyRequest(session_id=session, from_variable="f", to_variable=long_id)),
        ("RemoveDependency", pb.RemoveDependencyRequest(session_id=session, from_variable=long_id,
                                                        to_variable="f")),
        ("GetDependencies", pb.GetDependenciesRequest(session_id=session, variable_identifier=long_id)),
    ):
        add((f"{method} with an over-long identifier", method, body.SerializeToString(), S.INVALID_ARGUMENT))
    for what, metadata_json in (("2 MiB", json.dumps({"k": "x" * (2 * MiB)})),
                                ("nested 2,000 deep", "[" * 2000 + "]" * 2000),
                                ("with an object value", '{"k": {"nested": 1}}'),
                                ("not an object", "[1, 2]"), ("not JSON", "{'k': 1}"),
                                ("with NaN", '{"k": NaN}')):
        add((f"dependency metadata {what}", "AddDependency",
             pb.AddDependencyRequest(session_id=session, from_variable="f", to_variable="s",
                                     metadata_json=metadata_json).SerializeToString(), S.INVALID_ARGUMENT))
    add(("dependency metadata of 3 KB (limit 2 KiB)", "AddDependency",
         pb.AddDependencyRequest(session_id=session, from_variable="f", to_variable="s",
                                 metadata_json=json.dumps({"k": "x" * 3000})).SerializeToString(),
         S.RESOURCE_EXHAUSTED))
    add(("1 MiB dependency type", "AddDependency",
         pb.AddDependencyRequest(session_id=session, from_variable="f", to_variable="s",
                                 dependency_type="d" * MiB).SerializeToString(), S.INVALID_ARGUMENT))
    add(("unknown dependency type", "AddDependency",
         pb.AddDependencyRequest(session_id=session, from_variable="f", to_variable="s",
                                 dependency_type="causal").SerializeToString(), S.INVALID_ARGUMENT))
    add(("a variable depending on itself", "AddDependency",
         pb.AddDependencyRequest(session_id=session, from_variable="f",
                                 to_variable="f").SerializeToString(), S.INVALID_ARGUMENT))
    add(("a dependency on a missing variable", "AddDependency",
         pb.AddDependencyRequest(session_id=session, from_variable="f",
                                 to_variable="missing").SerializeToString(), S.NOT_FOUND))
    add(("removing a dependency that does not exist", "RemoveDependency",
         pb.RemoveDependencyRequest(session_id=session, from_variable="f",
                                    to_variable="s").SerializeToString(), S.INVALID_ARGUMENT))
    many_deps = pb.RegisterVariableRequest(session_id=session, name="r", type="float",
                                           dependencies=[f"d{i}" for i in range(1_000_000)])
    any_value(many_deps.initial_value, "float", b"0.5")
    add(("RegisterVariable depending on 1,000,000 identifiers", "RegisterVariable",
         many_deps.SerializeToString(), S.RESOURCE_EXHAUSTED))
    add(("2,000,000-char glob", "ListVariables",
         pb.ListVariablesRequest(session_id=session, pattern="*a" * 1_000_000).SerializeToString(),
         S.INVALID_ARGUMENT))
    out += io_attacks(session)
    return out


def _document(variables: object, **extra: object) -> bytes:
    return json.dumps({"format": "dspex-notebook/export", "version": 1, "variables": variables,
                       **extra}).encode()


def _import(session: str, document: bytes, strategy: str = "replace", dry_run: bool = False) -> bytes:
    return pb.ImportVariablesRequest(session_id=session, document_json=document,
                                     merge_strategy=strategy, dry_run=dry_run).SerializeToString()


def io_attacks(session: str) -> list[tuple[str, str, bytes, grpc.StatusCode]]:
    """Hostile export/import/revision requests, each refused (the store stays unchanged)."""
    long_id = "x" * 300
    out: list[tuple[str, str, bytes, grpc.StatusCode]] = []
    add = out.append
    for method, body in (
        ("ExportVariables", pb.ExportVariablesRequest(session_id=long_id)),
        ("ImportVariables", pb.ImportVariablesRequest(session_id=long_id)),
        ("GetVariablesAt", pb.GetVariablesAtRequest(session_id=session, variable_identifiers=[long_id])),
        ("RestoreSession", pb.RestoreSessionRequest(session_id=long_id)),
    ):
        add((f"{method} with an over-long identifier", method, body.SerializeToString(),
             S.INVALID_ARGUMENT))
    add(("export pattern with a backreference", "ExportVariables",
         pb.ExportVariablesRequest(session_id=session, pattern="(a)\\1").SerializeToString(),
         S.INVALID_ARGUMENT))
    add(("2,000-char export pattern", "ExportVariables",
         pb.ExportVariablesRequest(session_id=session, pattern="a" * 2000).SerializeToString(),
         S.INVALID_ARGUMENT))
    add(("import over the 16 MiB message limit", "ImportVariables",
         _import(session, b" " * (17 * MiB)), S.RESOURCE_EXHAUSTED))
    add(("import document that is not JSON", "ImportVariables", _import(session, b"{\"format\": "),
         S.INVALID_ARGUMENT))
    add(("import document of invalid UTF-8", "ImportVariables", _import(session, b'{"a": "\xff"}'),
         S.INVALID_ARGUMENT))
    add(("import document nested 100,000 deep", "ImportVariables",
         _import(session, b"[" * 100_000 + b"]" * 100_000), S.INVALID_ARGUMENT))
    add(("import of a foreign JSON document", "ImportVariables", _import(session, b'{"a": 1}'),
         S.INVALID_ARGUMENT))
    add(("import document of a newer version", "ImportVariables",
         _import(session, _document([], version=99)), S.INVALID_ARGUMENT))
    add(("import variables not a list", "ImportVariables", _import(session, _document({"a": 1})),
         S.INVALID_ARGUMENT))
    add(("import with 20,000 variables", "ImportVariables",
         _import(session, _document([{"name": f"v{i}", "type": "float", "value": 0.5}
                                     for i in range(20_000)])), S.RESOURCE_EXHAUSTED))
    add(("import with a SQL-quote name", "ImportVariables",
         _import(session, _document([{"name": "x'; DROP TABLE variables; --", "type": "float",
                                      "value": 1}])), S.INVALID_ARGUMENT))
    add(("import of a value breaking its constraint", "ImportVariables",
         _import(session, _document([{"name": "f", "type": "float", "value": 5.0,
                                      "constraints": {"min": 0, "max": 1}}])), S.INVALID_ARGUMENT))
    add(("import with history that is a number", "ImportVariables",
         _import(session, _document([{"name": "n", "type": "float", "value": 0.5,
                                      "history": 7}])), S.INVALID_ARGUMENT))
    add(("import of an embedding with bad base64", "ImportVariables",
         _import(session, _document([{"name": "e", "type": "embedding",
                                      "value": {"dtype": "float32", "shape": [2], "base64": "!!"}}])),
         S.INVALID_ARGUMENT))
    add(("import of an embedding whose bytes do not fit its shape", "ImportVariables",
         _import(session, _document([{"name": "e", "type": "embedding",
                                      "value": {"dtype": "float32", "shape": [1000000],
                                                "base64": "AAAAAA=="}}])), S.INVALID_ARGUMENT))
    add(("import of an object dtype", "ImportVariables",
         _import(session, _document([{"name": "e", "type": "tensor",
                                      "value": {"dtype": "object", "shape": [1],
                                                "base64": "AAAAAAAAAAA="}}])), S.INVALID_ARGUMENT))
    add(("unknown merge strategy", "ImportVariables", _import(session, _document([]), "drop"),
         S.INVALID_ARGUMENT))
    add(("read at a negative revision", "GetVariablesAt",
         pb.GetVariablesAtRequest(session_id=session, revision=-1).SerializeToString(),
         S.INVALID_ARGUMENT))
    add(("read at a revision from the future", "GetVariablesAt",
         pb.GetVariablesAtRequest(session_id=session, revision=2**62).SerializeToString(),
         S.INVALID_ARGUMENT))
    add(("restore to a revision from the future", "RestoreSession",
         pb.RestoreSessionRequest(session_id=session, revision=2**62).SerializeToString(),
         S.INVALID_ARGUMENT))
    add(("GetVariablesAt with 1,000,000 identifiers", "GetVariablesAt",
         pb.GetVariablesAtRequest(session_id=session,
                                  variable_identifiers=[str(i) for i in range(1_000_000)]).SerializeToString(),
         S.INVALID_ARGUMENT))  # refused unparsed: larger than any admissible request
    return out


def _with_metadata(session: str, n: int) -> bytes:
    req = pb.SetVariableRequest(session_id=session, variable_identifier="f")
    any_value(req.value, "float", b"0.5")
    for i in range(n):
        req.metadata[f"k{i}"] = "v"
    return req.SerializeToString()


def victim_setup(session: str) -> list[tuple[str, bytes]]:
    """The calls that create ``session`` with the variables :func:`attacks` aims at."""
    return [
        ("InitializeSession", pb.InitializeSessionRequest(session_id=session).SerializeToString()),
        ("RegisterVariable", register(session, "s", "string", b'"aaa"', json.dumps({"pattern": "^(a+)+$"}))),
        ("RegisterVariable", register(session, "l", "list", b"[1, 2]")),
        ("RegisterVariable", register(session, "e", "embedding", b"[0.5, 0.5]")),
        ("RegisterVariable", register(session, "f", "float", b"0.5", json.dumps({"min": 0, "max": 1}))),
    ]


async def snapshot(ch: grpc.aio.Channel, srv: Serve, session: str) -> tuple[int, bytes]:
    """``(store revision, ListVariables reply)``: equal before and after means nothing changed."""
    code, details, reply = await call(ch, srv, "ListVariables",
                                      pb.ListVariablesRequest(session_id=session).SerializeToString())
    assert code is S.OK, (code, details)
    listing = pb.ListVariablesResponse.FromString(reply)
    return listing.revision, b"".join(v.SerializeToString() for v in listing.variables)
