"""The principals file of ``dspex-notebook serve --principals FILE``: who may call, with which
token, and which sessions each may create or join (docs/server.md "Principals").

YAML (read with ``yaml.safe_load`` only) or JSON::

    principals:
      - name: alice
        token_file: alice.token          # or token: "..." (at least 16 characters)
        sessions: ["alice_*", "shared"]  # globs on session names
      - name: admin
        token_file: admin.token
        sessions: ["*"]

* ``name``: the principal (letters, digits, ``_ . -``; at most 64 characters), unique;
* ``token`` or ``token_file`` (exactly one; a relative ``token_file`` is read relative to the
  principals file); tokens are unique;
* ``sessions``: the session-name globs this principal may create and join (required, 1-64
  of them, each at most 256 characters, matched in linear time). A session is owned by the
  principal that created it; another principal uses it only when its own patterns match.

Unknown keys, duplicate names or tokens, short tokens, oversized files (over 1 MiB) and more
than 1,000 principals are refused with an error naming the entry and the field.
"""

from __future__ import annotations

import json
import pathlib
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import yaml

from .._patterns import glob_matcher
from .access import Rights

MAX_FILE_BYTES = 1 << 20
MAX_PRINCIPALS = 1000
MAX_PATTERNS = 64
MAX_PATTERN = 256
MIN_TOKEN = 16
_NAME = re.compile(r"[A-Za-z0-9_.\-]{1,64}")
_KEYS = {"name", "token", "token_file", "sessions"}


@dataclass(frozen=True, slots=True)
class Principal:
    name: str
    token: str
    sessions: tuple[str, ...]


def load_principals(path: str | pathlib.Path) -> list[Principal]:
    """Read and check a principals file.

    Raises:
        ValueError: one line naming the file, the entry and what is wrong.
    """
    path = pathlib.Path(path)
    where = f"principals file {str(path)!r}"
    try:
        size = path.stat().st_size
        if size > MAX_FILE_BYTES:
            raise ValueError(f"{where} is {size} bytes (limit {MAX_FILE_BYTES})")
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ValueError(f"cannot read {where}: {exc}") from None
    try:
        doc = json.loads(text) if path.suffix == ".json" else yaml.safe_load(text)
    except (ValueError, yaml.YAMLError, RecursionError) as exc:
        first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise ValueError(f"{where} is not valid {'JSON' if path.suffix == '.json' else 'YAML'}: "
                         f"{first}") from None
    return parse_principals(doc, where, path.parent)


def parse_principals(doc: Any, where: str = "principals",
                     base: pathlib.Path | None = None) -> list[Principal]:
    """Check an already-parsed principals document (see the module docstring)."""
    if not isinstance(doc, Mapping) or set(doc) != {"principals"}:
        raise ValueError(f"{where} must be a mapping with one key, 'principals' (a list)")
    entries = doc["principals"]
    if not isinstance(entries, list) or not entries:
        raise ValueError(f"{where}: 'principals' must be a non-empty list")
    if len(entries) > MAX_PRINCIPALS:
        raise ValueError(f"{where}: {len(entries)} principals (limit {MAX_PRINCIPALS})")
    out: list[Principal] = []
    names: set[str] = set()
    tokens: set[str] = set()
    for i, entry in enumerate(entries):
        at = f"{where}, entry {i}"
        if not isinstance(entry, Mapping):
            raise ValueError(f"{at} must be a mapping (name, token or token_file, sessions)")
        unknown = sorted(str(k) for k in entry if k not in _KEYS)
        if unknown:
            raise ValueError(f"{at}: unknown key {unknown[0]!r} (keys: name, token, token_file, "
                             "sessions)")
        name = entry.get("name")
        if not isinstance(name, str) or not _NAME.fullmatch(name):
            raise ValueError(f"{at}: name must be 1-64 letters, digits, '_', '.' or '-', got "
                             f"{str(name)[:40]!r}")
        at = f"{where}, principal {name!r}"
        if name in names:
            raise ValueError(f"{at} appears twice")
        names.add(name)
        token = _token(entry, at, base)
        if token in tokens:
            raise ValueError(f"{at}: its token is also another principal's; tokens must differ")
        tokens.add(token)
        out.append(Principal(name, token, _sessions(entry.get("sessions"), at)))
    return out


def _token(entry: Mapping[str, Any], at: str, base: pathlib.Path | None) -> str:
    from .runner import read_token_file

    if ("token" in entry) == ("token_file" in entry):
        raise ValueError(f"{at}: give exactly one of token, token_file")
    if "token_file" in entry:
        file = entry["token_file"]
        if not isinstance(file, str) or not file:
            raise ValueError(f"{at}: token_file must be a path")
        path = pathlib.Path(file)
        if base is not None and not path.is_absolute():
            path = base / path
        token = read_token_file(path, f"{at}: token_file")
    else:
        token = entry["token"]
        if not isinstance(token, str):
            raise ValueError(f"{at}: token must be a string")
        token = token.strip()
    if len(token) < MIN_TOKEN or len(token) > 4096 or any(c.isspace() for c in token):
        raise ValueError(f"{at}: a token needs {MIN_TOKEN}-4096 characters and no spaces")
    return token


def _sessions(raw: Any, at: str) -> tuple[str, ...]:
    if isinstance(raw, str):
        raw = [raw]
    if not isinstance(raw, list) or not raw:
        raise ValueError(f"{at}: sessions must be a non-empty list of session-name globs")
    if len(raw) > MAX_PATTERNS:
        raise ValueError(f"{at}: {len(raw)} session patterns (limit {MAX_PATTERNS})")
    for pattern in raw:
        if not isinstance(pattern, str) or not pattern or len(pattern) > MAX_PATTERN:
            raise ValueError(f"{at}: a session pattern must be a glob of 1-{MAX_PATTERN} "
                             f"characters, got {str(pattern)[:40]!r}")
        try:
            glob_matcher(pattern)
        except Exception as exc:
            raise ValueError(f"{at}: session pattern {pattern[:40]!r}: {exc}") from None
    return tuple(raw)


def tokens_and_rights(principals: list[Principal]) -> tuple[dict[str, str], Rights]:
    """``({token: name}, Rights)`` for the server."""
    return ({p.token: p.name for p in principals},
            Rights({p.name: p.sessions for p in principals}))
