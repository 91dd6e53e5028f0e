"""Several real ``dspex-notebook serve --backend etcd`` processes over one real etcd."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import uuid
from pathlib import Path

ADDRESS_RE = re.compile(r"serving .* on (\S+:\d+)")
TOKEN = "scale-out-test-token"


class Servers:
    """``n`` server processes sharing one store (an etcd key prefix), one token file."""

    def __init__(self, etcd_endpoints: list[str], tmp_path: Path, n: int = 3,
                 extra: tuple[str, ...] = ()) -> None:
        self.etcd = etcd_endpoints
        self.prefix = f"/scale-{uuid.uuid4().hex[:10]}/"
        self.token_file = tmp_path / "token"
        self.token_file.write_text(TOKEN)
        self.env = dict(os.environ, DSPEX_RUNTIME_DIR=str(tmp_path / "rt"))
        self.extra = extra
        self.procs: list[subprocess.Popen[str] | None] = []
        self.addresses: list[str] = []
        try:
            for _ in range(n):
                self.start()
        except BaseException:
            self.close()
            raise

    def start(self) -> str:
        """One more server over the same store; its address."""
        proc = subprocess.Popen(
            [sys.executable, "-m", "dspex_notebook", "serve", "--port", "0", "--backend", "etcd",
             "--etcd", ",".join(self.etcd), "--etcd-prefix", self.prefix,
             "--token-file", str(self.token_file), *self.extra],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=self.env)
        self.procs.append(proc)
        for _ in range(20):  # a few banner lines at most
            line = proc.stdout.readline() if proc.stdout else ""
            if not line:
                err = proc.stderr.read() if proc.stderr else ""
                raise AssertionError(f"serve exited early ({proc.poll()}): {err}")
            match = ADDRESS_RE.search(line)
            if match:
                self.addresses.append(match.group(1))
                return match.group(1)
        raise AssertionError("serve never printed its address")

    def kill(self, i: int) -> None:
        """SIGKILL server ``i`` (no clean shutdown, as a crash or an OOM kill)."""
        proc = self.procs[i]
        if proc is not None:
            proc.send_signal(signal.SIGKILL)
            proc.wait(10)
            self._close_pipes(proc)
            self.procs[i] = None

    @staticmethod
    def _close_pipes(proc: subprocess.Popen[str]) -> None:
        for pipe in (proc.stdout, proc.stderr):
            if pipe is not None:
                pipe.close()

    def close(self) -> None:
        for proc in self.procs:
            if proc is not None and proc.poll() is None:
                proc.terminate()
        for proc in self.procs:
            if proc is None:
                continue
            try:
                proc.wait(15)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(10)
            self._close_pipes(proc)
        self.procs = []
