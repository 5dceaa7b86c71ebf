"""Model outputs as FHIR R4 RiskAssessment (interop.md §3.1), one resource per model estimate.

**Probability convention.** ``prediction.probabilityDecimal`` is a **fraction from 0 to 1** (0.041 = 4.1 %), as in
the FHIR core examples (cardiac 0.02, breast cancer 0.000168). R4's invariant ras-2 only bounds it at 100, so a
fraction is valid; the unit is stated in words in ``prediction.rationale`` ("6-year risk 4.1%"), so a reader never
has to guess. ``probabilityRange`` is not used (ras-1 would require percentages there); an uncertainty interval
goes into the rationale text.

Content: ``status`` final (``preliminary`` for a learned model trained on synthetic data), ``subject``,
``occurrenceDateTime`` (when the assessment was made), ``method`` (the model, in the service's model code system,
with its version), ``code`` (lung cancer risk), ``performer`` (the service, by display), ``basis`` (the FHIR
resources and DICOM objects behind the inputs), ``prediction`` (outcome, probability, horizon as ``whenRange`` in
years, rationale with the key inputs), ``note`` (abstentions of the other models, imputed inputs, the
synthetic-data notice). Nodule-level estimates (Brock) name the nodule in the rationale.

:func:`risk_assessment_json` builds plain JSON (cheap enough for a CDS ``systemActions`` entry);
:func:`build_risk_assessment` validates it with ``fhir.resources.R4B.RiskAssessment``.
"""

from __future__ import annotations

from typing import Any

from risk import __version__, codes
from risk.domain.assessment import Assessment, RiskEstimate
from risk.domain.provenance import SourceKind
from risk.errors import InvalidInput

ASSESSMENT_IDENTIFIER_SYSTEM = "https://lungrisk.example.org/fhir/NamingSystem/assessment-id"
SERVICE_DISPLAY = f"Lung risk service {__version__}"
SYNTHETIC_MODEL_NOTE = "Model trained on synthetic data: not validated for clinical use."

_KNOWN_METHODS = {
    "plcom2012": codes.MODEL_PLCOM2012,
    "plcom2012-norace": codes.MODEL_PLCOM2012_NORACE,
    "brock": codes.MODEL_BROCK,
}


def _percent(p: float) -> str:
    pct = p * 100
    return f"{pct:.1f}%" if pct >= 0.1 else f"{pct:.2f}%"


def rationale(estimate: RiskEstimate) -> str:
    """One line: the probability in %, horizon, model and version, interval, and top contributions."""
    what = "malignancy probability" if estimate.horizon_years is None else f"{estimate.horizon_years:g}-year risk"
    text = f"{what} {_percent(estimate.probability)} ({estimate.model} {estimate.model_version})"
    if estimate.subject:
        text = f"Nodule {estimate.subject}: {text}"
    if estimate.interval is not None:
        lo, hi = estimate.interval
        text += f", interval {_percent(lo)}-{_percent(hi)}"
    top = sorted(estimate.contributions, key=lambda c: abs(c.contribution), reverse=True)[:3]
    if top:
        text += "; driven by " + ", ".join(c.description for c in top)
    return text


def risk_assessment_json(assessment: Assessment, estimate: RiskEstimate, *, resource_id: str | None = None,
                         include_basis: bool = True) -> dict[str, Any]:
    """One RiskAssessment for one estimate of ``assessment`` (plain JSON, no empty or null elements)."""
    if estimate not in assessment.risks:
        raise InvalidInput("estimate", "must be one of assessment.risks")
    out: dict[str, Any] = {"resourceType": "RiskAssessment"}
    if resource_id:
        out["id"] = resource_id
    ident = f"{assessment.assessment_id}:{estimate.model}" + (f":{estimate.subject}" if estimate.subject else "")
    out["identifier"] = [{"system": ASSESSMENT_IDENTIFIER_SYSTEM, "value": ident}]
    out["status"] = "preliminary" if estimate.trained_on_synthetic_data else "final"
    method = _KNOWN_METHODS.get(estimate.model)
    coding = method.coding() if method is not None else {
        "system": codes.RISK_MODEL_SYSTEM, "code": estimate.model, "display": estimate.model}
    coding["version"] = estimate.model_version
    out["method"] = {"coding": [coding], "text": f"{estimate.model} {estimate.model_version}"}
    out["code"] = {"text": "Lung cancer risk" if estimate.subject is None else "Pulmonary nodule malignancy risk"}
    out["subject"] = {"reference": _patient_ref(assessment.patient_id)}
    out["occurrenceDateTime"] = assessment.provenance.generated_at.isoformat()
    out["performer"] = {"display": SERVICE_DISPLAY}
    if include_basis:
        basis = _basis(assessment)
        if basis:
            out["basis"] = basis
    prediction: dict[str, Any] = {
        "outcome": codes.LUNG_CANCER.concept(
            "Lung cancer" if estimate.subject is None else f"Nodule {estimate.subject} is malignant"),
        "probabilityDecimal": round(float(estimate.probability), 6),
    }
    if estimate.horizon_years is not None:
        prediction["whenRange"] = {
            "low": {"value": 0, "unit": "years", "system": codes.UCUM, "code": codes.UNIT_YEAR},
            "high": {"value": estimate.horizon_years, "unit": "years", "system": codes.UCUM,
                     "code": codes.UNIT_YEAR},
        }
    prediction["rationale"] = rationale(estimate)
    out["prediction"] = [prediction]
    notes = [f"{a.model}: cannot score: {a.reason}" for a in assessment.abstentions]
    if estimate.imputed:
        notes.append("Missing inputs set to documented defaults: " + ", ".join(estimate.imputed))
    if estimate.trained_on_synthetic_data:
        notes.append(SYNTHETIC_MODEL_NOTE)
    if estimate.citation:
        notes.append(f"Source: {estimate.citation}")
    if notes:
        out["note"] = [{"text": n} for n in notes]
    return out


def build_risk_assessment(assessment: Assessment, estimate: RiskEstimate, **kwargs: Any) -> Any:
    """:func:`risk_assessment_json` validated as an R4(B) ``RiskAssessment`` model."""
    from fhir.resources.R4B.riskassessment import RiskAssessment

    return RiskAssessment.model_validate(risk_assessment_json(assessment, estimate, **kwargs))


def risk_assessments_json(assessment: Assessment) -> list[dict[str, Any]]:
    """One RiskAssessment per estimate in the assessment (patient-level first)."""
    ordered = sorted(assessment.risks, key=lambda r: (r.subject is not None, r.subject or "", r.model))
    return [risk_assessment_json(assessment, r) for r in ordered]


def _basis(assessment: Assessment) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    seen: set[str] = set()
    for src in assessment.provenance.sources:
        if src.reference in seen:
            continue
        seen.add(src.reference)
        if src.kind is SourceKind.FHIR and "/" in src.reference and not src.reference.startswith("urn:"):
            out.append({"reference": src.reference})
        elif src.kind is SourceKind.DICOM and src.reference.startswith("urn:dicom:uid:"):
            uid = src.reference.removeprefix("urn:dicom:uid:")
            out.append({"identifier": {"system": codes.DICOM_UID, "value": f"urn:oid:{uid}"},
                        "display": "DICOM object " + uid})
    return out


def _patient_ref(patient_id: str) -> str:
    return patient_id if patient_id.startswith("Patient/") else f"Patient/{patient_id}"
