"""Synthetic lung-cancer screening cohort: FHIR R4 (bundles + Bulk NDJSON), DICOM CT + TID 1500 SR, parquet truth.

Everything is labelled synthetic. The generative model and its documented targets are in risk/synth/README.md and
:mod:`risk.synth.model`; ``risk synth --help`` runs it.
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "DEFAULT_AS_OF": "risk.synth.defaults",
    "GENERATOR_VERSION": "risk.synth.pipeline",
    "NOTICE": "risk.synth.pipeline",
    "SynthOptions": "risk.synth.pipeline",
    "generate": "risk.synth.pipeline",
    "SITES": "risk.synth.sites",
    "SITE_A": "risk.synth.sites",
    "SITE_B": "risk.synth.sites",
    "SiteProfile": "risk.synth.sites",
    "site_profile": "risk.synth.sites",
}


def __getattr__(name: str) -> Any:
    """Lazy exports, so ``risk.synth.defaults`` (used by the CLI parser) stays cheap to import."""
    if name not in _EXPORTS:
        raise AttributeError(f"module 'risk.synth' has no attribute {name!r}")
    return getattr(importlib.import_module(_EXPORTS[name]), name)


__all__ = [
    "DEFAULT_AS_OF",
    "GENERATOR_VERSION",
    "NOTICE",
    "SITES",
    "SITE_A",
    "SITE_B",
    "SiteProfile",
    "SynthOptions",
    "generate",
    "site_profile",
]
