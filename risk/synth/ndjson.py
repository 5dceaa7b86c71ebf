"""Bulk-Data-style NDJSON output: one resource per line, one file set per resource type.

Files are written as ``<Type>.000.ndjson``, ``<Type>.001.ndjson`` … with at most :data:`LINES_PER_FILE` lines
each (the split falls exactly on a line boundary); when a type fits in one file it is renamed
``<Type>.ndjson`` at the end. Serialisation (orjson) happens in the workers; this writer only appends bytes, so
memory stays bounded by one chunk.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO

import numpy as np

LINES_PER_FILE = 1_000_000


@dataclass
class _TypeState:
    part: int = 0
    lines_in_part: int = 0
    total_lines: int = 0
    handle: BinaryIO | None = None
    files: list[str] = field(default_factory=list)


class NdjsonWriter:
    """Appends serialised lines per resource type, splitting files at ``lines_per_file``."""

    def __init__(self, directory: Path, lines_per_file: int = LINES_PER_FILE) -> None:
        if lines_per_file < 1:
            raise ValueError('Argument "lines_per_file" must be at least 1.')
        self.directory = directory
        self.lines_per_file = lines_per_file
        self._types: dict[str, _TypeState] = {}
        directory.mkdir(parents=True, exist_ok=True)

    def write(self, resource_type: str, data: bytes, n_lines: int) -> None:
        """Append ``n_lines`` newline-terminated lines (``data``) of ``resource_type``."""
        if n_lines == 0:
            return
        state = self._types.setdefault(resource_type, _TypeState())
        start = 0
        remaining = n_lines
        ends: np.ndarray | None = None
        while remaining:
            if state.handle is None or state.lines_in_part == self.lines_per_file:
                self._open_next(resource_type, state)
            room = self.lines_per_file - state.lines_in_part
            if remaining <= room:
                assert state.handle is not None
                state.handle.write(data[start:])
                state.lines_in_part += remaining
                state.total_lines += remaining
                return
            if ends is None:
                ends = np.flatnonzero(np.frombuffer(data, dtype=np.uint8) == 0x0A)
            taken = n_lines - remaining
            stop = int(ends[taken + room - 1]) + 1
            assert state.handle is not None
            state.handle.write(data[start:stop])
            state.lines_in_part += room
            state.total_lines += room
            remaining -= room
            start = stop

    def _open_next(self, resource_type: str, state: _TypeState) -> None:
        if state.handle is not None:
            state.handle.close()
            state.part += 1
        name = f"{resource_type}.{state.part:03d}.ndjson"
        state.files.append(name)
        state.lines_in_part = 0
        state.handle = open(self.directory / name, "wb")  # noqa: SIM115 - closed in close()

    def close(self) -> dict[str, dict[str, object]]:
        """Close every file; returns ``{type: {"lines": n, "files": [...]}}`` with the final file names."""
        out: dict[str, dict[str, object]] = {}
        for resource_type, state in sorted(self._types.items()):
            if state.handle is not None:
                state.handle.close()
                state.handle = None
            if len(state.files) == 1:
                single = f"{resource_type}.ndjson"
                (self.directory / state.files[0]).rename(self.directory / single)
                state.files = [single]
            out[resource_type] = {"lines": state.total_lines, "files": list(state.files)}
        return out
