"""The Bulk-style NDJSON writer splits files exactly at the line limit and names single files <Type>.ndjson."""

from __future__ import annotations

from pathlib import Path

import pytest

from risk.synth.ndjson import NdjsonWriter


def _lines(start: int, n: int) -> bytes:
    return b"".join(b'{"id":"%d"}\n' % k for k in range(start, start + n))


def test_split_at_exact_line_counts_across_writes(tmp_path: Path) -> None:
    w = NdjsonWriter(tmp_path, lines_per_file=7)
    written = 0
    for n in (3, 5, 1, 14, 0, 2):
        w.write("Observation", _lines(written, n), n)
        written += n
    w.write("Patient", _lines(0, 4), 4)
    summary = w.close()
    assert summary["Observation"] == {"lines": 25, "files": [f"Observation.{k:03d}.ndjson" for k in range(4)]}
    assert summary["Patient"] == {"lines": 4, "files": ["Patient.ndjson"]}
    files = summary["Observation"]["files"]
    assert isinstance(files, list)
    parts = [(tmp_path / name).read_bytes() for name in files]
    assert [p.count(b"\n") for p in parts] == [7, 7, 7, 4]
    assert b"".join(parts) == _lines(0, 25)
    assert (tmp_path / "Patient.ndjson").read_bytes() == _lines(0, 4)
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([*files, "Patient.ndjson"])


def test_exactly_full_file_stays_single(tmp_path: Path) -> None:
    w = NdjsonWriter(tmp_path, lines_per_file=5)
    w.write("Condition", _lines(0, 5), 5)
    assert w.close()["Condition"]["files"] == ["Condition.ndjson"]


def test_rejects_a_zero_line_limit(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="lines_per_file"):
        NdjsonWriter(tmp_path, lines_per_file=0)
