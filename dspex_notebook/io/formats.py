"""The four export formats: converting the server's JSON document to each and back."""

from __future__ import annotations

import io
import json
import pickle
from typing import Any

from .._errors import InvalidArgument, ResourceLimitExceeded

FORMATS = ("json", "yaml", "parquet", "pickle")
#: an import file is refused above this size, before any parsing
MAX_IMPORT_BYTES = 64 * 1024 * 1024
#: YAML is parsed in pure Python (so that aliases can be refused): a tighter size
MAX_YAML_BYTES = 16 * 1024 * 1024


def check_format(fmt: Any) -> str:
    if not isinstance(fmt, str) or fmt.lower() not in FORMATS:
        raise InvalidArgument(f"format must be one of {', '.join(FORMATS)}, got {fmt!r}")
    return fmt.lower()


def dump(document: bytes, fmt: str) -> bytes:
    """The server's export ``document`` (UTF-8 JSON) in format ``fmt``."""
    fmt = check_format(fmt)
    if fmt == "json":
        return document
    doc = json.loads(document)
    if fmt == "yaml":
        import yaml

        class _Dumper(yaml.SafeDumper):
            def ignore_aliases(self, data: Any) -> bool:
                return True

        text = yaml.dump(doc, Dumper=_Dumper, sort_keys=False, allow_unicode=True,
                         default_flow_style=False, width=100)
        return text.encode("utf-8")
    if fmt == "pickle":
        return pickle.dumps(doc, protocol=4)
    from .parquet import to_parquet

    return to_parquet(doc)


def load(data: bytes, fmt: str, allow_pickle: bool = False) -> bytes:
    """An import file in format ``fmt`` as the server's JSON document.

    Raises:
        InvalidArgument: malformed input (the message says where), a YAML tag or alias, a
            pickle that is not plain data, pickle without ``allow_pickle``.
        ResourceLimitExceeded: ``data`` is larger than :data:`MAX_IMPORT_BYTES`.
    """
    fmt = check_format(fmt)
    if not isinstance(data, bytes | bytearray | memoryview):
        if isinstance(data, str) and fmt in ("json", "yaml"):
            data = data.encode("utf-8")
        else:
            raise InvalidArgument(f"import data must be bytes, got {type(data).__name__}")
    data = bytes(data)
    limit = MAX_YAML_BYTES if fmt == "yaml" else MAX_IMPORT_BYTES
    if len(data) > limit:
        raise ResourceLimitExceeded(f"the {fmt} import is {len(data)} bytes (limit {limit}); "
                                    "split it (export with filter_pattern)")
    if fmt == "json":
        return data
    if fmt == "yaml":
        doc = _load_yaml(data)
    elif fmt == "pickle":
        doc = _load_pickle(data, allow_pickle)
    else:
        from .parquet import from_parquet

        doc = from_parquet(data)
    return _to_json(doc, fmt)


def _to_json(doc: Any, fmt: str) -> bytes:
    def refuse(obj: Any) -> Any:
        raise InvalidArgument(f"the {fmt} import holds a {type(obj).__name__} value "
                              f"({str(obj)[:40]!r}), which an export document never has")

    try:
        return json.dumps(doc, default=refuse, ensure_ascii=False).encode("utf-8")
    except RecursionError:
        raise InvalidArgument(f"the {fmt} import is nested too deeply") from None
    except ValueError as exc:  # circular references
        raise InvalidArgument(f"the {fmt} import is not a plain document: {exc}") from None


# ----------------------------------------------------------------------------------------------
# YAML: safe_load only, no aliases


def _load_yaml(data: bytes) -> Any:
    import yaml

    class _Loader(yaml.SafeLoader):
        def compose_node(self, parent: Any, index: Any) -> Any:
            if self.check_event(yaml.AliasEvent):
                mark = self.peek_event().start_mark
                raise yaml.composer.ComposerError(
                    None, None, "aliases (*name) are not allowed in an import", mark)
            return super().compose_node(parent, index)

    try:
        return yaml.load(data, Loader=_Loader)  # noqa: S506 - a SafeLoader subclass
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        where = f"line {mark.line + 1} column {mark.column + 1}: " if mark else ""
        problem = exc.problem or str(exc)
        if isinstance(exc, yaml.constructor.ConstructorError):
            problem += " (YAML is read with safe_load: Python tags are refused)"
        raise InvalidArgument(f"the YAML import is not valid: {where}{problem}") from None
    except yaml.YAMLError as exc:
        raise InvalidArgument(f"the YAML import is not valid: {exc}") from None
    except RecursionError:
        raise InvalidArgument("the YAML import is nested too deeply") from None


# ----------------------------------------------------------------------------------------------
# pickle: refused unless allowed, and then plain data only


class _PlainUnpickler(pickle.Unpickler):
    """Rebuilds only what pickle encodes without globals: dict, list, tuple, str, bytes, int,
    float, bool, None. Every opcode that could call code needs a global first (``GLOBAL``,
    ``STACK_GLOBAL``, ``INST``, ``EXT*`` all go through :meth:`find_class`; ``REDUCE``,
    ``BUILD``, ``NEWOBJ`` need a callable or class that only a global provides), so refusing
    globals refuses them all."""

    def find_class(self, module: str, name: str) -> Any:
        raise pickle.UnpicklingError(
            f"it refers to {module}.{name}; only plain data (dicts, lists, strings, numbers) is "
            "accepted, and nothing of the payload was run")

    def persistent_load(self, pid: Any) -> Any:
        raise pickle.UnpicklingError("it uses persistent ids; only plain data is accepted")


def _load_pickle(data: bytes, allow_pickle: bool) -> Any:
    if not allow_pickle:
        raise InvalidArgument(
            "pickle import is refused unless enabled: pass allow_pickle=True (or --allow-pickle) "
            "for a file you trust; even then only plain data is rebuilt, never code")
    try:
        return _PlainUnpickler(io.BytesIO(data)).load()
    except pickle.UnpicklingError as exc:
        raise InvalidArgument(f"the pickle import is refused: {exc}") from None
    except (EOFError, ValueError, TypeError, KeyError, IndexError, OverflowError,
            MemoryError, AttributeError) as exc:
        raise InvalidArgument(f"the pickle import is malformed: {type(exc).__name__}: "
                              f"{str(exc)[:200]}") from None
    except RecursionError:
        raise InvalidArgument("the pickle import is nested too deeply") from None


_SUFFIXES = {".json": "json", ".yaml": "yaml", ".yml": "yaml", ".parquet": "parquet",
             ".pq": "parquet", ".pkl": "pickle", ".pickle": "pickle"}


def format_for_path(path: str | None, fmt: str | None) -> str:
    """``fmt`` if given, else the format the file name's suffix says (default ``json``)."""
    if fmt:
        return check_format(fmt)
    import os

    return _SUFFIXES.get(os.path.splitext(path or "")[1].lower(), "json")


def read_file(path: str) -> bytes:
    """An import file's bytes, refusing one over :data:`MAX_IMPORT_BYTES` before reading it.

    Raises:
        InvalidArgument: no such file, or it cannot be read (the message names it).
        ResourceLimitExceeded: too large.
    """
    import os

    try:
        size = os.stat(path).st_size
        if size > MAX_IMPORT_BYTES:
            raise ResourceLimitExceeded(f"{path}: {size} bytes is over the import limit of "
                                        f"{MAX_IMPORT_BYTES}")
        with open(path, "rb") as f:
            return f.read(MAX_IMPORT_BYTES + 1)
    except OSError as exc:
        raise InvalidArgument(f"cannot read {path}: {exc.strerror or exc}") from None
