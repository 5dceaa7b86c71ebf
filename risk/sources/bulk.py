"""FHIR Bulk Data NDJSON files → polars, streamed line by line with an explicit schema.

:class:`BulkExport` is a folder of NDJSON files as a Bulk Data ``$export`` leaves them
(interop.md §3.11): ``<Type>.ndjson`` or split ``<Type>.000.ndjson`` … (the synthetic cohort's layout),
or any names listed in a ``manifest.json`` whose ``output[].url`` are local paths or ``file:`` URLs. The
``$export`` client (kick-off, polling, SMART Backend Services token) is a later issue: it will download
the manifest's files into such a folder and hand it over; :class:`BulkSource` is that seam.

Reading follows reference/performance.md §4, the best robust approach measured there: every line is
read as one string column (``scan_csv`` with a separator that cannot occur in JSON and no quoting), and
only the fields a caller needs are decoded with ``str.json_decode`` and an explicit ``pl.Struct``. Never
``read_ndjson`` with schema inference on an export (≈ 37 GiB for 10M lines).

``json_decode`` fails a whole batch on one bad line (invalid JSON, or a decoded field of the wrong JSON
type), so :func:`collect_resources` first runs the fast path over all files and, only if it fails,
isolates the bad lines of the failing files by bisection, skips them with a note, and decodes the rest.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Final, Protocol
from urllib.parse import unquote, urlsplit

import orjson
import polars as pl

from risk.domain.provenance import IngestionNote, NoteCode, NoteSeverity

log = logging.getLogger(__name__)

LINE: Final = "line"
_SEPARATOR: Final = "\x01"  # a raw control character never occurs inside valid JSON text
_SMALL: Final = 64  # below this many lines, bisection checks lines one by one
MAX_LISTED_BAD_LINES: Final = 20


class BulkSource(Protocol):
    """Where a population run gets its NDJSON files."""

    def files(self, resource_type: str) -> list[Path]: ...


@dataclass(frozen=True, slots=True)
class BulkExport:
    """A folder holding one Bulk Data export (NDJSON files, optionally a manifest.json)."""

    root: Path

    def __post_init__(self) -> None:
        if not Path(self.root).is_dir():
            raise ValueError(f'Argument "root" must be a folder, got {str(self.root)!r}.')

    def files(self, resource_type: str) -> list[Path]:
        root = Path(self.root)
        manifest = root / "manifest.json"
        if manifest.is_file():
            listed = _manifest_files(manifest, resource_type)
            if listed is not None:
                return listed
        pattern = re.compile(rf"{re.escape(resource_type)}(\.\d+)?\.ndjson")
        return sorted(p for p in root.iterdir() if pattern.fullmatch(p.name) and p.is_file())


def _manifest_files(manifest: Path, resource_type: str) -> list[Path] | None:
    """Local files named by a Bulk manifest's ``output`` (None when it is not a Bulk manifest)."""
    try:
        body = orjson.loads(manifest.read_bytes())
    except (OSError, orjson.JSONDecodeError):
        return None
    outputs = body.get("output") if isinstance(body, dict) else None
    if not isinstance(outputs, list):
        return None
    out: list[Path] = []
    for entry in outputs:
        if not isinstance(entry, dict) or entry.get("type") != resource_type or not isinstance(entry.get("url"), str):
            continue
        url = urlsplit(entry["url"])
        if url.scheme in ("", "file"):
            path = Path(unquote(url.path))
            out.append(path if path.is_absolute() else manifest.parent / path)
    return out


def ndjson_lines(path: Path) -> pl.LazyFrame:
    """One NDJSON file as a lazy frame with one string column ``line`` (empty lines dropped)."""
    return (pl.scan_csv(path, has_header=False, separator=_SEPARATOR, quote_char=None, schema={LINE: pl.String},
                        new_columns=[LINE])
            .filter(pl.col(LINE).str.strip_chars().str.len_bytes() > 0))


def decode(lines: pl.LazyFrame, dtype: pl.Struct) -> pl.LazyFrame:
    """Decode only ``dtype``'s fields of each line (one column per top-level field)."""
    return lines.select(pl.col(LINE).str.json_decode(dtype).alias("_r")).unnest("_r")


@dataclass(slots=True)
class DecodeReport:
    """Lines that could not be decoded, per file."""

    bad_lines: dict[str, list[int]] = field(default_factory=dict)

    @property
    def count(self) -> int:
        return sum(len(v) for v in self.bad_lines.values())

    def notes(self, resource_type: str) -> list[IngestionNote]:
        out = []
        for path, lines in self.bad_lines.items():
            shown = ", ".join(str(n) for n in lines[:MAX_LISTED_BAD_LINES])
            more = f" and {len(lines) - MAX_LISTED_BAD_LINES} more" if len(lines) > MAX_LISTED_BAD_LINES else ""
            out.append(IngestionNote(NoteSeverity.WARNING, NoteCode.MALFORMED, path,
                                     f"{len(lines)} {resource_type} line(s) are not valid JSON or have a field of "
                                     f"the wrong type; skipped (records {shown}{more}; blank lines not counted)."))
        return out


Transform = Callable[[pl.LazyFrame], pl.LazyFrame]


def collect_resources(files: Sequence[Path], dtype: pl.Struct, transform: Transform,
                      report: DecodeReport | None = None) -> pl.DataFrame:
    """``transform(decode(lines))`` over every file, concatenated; bad lines skipped and reported.

    The fast path is one lazy query over all files (polars runs the files in parallel). If it fails,
    each file is retried alone and the failing ones are bisected down to their bad lines.
    """
    if not files:
        return pl.DataFrame()
    try:
        return pl.concat([transform(decode(ndjson_lines(p), dtype)) for p in files]).collect()
    except pl.exceptions.PolarsError:
        log.warning("bulk decode failed for a batch of %d file(s); isolating bad lines", len(files))
    parts = []
    for path in files:
        try:
            parts.append(transform(decode(ndjson_lines(path), dtype)).collect())
            continue
        except pl.exceptions.PolarsError:
            pass
        lines = ndjson_lines(path).with_row_index("_n", offset=1).collect()
        bad = _bad_rows(lines[LINE], dtype)
        if report is not None:
            report.bad_lines[str(path)] = [int(lines["_n"][i]) for i in bad]
        keep = lines.drop("_n").with_row_index("_i").filter(~pl.col("_i").is_in(bad)).drop("_i")
        parts.append(transform(decode(keep.lazy(), dtype)).collect())
    return pl.concat(parts)


def _decodes(lines: pl.Series, dtype: pl.Struct) -> bool:
    try:
        lines.str.json_decode(dtype)
    except pl.exceptions.PolarsError:
        return False
    return True


def _bad_rows(lines: pl.Series, dtype: pl.Struct) -> list[int]:
    """Indices of the lines that fail to decode (bisection; linear below ``_SMALL`` lines)."""
    bad: list[int] = []
    stack = [(0, len(lines))]
    while stack:
        start, end = stack.pop()
        if end <= start or _decodes(lines.slice(start, end - start), dtype):
            continue
        if end - start <= _SMALL:
            bad.extend(i for i in range(start, end) if not _decodes(lines.slice(i, 1), dtype))
            continue
        middle = (start + end) // 2
        stack.extend([(middle, end), (start, middle)])
    return sorted(bad)
