"""``%var export/import/restore`` in a real InteractiveShell, and ``dspex-notebook
export/import/restore`` as separate processes against a real server."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys

import pytest
from IPython.utils.capture import capture_output
from nb_helpers import nb_session

from dspex_notebook._display import ChangeSummary
from dspex_notebook.notebook.magics import DspexMagicError
from dspex_notebook.testing import running_server, session_for


def var(ip, line: str):
    return ip.run_line_magic("var", line)


def shown(ip, cell: str) -> tuple[object, str]:
    with capture_output() as out:
        result = ip.run_cell(cell)
    return result.error_in_exec, out.stdout + out.stderr


def test_export_import_restore_magics(ext, tmp_path, capsys):
    var(ext, "register temperature float 0.7 --min 0 --max 2")
    var(ext, "register cfg dict {'a': 1}")
    var(ext, "temperature = 0.9")
    s = nb_session(ext)
    r = s.portal.run(s.context.ping())["revision"]
    var(ext, "temperature = 1.5")
    capsys.readouterr()

    var(ext, "export --history")  # no FILE: the JSON document as text
    doc = json.loads(capsys.readouterr().out)
    assert [v["name"] for v in doc["variables"]] == ["temperature", "cfg"]
    assert len(doc["variables"][0]["history"]) == 3

    for suffix in ("json", "yaml", "pickle"):
        path = tmp_path / f"backup.{suffix}"
        var(ext, f"export {path} --pattern ^temp")
        assert f"({suffix}) to {path}" in capsys.readouterr().out
        assert path.stat().st_size > 0

    var(ext, "temperature = 0.1")
    dry = var(ext, f"import {tmp_path / 'backup.yaml'} --dry-run")
    assert isinstance(dry, ChangeSummary) and dry["dry_run"] and dry["imported"] == 1
    assert "dry run, nothing changed" in repr(dry) and "<table" in dry._repr_html_()
    assert var(ext, "temperature") == 0.1
    done = var(ext, f"import {tmp_path / 'backup.yaml'}")
    assert done["revision"] > 0 and var(ext, "temperature") == 1.5
    kept = var(ext, f"import {tmp_path / 'backup.json'} --strategy keep")
    assert kept["skipped"] == 1

    error, out = shown(ext, f"%var import {tmp_path / 'backup.pickle'}")
    assert isinstance(error, DspexMagicError) and "refused unless enabled" in out
    assert out.count("\n") == 1  # one line, no traceback
    ok = var(ext, f"import {tmp_path / 'backup.pickle'} --allow-pickle")
    assert ok["errors"] == 0

    error, out = shown(ext, f"%var import {tmp_path / 'missing.json'}")
    assert isinstance(error, DspexMagicError) and "cannot read" in out

    preview = var(ext, f"restore {r} --dry-run")
    assert preview["set"] == ["temperature"] and preview["dry_run"]
    restored = var(ext, f"restore {r}")
    assert restored["revision"] > 0 and var(ext, "temperature") == 0.9
    assert "restore to revision" in repr(restored)

    error, out = shown(ext, "%var restore 999999")
    assert isinstance(error, DspexMagicError) and "ahead of the store" in out
    error, out = shown(ext, "%var export --format parquet")
    assert error is not None and "needs a FILE" in out


def test_session_object_has_the_methods(ext):
    error, out = shown(ext, "await session.export_variables('yaml')")
    assert error is None
    error, out = shown(ext, "await session.restore_session(0, dry_run=True)")
    assert error is None


# ----------------------------------------------------------------------------------------------
# the CLI, as a separate process


@pytest.fixture
def published(tmp_path):
    with running_server(os.environ["DSPEX_DB"], write_runtime_file=True) as srv:
        async def fill() -> int:
            async with session_for(srv, "default") as ctx:
                await ctx.register_variable("temperature", "float", 0.7, {"min": 0.0, "max": 2.0})
                await ctx.register_variable("model", "choice", "a", {"choices": ["a", "b"]})
                r = (await ctx.ping())["revision"]
                await ctx.set_variable("temperature", 1.2)
                return r

        srv.revision_before = asyncio.run(fill())
        yield srv


def cli(*args: str, stdin: bytes | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "dspex_notebook", *args], input=stdin,
                          capture_output=True, timeout=120, env=dict(os.environ))


def test_cli_export_import_restore(published, tmp_path):
    out = cli("export", "--history", "-q")
    assert out.returncode == 0, out.stderr
    doc = json.loads(out.stdout)
    assert {v["name"] for v in doc["variables"]} == {"temperature", "model"}

    path = tmp_path / "vars.yaml"
    out = cli("export", str(path))
    assert out.returncode == 0 and path.exists() and b"(yaml)" in out.stderr

    out = cli("import", str(path), "--dry-run", "--json", "-q")
    assert out.returncode == 0, out.stderr
    summary = json.loads(out.stdout)
    assert summary["dry_run"] and summary["skipped"] == 2  # unchanged values

    out = cli("import", "-", "--format", "json", "--strategy", "merge", "-q",
              stdin=json.dumps(doc).encode())
    assert out.returncode == 0, out.stderr
    assert b"import -" in out.stdout

    out = cli("restore", str(published.revision_before), "--dry-run", "-q")
    assert out.returncode == 0 and b"dry run" in out.stdout and b"temperature" in out.stdout
    out = cli("restore", str(published.revision_before), "--json", "-q")
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout)["set"] == ["temperature"]
    out = cli("get", "temperature", "-q")
    assert out.stdout.strip() == b"0.7"

    bad = tmp_path / "bad.json"
    bad.write_text('{"format": "dspex-notebook/export", "version": 1, "variables": [')
    out = cli("import", str(bad), "-q")
    assert out.returncode == 1 and out.stderr.count(b"\n") == 1
    assert b"not valid JSON: line 1 column" in out.stderr
    out = cli("import", str(path.with_suffix(".pkl")), "-q")
    assert out.returncode == 1 and b"cannot read" in out.stderr
