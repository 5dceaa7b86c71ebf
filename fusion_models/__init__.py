"""Learned lung-cancer risk models: feature schema, XGBoost + PyTorch late fusion, calibration, explanations,
versioned artifacts. Knows nothing of FHIR, DICOM or HTTP (see fusion_models/README.md)."""

from fusion_models.explain import Contribution
from fusion_models.features import NODULE_SCHEMA, PATIENT_SCHEMA, schema_for
from fusion_models.runtime import FusionPrediction, FusionPredictor, NodulePredictions, load_predictor
from fusion_models.schema import FeatureSchema, Task

__all__ = [
    "NODULE_SCHEMA",
    "PATIENT_SCHEMA",
    "Contribution",
    "FeatureSchema",
    "FusionPrediction",
    "FusionPredictor",
    "NodulePredictions",
    "Task",
    "load_predictor",
    "schema_for",
]
