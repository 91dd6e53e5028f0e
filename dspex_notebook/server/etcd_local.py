"""Start a throwaway etcd cluster on loopback: for trying scale-out on one machine, for the
tests and for the benchmarks (docs/scale-out.md shows the same by hand).

    with LocalEtcd(members=3) as etcd:
        print(etcd.endpoints)          # ['127.0.0.1:41234', '127.0.0.1:41236', '127.0.0.1:41238']

It runs the ``etcd`` binary (Debian: ``apt-get install etcd-server``) with a data directory of
its own, on free loopback ports, and waits until every member answers. ``kill(i)`` SIGKILLs a
member (fault tests); ``close()`` stops them all and removes the data unless a ``data_dir``
was given.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

#: etcd refuses requests over 1.5 MiB by default; a commit carries values twice (state key +
#: commit record), so the servers' 8 MiB value limit needs more
MAX_REQUEST_BYTES = 64 * 1024 * 1024


def etcd_binary() -> str | None:
    """The ``etcd`` executable on PATH (or ``$DSPEX_ETCD``), or None."""
    return os.environ.get("DSPEX_ETCD") or shutil.which("etcd")


def _free_ports(n: int) -> list[int]:
    socks, ports = [], []
    for _ in range(n):
        s = socket.socket()
        s.bind(("127.0.0.1", 0))
        socks.append(s)
        ports.append(s.getsockname()[1])
    for s in socks:
        s.close()
    return ports


class LocalEtcd:
    """``members`` etcd processes forming one cluster on 127.0.0.1."""

    def __init__(self, members: int = 1, data_dir: str | os.PathLike[str] | None = None,
                 in_memory: bool = False, startup_timeout: float = 30.0) -> None:
        binary = etcd_binary()
        if binary is None:
            raise FileNotFoundError("etcd is not installed (Debian: apt-get install etcd-server)")
        self._own_dir = data_dir is None
        # in_memory: data on /dev/shm (tmpfs), where etcd's fsyncs cost nothing: fast tests,
        # and a benchmark line that shows what the disk costs
        shm = "/dev/shm" if in_memory and os.path.isdir("/dev/shm") else None
        self.data_dir = Path(data_dir or tempfile.mkdtemp(prefix="dspex-etcd-", dir=shm))
        ports = _free_ports(2 * members)
        self.client_ports, peer_ports = ports[:members], ports[members:]
        names = [f"m{i}" for i in range(members)]
        cluster = ",".join(f"{n}=http://127.0.0.1:{p}" for n, p in zip(names, peer_ports, strict=True))
        self.procs: list[subprocess.Popen[bytes] | None] = []
        self.logs: list[Path] = []
        self._args: list[list[str]] = []
        for name, cport, pport in zip(names, self.client_ports, peer_ports, strict=True):
            log_path = self.data_dir / f"{name}.log"
            args = [
                binary, "--name", name, "--data-dir", str(self.data_dir / name),
                "--listen-client-urls", f"http://127.0.0.1:{cport}",
                "--advertise-client-urls", f"http://127.0.0.1:{cport}",
                "--listen-peer-urls", f"http://127.0.0.1:{pport}",
                "--initial-advertise-peer-urls", f"http://127.0.0.1:{pport}",
                "--initial-cluster", cluster, "--initial-cluster-state", "new",
                "--initial-cluster-token", f"dspex-{os.getpid()}-{self.client_ports[0]}",
                "--max-request-bytes", str(MAX_REQUEST_BYTES),
            ]
            self.logs.append(log_path)
            self._args.append(args)
            self.procs.append(self._launch(args, log_path))
        try:
            self._wait(startup_timeout)
        except BaseException:
            self.close()
            raise

    @property
    def endpoints(self) -> list[str]:
        return [f"127.0.0.1:{p}" for p in self.client_ports]

    def _wait(self, timeout: float) -> None:
        from .._wire.etcd_client import EtcdClient

        deadline = time.monotonic() + timeout
        for i, endpoint in enumerate(self.endpoints):
            client = EtcdClient([endpoint], timeout=1.0)
            try:
                while True:
                    proc = self.procs[i]
                    if proc is not None and proc.poll() is not None:
                        raise RuntimeError(f"etcd member {i} exited: "
                                           + self.logs[i].read_text()[-2000:])
                    try:
                        client.mod_revision(b"\0health")
                        break
                    except Exception:
                        if time.monotonic() > deadline:
                            raise TimeoutError(f"etcd at {endpoint} did not answer in "
                                               f"{timeout:g}s") from None
                        time.sleep(0.1)
            finally:
                client.close()

    @staticmethod
    def _launch(args: list[str], log_path: Path) -> subprocess.Popen[bytes]:
        with open(log_path, "ab") as out:
            return subprocess.Popen(args, stdout=out, stderr=subprocess.STDOUT,
                                    start_new_session=True)

    def restart(self, i: int, timeout: float = 30.0) -> None:
        """Start member ``i`` again on its data (after :meth:`kill`) and wait until it answers."""
        if self.procs[i] is None:
            self.procs[i] = self._launch(self._args[i], self.logs[i])
        self._wait(timeout)

    def kill(self, i: int) -> None:
        """SIGKILL member ``i`` (its data stays; the others go on with a quorum)."""
        proc = self.procs[i]
        if proc is not None:
            proc.send_signal(signal.SIGKILL)
            proc.wait(timeout=10)
            self.procs[i] = None

    def close(self) -> None:
        for proc in self.procs:
            if proc is not None and proc.poll() is None:
                proc.terminate()
        for proc in self.procs:
            if proc is not None:
                try:
                    proc.wait(timeout=10)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait(timeout=10)
        self.procs = [None] * len(self.procs)
        if self._own_dir:
            shutil.rmtree(self.data_dir, ignore_errors=True)

    def __enter__(self) -> LocalEtcd:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()
