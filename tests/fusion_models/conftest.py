"""A tiny artifact trained once per session on the stand-in tables (seconds: few trees, few epochs)."""

from __future__ import annotations

from pathlib import Path

import polars as pl
import pytest

from fusion_models.schema import Task
from fusion_models.torch_fusion import TorchParams
from fusion_models.training import TaskConfig, TaskResult, train_artifact
from fusion_models.xgb import XgbParams
from tests.fusion_models.standin import nodule_table, patient_table

TINY_VERSION = "tiny-1"


def tiny_configs(n_boot: int = 50) -> dict[Task, TaskConfig]:
    xgb = XgbParams(num_boost_round=60, early_stopping_rounds=15, eta=0.1)
    net = TorchParams(max_epochs=6, patience=3, batch_size=256)
    return {t: TaskConfig(task=t, model_id=f"fusion-{t.value}", xgb=xgb, torch_params=net, n_boot=n_boot)
            for t in Task}


def tiny_tables() -> dict[Task, pl.DataFrame]:
    patient = patient_table(1500, seed=5)
    patient = patient.with_columns(
        baseline_plcom2012=pl.when(pl.col("smoking_status") != "never")
        .then(1 / (1 + (-(-4.0 + 0.07 * (pl.col("age_years") - 62))).exp())).otherwise(None))
    return {Task.PATIENT: patient, Task.NODULE: nodule_table(500, seed=5)}


@pytest.fixture(scope="session")
def tiny_tables_fixture() -> dict[Task, pl.DataFrame]:
    return tiny_tables()


@pytest.fixture(scope="session")
def tiny_registry(tmp_path_factory: pytest.TempPathFactory,
                  tiny_tables_fixture: dict[Task, pl.DataFrame]) -> tuple[Path, list[TaskResult]]:
    root = tmp_path_factory.mktemp("registry")
    results = train_artifact(tiny_tables_fixture, root, TINY_VERSION, tiny_configs(), description="tiny test artifact",
                             data_notes=["stand-in tables (tests/fusion_models/standin.py)"])
    return root, results
