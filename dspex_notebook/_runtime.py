"""Runtime files: how local processes find a running server (address + token).

Each server writes ``<runtime_dir>/server-<pid>-<port>.json`` (mode 0600, folder 0700) holding
``address``, ``token``, ``pid``, ``db``, ``store_id``, ``version`` and ``started_at``, and removes
it on a clean stop. Readers ignore files whose process is gone (and delete them when they can).
Like ``jupyter server list``, this is how a shell, another kernel, or ``dspex-notebook list``
reaches a kernel's embedded server.

Locations (first match wins):

* runtime dir: ``$DSPEX_RUNTIME_DIR``, else ``$XDG_RUNTIME_DIR/dspex-notebook``, else
  ``~/.local/share/dspex-notebook/runtime``
* default store: ``$DSPEX_DB``, else ``$XDG_DATA_HOME/dspex-notebook/store.sqlite3``, else
  ``~/.local/share/dspex-notebook/store.sqlite3``
"""

from __future__ import annotations

import json
import os
import pathlib
from typing import Any


def _data_home() -> pathlib.Path:
    xdg = os.environ.get("XDG_DATA_HOME")
    return pathlib.Path(xdg) if xdg else pathlib.Path.home() / ".local" / "share"


def runtime_dir() -> pathlib.Path:
    env = os.environ.get("DSPEX_RUNTIME_DIR")
    if env:
        return pathlib.Path(env)
    xdg = os.environ.get("XDG_RUNTIME_DIR")
    if xdg:
        return pathlib.Path(xdg) / "dspex-notebook"
    return _data_home() / "dspex-notebook" / "runtime"


def default_db_path() -> pathlib.Path:
    env = os.environ.get("DSPEX_DB")
    return pathlib.Path(env) if env else _data_home() / "dspex-notebook" / "store.sqlite3"


def write_runtime_file(info: dict[str, Any], directory: pathlib.Path | None = None) -> pathlib.Path:
    """Write ``info`` readable by the owner only; return the path."""
    folder = directory or runtime_dir()
    folder.mkdir(parents=True, exist_ok=True, mode=0o700)
    port = str(info["address"]).rsplit(":", 1)[-1]
    path = folder / f"server-{info['pid']}-{port}.json"
    tmp = path.with_suffix(".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as fh:
        json.dump(info, fh)
    os.replace(tmp, path)
    return path


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def list_servers(directory: pathlib.Path | None = None) -> list[dict[str, Any]]:
    """Running servers, newest first (stale files of dead processes are removed)."""
    folder = directory or runtime_dir()
    found = []
    for path in folder.glob("server-*.json") if folder.is_dir() else ():
        try:
            info = json.loads(path.read_text())
            pid = int(info["pid"])
        except (OSError, ValueError, KeyError, TypeError):
            continue
        if not _alive(pid):
            try:
                path.unlink()
            except OSError:
                pass
            continue
        info["runtime_file"] = str(path)
        found.append(info)
    found.sort(key=lambda i: i.get("started_at", 0), reverse=True)
    return found
