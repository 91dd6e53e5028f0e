"""Export/import formats on the client: the server speaks one JSON document
(``server/io_document.py``); this package turns it into ``json``, ``yaml``, ``parquet`` or
``pickle`` bytes and back.

Safety (docs/api.md, "Export and import"):

* **YAML** is read with ``safe_load`` semantics only, and aliases (``*name``) are refused too
  (an alias bomb expands exponentially once converted): ``!!python/object`` and every other
  non-standard tag is an error naming its line and column.
* **pickle** import is refused unless the caller passes ``allow_pickle=True``, and even then the
  payload never executes code: the unpickler resolves no global at all (``find_class`` and
  ``persistent_load`` refuse), so only plain data — dicts, lists, strings, numbers, booleans,
  None — can be rebuilt. An export's pickle is exactly that (arrays are base64 inside it), so
  our own pickles round-trip; a pickle of anything else (a class, ``numpy`` objects, a
  ``__reduce__`` payload) is refused before anything of it runs.
* **parquet** needs the optional ``pyarrow`` (``pip install 'dspex-notebook[parquet]'``).
* Inputs larger than :data:`MAX_IMPORT_BYTES` are refused before parsing; malformed input is an
  :class:`~dspex_notebook.InvalidArgument` saying where (line/column, or the part).
"""

from __future__ import annotations

from .formats import FORMATS, MAX_IMPORT_BYTES, check_format, dump, format_for_path, load, read_file

__all__ = ["FORMATS", "MAX_IMPORT_BYTES", "check_format", "dump", "format_for_path", "load",
           "read_file"]
