"""Bulk NDJSON → the per-patient feature table (risk/features/schema.py), with polars.

The population path of the one mapping in risk/features/rules.py: the same code sets, unit tables,
ranges, date rule, "most recent wins" order and smoking reconciliation as the per-patient path
(risk/extract), written as polars expressions so a million patients take seconds, not hours. Files
are decoded by risk/sources/bulk.py (DuckDB's NDJSON reader, the line idiom of reference/performance.md §4
for what it refuses); only the fields the rules read are decoded.

What the polars path does not reproduce (documented, not needed for features): notes per resource
(bad lines are counted and reported per file instead), duplicate detection, the conflict texts, and
per-value provenance. Rows: one per Patient resource that could be read.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date
from typing import Final

import polars as pl

from risk import codes
from risk.domain.clinical import ConditionKind
from risk.domain.patient import AdministrativeSex, RaceEthnicity
from risk.domain.provenance import IngestionNote
from risk.domain.smoking import CIGARETTES_PER_PACK, SmokingStatus
from risk.extract.fhirjson import PATIENT_REFERENCE
from risk.extract.imaging_studies import OID_PREFIX
from risk.extract.patient import OMB_RACE
from risk.features import rules
from risk.features.rules import LAB_ROLES, OBSERVATION_RULES, Role, ValueKind
from risk.features.schema import CONDITION_COLUMNS, FEATURE_SCHEMA
from risk.sources.bulk import BulkSource, DecodeReport, Transform, collect_resources

CODING: Final = pl.Struct({"system": pl.String, "code": pl.String})
CONCEPT: Final = pl.Struct({"coding": pl.List(CODING)})
REFERENCE: Final = pl.Struct({"reference": pl.String})
MODALITY: Final = pl.Struct({"code": pl.String})
"""An ImagingStudy modality Coding: only its code is read (the rules match the DICOM code alone; not decoding the
system saves a tenth of the ImagingStudy decode)."""

PATIENT_DTYPE: Final = pl.Struct({
    "id": pl.String, "gender": pl.String, "birthDate": pl.String,
    "extension": pl.List(pl.Struct({
        "url": pl.String,
        "extension": pl.List(pl.Struct({"url": pl.String, "valueCoding": CODING})),
    })),
})
OBSERVATION_DTYPE: Final = pl.Struct({
    "id": pl.String, "status": pl.String, "subject": REFERENCE, "code": CONCEPT,
    "effectiveDateTime": pl.String, "effectiveInstant": pl.String,
    "effectivePeriod": pl.Struct({"start": pl.String, "end": pl.String}), "issued": pl.String,
    "valueQuantity": pl.Struct({"value": pl.Float64, "unit": pl.String, "code": pl.String}),
    "valueCodeableConcept": CONCEPT, "valueDateTime": pl.String,
})
CONDITION_DTYPE: Final = pl.Struct({
    "subject": REFERENCE, "code": CONCEPT, "verificationStatus": CONCEPT,
    "onsetDateTime": pl.String, "onsetPeriod": pl.Struct({"start": pl.String}), "recordedDate": pl.String,
})
FAMILY_DTYPE: Final = pl.Struct({
    "status": pl.String, "patient": REFERENCE, "date": pl.String, "relationship": CONCEPT,
    "condition": pl.List(pl.Struct({"code": CONCEPT})),
})
IMAGING_DTYPE: Final = pl.Struct({
    "status": pl.String, "subject": REFERENCE, "started": pl.String,
    "identifier": pl.List(pl.Struct({"system": pl.String, "value": pl.String})),
    "modality": pl.List(MODALITY),
    "series": pl.List(pl.Struct({"modality": MODALITY})),
})

_MISSING_UNIT: Final = "\x00missing"
_QUIT: Final = "quit"  # QUIT_DATE and YEARS_SINCE_QUIT rows compete as one role


# --- Shared expression helpers -------------------------------------------------------------------
def clinical_date(text: pl.Expr) -> pl.Expr:
    """risk.extract.fhirjson.clinical_date as an expression (same padding, same validity rule)."""
    # (text + "-01-01")[:10] pads "YYYY" and "YYYY-MM" and truncates full dates in one string operation; for
    # every other length the result cannot have the YYYY-MM-DD shape, exactly as in the Python rule.
    padded = (text + "-01-01").str.slice(0, 10)
    parsed = padded.str.to_date("%Y-%m-%d", strict=False)
    return pl.when(padded.str.contains(r"^[0-9]{4}-[0-9]{2}-[0-9]{2}$") & (parsed.dt.year() >= 1)).then(parsed)


def patient_id(reference: pl.Expr) -> pl.Expr:
    """risk.extract.fhirjson.reference_id(..., "Patient") as an expression."""
    return reference.str.extract(PATIENT_REFERENCE, 1)


def exact_div(numerator: pl.Expr, divisor: float) -> pl.Expr:
    """``numerator / divisor`` rounded as Python rounds it.

    polars turns division by a scalar into multiplication by its reciprocal, which differs from IEEE
    division in the last bit for about one value in ten; dividing by a full column does not.
    """
    return numerator / (numerator * 0.0 + divisor)


def _key(coding: pl.Expr) -> pl.Expr:
    return coding.struct.field("system") + "|" + coding.struct.field("code")


def _first_key_in(concept: pl.Expr, keys: list[str]) -> pl.Expr:
    """The first ``system|code`` of a CodeableConcept that is in ``keys``."""
    k = _key(pl.element())
    return concept.struct.field("coding").list.eval(k.filter(k.is_in(keys))).list.first()


def _first_nonempty_code(concept: pl.Expr) -> pl.Expr:
    c = pl.element().struct.field("code")
    return concept.struct.field("coding").list.eval(c.filter(c.str.len_bytes() > 0)).list.first()


# --- Observations --------------------------------------------------------------------------------
def _rule_frame() -> pl.DataFrame:
    rows = []
    for r in OBSERVATION_RULES:
        u = r.units
        rows.append({"rule_key": f"{r.code.system}|{r.code.code}", "role": r.role.value, "kind": r.kind.value,
                     "table": u.name if u else None, "low": u.low if u else None, "high": u.high if u else None})
    return pl.DataFrame(rows, schema={"rule_key": pl.String, "role": pl.String, "kind": pl.String,
                                      "table": pl.String, "low": pl.Float64, "high": pl.Float64})


def _unit_frame() -> pl.DataFrame:
    rows: dict[tuple[str, str], float] = {}
    for r in OBSERVATION_RULES:
        if r.units is None:
            continue
        for unit, factor in r.units.factors.items():
            rows[(r.units.name, unit)] = factor
        if r.units.missing_unit_factor is not None:
            rows[(r.units.name, _MISSING_UNIT)] = r.units.missing_unit_factor
    return pl.DataFrame([{"table": t, "unit": u, "factor": f} for (t, u), f in rows.items()],
                        schema={"table": pl.String, "unit": pl.String, "factor": pl.Float64})


RULES: Final = _rule_frame()
UNITS: Final = _unit_frame()
RULE_KEYS: Final = RULES["rule_key"].to_list()
SMOKING_ANSWER_KEYS: Final = {f"{s}|{c}": v.value for (s, c), v in rules.SMOKING_STATUS_ANSWERS.items()}
EDUCATION_ANSWER_KEYS: Final = {f"{s}|{c}": str(v) for (s, c), v in rules.EDUCATION_ANSWERS.items()}


def observation_facts(lf: pl.LazyFrame, as_of: date) -> pl.LazyFrame:
    """Decoded Observations → one row per usable fact: pid, role, num, cat, dt, sort key."""
    quantity = pl.col("valueQuantity")
    code = quantity.struct.field("code")
    unit_text = quantity.struct.field("unit")
    eff_text = pl.coalesce(pl.col("effectiveDateTime"), pl.col("effectiveInstant"),
                           pl.col("effectivePeriod").struct.field("end"),
                           pl.col("effectivePeriod").struct.field("start"), pl.col("issued"))
    facts = (
        lf.with_columns(rule_key=_first_key_in(pl.col("code"), RULE_KEYS))
        .filter(pl.col("rule_key").is_not_null() & pl.col("status").is_in(list(rules.USABLE_OBSERVATION_STATUSES)))
        .with_columns(eff_text=eff_text)
        .with_columns(eff=clinical_date(pl.col("eff_text")))
        .filter(pl.col("eff").is_not_null() & (pl.col("eff") <= as_of))
        .join(RULES.lazy(), on="rule_key", how="left")
        .with_columns(unit=pl.when(code.str.len_bytes() > 0).then(code)
                      .when(unit_text.str.len_bytes() > 0).then(unit_text)
                      .otherwise(pl.lit(_MISSING_UNIT)))
        .join(UNITS.lazy(), on=["table", "unit"], how="left")
        # List expressions are materialised as columns before when/then refers to them (much cheaper).
        .with_columns(
            smoking_answer=_first_key_in(pl.col("valueCodeableConcept"), list(SMOKING_ANSWER_KEYS))
            .replace_strict(SMOKING_ANSWER_KEYS, default=None),
            education_answer=_first_key_in(pl.col("valueCodeableConcept"), list(EDUCATION_ANSWER_KEYS))
            .replace_strict(EDUCATION_ANSWER_KEYS, default=None),
        )
        .with_columns(
            num=quantity.struct.field("value") * pl.col("factor"),
            cat=pl.when(pl.col("role") == Role.SMOKING_STATUS.value).then(pl.col("smoking_answer"))
            .when(pl.col("role") == Role.EDUCATION.value).then(pl.col("education_answer")),
            dt=clinical_date(pl.col("valueDateTime")),
        )
        .filter(pl.when(pl.col("kind") == ValueKind.QUANTITY.value)
                .then(pl.col("num").is_between(pl.col("low"), pl.col("high")).fill_null(False))
                .when(pl.col("kind") == ValueKind.CODED.value).then(pl.col("cat").is_not_null())
                .otherwise(pl.col("dt").is_not_null()))
    )
    is_years_since_quit = pl.col("role") == Role.YEARS_SINCE_QUIT.value
    return facts.select(
        pid=patient_id(pl.col("subject").struct.field("reference")),
        role=pl.when(is_years_since_quit | (pl.col("role") == Role.QUIT_DATE.value)).then(pl.lit(_QUIT))
        .otherwise(pl.col("role")),
        num=pl.col("num"),
        cat=pl.col("cat"),
        dt=pl.when(is_years_since_quit)
        .then(pl.col("eff") - pl.duration(days=(pl.col("num") * rules.DAYS_PER_YEAR).floor().cast(pl.Int64)))
        .otherwise(pl.col("dt")),
        eff=pl.col("eff"),
        sk=pl.concat_str(pl.col("eff").cast(pl.String), pl.col("eff_text"), pl.col("id").fill_null(""),
                         separator="\x00"),
    ).filter(pl.col("pid").is_not_null())


def latest_per_role(facts: pl.LazyFrame) -> pl.LazyFrame:
    """The most recent fact per (patient, role): the largest (date, effective text, id) sort key.

    One sort and a keep-last ``unique`` (about 3× cheaper than a per-group ``sort_by().last()``).
    """
    return facts.sort("pid", "role", "sk").unique(["pid", "role"], keep="last", maintain_order=False)


def latest_across_files(parts: Sequence[pl.DataFrame]) -> pl.DataFrame:
    """Per-file results of ``latest_per_role`` → the most recent fact per (patient, role) over every file.

    Only the patients that appear in more than one file need another look (a Bulk export writes a patient's
    resources mostly together); they are found from the per-file patient sets and reduced alone, so the
    millions of other rows are never sorted again (that sort would double the peak memory).
    """
    parts = [p for p in parts if p.height]
    if not parts:
        return pl.DataFrame()
    if len(parts) == 1:
        return parts[0]
    pids = pl.concat([p.select(pl.col("pid").unique()) for p in parts])
    shared = pids.filter(pl.col("pid").is_duplicated())["pid"].unique().to_list()
    if not shared:
        return pl.concat(parts)
    single = [p.filter(~pl.col("pid").is_in(shared)) for p in parts]
    several = pl.concat([p.filter(pl.col("pid").is_in(shared)) for p in parts])
    return pl.concat([*single, latest_per_role(several.lazy()).collect()])


def stage_frame(resource_type: str, parts: Sequence[pl.DataFrame]) -> pl.DataFrame:
    """A stage's per-file outputs (of :func:`feature_stages` with ``reduce_per_file``) as one frame: the
    Observations reduced across files (:func:`latest_across_files`), the other types concatenated."""
    parts = [p for p in parts if p.width]
    if resource_type == "Observation":
        return latest_across_files(parts)
    return pl.concat(parts) if parts else pl.DataFrame()


def observation_features(latest: pl.LazyFrame, as_of: date) -> pl.LazyFrame:
    """Latest facts (one per patient and role) → smoking, BMI, education and lab columns."""

    def value(role: str, column: str) -> pl.Expr:
        # One row per (patient, role), so the role's only value is the max over the group's rows of "this column
        # where the role is ``role``"; this form aggregates in polars' vectorised path (2× faster than
        # filter().first(), the same table).
        return pl.when(pl.col("role") == role).then(pl.col(column)).max()

    smoking_roles = [r.value for r in rules.SMOKING_ROLES if r not in (Role.QUIT_DATE, Role.YEARS_SINCE_QUIT)]
    wide = latest.group_by("pid").agg(
        has_smoking=pl.col("role").is_in([*smoking_roles, _QUIT]).any(),
        status=value(Role.SMOKING_STATUS.value, "cat"),
        pack_years=value(Role.PACK_YEARS.value, "num"),
        cigarettes_per_day=value(Role.CIGARETTES_PER_DAY.value, "num"),
        smoking_duration_years=value(Role.SMOKING_DURATION.value, "num"),
        quit=value(_QUIT, "dt"),
        bmi_recorded=value(Role.BMI.value, "num"),
        weight=value(Role.BODY_WEIGHT.value, "num"),
        height=value(Role.BODY_HEIGHT.value, "num"),
        education_level=value(Role.EDUCATION.value, "cat").cast(pl.Int64),
        **{lab.value: value(lab.value, "num") for lab in LAB_ROLES},
        **{f"{lab.value}_date": value(lab.value, "eff") for lab in LAB_ROLES},
    )
    status = pl.when(pl.col("has_smoking")).then(pl.col("status").fill_null(SmokingStatus.UNKNOWN.value))
    never = pl.col("smoking_status") == SmokingStatus.NEVER.value
    current = pl.col("smoking_status") == SmokingStatus.CURRENT.value
    height_m = exact_div(pl.col("height"), 100.0)
    computed_bmi = pl.col("weight") / (height_m * height_m)
    derived = exact_div(pl.col("cigarettes_per_day"), float(CIGARETTES_PER_PACK)) * pl.col("smoking_duration_years")
    days = (pl.lit(as_of) - pl.col("quit")).dt.total_days().cast(pl.Float64)
    quit_years = exact_div(days, rules.DAYS_PER_YEAR).clip(lower_bound=0.0)
    return (
        wide.with_columns(smoking_status=status)
        .with_columns(
            cigarettes_per_day=pl.when(~never).then(pl.col("cigarettes_per_day")),
            smoking_duration_years=pl.when(~never).then(pl.col("smoking_duration_years")),
            pack_years=pl.when(never).then(pl.lit(0.0)).otherwise(pl.col("pack_years")),
            quit=pl.when(~never & ~current).then(pl.col("quit")),
            bmi=pl.coalesce(pl.col("bmi_recorded"),
                            pl.when(computed_bmi.is_between(rules.UNITS_BMI.low, rules.UNITS_BMI.high))
                            .then(computed_bmi)),
        )
        .with_columns(pack_years=pl.coalesce(pl.col("pack_years"),
                                             pl.when(derived <= rules.PACK_YEARS_MAX).then(derived)))
        .with_columns(years_since_quit=pl.when(current).then(pl.lit(0.0))
                      .when(pl.col("quit").is_not_null()).then(quit_years))
    )


# --- Patients --------------------------------------------------------------------------------------
def patient_features(lf: pl.LazyFrame, as_of: date) -> pl.LazyFrame:
    """One row per Patient id (the first resource of a repeated id): pid, age_years, sex, race_ethnicity."""
    birth = clinical_date(pl.col("birthDate"))
    known = birth.is_not_null() & (birth <= as_of)
    before_birthday = (pl.lit(as_of.month) < birth.dt.month()) | (
        (pl.lit(as_of.month) == birth.dt.month()) & (pl.lit(as_of.day) < birth.dt.day()))
    age = pl.lit(as_of.year) - birth.dt.year().cast(pl.Int64) - before_birthday.cast(pl.Int64)
    sexes = [s.value for s in AdministrativeSex]
    sub = pl.element().struct.field("extension")
    base = lf.filter(pl.col("id").str.len_bytes() > 0).select(
        pid=pl.col("id"),
        age_years=pl.when(known).then(age),
        sex=pl.when(known).then(pl.when(pl.col("gender").is_in(sexes)).then(pl.col("gender"))
                                .otherwise(pl.lit(AdministrativeSex.UNKNOWN.value))),
        known=known,
        race_codes=_omb_codes(pl.col("extension"), codes.US_CORE_RACE_URL, sub),
        ethnicity_codes=_omb_codes(pl.col("extension"), codes.US_CORE_ETHNICITY_URL, sub),
    )
    races = {code: group.value for code, group in OMB_RACE.items()}
    mapped = pl.col("race_codes").list.eval(pl.element().replace_strict(races, default=None)).list.drop_nulls()
    race = (pl.when(pl.col("ethnicity_codes").list.contains(codes.OMB_HISPANIC.code))
            .then(pl.lit(RaceEthnicity.HISPANIC.value))
            .when(pl.col("races").list.len() == 1).then(pl.col("races").list.first()))
    # "races" is materialised as a column first: referring to the list expression twice inside when/then
    # costs 30× more in polars 2.1.
    return (base.with_columns(races=mapped.list.unique())
            .with_columns(race_ethnicity=pl.when(pl.col("known")).then(race))
            .drop("known", "race_codes", "ethnicity_codes", "races")
            .unique("pid", keep="first", maintain_order=True))


def _omb_codes(extensions: pl.Expr, url: str, sub: pl.Expr) -> pl.Expr:
    """The ombCategory codes of the US Core extension ``url`` (a list per patient)."""
    of_url = extensions.list.eval(pl.element().filter(pl.element().struct.field("url") == url))
    subs = of_url.list.eval(sub.explode().drop_nulls())
    omb = subs.list.eval(pl.element().filter(pl.element().struct.field("url") == "ombCategory"))
    return omb.list.eval(pl.element().struct.field("valueCoding").struct.field("code").drop_nulls())


# --- Conditions, family history, imaging ------------------------------------------------------------
_SNOMED_KINDS: Final = {code: kind.value for code, kind in rules.CONDITION_SNOMED.items()}
_ICD_KINDS: Final = {prefix: kind.value for prefix, kind in rules.ICD10_CATEGORY_RULES.items()}


def _coding_kind(coding: pl.Expr) -> pl.Expr:
    """risk.features.rules.condition_kind for one coding (a struct expression)."""
    system, code = coding.struct.field("system"), coding.struct.field("code")
    icd = code.str.replace_all(".", "", literal=True).str.strip_chars().str.to_uppercase()
    icd_kind = pl.coalesce(icd.str.slice(0, 4).replace_strict(_ICD_KINDS, default=None),
                           icd.str.slice(0, 3).replace_strict(_ICD_KINDS, default=None))
    return (pl.when(code.str.strip_chars().str.len_bytes() > 0)
            .then(pl.when(system == codes.SNOMED).then(code.replace_strict(_SNOMED_KINDS, default=None))
                  .when(system == codes.ICD10CM).then(icd_kind)))


def condition_features(lf: pl.LazyFrame, as_of: date) -> pl.LazyFrame:
    onset_text = pl.coalesce(pl.col("onsetDateTime"), pl.col("onsetPeriod").struct.field("start"))
    onset = clinical_date(onset_text)
    known = pl.when(onset_text.is_not_null()).then(onset).otherwise(clinical_date(pl.col("recordedDate")))
    coding = pl.element()
    family = (coding.struct.field("system") == codes.ICD10CM) & coding.struct.field("code").str.replace_all(
        ".", "", literal=True).str.strip_chars().str.to_uppercase().str.starts_with(rules.FAMILY_HISTORY_ICD_CATEGORY)
    kinds = (
        lf.select(
            pid=patient_id(pl.col("subject").struct.field("reference")),
            kind=pl.col("code").struct.field("coding").list.eval(_coding_kind(pl.element())).list.drop_nulls()
            .list.first(),
            family=pl.col("code").struct.field("coding").list.eval(family.fill_null(False)).list.any().fill_null(False),
            verification=_first_nonempty_code(pl.col("verificationStatus")),
            onset=onset, known=known,
        )
        .filter(pl.col("pid").is_not_null() & (pl.col("kind").is_not_null() | pl.col("family"))
                & ~pl.col("verification").is_in(list(rules.IGNORED_VERIFICATION_STATUSES)).fill_null(False)
                & (pl.col("known").is_null() | (pl.col("known") <= as_of)))
    )
    lung = ConditionKind.LUNG_CANCER.value
    return kinds.group_by("pid").agg(
        copd=(pl.col("kind") == ConditionKind.COPD.value).any(),
        emphysema=(pl.col("kind") == ConditionKind.EMPHYSEMA.value).any(),
        personal_history_cancer=(pl.col("kind") == ConditionKind.PERSONAL_HISTORY_OF_CANCER.value).any(),
        immunocompromised=(pl.col("kind") == ConditionKind.IMMUNOCOMPROMISED.value).any(),
        lung_cancer=(pl.col("kind") == lung).any(),
        lung_cancer_onset=pl.col("onset").filter(pl.col("kind") == lung).min(),
        family_condition=pl.col("family").any(),
    )


def family_features(lf: pl.LazyFrame, as_of: date) -> pl.LazyFrame:
    lung = ConditionKind.LUNG_CANCER.value
    relationship = pl.element()
    rel_code = relationship.struct.field("code").str.strip_chars()
    first_degree = (pl.col("relationship").struct.field("coding").list.eval(
        (rel_code.is_in(list(codes.FIRST_DEGREE_RELATIVE_CODES))
         & (relationship.struct.field("system").is_null() | (relationship.struct.field("system") == codes.V3_ROLE_CODE))
         ).fill_null(False)).list.any())
    condition_codings = pl.col("condition").list.eval(
        pl.element().struct.field("code").struct.field("coding").explode())
    has_lung = condition_codings.list.eval(_coding_kind(pl.element()) == lung).list.any()
    when = clinical_date(pl.col("date"))
    return (
        lf.select(pid=patient_id(pl.col("patient").struct.field("reference")), first_degree=first_degree,
                  has_lung=has_lung, when=when, status=pl.col("status"))
        .filter(pl.col("pid").is_not_null() & pl.col("has_lung").fill_null(False)
                & (pl.col("status") != rules.ENTERED_IN_ERROR).fill_null(True)
                & (pl.col("when").is_null() | (pl.col("when") <= as_of)))
        .group_by("pid").agg(family_history_lung_cancer=pl.col("first_degree").fill_null(False).any())
    )


def imaging_features(lf: pl.LazyFrame, as_of: date) -> pl.LazyFrame:
    """CT studies on or before ``as_of``: (pid, uid, started) rows, aggregated once all files are read."""
    ident = pl.element()
    value = ident.struct.field("value").str.strip_chars()
    uid = (pl.col("identifier").list.eval(value.filter((ident.struct.field("system") == codes.DICOM_UID)
                                                       & (value.str.len_bytes() > 0))).list.first()
           .str.strip_prefix(OID_PREFIX))
    series_ct = pl.col("series").list.eval(
        pl.element().struct.field("modality").struct.field("code").str.strip_chars() == rules.CT_MODALITY).list.any()
    study_ct = pl.col("modality").list.eval(
        pl.element().struct.field("code").str.strip_chars() == rules.CT_MODALITY).list.any()
    started = clinical_date(pl.col("started"))
    return (
        lf.select(pid=patient_id(pl.col("subject").struct.field("reference")), uid=uid,
                  ct=series_ct.fill_null(False) | study_ct.fill_null(False), started=started, status=pl.col("status"))
        .filter(pl.col("pid").is_not_null() & pl.col("uid").is_not_null() & pl.col("ct")
                & ~pl.col("status").is_in(list(rules.IGNORED_IMAGING_STUDY_STATUSES)).fill_null(False)
                & (pl.col("started").is_null() | (pl.col("started") <= as_of)))
        .select("pid", "uid", "started")
    )


# --- The table ---------------------------------------------------------------------------------------
@dataclass(slots=True)
class BulkFeatures:
    """The feature table, what could not be read, and where the time went (seconds per stage)."""

    table: pl.DataFrame
    notes: list[IngestionNote] = field(default_factory=list)
    timings_s: dict[str, float] = field(default_factory=dict)
    bad_lines: int = 0


def feature_stages(as_of: date, *, reduce_per_file: bool = False) -> dict[str, tuple[pl.Struct, Transform]]:
    """Per resource type: the decode schema and the per-file transform whose outputs :func:`combine_frames` joins.

    ``reduce_per_file`` keeps only each file's most recent Observation per (patient, role) (worth it when files
    are processed on other machines and shipped back; ``combine_frames`` reduces once more either way).
    """
    def observations(lf: pl.LazyFrame) -> pl.LazyFrame:
        facts = observation_facts(lf, as_of)
        return latest_per_role(facts) if reduce_per_file else facts

    return {
        "Patient": (PATIENT_DTYPE, lambda lf: patient_features(lf, as_of)),
        "Observation": (OBSERVATION_DTYPE, observations),
        "Condition": (CONDITION_DTYPE, lambda lf: condition_features(lf, as_of)),
        "FamilyMemberHistory": (FAMILY_DTYPE, lambda lf: family_features(lf, as_of)),
        "ImagingStudy": (IMAGING_DTYPE, lambda lf: imaging_features(lf, as_of)),
    }


def build_feature_table(source: BulkSource, *, as_of: date) -> BulkFeatures:
    """One row per Patient of the export, with the FEATURE_SCHEMA columns, sorted by patient id.

    Memory stays bounded by one Observation file at a time: each file is decoded and reduced to its most
    recent fact per (patient, role) before the next is read (:func:`latest_across_files` joins them).
    """
    out = BulkFeatures(pl.DataFrame(schema=FEATURE_SCHEMA))
    frames: dict[str, pl.DataFrame] = {}
    for resource_type, (dtype, transform) in feature_stages(as_of, reduce_per_file=True).items():
        started = time.perf_counter()
        report = DecodeReport()
        parts = [collect_resources([path], dtype, transform, report) for path in source.files(resource_type)]
        frames[resource_type] = stage_frame(resource_type, parts)
        out.notes.extend(report.notes(resource_type))
        out.bad_lines += report.count
        out.timings_s[resource_type] = time.perf_counter() - started
    started = time.perf_counter()
    table = combine_frames(frames, as_of, observations_reduced=True)
    out.timings_s["combine"] = time.perf_counter() - started
    out.table = table
    return out


def combine_frames(frames: Mapping[str, pl.DataFrame], as_of: date, *,
                   observations_reduced: bool = False) -> pl.DataFrame:
    """The per-type frames of :func:`feature_stages` (concatenated over files) → the feature table.

    ``observations_reduced``: the Observation frame already holds one row per (patient, role) (from
    :func:`latest_across_files`); otherwise it is reduced here.
    """
    patients = frames["Patient"]
    if patients.is_empty():
        return pl.DataFrame(schema=FEATURE_SCHEMA)
    lf = patients.lazy()
    obs = frames["Observation"]
    if not obs.is_empty():
        latest = obs.lazy() if observations_reduced else latest_per_role(obs.lazy())
        lf = lf.join(observation_features(latest.drop("sk"), as_of), on="pid", how="left")
    for name in ("Condition", "FamilyMemberHistory", "ImagingStudy"):
        frame = frames[name]
        if not frame.is_empty():
            if name != "ImagingStudy":
                frame = frame.group_by("pid").agg(pl.all().exclude("lung_cancer_onset").any(),
                                                  *([pl.col("lung_cancer_onset").min()]
                                                    if "lung_cancer_onset" in frame.columns else []))
                if name == "FamilyMemberHistory":
                    frame = frame.rename({"family_history_lung_cancer": "family_history_fmh"})
            else:
                frame = frame.group_by("pid").agg(last_ct_date=pl.col("started").max(),
                                                  ct_study_count=pl.col("uid").n_unique())
            lf = lf.join(frame.lazy(), on="pid", how="left")
    names = set(lf.collect_schema().names())
    family = [pl.col(c).fill_null(False) for c in ("family_history_fmh", "family_condition") if c in names]
    if family:
        lf = lf.with_columns(family_history_lung_cancer=pl.any_horizontal(family))
    lf = lf.rename({"pid": "patient_id"})
    columns = []
    names = set(lf.collect_schema().names())
    for name, dtype in FEATURE_SCHEMA.items():
        expr = pl.col(name) if name in names else pl.lit(None)
        if name in CONDITION_COLUMNS or name == "family_history_lung_cancer":
            expr = expr.fill_null(False)
        if name == "ct_study_count":
            expr = expr.fill_null(0)
        columns.append(expr.cast(dtype).alias(name))
    return lf.select(columns).sort("patient_id").collect()


_combine = combine_frames  # the name risk/population/engines.py first used
