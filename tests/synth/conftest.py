"""A small generated cohort shared by the end-to-end tests of risk synth (FHIR, DICOM, SR, truth)."""

from __future__ import annotations

from pathlib import Path

import pytest

from risk.synth.pipeline import SynthOptions, generate

# Seed 40's first 12 patients cover every SR shape (TID 1410 3-D point, TID 1411, 2-D circle), all three nodule
# types, nodules seen on several rounds and a recorded lung cancer; the model tests check the rates at scale.
E2E_SEED = 40
E2E_PATIENTS = 12
E2E_MATRIX = 128


@pytest.fixture(scope="session")
def cohort_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("synth") / "cohort"
    generate(SynthOptions(out=out, patients=E2E_PATIENTS, seed=E2E_SEED, ct_matrix=E2E_MATRIX, workers=1))
    return out
