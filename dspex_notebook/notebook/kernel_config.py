"""Pre-load the extension in every kernel: ``dspex-notebook enable [--sys-prefix]``.

Jupyter has no drop-in folder for IPython kernel extensions (``jupyter-config/`` fragments are
for server extensions, and traitlets loads only ``ipython_kernel_config.{py,json}``, without
``.d`` merging). So we merge ``{"IPKernelApp": {"extensions": ["dspex_notebook"]}}`` into one
of those files — the user's profile (``$IPYTHONDIR/profile_default``) or this environment's
``{sys.prefix}/etc/ipython`` — keeping everything else in it. The same fragment ships as
``share/dspex-notebook/ipython_kernel_config.json`` for admins who manage config by hand.
"""

from __future__ import annotations

import json
import os
import pathlib
import sys

EXTENSION = "dspex_notebook"


def config_path(sys_prefix: bool = False) -> pathlib.Path:
    if sys_prefix:
        return pathlib.Path(sys.prefix) / "etc" / "ipython" / "ipython_kernel_config.json"
    from IPython.paths import get_ipython_dir

    return pathlib.Path(get_ipython_dir()) / "profile_default" / "ipython_kernel_config.json"


def set_enabled(path: pathlib.Path, enabled: bool) -> bool:
    """Add or remove the extension in ``path``; return whether the file changed."""
    config = json.loads(path.read_text()) if path.exists() else {}
    app = config.setdefault("IPKernelApp", {})
    extensions = list(app.get("extensions", []))
    if enabled and EXTENSION not in extensions:
        extensions.append(EXTENSION)
    elif not enabled and EXTENSION in extensions:
        extensions.remove(EXTENSION)
    else:
        return False
    app["extensions"] = extensions
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(config, indent=2) + "\n")
    os.replace(tmp, path)
    return True
