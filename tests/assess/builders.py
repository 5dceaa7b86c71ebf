"""Hand-built snapshots for the assessment and CDS tests (every value explicit, no FHIR parsing)."""

from __future__ import annotations

from datetime import date, timedelta
from typing import Any

from risk.domain import (
    AdministrativeSex,
    ConditionFact,
    ConditionKind,
    Demographics,
    EducationLevel,
    FamilyHistoryFact,
    ImagingStudyRef,
    Lobe,
    Margin,
    NoduleComposition,
    NoduleObservation,
    NoduleTrack,
    ObservedValue,
    PatientSnapshot,
    RaceEthnicity,
    SmokingHistory,
    SmokingStatus,
    SourceStatus,
    TrackLinkage,
    TrackStatus,
    dicom_ref,
    fhir_ref,
)
from risk.guidelines.growth import VolumeMethod, assess_growth, sphere_volume_mm3

AS_OF = date(2025, 6, 2)


def years_before(day: date, years: int) -> date:
    return day.replace(year=day.year - years)


def study(uid: str, started: date, description: str | None = "CT chest low dose screening") -> ImagingStudyRef:
    return ImagingStudyRef(study_instance_uid=uid, modality="CT", started=started,
                           source=fhir_ref("ImagingStudy", f"is-{uid}", started), description=description)


def observation(uid: str, day: date, diameter_mm: float | None = None, *, long_mm: float | None = None,
                short_mm: float | None = None, composition: NoduleComposition = NoduleComposition.SOLID,
                lobe: Lobe | None = Lobe.RUL, margin: Margin = Margin.SMOOTH, solid_mm: float | None = None,
                tracking_uid: str | None = None, volume_mm3: float | None = None) -> NoduleObservation:
    return NoduleObservation(study_instance_uid=uid, study_date=day, source=dicom_ref(f"{uid}.99", day),
                             composition=composition, diameter_mm=diameter_mm, long_axis_mm=long_mm,
                             short_axis_mm=short_mm, lobe=lobe, margin=margin, solid_component_mm=solid_mm,
                             tracking_uid=tracking_uid, volume_mm3=volume_mm3)


def track(track_id: str, *observations: NoduleObservation, status: TrackStatus | None = None) -> NoduleTrack:
    obs = tuple(observations)
    growth = None
    if len(obs) >= 2:
        d1 = obs[-2].longest_diameter_mm or 1.0
        d2 = obs[-1].longest_diameter_mm or 1.0
        growth = assess_growth(sphere_volume_mm3(d1), sphere_volume_mm3(d2),
                               float((obs[-1].study_date - obs[-2].study_date).days), VolumeMethod.SPHERE)
    if status is None:
        status = TrackStatus.PERSISTENT if len(obs) > 1 else TrackStatus.BASELINE
    return NoduleTrack(track_id=track_id, observations=obs, status=status,
                       linkage=TrackLinkage.TRACKING_UID if len(obs) > 1 else TrackLinkage.SINGLE, growth=growth)


def snapshot(*, as_of: date = AS_OF, age: int | None = 65, sex: AdministrativeSex = AdministrativeSex.MALE,
             race: RaceEthnicity | None = RaceEthnicity.WHITE, status: SmokingStatus | None = SmokingStatus.CURRENT,
             pack_years: float | None = 40.0, cigarettes_per_day: float | None = 20.0,
             smoking_years: float | None = 40.0, quit_years_ago: float | None = None,
             smoking_recorded: date | None = None, education: int | None = 4, bmi: float | None = 27.0,
             conditions: tuple[ConditionKind, ...] = (), family_history: bool = False,
             studies: tuple[ImagingStudyRef, ...] = (), tracks: tuple[NoduleTrack, ...] = (),
             source_status: tuple[SourceStatus, ...] = (), **extra: Any) -> PatientSnapshot:
    demo = None
    if age is not None:
        birth = years_before(as_of, age) - timedelta(days=10)
        demo = Demographics(birth_date=birth, sex=sex, source=fhir_ref("Patient", "p1"), race_ethnicity=race)
    smoking = None
    if status is not None:
        recorded = smoking_recorded or as_of - timedelta(days=30)
        quit_date = None
        if status is SmokingStatus.FORMER and quit_years_ago is not None:
            quit_date = as_of - timedelta(days=round(quit_years_ago * 365.25))
        if status is SmokingStatus.NEVER:
            pack_years, cigarettes_per_day, smoking_years = 0.0, None, None
        smoking = SmokingHistory.build(status, (fhir_ref("Observation", "smk", recorded),),
                                       cigarettes_per_day=cigarettes_per_day, smoking_duration_years=smoking_years,
                                       pack_years=pack_years, quit_date=quit_date)
    facts = tuple(ConditionFact(kind=k, code="x", system="http://snomed.info/sct",
                                source=fhir_ref("Condition", k.value)) for k in conditions)
    fam = (FamilyHistoryFact(relationship="FTH", first_degree=True, source=fhir_ref("FamilyMemberHistory", "f1")),) \
        if family_history else ()
    return PatientSnapshot(
        patient_id="p1", as_of=as_of, demographics=demo, smoking=smoking,
        bmi=ObservedValue(bmi, "kg/m2", fhir_ref("Observation", "bmi", as_of - timedelta(days=60)))
        if bmi is not None else None,
        education=EducationLevel(education, fhir_ref("Observation", "edu")) if education is not None else None,
        conditions=facts, family_history=fam, imaging_studies=studies, nodule_tracks=tracks,
        source_status=source_status, **extra)
