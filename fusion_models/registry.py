"""The artifact registry: a directory of versioned artifact directories, listed and loaded by version."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from fusion_models.artifacts import MANIFEST_FILE, ArtifactManifest, check_version, read_json
from fusion_models.errors import ArtifactInvalid, ArtifactNotFound

SHIPPED_REGISTRY = Path(__file__).resolve().parent / "artifacts"
"""Where the artifacts trained on the synthetic cohort are committed."""


@dataclass(frozen=True, slots=True)
class ArtifactInfo:
    path: Path
    manifest: ArtifactManifest

    @property
    def version(self) -> str:
        return self.manifest.version


class Registry:
    def __init__(self, root: Path) -> None:
        self.root = Path(root)

    def list(self) -> list[ArtifactInfo]:
        """Every valid artifact under the root, oldest first (by creation time, then version)."""
        if not self.root.is_dir():
            return []
        found: list[ArtifactInfo] = []
        for child in sorted(self.root.iterdir()):
            if (child / MANIFEST_FILE).is_file():
                manifest = ArtifactManifest.from_json(read_json(child / MANIFEST_FILE))
                if manifest.version != child.name:
                    raise ArtifactInvalid(f"{child}: manifest version {manifest.version!r} differs from its directory")
                found.append(ArtifactInfo(child, manifest))
        return sorted(found, key=lambda a: (a.manifest.created, a.version))

    def get(self, version: str) -> ArtifactInfo:
        check_version(version)
        path = self.root / version
        if not (path / MANIFEST_FILE).is_file():
            known = ", ".join(a.version for a in self.list()) or "none"
            raise ArtifactNotFound(f"no fusion-model artifact {version!r} in {self.root} (known: {known})")
        manifest = ArtifactManifest.from_json(read_json(path / MANIFEST_FILE))
        return ArtifactInfo(path, manifest)

    def latest(self) -> ArtifactInfo:
        artifacts = self.list()
        if not artifacts:
            raise ArtifactNotFound(f"no fusion-model artifacts in {self.root}")
        return artifacts[-1]

    def task_dir(self, version: str, task: str) -> Path:
        info = self.get(version)
        if task not in info.manifest.tasks:
            raise ArtifactNotFound(f"artifact {version!r} has no task {task!r} (it has {list(info.manifest.tasks)})")
        return info.path / task
