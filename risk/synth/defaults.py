"""Defaults of ``risk synth`` that the CLI needs without importing the generator (numpy, pydicom, highdicom)."""

from __future__ import annotations

import os
from datetime import date

DEFAULT_AS_OF = date(2026, 6, 30)
DEFAULT_DICOMWEB_URL = "http://127.0.0.1:18042/dicom-web"
SITE_NAMES = ("site-a", "site-b")
CT_MATRICES = (64, 128, 512)


def default_workers() -> int:
    """One worker per CPU, at most 8."""
    return max(1, min(8, os.cpu_count() or 1))
