"""The assessment core on hand-built snapshots: eligibility, guideline categories, due dates, risks, abstentions,
staleness, data gaps and provenance."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import date, timedelta
from typing import Any

import pytest

from risk.assess import assess, due_window
from risk.assess.nodules import fleischner_risk
from risk.domain import (
    Abstention,
    ConditionKind,
    Contribution,
    DueStatus,
    Lobe,
    NoduleComposition,
    RaceEthnicity,
    RecommendationKind,
    RiskFlagKind,
    ScreeningProgram,
    SmokingStatus,
    SourceState,
    SourceStatus,
    TrackStatus,
)
from tests.assess.builders import AS_OF, observation, snapshot, study, track

USPSTF, CMS, ACS = ScreeningProgram.USPSTF_2021, ScreeningProgram.CMS_2022, ScreeningProgram.ACS_2023


def eligible(**kw: Any) -> dict[ScreeningProgram, bool | None]:
    return {d.program: d.eligible for d in assess(snapshot(**kw)).eligibility}


# --- eligibility ------------------------------------------------------------------------------------------------
def test_current_heavy_smoker_is_eligible_everywhere() -> None:
    assert eligible() == {USPSTF: True, CMS: True, ACS: True}


def test_quit_20_years_ago_only_acs() -> None:
    assert eligible(status=SmokingStatus.FORMER, quit_years_ago=20) == {USPSTF: False, CMS: False, ACS: True}
    assert eligible(status=SmokingStatus.FORMER, quit_years_ago=10) == {USPSTF: True, CMS: True, ACS: True}


def test_age_78_is_outside_cms_only() -> None:
    assert eligible(age=78) == {USPSTF: True, CMS: False, ACS: True}


def test_missing_inputs_say_what_is_missing() -> None:
    a = assess(snapshot(pack_years=None, cigarettes_per_day=None))
    assert all(d.eligible is None and d.missing_inputs == ("pack-years",) for d in a.eligibility)
    assert any(g.what == "screening eligibility" and "pack-years" in g.reason for g in a.data_gaps)
    a = assess(snapshot(status=None))
    assert all(d.missing_inputs == ("smoking status",) for d in a.eligibility)
    a = assess(snapshot(status=SmokingStatus.FORMER, quit_years_ago=None))
    decisions = {d.program: d for d in a.eligibility}
    assert decisions[USPSTF].missing_inputs == ("quit date",) and decisions[ACS].eligible is True


def test_a_failed_criterion_decides_even_with_missing_inputs() -> None:
    assert eligible(age=45, pack_years=None, cigarettes_per_day=None) == {USPSTF: False, CMS: False, ACS: False}
    assert eligible(status=SmokingStatus.NEVER) == {USPSTF: False, CMS: False, ACS: False}
    assert eligible(pack_years=12) == {USPSTF: False, CMS: False, ACS: False}
    assert eligible(conditions=(ConditionKind.LUNG_CANCER,)) == {USPSTF: False, CMS: False, ACS: False}


# --- screening recommendations and due dates -------------------------------------------------------------------
def _screening(a: Any) -> Any:
    return next((r for r in a.recommendations if r.kind is RecommendationKind.SCREENING_LDCT), None)


def test_never_screened_is_due_now_with_shared_decision_making() -> None:
    a = assess(snapshot())
    rec = _screening(a)
    assert rec.status is DueStatus.DUE and rec.due_date == AS_OF
    sdm = [r for r in a.recommendations if r.kind is RecommendationKind.SHARED_DECISION_MAKING]
    assert len(sdm) == 1 and "G0296" in sdm[0].text


@pytest.mark.parametrize(("days_ago", "status"), [(180, DueStatus.NOT_YET_DUE), (340, DueStatus.DUE),
                                                  (365, DueStatus.DUE), (460, DueStatus.OVERDUE)])
def test_annual_screening_window(days_ago: int, status: DueStatus) -> None:
    last = AS_OF - timedelta(days=days_ago)
    rec = _screening(assess(snapshot(studies=(study("1.1", last),))))
    assert rec.status is status
    assert rec.last_done == last and rec.due_date == date(last.year + 1, last.month, last.day)
    assert not any(r.kind is RecommendationKind.SHARED_DECISION_MAKING for r in assess(
        snapshot(studies=(study("1.1", last),))).recommendations)


def test_a_head_ct_is_not_a_chest_ct() -> None:
    a = assess(snapshot(studies=(study("9.9", AS_OF - timedelta(days=40), "CT head without contrast"),)))
    assert a.last_ct_date is None and _screening(a).status is DueStatus.DUE


def test_due_window_arithmetic() -> None:
    w = due_window(date(2024, 1, 31), months=1)
    assert w.due_date == date(2024, 2, 29)  # clamped to the month's end (leap year)
    w = due_window(date(2024, 6, 2), months=12)
    assert (w.window_start, w.due_date, w.overdue_after) == (date(2025, 5, 3), date(2025, 6, 2), date(2025, 9, 1))
    w = due_window(date(2024, 6, 2), months_range=(6, 12))
    assert (w.window_start, w.due_date, w.overdue_after) == (date(2024, 12, 2), date(2024, 12, 2), date(2025, 6, 2))
    w = due_window(date(2024, 6, 2), months=0)
    assert (w.due_date, w.overdue_after) == (date(2024, 6, 2), date(2024, 7, 2))
    with pytest.raises(ValueError, match="months_range"):
        due_window(date(2024, 6, 2), months_range=(12, 6))


# --- Lung-RADS (screening) --------------------------------------------------------------------------------------
def _nodule_snapshot(*observations: Any, description: str = "CT chest low dose screening", **kw: Any) -> Any:
    studies = tuple(study(o.study_instance_uid, o.study_date, description) for o in observations)
    return snapshot(studies=studies, tracks=(track("n1", *observations),), **kw)


@pytest.mark.parametrize(("long_mm", "short_mm", "category", "kind", "months"), [
    (5.0, 4.0, "2", RecommendationKind.SCREENING_LDCT, 12),
    (7.0, 6.2, "3", RecommendationKind.FOLLOW_UP_LDCT, 6),
    (10.0, 9.0, "4A", RecommendationKind.FOLLOW_UP_LDCT, 3),
    (16.0, 15.0, "4B", RecommendationKind.DIAGNOSTIC_WORKUP, 0),
])
def test_lung_rads_baseline_categories_and_due_dates(long_mm: float, short_mm: float, category: str,
                                                      kind: RecommendationKind, months: int) -> None:
    seen = AS_OF - timedelta(days=20)
    a = assess(_nodule_snapshot(observation("1.2", seen, long_mm=long_mm, short_mm=short_mm)))
    assert a.patient_category is not None and a.patient_category.guideline == "Lung-RADS v2022"
    assert a.patient_category.category == category
    (rec,) = a.recommendations
    assert rec.kind is kind and rec.track_id == "n1"
    assert rec.due_date == due_window(seen, months=months).due_date
    assert rec.status is (DueStatus.DUE if months == 0 else DueStatus.NOT_YET_DUE)


def test_stepped_management_3_stable_becomes_2() -> None:
    first = AS_OF - timedelta(days=200)
    second = AS_OF - timedelta(days=10)
    a = assess(_nodule_snapshot(observation("1.1", first, long_mm=7.0, short_mm=6.2),
                                observation("1.2", second, long_mm=7.1, short_mm=6.2)))
    assert a.patient_category is not None and a.patient_category.category == "2"
    assert a.recommendations[0].kind is RecommendationKind.SCREENING_LDCT


def test_growth_is_4a_or_4b_and_rising() -> None:
    first = AS_OF - timedelta(days=200)
    second = AS_OF - timedelta(days=10)
    a = assess(_nodule_snapshot(observation("1.1", first, 6.0), observation("1.2", second, 9.0)))
    assert a.patient_category is not None and a.patient_category.category == "4B"
    assert any(f.kind is RiskFlagKind.RISING for f in a.risk_flags)


def test_overdue_4a_follow_up() -> None:
    seen = AS_OF - timedelta(days=150)
    (rec,) = assess(_nodule_snapshot(observation("1.2", seen, long_mm=10.0, short_mm=9.0))).recommendations
    assert rec.status is DueStatus.OVERDUE and rec.overdue_after is not None and rec.overdue_after < AS_OF


def test_later_ct_without_measurements_makes_follow_up_unknown() -> None:
    seen = AS_OF - timedelta(days=200)
    s = _nodule_snapshot(observation("1.2", seen, long_mm=7.0, short_mm=6.2))
    s2 = snapshot(studies=(*s.imaging_studies, study("1.3", AS_OF - timedelta(days=5))), tracks=s.nodule_tracks)
    a = assess(s2)
    assert not [r for r in a.recommendations if r.track_id == "n1"]
    assert any("no nodule measurements yet" in g.reason for g in a.data_gaps)


def test_part_solid_without_solid_component_is_a_gap() -> None:
    seen = AS_OF - timedelta(days=20)
    a = assess(_nodule_snapshot(observation("1.2", seen, 9.0, composition=NoduleComposition.PART_SOLID)))
    assert any("solid-component" in g.reason for g in a.data_gaps)
    assert a.patient_category is None


# --- Fleischner (incidental) ------------------------------------------------------------------------------------
def test_incidental_solid_nodule_follows_fleischner() -> None:
    seen = AS_OF - timedelta(days=30)
    a = assess(_nodule_snapshot(observation("1.2", seen, long_mm=7.0, short_mm=7.0),
                                description="CT abdomen and pelvis with contrast"))
    cat = a.patient_category
    assert cat is not None and cat.guideline == "Fleischner 2017" and "single solid, high risk, 6-8" in cat.category
    (rec,) = a.recommendations  # screening is superseded by the nodule's CT plan
    assert rec.kind is RecommendationKind.FOLLOW_UP_CT and rec.status is DueStatus.NOT_YET_DUE
    w = due_window(seen, months_range=(6, 12))
    assert (rec.window_start, rec.due_date, rec.overdue_after) == (w.window_start, w.due_date, w.overdue_after)


def test_fleischner_second_step_counts_from_the_first_exam() -> None:
    first = AS_OF - timedelta(days=400)
    second = AS_OF - timedelta(days=200)
    a = assess(_nodule_snapshot(observation("1.1", first, long_mm=7.0, short_mm=7.0),
                                observation("1.2", second, long_mm=7.0, short_mm=7.0),
                                description="CT abdomen", status=SmokingStatus.NEVER))
    rec = next(r for r in a.recommendations if r.track_id == "n1")
    assert rec.window_start == due_window(first, months_range=(18, 24)).window_start
    assert rec.optional  # low risk: "then consider CT at 18-24 months"


def test_never_smoker_small_incidental_nodule_needs_no_follow_up() -> None:
    s = _nodule_snapshot(observation("1.2", AS_OF - timedelta(days=10), 4.0), description="CT abdomen",
                         status=SmokingStatus.NEVER)
    assert fleischner_risk(s) == "low"
    (rec,) = assess(s).recommendations
    assert rec.kind is RecommendationKind.NO_ROUTINE_FOLLOW_UP and rec.status is DueStatus.NO_DATE


@pytest.mark.parametrize(("kw", "reason"), [
    ({"conditions": (ConditionKind.IMMUNOCOMPROMISED,)}, "immunocompromised"),
    ({"age": 30, "pack_years": 10}, "under 35"),
    ({"conditions": (ConditionKind.PERSONAL_HISTORY_OF_CANCER,)}, "known primary cancer"),
])
def test_fleischner_exclusions_abstain(kw: dict[str, Any], reason: str) -> None:
    a = assess(_nodule_snapshot(observation("1.2", AS_OF - timedelta(days=10), 7.0), description="CT abdomen", **kw))
    assert any(x.model == "Fleischner 2017" and reason in x.reason for x in a.abstentions)


def test_lung_cancer_patients_get_no_nodule_guideline() -> None:
    a = assess(_nodule_snapshot(observation("1.2", AS_OF - timedelta(days=10), 7.0),
                                conditions=(ConditionKind.LUNG_CANCER,)))
    assert a.patient_category is None and not a.recommendations
    assert any("treating team" in x.reason for x in a.abstentions)


# --- risks and abstentions ---------------------------------------------------------------------------------------
def test_plco_scores_ever_smokers_and_flags_high_risk() -> None:
    a = assess(snapshot())
    plco = a.risk("plcom2012")
    assert plco is not None and plco.horizon_years == 6 and 0.0151 <= plco.probability < 1
    assert plco.contributions and all(isinstance(c, Contribution) for c in plco.contributions)
    assert any(f.kind is RiskFlagKind.HIGH and f.model == "plcom2012" for f in a.risk_flags)


def test_plco_never_smoker_abstains_and_unknown_race_uses_norace() -> None:
    a = assess(snapshot(status=SmokingStatus.NEVER))
    assert any(x.model == "plcom2012" and "never" in x.reason for x in a.abstentions)
    a = assess(snapshot(race=None))
    assert a.risk("plcom2012-norace") is not None and a.risk("plcom2012") is None


def test_plco_abstains_on_a_vanishing_derived_intensity() -> None:
    """Cigarettes/day derived from a pack-years value of 2e-313 (found by the population rules' property test): an
    abstention naming the field, never an OverflowError."""
    a = assess(snapshot(pack_years=2.2250738585e-313, cigarettes_per_day=None, smoking_years=1.0, age=29))
    assert a.risk("plcom2012") is None
    assert any(x.model == "plcom2012" and "cigarettes_per_day" in x.reason for x in a.abstentions)


def test_plco_missing_education_and_bmi_are_imputed_and_said() -> None:
    estimate = assess(snapshot(education=None, bmi=None)).risk("plcom2012")
    assert estimate is not None and len(estimate.imputed) == 2
    assert "centring value" in estimate.imputed[0]
    same = assess(snapshot(education=4, bmi=27.0)).risk("plcom2012")
    assert same is not None and same.probability == pytest.approx(estimate.probability)


def test_plco_missing_intensity_abstains_unless_derivable() -> None:
    a = assess(snapshot(cigarettes_per_day=None, pack_years=None))
    assert any(x.model == "plcom2012" and "cigarettes per day" in x.reason for x in a.abstentions)
    derived = assess(snapshot(cigarettes_per_day=None, pack_years=40.0, smoking_years=40.0)).risk("plcom2012")
    assert derived is not None and any("derived" in i for i in derived.imputed)


@pytest.mark.parametrize(("obs_kw", "reason"), [
    ({"lobe": None}, "lobe not reported"),
    ({"diameter_mm": 35.0}, "outside the 1-30 mm"),
    ({"composition": NoduleComposition.CALCIFIED}, "benign"),
    ({"composition": NoduleComposition.UNKNOWN}, "nodule type"),
])
def test_brock_abstains_with_reasons(obs_kw: dict[str, Any], reason: str) -> None:
    kw: dict[str, Any] = {"diameter_mm": 8.0, **obs_kw}
    size = kw.pop("diameter_mm")
    a = assess(_nodule_snapshot(observation("1.2", AS_OF - timedelta(days=10), size, **kw)))
    assert any(x.model.startswith("brock") and reason in x.reason for x in a.abstentions)


def test_brock_scores_the_latest_measurement() -> None:
    a = assess(_nodule_snapshot(observation("1.2", AS_OF - timedelta(days=10), 12.0, lobe=Lobe.RUL)))
    brock = next(r for r in a.risks if r.model == "brock")
    assert brock.subject == "n1" and brock.horizon_years is None and 0 < brock.probability < 1


def test_resolved_tracks_are_not_scored() -> None:
    seen = AS_OF - timedelta(days=10)
    s = snapshot(studies=(study("1.2", seen),),
                 tracks=(track("gone", observation("1.2", seen, 8.0), status=TrackStatus.RESOLVED),))
    a = assess(s)
    assert not a.nodule_categories and not any(r.model == "brock" for r in a.risks)


# --- fusion model (injected) ------------------------------------------------------------------------------------
@dataclass(frozen=True)
class _Prediction:
    probability: float | None
    interval: tuple[float, float] | None
    contributions: tuple[Any, ...]
    abstain_reason: str | None


@dataclass
class _Predictor:
    """A stand-in with the agreed FusionPredictor interface (the real one is fusion_models.runtime)."""

    probability: float | None
    model_id: str = "fusion-test"
    version: str = "0.1"
    outcome: str = "lung cancer within 6 years"
    horizon_years: float | None = 6.0
    trained_on_synthetic_data: bool = True
    calibrator: str = "isotonic"
    seen: Mapping[str, Any] | None = None

    def predict_one(self, features: Mapping[str, float | str | None]) -> _Prediction:
        self.seen = features
        if self.probability is None:
            return _Prediction(None, None, (), "out of the training range")
        return _Prediction(self.probability, (self.probability / 2, min(1.0, self.probability * 2)),
                           (_Contrib("pack_years", 0.4, "40 pack-years"),), None)


@dataclass(frozen=True)
class _Contrib:
    feature: str
    contribution: float
    description: str


@pytest.fixture
def features(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("risk.assess.risks.fusion_features", lambda s: {"age_years": float(s.age_years or 0)})


@pytest.mark.usefixtures("features")
def test_fusion_model_when_loaded() -> None:
    predictor = _Predictor(0.08)
    a = assess(snapshot(), fusion=predictor)
    fused = a.risk("fusion-test")
    assert fused is not None and fused.learned and fused.trained_on_synthetic_data
    assert fused.contributions[0] == Contribution("pack_years", 0.4, "40 pack-years")
    assert predictor.seen == {"age_years": 65.0}
    assert ("fusion-test", "0.1") in a.provenance.model_versions
    assert any(f.kind is RiskFlagKind.HIGH and f.model == "fusion-test" for f in a.risk_flags)


@pytest.mark.usefixtures("features")
def test_fusion_abstention_is_kept() -> None:
    a = assess(snapshot(), fusion=_Predictor(None))
    assert a.risk("fusion-test") is None
    assert any(isinstance(x, Abstention) and "training range" in x.reason for x in a.abstentions)


# --- staleness, gaps, provenance -----------------------------------------------------------------------------------
def test_stale_data_is_flagged_by_policy() -> None:
    a = assess(snapshot(smoking_recorded=AS_OF - timedelta(days=800)))
    stale = {s.what: s for s in a.provenance.stale}
    assert stale["smoking history"].limit_days == 365
    assert not assess(snapshot()).provenance.stale


def test_outage_becomes_a_data_gap() -> None:
    a = assess(snapshot(source_status=(SourceStatus("fhir", SourceState.PARTIAL, "failed: conditions"),
                                       SourceStatus("pacs", SourceState.UNAVAILABLE, "timed out"))))
    whats = {g.what: g.reason for g in a.data_gaps}
    assert whats["EHR data"] == "partly read: failed: conditions"
    assert whats["imaging (PACS)"] == "not reachable: timed out"


def test_provenance_lists_sources_and_versions() -> None:
    a = assess(_nodule_snapshot(observation("1.2", AS_OF - timedelta(days=10), 8.0), race=RaceEthnicity.BLACK))
    names = [m for m, _ in a.provenance.model_versions]
    assert names[:2] == ["eligibility", "lungrads"] and "plcom2012" in names and "brock" in names
    refs = [s.reference for s in a.provenance.sources]
    assert len(refs) == len(set(refs)) and "Observation/smk" in refs and "urn:dicom:uid:1.2.99" in refs
