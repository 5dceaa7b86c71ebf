"""fusion_models' own exceptions (it does not import ``risk``; risk maps these at its boundary)."""

from __future__ import annotations


class FusionModelError(Exception):
    """Base class of the errors this package raises on purpose."""


class ArtifactNotFound(FusionModelError, LookupError):
    """No artifact of that version (or no task of that name in it)."""


class ArtifactInvalid(FusionModelError, ValueError):
    """An artifact directory is incomplete, corrupt, or does not match the code's feature schema."""


class InsufficientData(FusionModelError, ValueError):
    """Too few rows or events to train, evaluate or recalibrate (the minimum-sample guard)."""


class TableInvalid(FusionModelError, ValueError):
    """A feature table lacks columns the schema needs, or its labels are missing or not 0/1."""
