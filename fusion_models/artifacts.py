"""Versioned artifact directories: what a trained model is on disk.

Layout (one directory per version; ``fusion_models/artifacts/<version>/`` for the shipped ones)::

    <version>/
      manifest.json            version, created, tasks, parent version (recalibration), synthetic-data flag
      MODEL_CARD.md            intended use, data, metrics, limits ("trained on synthetic data, not for clinical use")
      <task>/                  "patient" and/or "nodule"
        task.json              model id, outcome, horizon, schema hash, blend, calibrator id, training-data digest,
                               split sizes, library versions, headline metrics
        schema.json            the feature schema (hashed part + descriptions)
        training_ranges.json   per-feature training ranges (abstention)
        xgb.ubj                XGBoost booster (UBJSON)
        torch_fusion.pt        late-fusion network state_dict (+ torch_fusion.json: its layer sizes)
        calibrator.json        Platt or isotonic calibrator (plain JSON)
        golden.json            a few input rows and the predictions this artifact gave for them at training time
        metrics.json           every figure of the evaluation report
        report.md, *.png       evaluation report (held-out test split) with plots

Nothing is pickled: XGBoost's own format, a torch state_dict (loaded with ``weights_only=True``) and JSON.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from fusion_models.errors import ArtifactInvalid

ARTIFACT_FORMAT = 1
MANIFEST_FILE = "manifest.json"
MODEL_CARD_FILE = "MODEL_CARD.md"
TASK_FILE = "task.json"
SCHEMA_FILE = "schema.json"
RANGES_FILE = "training_ranges.json"
CALIBRATOR_FILE = "calibrator.json"
GOLDEN_FILE = "golden.json"
METRICS_FILE = "metrics.json"
REPORT_FILE = "report.md"
SYNTHETIC_NOTICE = "Trained on synthetic data - not for clinical use."
VERSION_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._+-]{0,63}$")


def check_version(version: str) -> str:
    if not VERSION_PATTERN.match(version):
        raise ValueError(f'Argument "version" must match {VERSION_PATTERN.pattern}, got {version!r}.')
    return version


@dataclass(frozen=True, slots=True)
class TaskManifest:
    task: str
    model_id: str
    version: str
    outcome: str
    horizon_years: float | None
    schema_name: str
    schema_hash: str
    blend: dict[str, Any]
    calibrator_id: str
    calibrator_kind: str
    trained_on_synthetic_data: bool
    training_data_digest: str
    split_sizes: dict[str, int]
    libraries: dict[str, str]
    headline_metrics: dict[str, Any] = field(default_factory=dict)
    format: int = ARTIFACT_FORMAT

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> TaskManifest:
        if int(data.get("format", 0)) != ARTIFACT_FORMAT:
            raise ArtifactInvalid(f"unsupported task artifact format {data.get('format')!r}")
        return cls(**data)


@dataclass(frozen=True, slots=True)
class ArtifactManifest:
    version: str
    created: str
    tasks: tuple[str, ...]
    trained_on_synthetic_data: bool
    description: str
    parent_version: str | None = None
    notice: str = SYNTHETIC_NOTICE
    format: int = ARTIFACT_FORMAT

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        data["tasks"] = list(self.tasks)
        return data

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> ArtifactManifest:
        if int(data.get("format", 0)) != ARTIFACT_FORMAT:
            raise ArtifactInvalid(f"unsupported artifact format {data.get('format')!r}")
        return cls(version=str(data["version"]), created=str(data["created"]), tasks=tuple(data["tasks"]),
                   trained_on_synthetic_data=bool(data["trained_on_synthetic_data"]),
                   description=str(data["description"]), parent_version=data.get("parent_version"),
                   notice=str(data.get("notice", SYNTHETIC_NOTICE)))


def write_json(path: Path, data: Any) -> None:
    path.write_text(json.dumps(data, indent=1, sort_keys=False, allow_nan=False) + "\n")


def read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text())
    except FileNotFoundError as exc:
        raise ArtifactInvalid(f"missing artifact file {path}") from exc
    except json.JSONDecodeError as exc:
        raise ArtifactInvalid(f"corrupt artifact file {path}: {exc}") from exc


def data_digest(x: npt.NDArray[np.float32], y: npt.NDArray[np.float64], ids: Sequence[str]) -> str:
    """SHA-256 of the encoded training matrix, labels and row ids (stable across library versions)."""
    h = hashlib.sha256()
    h.update(np.ascontiguousarray(x, dtype="<f4").tobytes())
    h.update(np.ascontiguousarray(y, dtype="<f8").tobytes())
    for i in ids:
        h.update(i.encode())
        h.update(b"\0")
    return "sha256:" + h.hexdigest()


def library_versions() -> dict[str, str]:
    import polars
    import xgboost

    versions = {"xgboost": xgboost.__version__, "numpy": np.__version__, "polars": polars.__version__}
    try:
        import torch

        versions["torch"] = torch.__version__
    except ImportError:  # pragma: no cover - torch is a dependency
        pass
    return versions
