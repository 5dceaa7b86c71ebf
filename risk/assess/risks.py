"""Probabilities for one snapshot: PLCOm2012 (patient), Brock per tracked nodule, the fusion model when loaded.

Each function returns a :class:`RiskEstimate` or an :class:`Abstention` with the reason; none raises on a
snapshot (a model that cannot run says why). Input choices are documented in :mod:`risk.assess.policy`.
"""

from __future__ import annotations

from collections.abc import Mapping
from functools import lru_cache
from typing import Any, Protocol

from pydantic import ValidationError

from risk.assess.memo import Ref
from risk.domain.assessment import Abstention, Contribution, RiskEstimate
from risk.domain.clinical import ConditionKind
from risk.domain.imaging import Lobe, NoduleComposition, NoduleTrack, TrackStatus
from risk.domain.patient import AdministrativeSex, RaceEthnicity
from risk.domain.smoking import CIGARETTES_PER_PACK, SmokingStatus
from risk.domain.snapshot import PatientSnapshot
from risk.guidelines import brock, plcom2012

PLCO_EDUCATION_DEFAULT = plcom2012.EDUCATION_CENTRE
PLCO_BMI_DEFAULT = plcom2012.BMI_CENTRE
FUSION = "fusion"

RiskOrAbstention = RiskEstimate | Abstention


# --- PLCOm2012 --------------------------------------------------------------------------------------------
def plcom2012_estimate(snapshot: PatientSnapshot) -> RiskOrAbstention:
    """PLCOm2012 (or PLCOm2012noRace when race/ethnicity is unknown) six-year risk."""
    name = plcom2012.MODEL_NAME
    demo = snapshot.demographics
    if demo is None:
        return Abstention(name, "age unknown: no Patient birth date")
    if snapshot.has_condition(ConditionKind.LUNG_CANCER):
        return Abstention(name, "the patient already has a lung cancer diagnosis")
    smoking = snapshot.smoking
    if smoking is None or smoking.status is SmokingStatus.UNKNOWN:
        return Abstention(name, "smoking status not recorded")
    if smoking.status is SmokingStatus.NEVER:
        return Abstention(name, plcom2012.NEVER_SMOKER_REASON)
    cpd, duration = smoking.cigarettes_per_day, smoking.smoking_duration_years
    derived: list[str] = []
    if cpd is None and smoking.pack_years and duration:
        cpd = smoking.pack_years * CIGARETTES_PER_PACK / duration
        derived.append("cigarettes/day from pack-years ÷ years smoked")
    if duration is None and smoking.pack_years and cpd:
        duration = smoking.pack_years * CIGARETTES_PER_PACK / cpd
        derived.append("years smoked from pack-years ÷ cigarettes/day")
    missing = [label for label, value in (("cigarettes per day", cpd), ("years smoked", duration)) if not value]
    years_since_quit = smoking.years_since_quit(snapshot.as_of)
    if smoking.status is SmokingStatus.FORMER and years_since_quit is None:
        missing.append("quit date")
    if missing:
        return Abstention(name, "missing " + ", ".join(missing))
    imputed: list[str] = []
    education = snapshot.education.level if snapshot.education is not None else None
    if education is None:
        education = PLCO_EDUCATION_DEFAULT
        imputed.append(f"education (level {PLCO_EDUCATION_DEFAULT}, the model's centring value)")
    bmi = snapshot.bmi.value if snapshot.bmi is not None else None
    if bmi is None:
        bmi = PLCO_BMI_DEFAULT
        imputed.append(f"BMI ({PLCO_BMI_DEFAULT:g} kg/m², the model's centring value)")
    age = snapshot.age_years
    assert age is not None
    fields: dict[str, Any] = {
        "age": float(age), "education_level": int(education), "bmi": float(bmi),
        "copd": snapshot.has_condition(ConditionKind.COPD) or snapshot.has_condition(ConditionKind.EMPHYSEMA),
        "personal_history_cancer": snapshot.has_condition(ConditionKind.PERSONAL_HISTORY_OF_CANCER),
        "family_history_lung_cancer": snapshot.family_history_lung_cancer,
        "smoking_status": smoking.status.value, "cigarettes_per_day": float(cpd or 0),
        "smoking_duration_years": float(duration or 0),
        "years_since_quit": None if smoking.status is SmokingStatus.CURRENT else years_since_quit,
    }
    race = demo.race_ethnicity
    return _plco_cached(tuple(fields.items()), race, tuple(imputed + [f"derived: {d}" for d in derived]))


@lru_cache(maxsize=8192)
def _plco_cached(items: tuple[tuple[str, Any], ...], race: RaceEthnicity | None,
                 imputed: tuple[str, ...]) -> RiskOrAbstention:
    """PLCOm2012 (or noRace) on validated inputs; a pure function of them, memoised."""
    fields = dict(items)
    try:
        if race is not None:
            result = plcom2012.compute_plcom2012(plcom2012.Plcom2012Input(race_ethnicity=race, **fields))
        else:
            result = plcom2012.compute_plcom2012_norace(plcom2012.Plcom2012NoRaceInput(**fields))
    except ValidationError as exc:
        err = exc.errors()[0]
        where = ".".join(str(p) for p in err.get("loc", ())) or str((err.get("ctx") or {}).get("field", "input"))
        return Abstention(plcom2012.MODEL_NAME, f"inconsistent inputs ({where}: {err.get('msg')})")
    if result.outputs is None:
        return Abstention(result.model, "; ".join(result.abstentions))
    out = result.outputs
    return RiskEstimate(
        model=result.model, model_version=result.version, outcome="lung cancer within 6 years",
        probability=out.probability_6yr, horizon_years=6.0, citation=result.citation,
        contributions=_plco_contributions(out.contributions, fields, race.value if race else None),
        imputed=imputed,
    )


def _plco_contributions(terms: Mapping[str, float], f: Mapping[str, Any], race: str | None
                        ) -> tuple[Contribution, ...]:
    words = {
        "age": f"age {f['age']:.0f}",
        "education_level": f"education level {f['education_level']}",
        "bmi": f"BMI {f['bmi']:.1f}",
        "copd": "COPD or emphysema",
        "personal_history_cancer": "personal history of cancer",
        "family_history_lung_cancer": "lung cancer in a first-degree relative",
        "current_smoker": "current smoker",
        "cigarettes_per_day": f"{f['cigarettes_per_day']:.0f} cigarettes/day",
        "smoking_duration_years": f"{f['smoking_duration_years']:.0f} years smoked",
        "years_since_quit": ("current smoker (0 years since quitting)" if f["years_since_quit"] is None
                             else f"quit {f['years_since_quit']:.0f} years ago"),
        "race_ethnicity": f"race/ethnicity {race}",
    }
    out = [Contribution(feature=k, contribution=float(v), description=words.get(k, k))
           for k, v in terms.items() if k != "intercept" and abs(v) > 1e-12]
    return tuple(sorted(out, key=lambda c: -abs(c.contribution)))


# --- Brock, per nodule --------------------------------------------------------------------------------------
_BROCK_TYPE = {NoduleComposition.SOLID: "solid", NoduleComposition.PART_SOLID: "part_solid",
               NoduleComposition.NONSOLID: "nonsolid"}


def brock_estimate(snapshot: PatientSnapshot, track: NoduleTrack) -> RiskOrAbstention:
    """Brock model 2b for the nodule's latest measurement (memoised on exactly the inputs it reads)."""
    latest_uid = track.latest.study_instance_uid
    count = sum(1 for t in snapshot.nodule_tracks
                if t.status is not TrackStatus.RESOLVED and t.latest.study_instance_uid == latest_uid)
    key = (Ref(track), count, snapshot.age_years, snapshot.demographics.sex if snapshot.demographics else None,
           snapshot.family_history_lung_cancer, snapshot.has_condition(ConditionKind.EMPHYSEMA))
    return _brock_cached(key)


@lru_cache(maxsize=8192)
def _brock_cached(key: tuple[Any, ...]) -> RiskOrAbstention:
    track, count, age, sex, family, emphysema = key
    return _brock(track.obj, count, age, sex, family, emphysema)


def _brock(track: NoduleTrack, count: int, age: int | None, sex: AdministrativeSex | None, family: bool,
           emphysema: bool) -> RiskOrAbstention:
    name = f"{brock.MODEL_NAME} ({track.track_id})"
    obs = track.latest
    if age is None or sex is None:
        return Abstention(name, "age and sex unknown: no Patient resource")
    if sex not in (AdministrativeSex.FEMALE, AdministrativeSex.MALE):
        return Abstention(name, f"the model has no coefficient for sex {sex.value!r}")
    if obs.composition in (NoduleComposition.CALCIFIED, NoduleComposition.FAT_CONTAINING):
        return Abstention(name, f"{obs.composition.value.replace('_', ' ')} nodule: benign features, not scored")
    nodule_type = _BROCK_TYPE.get(obs.composition)
    if nodule_type is None:
        return Abstention(name, "nodule type (solid, part-solid, ground-glass) not reported")
    size = obs.longest_diameter_mm
    if size is None:
        return Abstention(name, "no diameter reported (the model needs the longest diameter)")
    if obs.lobe is None:
        return Abstention(name, "lobe not reported (the model needs upper lobe yes/no)")
    low, high = brock.SIZE_SCOPE_MM
    if not low <= size <= high:
        return Abstention(name, f"longest diameter {size:g} mm is outside the {low:g}-{high:g} mm the model scores")
    imputed: list[str] = []
    if obs.margin.value == "unknown":
        imputed.append("spiculation (margin not reported: taken as not spiculated)")
    data: dict[str, Any] = dict(age=float(age), sex=sex.value, family_history_lung_cancer=family,
                                emphysema=emphysema, nodule_size_mm=float(size), nodule_type=nodule_type,
                                upper_lobe=obs.lobe in (Lobe.RUL, Lobe.LUL), nodule_count=max(1, count),
                                spiculation=obs.spiculated)
    try:
        result = brock.compute_brock(brock.BrockInput.model_validate(data))
    except ValidationError as exc:
        err = exc.errors()[0]
        return Abstention(name, f"inputs out of range ({'.'.join(str(p) for p in err['loc'])}: {err['msg']})")
    if result.outputs is None:
        return Abstention(name, "; ".join(result.abstentions))
    words = {"age": f"age {age}", "sex": "female sex", "family_history_lung_cancer": "family history of lung cancer",
             "emphysema": "emphysema", "nodule_size_mm": f"{size:g} mm", "nodule_type": nodule_type.replace("_", "-"),
             "upper_lobe": "upper lobe", "nodule_count": f"{data['nodule_count']} nodule(s) on the scan",
             "spiculation": "spiculated margin"}
    contributions = tuple(sorted(
        (Contribution(feature=k, contribution=float(v), description=words.get(k, k))
         for k, v in result.outputs.contributions.items() if k != "intercept" and abs(v) > 1e-12),
        key=lambda c: -abs(c.contribution)))
    return RiskEstimate(model=result.model, model_version=result.version, outcome="nodule is malignant",
                        probability=result.outputs.probability, horizon_years=None, citation=result.citation,
                        contributions=contributions, subject=track.track_id, imputed=tuple(imputed))


# --- the fusion model ----------------------------------------------------------------------------------------
class FusionPredictionLike(Protocol):
    @property
    def probability(self) -> float | None: ...
    @property
    def interval(self) -> tuple[float, float] | None: ...
    @property
    def contributions(self) -> tuple[Contribution, ...]: ...
    @property
    def abstain_reason(self) -> str | None: ...


class FusionPredictorLike(Protocol):
    """The agreed interface of ``fusion_models.runtime.FusionPredictor`` (structural, so no import is needed)."""

    model_id: str
    version: str
    outcome: str
    horizon_years: float | None
    trained_on_synthetic_data: bool
    calibrator: str

    def predict_one(self, features: Mapping[str, float | str | None]) -> Any: ...


def fusion_features(snapshot: PatientSnapshot) -> dict[str, float | str | None]:
    from risk.features.fusion_row import snapshot_to_fusion_features

    return snapshot_to_fusion_features(snapshot)


def fusion_estimate(snapshot: PatientSnapshot, predictor: FusionPredictorLike) -> RiskOrAbstention:
    """The loaded fusion model's probability, or why it abstained."""
    name = f"{FUSION} {predictor.model_id}"
    try:
        features = fusion_features(snapshot)
    except ImportError:
        return Abstention(name, "the fusion feature builder (risk.features.fusion_row) is not installed")
    try:
        prediction = predictor.predict_one(features)
    except (ValueError, KeyError, TypeError, ArithmeticError) as exc:
        return Abstention(name, f"could not score: {type(exc).__name__}: {exc}")
    if prediction.abstain_reason or prediction.probability is None:
        return Abstention(name, prediction.abstain_reason or "the model returned no probability")
    contributions = tuple(
        c if isinstance(c, Contribution) else
        Contribution(feature=str(c.feature), contribution=float(c.contribution), description=str(c.description))
        for c in prediction.contributions)
    return RiskEstimate(
        model=predictor.model_id, model_version=predictor.version, outcome=predictor.outcome,
        probability=float(prediction.probability), horizon_years=predictor.horizon_years,
        citation=f"Learned fusion model {predictor.model_id} {predictor.version} (see its model card)",
        interval=prediction.interval, contributions=contributions, learned=True,
        trained_on_synthetic_data=predictor.trained_on_synthetic_data, calibrator=predictor.calibrator,
    )
