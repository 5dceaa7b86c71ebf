"""Hand-built snapshot, assessment and sessions for the SMART app tests (rendering needs no pipeline)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Any

from fastapi.testclient import TestClient

from risk.domain import (
    Abstention,
    AdministrativeSex,
    Assessment,
    Contribution,
    Demographics,
    DueStatus,
    EligibilityDecision,
    ImagingStudyRef,
    Lobe,
    NoduleCategory,
    NoduleComposition,
    NoduleObservation,
    NoduleTrack,
    PatientSnapshot,
    Provenance,
    RaceEthnicity,
    Recommendation,
    RecommendationKind,
    RiskEstimate,
    ScreeningProgram,
    SmokingHistory,
    SmokingStatus,
    SourceState,
    SourceStatus,
    StaleData,
    TrackLinkage,
    TrackStatus,
    dicom_ref,
    fhir_ref,
)
from risk.guidelines.growth import VolumeMethod, assess_growth
from smart_app.assessing import AssessRequest
from smart_app.fhir import PatientHeader
from smart_app.routes import SmartApp
from smart_app.store import LaunchMode, SessionStore

AS_OF = date(2026, 6, 1)
PATIENT = "lc-0042"
TRACKING_UID = "1.2.826.0.1.3680043.10.511.3.99.1"


def make_snapshot() -> PatientSnapshot:
    demo = Demographics(date(1958, 3, 14), AdministrativeSex.FEMALE, fhir_ref("Patient", PATIENT),
                        RaceEthnicity.WHITE)
    smoking = SmokingHistory.build(SmokingStatus.FORMER, (fhir_ref("Observation", "smk-1", date(2026, 1, 5)),),
                                   cigarettes_per_day=20, smoking_duration_years=35, quit_date=date(2019, 1, 1))
    s1 = ImagingStudyRef("1.2.3.4.1", "CT", date(2025, 5, 20), fhir_ref("ImagingStudy", "ct-1", date(2025, 5, 20)))
    s2 = ImagingStudyRef("1.2.3.4.2", "CT", date(2026, 5, 18), fhir_ref("ImagingStudy", "ct-2", date(2026, 5, 18)))
    o1 = NoduleObservation("1.2.3.4.1", date(2025, 5, 20), dicom_ref("1.2.3.4.1.9.1"), NoduleComposition.SOLID,
                           diameter_mm=7.0, volume_mm3=180.0, lobe=Lobe.RUL, tracking_uid=TRACKING_UID,
                           slice_sop_instance_uid="1.2.3.4.1.1.40", series_instance_uid="1.2.3.4.1.1")
    o2 = NoduleObservation("1.2.3.4.2", date(2026, 5, 18), dicom_ref("1.2.3.4.2.9.1"), NoduleComposition.SOLID,
                           diameter_mm=9.1, volume_mm3=395.0, lobe=Lobe.RUL, tracking_uid=TRACKING_UID,
                           ai_malignancy_probability=0.31,
                           slice_sop_instance_uid="1.2.3.4.2.1.42", series_instance_uid="1.2.3.4.2.1")
    growth = assess_growth(180.0, 395.0, (o2.study_date - o1.study_date).days, VolumeMethod.MEASURED)
    t1 = NoduleTrack("N1", (o1, o2), TrackStatus.PERSISTENT, TrackLinkage.TRACKING_UID, growth)
    o3 = NoduleObservation("1.2.3.4.2", date(2026, 5, 18), dicom_ref("1.2.3.4.2.9.1"), diameter_mm=4.0,
                           lobe=Lobe.LLL)
    t2 = NoduleTrack("N2", (o3,), TrackStatus.NEW, TrackLinkage.SINGLE)
    return PatientSnapshot(
        patient_id=PATIENT, as_of=AS_OF, demographics=demo, smoking=smoking, education=None, bmi=None,
        imaging_studies=(s1, s2), nodule_tracks=(t1, t2),
        source_status=(SourceStatus("fhir", SourceState.OK), SourceStatus("pacs", SourceState.OK)))


def make_assessment(snapshot: PatientSnapshot, *, assessment_id: str = "asm-1") -> Assessment:
    plco = RiskEstimate("plcom2012", "tammemagi-nejm-2013", "lung cancer", 0.0412, 6.0, "Tammemägi 2013",
                        contributions=(Contribution("age", 0.42, "age 68"), Contribution("pack_years", 0.3,
                                       "35 pack-years"), Contribution("bmi", -0.05, "BMI missing")))
    fusion = RiskEstimate("fusion", "1.3.0", "lung cancer", 0.0873, 6.0, "synthetic fusion", interval=(0.051, 0.14),
                          contributions=(Contribution("nodule_growth", 0.9, "nodule grew 119%"),
                                         Contribution("pack_years", 0.25, "35 pack-years")),
                          learned=True, trained_on_synthetic_data=True, calibrator="isotonic-2026-05")
    cat1 = NoduleCategory("N1", "Lung-RADS v2022", "4B", "Chest CT or PET/CT; tissue sampling", date(2026, 6, 15),
                          tracking_uid=TRACKING_UID)
    cat2 = NoduleCategory("N2", "Lung-RADS v2022", "2", "Annual LDCT", date(2027, 5, 18))
    rec = Recommendation(RecommendationKind.FOLLOW_UP_CT, "Diagnostic chest CT", "Lung-RADS 4B (nodule N1)",
                         date(2026, 6, 15), DueStatus.NOT_YET_DUE, track_id="N1")
    return Assessment(
        assessment_id=assessment_id, patient_id=PATIENT, as_of=AS_OF,
        eligibility=(EligibilityDecision(ScreeningProgram.USPSTF_2021, True, "age 68, 35 pack-years, quit 7 years ago"),
                     EligibilityDecision(ScreeningProgram.CMS_2022, True, "age 68 (50-77), 35 pack-years"),
                     EligibilityDecision(ScreeningProgram.ACS_2023, None, "cannot tell", ("education",))),
        risks=(plco, fusion), nodule_categories=(cat1, cat2), patient_category=cat1, recommendations=(rec,),
        abstentions=(Abstention("brock", "nodule N2 is under 1 mm? no: outside the model's 1-30 mm range"),),
        provenance=Provenance(
            sources=(fhir_ref("Patient", PATIENT), fhir_ref("Observation", "smk-1", date(2026, 1, 5)),
                     fhir_ref("ImagingStudy", "ct-2", date(2026, 5, 18)), dicom_ref("1.2.3.4.2.9.1")),
            model_versions=(("plcom2012", "tammemagi-nejm-2013"), ("fusion", "1.3.0")),
            generated_at=datetime(2026, 6, 1, 9, 30, tzinfo=UTC),
            stale=(StaleData("smoking history", date(2026, 1, 5), 120),)))


@dataclass
class HandBuiltAssessor:
    """Returns the hand-built snapshot and assessment (rendering tests do not need the pipeline)."""

    calls: int = 0

    def header(self, request: AssessRequest) -> PatientHeader:
        return PatientHeader(PATIENT, "Ada Quinn", date(1958, 3, 14), "female", "MRN-0042")

    def assess(self, request: AssessRequest) -> tuple[PatientSnapshot, Assessment]:
        self.calls += 1
        snap = make_snapshot()
        return snap, make_assessment(snap)


def smart_of(client: TestClient) -> SmartApp:
    app: Any = client.app
    smart: SmartApp = next(r.app for r in app.routes if getattr(r, "path", "") == "/app").state.smart
    return smart


def sign_in(client: TestClient, *, scope: str = "launch patient/*.rs patient/RiskAssessment.c",
            expires_in_s: int = 3600, refresh_token: str | None = None, need_patient_banner: bool | None = True,
            app_context: str | None = None) -> str:
    """A signed-in session made directly in the store (no authorization server); sets the cookie."""
    smart = smart_of(client)
    store: SessionStore = smart.store
    cookie, _ = store.create_pending(
        launch_mode=LaunchMode.EHR, iss="http://127.0.0.1:9/fhir/R4", client_id="lungrisk-app",
        redirect_uri=smart.redirect_uri, token_endpoint="http://127.0.0.1:9/token", jwks_uri=None, auth_issuer=None,
        requested_scope=scope, state="s" * 43, code_verifier="v" * 43)
    new_cookie, _ = store.activate(
        cookie, access_token="at-secret", refresh_token=refresh_token,
        token_expires_at=datetime.now(UTC) + timedelta(seconds=expires_in_s), granted_scope=scope,
        patient_id=PATIENT, encounter_id=None, fhir_user="Practitioner/pulmo-1",
        need_patient_banner=need_patient_banner, app_context=app_context, launch_context={})
    client.cookies.set(smart.cookies.name, new_cookie)
    return new_cookie
