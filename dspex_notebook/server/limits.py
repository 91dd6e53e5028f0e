"""Size and count limits the server enforces, so bad or huge input is refused, not crashed on."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from .._errors import InvalidArgument, ResourceLimitExceeded


@dataclass(frozen=True, slots=True)
class Limits:
    """Per-server limits. Exceeding one gives RESOURCE_EXHAUSTED or INVALID_ARGUMENT."""

    max_message_bytes: int = 64 * 1024 * 1024
    max_value_bytes: int = 16 * 1024 * 1024
    max_name_length: int = 256
    max_metadata_entries: int = 64
    max_metadata_value_length: int = 4096
    max_batch: int = 10_000
    max_variables_per_session: int = 100_000
    max_sessions: int = 10_000

    def check_metadata(self, metadata: Mapping[str, Any]) -> None:
        if len(metadata) > self.max_metadata_entries:
            raise ResourceLimitExceeded(
                f"metadata has {len(metadata)} entries (limit {self.max_metadata_entries})"
            )
        for key, value in metadata.items():
            if not isinstance(key, str) or not isinstance(value, str):
                raise InvalidArgument(f"metadata must map strings to strings, got {key!r}: {value!r}")
            if len(key) > self.max_name_length or len(value) > self.max_metadata_value_length:
                raise ResourceLimitExceeded(
                    f"metadata entry {key[:40]!r} is too long (key limit {self.max_name_length},"
                    f" value limit {self.max_metadata_value_length})"
                )
