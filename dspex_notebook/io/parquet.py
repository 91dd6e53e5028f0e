"""Parquet export/import (optional ``pyarrow``: ``pip install 'dspex-notebook[parquet]'``).

One row per variable: ``name``, ``type``, ``version``, ``updated_at``, ``source``, ``id``,
``create_revision`` as typed columns, and ``value``, ``constraints``, ``metadata``,
``history`` as JSON text columns (values in the export document's form, so arrays keep their
dtype, shape and bytes). The document's other top-level fields (format, version, session,
revision, optional ``dependencies``/``rules`` sections) are the schema metadata key
``dspex-notebook``.
"""

from __future__ import annotations

import io
import json
from typing import Any

from .._errors import InvalidArgument, Unsupported

_KEY = b"dspex-notebook"
_TYPED = ("name", "type", "version", "updated_at", "source", "id", "create_revision")
_JSON = ("value", "constraints", "metadata", "history")


def _pyarrow() -> Any:
    try:
        import pyarrow as pa
        import pyarrow.parquet as pq
    except ImportError:
        raise Unsupported("format 'parquet' needs pyarrow: pip install 'dspex-notebook[parquet]'"
                          ) from None
    return pa, pq


def to_parquet(doc: dict[str, Any]) -> bytes:
    pa, pq = _pyarrow()
    rows = doc.get("variables", [])
    columns: dict[str, Any] = {
        "name": pa.array([r["name"] for r in rows], pa.string()),
        "type": pa.array([r["type"] for r in rows], pa.string()),
        "version": pa.array([r.get("version", 0) for r in rows], pa.int64()),
        "updated_at": pa.array([r.get("updated_at") for r in rows], pa.float64()),
        "source": pa.array([r.get("source") for r in rows], pa.string()),
        "id": pa.array([r.get("id") for r in rows], pa.string()),
        "create_revision": pa.array([r.get("create_revision") for r in rows], pa.int64()),
    }
    for key in _JSON:
        columns[key] = pa.array([None if key not in r else json.dumps(r[key]) for r in rows],
                                pa.string())
    head = {k: v for k, v in doc.items() if k != "variables"}
    table = pa.table(columns).replace_schema_metadata({_KEY: json.dumps(head).encode()})
    out = io.BytesIO()
    pq.write_table(table, out)
    return out.getvalue()


def from_parquet(data: bytes) -> dict[str, Any]:
    pa, pq = _pyarrow()
    try:
        table = pq.read_table(pa.BufferReader(data))
    except (pa.ArrowException, OSError, ValueError) as exc:
        raise InvalidArgument(f"the parquet import is not valid: {str(exc)[:300]}") from None
    head_raw = (table.schema.metadata or {}).get(_KEY)
    if head_raw is None:
        raise InvalidArgument("the parquet file is not a dspex-notebook export (no "
                              "'dspex-notebook' schema metadata)")
    missing = [c for c in _TYPED + _JSON if c not in table.column_names]
    if missing:
        raise InvalidArgument(f"the parquet export lacks the column(s) {', '.join(missing)}")
    try:
        head = json.loads(head_raw)
    except ValueError as exc:
        raise InvalidArgument(f"the parquet export's schema metadata is not JSON: {exc}") from None
    if not isinstance(head, dict):
        raise InvalidArgument("the parquet export's schema metadata is not a JSON object")
    variables = []
    for i, row in enumerate(table.to_pylist()):
        item = {k: row[k] for k in _TYPED if row[k] is not None}
        for key in _JSON:
            if row[key] is None:
                continue
            try:
                item[key] = json.loads(row[key])
            except (TypeError, ValueError) as exc:
                raise InvalidArgument(f"the parquet export's row {i} ({row.get('name')!r}): "
                                      f"column {key!r} is not JSON: {exc}") from None
        variables.append(item)
    return {**head, "variables": variables}
