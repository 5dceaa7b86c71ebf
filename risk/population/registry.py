"""An ACR Lung Cancer Screening Registry (LCSR) style CSV for a date range, with per-row validation.

One row per screening or follow-up LDCT exam done in the range (baseline, annual, follow-up; diagnostic chest CTs
are not registry exams), from the latest run's stored results (the same typed data the worklist uses, so nothing is
re-keyed). The columns follow the fields reference/product-anchors.md lists from the public LCSR material (the full
data dictionary is not public): facility, patient identifiers and demographics, smoking status, pack-years, years
since quitting, shared decision-making documented, exam date and kind, Lung-RADS category, recommended follow-up,
and the follow-up's state in the closed loop. Fields this service cannot know from FHIR/DICOM (tobacco cessation
counselling, CTDIvol/DLP) are present and empty.

**Validation**: each row's ``missing_required_fields`` names the required fields that are empty (``;``-separated):
always facility, patient id, date of birth, sex, exam date, exam kind, smoking status and Lung-RADS category;
pack-years for current and former smokers; years since quitting for former smokers; shared decision-making for a
baseline exam (CMS requires the visit before the first screen). ``valid`` is ``true`` when none is missing.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import date
from typing import Any, Final

from sqlalchemy import and_, select
from sqlalchemy.orm import Session

from risk.errors import InvalidInput
from risk.store.population import PopulationExam, PopulationNodule, PopulationPatient, WorklistItem

REGISTRY_EXAM_KINDS: Final = ("baseline", "annual", "follow-up")
COLUMNS: Final = (
    "facility", "patient_id", "mrn", "date_of_birth", "sex", "race_ethnicity", "exam_date", "exam_kind",
    "study_instance_uid", "order_code", "smoking_status", "pack_years", "years_since_quit",
    "cigarettes_per_day", "smoking_duration_years", "shared_decision_making_documented",
    "tobacco_cessation_counseling", "ctdivol_mgy", "lung_rads_category", "recommended_follow_up",
    "follow_up_due_date", "follow_up_state", "follow_up_completed_date", "valid", "missing_required_fields",
)
ALWAYS_REQUIRED: Final = ("facility", "patient_id", "date_of_birth", "sex", "exam_date", "exam_kind",
                          "smoking_status", "lung_rads_category")


@dataclass(frozen=True, slots=True)
class RegistryRange:
    start: date
    end: date

    def __post_init__(self) -> None:
        if self.end < self.start:
            raise InvalidInput("to", f"must not be before --from ({self.start.isoformat()})")


def missing_required(row: dict[str, Any]) -> list[str]:
    """The required fields that are empty in ``row`` (see the module docstring)."""
    missing = [f for f in ALWAYS_REQUIRED if row.get(f) in (None, "")]
    status = row.get("smoking_status")
    if status in ("current", "former") and row.get("pack_years") is None:
        missing.append("pack_years")
    if status == "former" and row.get("years_since_quit") is None:
        missing.append("years_since_quit")
    if status == "unknown":
        missing.append("smoking_status")
    if row.get("exam_kind") == "baseline" and not row.get("shared_decision_making_documented"):
        missing.append("shared_decision_making_documented")
    return missing


def registry_rows(session: Session, period: RegistryRange, sites: Sequence[str]) -> Iterator[dict[str, Any]]:
    """The registry rows of exams in ``period`` (inclusive) at ``sites``, by exam date then patient."""
    exams = session.execute(
        select(PopulationExam, PopulationPatient)
        .join(PopulationPatient, PopulationPatient.patient_id == PopulationExam.patient_id)
        .where(and_(PopulationExam.exam_date >= period.start, PopulationExam.exam_date <= period.end,
                    PopulationExam.exam_kind.in_(REGISTRY_EXAM_KINDS), PopulationPatient.site.in_(sites)))
        .order_by(PopulationExam.exam_date, PopulationExam.patient_id, PopulationExam.study_uid)
        .execution_options(yield_per=2000)).all()
    pids = sorted({e.patient_id for e, _p in exams})
    follow: dict[str, list[Any]] = {}
    nodules: dict[str, list[Any]] = {}
    for start in range(0, len(pids), 2000):
        chunk = pids[start:start + 2000]
        for item in session.scalars(select(WorklistItem).where(
                WorklistItem.patient_id.in_(chunk), WorklistItem.kind.in_(("annual_screen", "nodule_follow_up")))
                .order_by(WorklistItem.due_date)):
            follow.setdefault(item.patient_id, []).append(item)
        for n in session.scalars(select(PopulationNodule).where(PopulationNodule.patient_id.in_(chunk))):
            nodules.setdefault(n.patient_id, []).append(n)
    for exam, patient in exams:
        management = None
        for n in sorted(nodules.get(exam.patient_id, []), key=lambda n: (n.study_date or date.min)):
            if n.study_date == exam.exam_date and n.guideline.startswith("Lung-RADS"):
                management = n.management
        after = [i for i in follow.get(exam.patient_id, ())
                 if i.basis_date is not None and exam.exam_date is not None and i.basis_date >= exam.exam_date]
        nxt = after[0] if after else None
        ysq = patient.years_since_quit if patient.smoking_status == "former" else None
        row: dict[str, Any] = {
            "facility": patient.site, "patient_id": patient.patient_id, "mrn": patient.mrn,
            "date_of_birth": patient.birth_date, "sex": patient.sex, "race_ethnicity": patient.race_ethnicity,
            "exam_date": exam.exam_date, "exam_kind": exam.exam_kind, "study_instance_uid": exam.study_uid,
            "order_code": exam.order_code, "smoking_status": patient.smoking_status,
            "pack_years": None if patient.pack_years is None else round(patient.pack_years, 1),
            "years_since_quit": None if ysq is None else round(ysq, 1),
            "cigarettes_per_day": patient.cigarettes_per_day, "smoking_duration_years": patient.smoking_duration_years,
            "shared_decision_making_documented": bool(patient.sdm_documented),
            "tobacco_cessation_counseling": None, "ctdivol_mgy": None,
            "lung_rads_category": exam.lung_rads, "recommended_follow_up": management or (nxt.text if nxt else None),
            "follow_up_due_date": nxt.due_date if nxt else None, "follow_up_state": nxt.loop_state if nxt else None,
            "follow_up_completed_date": nxt.completed_date if nxt else None,
        }
        missing = missing_required(row)
        row["valid"] = not missing
        row["missing_required_fields"] = ";".join(dict.fromkeys(missing))
        yield row


def _cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, date):
        return value.isoformat()
    return str(value)


def csv_text(rows: Iterator[dict[str, Any]]) -> Iterator[str]:
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\r\n")
    writer.writerow(COLUMNS)
    for n, row in enumerate(rows, start=1):
        writer.writerow([_cell(row[c]) for c in COLUMNS])
        if n % 1000 == 0:
            yield buf.getvalue()
            buf.seek(0)
            buf.truncate()
    yield buf.getvalue()
