"""The layout of a synthetic cohort directory (what ``risk synth`` writes), found on disk.

``DIR/manifest.json``, ``DIR/fhir/bundles/*.json`` (transaction Bundles), ``DIR/fhir/ndjson/*.ndjson``
(Bulk-style, one resource per line, possibly split ``<Type>.000.ndjson``), ``DIR/dicom/**.dcm`` (any
nesting), ``DIR/truth/*.parquet`` (not loaded anywhere).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from risk.errors import InvalidInput


@dataclass(frozen=True, slots=True)
class CohortDirectory:
    root: Path
    manifest: dict[str, Any] | None
    bundle_files: tuple[Path, ...]
    ndjson_files: tuple[Path, ...]
    dicom_files: tuple[Path, ...]
    problems: tuple[str, ...] = ()

    @classmethod
    def open(cls, root: Path | str) -> CohortDirectory:
        path = Path(root)
        if not path.is_dir():
            raise InvalidInput("DIR", f"{path} is not a directory")
        problems: list[str] = []
        manifest: dict[str, Any] | None = None
        manifest_path = path / "manifest.json"
        if manifest_path.is_file():
            try:
                loaded = json.loads(manifest_path.read_text())
            except (OSError, ValueError) as exc:
                problems.append(f"manifest.json unreadable: {exc}")
            else:
                if isinstance(loaded, dict):
                    manifest = loaded
                else:
                    problems.append("manifest.json is not a JSON object")
        bundles = tuple(sorted((path / "fhir" / "bundles").glob("*.json")))
        ndjson = tuple(sorted((path / "fhir" / "ndjson").glob("*.ndjson")))
        dicom = tuple(sorted(p for p in (path / "dicom").rglob("*.dcm") if p.is_file()))
        if not (bundles or ndjson or dicom):
            raise InvalidInput("DIR", f"{path} holds no fhir/bundles/*.json, fhir/ndjson/*.ndjson or dicom/**.dcm")
        return cls(path, manifest, bundles, ndjson, dicom, tuple(problems))

    def describe(self) -> str:
        m = self.manifest or {}
        head = f"cohort {self.root}"
        if m:
            head += f" (seed {m.get('seed')}, {m.get('n_patients')} patients, site {m.get('site')}, " \
                    f"{m.get('generator_version')})"
        return (f"{head}: {len(self.bundle_files)} bundle files, {len(self.ndjson_files)} NDJSON files, "
                f"{len(self.dicom_files)} DICOM files")
