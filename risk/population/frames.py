"""What population scoring reads from a Bulk export besides the feature table (risk.features.bulk).

Decoded as risk/sources/bulk.py does (only the fields needed, with DuckDB's reader; bad lines skipped and
counted): the Patient's site, MRN, display name and phone; every ImagingStudy (for the chest-CT rules of
risk.assess.policy and the closed loop); chest-CT ServiceRequests and Appointments (orders and scheduling in the
closed loop); shared-decision-making visits (HCPCS G0296, as a ServiceRequest or Procedure).

Site: the MRN identifier's system mapped by ``population.site_systems``; an unmapped system gives its host's first
label (``https://site-a.example.org/fhir/sid/mrn`` → ``site-a``); no identifier → ``unknown``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import date
from typing import Any, Final

import polars as pl

from risk import codes
from risk.assess.policy import DEFAULT_POLICY, AssessmentPolicy
from risk.extract.fhirjson import reference_regex
from risk.extract.imaging_studies import OID_PREFIX
from risk.extract.patient import MRN_TYPE_CODE
from risk.features import bulk as fb
from risk.features.bulk import CODING, CONCEPT, REFERENCE, clinical_date, patient_id
from risk.features.rules import CT_MODALITY, IGNORED_IMAGING_STUDY_STATUSES
from risk.population.rules import description_flags
from risk.sources.bulk import BulkSource, DecodeReport, collect_resources

UNKNOWN_SITE: Final = "unknown"
HCPCS_SYSTEMS: Final = (codes.HCPCS, codes.HCPCS_OID)
CHEST_CT_ORDER_KEYS: Final = tuple(sorted(
    {f"{c.system}|{c.code}" for c in codes.CHEST_CT_ORDER_CODES}
    | {f"{s}|{c.code}" for c in codes.CHEST_CT_ORDER_CODES if c.system == codes.HCPCS for s in HCPCS_SYSTEMS}))
SDM_KEYS: Final = tuple(f"{s}|{codes.HCPCS_SDM_VISIT.code}" for s in HCPCS_SYSTEMS)
OPEN_ORDER_STATUSES: Final = ("active", "draft", "on-hold")
DONE_ORDER_STATUSES: Final = ("completed",)
BOOKED_APPOINTMENT_STATUSES: Final = ("proposed", "pending", "booked", "arrived", "checked-in")

PATIENT_EXTRA_DTYPE: Final = pl.Struct({
    **{f.name: f.dtype for f in fb.PATIENT_DTYPE.fields},
    "id": pl.String, "birthDate": pl.String,
    "identifier": pl.List(pl.Struct({"system": pl.String, "value": pl.String,
                                     "type": pl.Struct({"coding": pl.List(CODING)})})),
    "name": pl.List(pl.Struct({"text": pl.String, "family": pl.String, "given": pl.List(pl.String)})),
    "telecom": pl.List(pl.Struct({"system": pl.String, "value": pl.String})),
})
STUDY_DTYPE: Final = pl.Struct({
    "status": pl.String, "subject": REFERENCE, "started": pl.String, "description": pl.String,
    "identifier": pl.List(pl.Struct({"system": pl.String, "value": pl.String})),
    "modality": pl.List(fb.MODALITY), "series": pl.List(pl.Struct({"modality": fb.MODALITY})),
    "basedOn": pl.List(REFERENCE),
})
ORDER_DTYPE: Final = pl.Struct({
    "id": pl.String, "status": pl.String, "intent": pl.String, "subject": REFERENCE, "code": CONCEPT,
    "occurrenceDateTime": pl.String, "occurrencePeriod": pl.Struct({"start": pl.String}), "authoredOn": pl.String,
})
APPOINTMENT_DTYPE: Final = pl.Struct({
    "id": pl.String, "status": pl.String, "start": pl.String, "basedOn": pl.List(REFERENCE),
    "participant": pl.List(pl.Struct({"actor": REFERENCE})),
})
PROCEDURE_DTYPE: Final = pl.Struct({
    "status": pl.String, "subject": REFERENCE, "code": CONCEPT, "performedDateTime": pl.String,
    "performedPeriod": pl.Struct({"start": pl.String}),
})

STUDY_SCHEMA: Final = {"pid": pl.String, "uid": pl.String, "started": pl.Date, "is_ct": pl.Boolean,
                       "has_sr": pl.Boolean, "chest_desc": pl.Boolean, "screening_desc": pl.Boolean,
                       "order_id": pl.String}
ORDER_SCHEMA: Final = {"pid": pl.String, "order_id": pl.String, "status": pl.String, "authored": pl.Date,
                       "occurrence": pl.Date, "chest_ct": pl.Boolean, "sdm": pl.Boolean, "code": pl.String}
SCREENING_ORDER_CODES: Final = (codes.CPT_LDCT_SCREENING.code, codes.HCPCS_LDCT_LEGACY.code)
APPOINTMENT_SCHEMA: Final = {"appointment_id": pl.String, "status": pl.String, "start": pl.Date,
                             "order_id": pl.String}
PROCEDURE_SCHEMA: Final = {"pid": pl.String, "performed": pl.Date, "sdm": pl.Boolean}


def _keys(concept: pl.Expr) -> pl.Expr:
    c = pl.element()
    return concept.struct.field("coding").list.eval(c.struct.field("system") + "|" + c.struct.field("code"))


def _ref_ids(refs: pl.Expr, resource_type: str) -> pl.Expr:
    """The ids of a list of References to ``resource_type`` (relative, absolute or versioned, as
    risk.extract.fhirjson.reference_id reads one)."""
    return refs.list.eval(pl.element().struct.field("reference").str.extract(reference_regex(resource_type), 1)
                          .drop_nulls())


def site_of(system: str | None, site_systems: Mapping[str, str]) -> str:
    """The site an MRN identifier system belongs to (see the module docstring)."""
    if not system:
        return UNKNOWN_SITE
    if system in site_systems:
        return site_systems[system]
    host = system.split("://", 1)[-1].split("/", 1)[0].split(":", 1)[0]
    return host.split(".", 1)[0] or UNKNOWN_SITE


def patient_frame(lf: pl.LazyFrame) -> pl.LazyFrame:
    ident = pl.element()
    is_mrn = ident.struct.field("type").struct.field("coding").list.eval(
        pl.element().struct.field("code") == MRN_TYPE_CODE).list.any().fill_null(False)
    usable = ident.struct.field("system").is_not_null() & (ident.struct.field("value").str.len_bytes() > 0)
    mrn_ident = pl.col("identifier").list.eval(ident.filter(is_mrn & usable)).list.first()
    any_ident = pl.col("identifier").list.eval(ident.filter(usable)).list.first()
    chosen = pl.coalesce(mrn_ident, any_ident)
    name = pl.col("name").list.first()
    built = pl.concat_str([name.struct.field("given").list.join(" "), name.struct.field("family")], separator=" ",
                          ignore_nulls=True)
    phone = pl.col("telecom").list.eval(pl.element().filter(pl.element().struct.field("system") == "phone")
                                        .struct.field("value")).list.first()
    system = chosen.struct.field("system")
    return (
        lf.filter(pl.col("id").str.len_bytes() > 0)
        .select(pid=pl.col("id"), mrn=chosen.struct.field("value"), mrn_system=system,
                name=pl.coalesce(name.struct.field("text"), pl.when(built.str.len_bytes() > 0).then(built)),
                phone=phone, birth_date=clinical_date(pl.col("birthDate")))
        .unique("pid", keep="first", maintain_order=True)
    )


def with_sites(patients: pl.DataFrame, site_systems: Mapping[str, str]) -> pl.DataFrame:
    """Add ``site`` from ``mrn_system`` (mapped once per distinct system, not per patient)."""
    systems = patients["mrn_system"].unique().to_list()
    table = pl.DataFrame({"mrn_system": systems, "site": [site_of(s, site_systems) for s in systems]},
                         schema={"mrn_system": pl.String, "site": pl.String})
    return patients.join(table, on="mrn_system", how="left", nulls_equal=True).with_columns(
        pl.col("site").fill_null(UNKNOWN_SITE))


def study_frame(lf: pl.LazyFrame, as_of: date, policy: AssessmentPolicy = DEFAULT_POLICY) -> pl.LazyFrame:
    """CT ImagingStudy rows as risk.extract.imaging_studies reads them (status, UID, CT modality, date ≤ as_of),
    with the description reduced to the policy's two flags and ``basedOn`` to its first ServiceRequest id."""
    ident = pl.element()
    value = ident.struct.field("value").str.strip_chars()
    uid = (pl.col("identifier").list.eval(value.filter((ident.struct.field("system") == codes.DICOM_UID)
                                                       & (value.str.len_bytes() > 0))).list.first()
           .str.strip_prefix(OID_PREFIX))
    series_modalities = pl.col("series").list.eval(pl.element().struct.field("modality").struct.field("code")
                                                   .str.strip_chars())
    study_modalities = pl.col("modality").list.eval(pl.element().struct.field("code").str.strip_chars())
    started = clinical_date(pl.col("started"))
    return (
        lf.select(*description_flags(policy), pid=patient_id(pl.col("subject").struct.field("reference")), uid=uid,
                  started=started,
                  is_ct=(series_modalities.list.contains(CT_MODALITY).fill_null(False)
                         | study_modalities.list.contains(CT_MODALITY).fill_null(False)),
                  has_sr=(series_modalities.list.contains("SR").fill_null(False)
                          | study_modalities.list.contains("SR").fill_null(False)),
                  order_id=_ref_ids(pl.col("basedOn"), "ServiceRequest").list.first(), status=pl.col("status"))
        .filter(pl.col("pid").is_not_null() & pl.col("uid").is_not_null() & pl.col("is_ct")
                & ~pl.col("status").is_in(list(IGNORED_IMAGING_STUDY_STATUSES)).fill_null(False)
                & (pl.col("started").is_null() | (pl.col("started") <= as_of)))
        .drop("status")
    )


def order_frame(lf: pl.LazyFrame, as_of: date) -> pl.LazyFrame:
    keys = _keys(pl.col("code"))
    occurrence = pl.coalesce(pl.col("occurrenceDateTime"), pl.col("occurrencePeriod").struct.field("start"))
    authored = clinical_date(pl.col("authoredOn"))
    return (
        lf.select(pid=patient_id(pl.col("subject").struct.field("reference")), order_id=pl.col("id"),
                  status=pl.col("status"), authored=authored, occurrence=clinical_date(occurrence),
                  chest_ct=keys.list.eval(pl.element().is_in(list(CHEST_CT_ORDER_KEYS))).list.any().fill_null(False),
                  sdm=keys.list.eval(pl.element().is_in(list(SDM_KEYS))).list.any().fill_null(False),
                  code=keys.list.eval(pl.element().filter(pl.element().is_in([*CHEST_CT_ORDER_KEYS, *SDM_KEYS])))
                  .list.first().str.split("|").list.last(),
                  intent=pl.col("intent"))
        .filter(pl.col("pid").is_not_null() & pl.col("order_id").is_not_null() & (pl.col("chest_ct") | pl.col("sdm"))
                & (pl.col("intent").is_null() | pl.col("intent").is_in(["order", "original-order", "plan",
                                                                         "filler-order", "instance-order"]))
                & (pl.col("authored").is_null() | (pl.col("authored") <= as_of)))
        .drop("intent")
    )


def appointment_frame(lf: pl.LazyFrame, as_of: date) -> pl.LazyFrame:
    del as_of
    return (
        lf.select(appointment_id=pl.col("id"), status=pl.col("status"), start=clinical_date(pl.col("start")),
                  order_id=_ref_ids(pl.col("basedOn"), "ServiceRequest"))
        .explode("order_id").filter(pl.col("order_id").is_not_null())
    )


def procedure_frame(lf: pl.LazyFrame, as_of: date) -> pl.LazyFrame:
    performed = clinical_date(pl.coalesce(pl.col("performedDateTime"), pl.col("performedPeriod").struct.field("start")))
    return (
        lf.select(pid=patient_id(pl.col("subject").struct.field("reference")), performed=performed,
                  sdm=_keys(pl.col("code")).list.eval(pl.element().is_in(list(SDM_KEYS))).list.any().fill_null(False),
                  status=pl.col("status"))
        .filter(pl.col("pid").is_not_null() & pl.col("sdm") & (pl.col("status") == "completed")
                & (pl.col("performed").is_null() | (pl.col("performed") <= as_of)))
        .drop("status")
    )


FEATURE_PATIENT_COLUMNS: Final = ("pid", "age_years", "sex", "race_ethnicity")
"""What risk.features.bulk.patient_features returns (its Patient stage)."""
EXTRA_PATIENT_COLUMNS: Final = ("pid", "mrn", "mrn_system", "name", "phone", "birth_date")


@dataclass(slots=True)
class ExtraFrames:
    patients: pl.DataFrame
    studies: pl.DataFrame
    orders: pl.DataFrame
    appointments: pl.DataFrame
    procedures: pl.DataFrame
    bad_lines: int = 0
    bad_line_notes: list[str] = field(default_factory=list)
    feature_frames: dict[str, pl.DataFrame] = field(default_factory=dict)
    """risk.features.bulk's Patient and ImagingStudy stage outputs, from the same decode (each file read once)."""


def read_extra(source: BulkSource, *, as_of: date, site_systems: Mapping[str, str],
               policy: AssessmentPolicy = DEFAULT_POLICY) -> ExtraFrames:
    """Patient and ImagingStudy (decoded once for both risk.features.bulk and the population rules; see
    ``feature_frames``). The order/appointment/procedure frames come from :func:`read_orders`, after the feature
    table, so they are not held in memory while the Observations are decoded."""
    report = DecodeReport()
    both = _read(source, report, "Patient", PATIENT_EXTRA_DTYPE,
                 lambda lf: fb.patient_features(lf, as_of).join(patient_frame(lf), on="pid", how="left"),
                 {"pid": pl.String, "age_years": pl.Int64, "sex": pl.String, "race_ethnicity": pl.String,
                  "mrn": pl.String, "mrn_system": pl.String, "name": pl.String, "phone": pl.String,
                  "birth_date": pl.Date})
    both = both.unique("pid", keep="first", maintain_order=True)  # a Patient repeated in two files counts once
    patients = with_sites(both.select(EXTRA_PATIENT_COLUMNS), site_systems).drop("mrn_system")
    studies = _read(source, report, "ImagingStudy", STUDY_DTYPE, lambda lf: study_frame(lf, as_of, policy),
                    STUDY_SCHEMA)
    studies = studies.unique(["pid", "uid"], keep="first", maintain_order=True)
    # risk.features.bulk.imaging_features keeps exactly these CT rows (same UID, status and date rules; it counts
    # distinct UIDs and takes the latest date, so the de-duplication above changes nothing there)
    feature_frames = {"Patient": both.select(FEATURE_PATIENT_COLUMNS),
                      "ImagingStudy": studies.select("pid", "uid", "started")}
    empty = pl.DataFrame(schema=ORDER_SCHEMA)
    return ExtraFrames(patients=patients, studies=studies, orders=empty,
                       appointments=pl.DataFrame(schema=APPOINTMENT_SCHEMA),
                       procedures=pl.DataFrame(schema=PROCEDURE_SCHEMA), bad_lines=report.count,
                       bad_line_notes=[n.message for n in report.notes("resource")], feature_frames=feature_frames)


def read_orders(source: BulkSource, extra: ExtraFrames, *, as_of: date) -> None:
    """Fill ``extra``'s orders, appointments and procedures (chest-CT and shared-decision-making records)."""
    report = DecodeReport()
    extra.orders = _read(source, report, "ServiceRequest", ORDER_DTYPE, lambda lf: order_frame(lf, as_of),
                         ORDER_SCHEMA)
    extra.appointments = _read(source, report, "Appointment", APPOINTMENT_DTYPE,
                               lambda lf: appointment_frame(lf, as_of), APPOINTMENT_SCHEMA)
    extra.procedures = _read(source, report, "Procedure", PROCEDURE_DTYPE, lambda lf: procedure_frame(lf, as_of),
                             PROCEDURE_SCHEMA)
    extra.bad_lines += report.count
    extra.bad_line_notes.extend(n.message for n in report.notes("resource"))


def collect_sequential(files: Any, dtype: pl.Struct, transform: Any, report: DecodeReport | None = None
                       ) -> pl.DataFrame:
    """risk.sources.bulk.collect_resources one file at a time, concatenated: the same rows (and the same handling
    of bad lines), but only one file's lines in memory at once (a million patients' export is ~17 GB of NDJSON in
    files of up to 2 GB; decoding them all at once needs several GiB more)."""
    parts = [frame for p in files if (frame := collect_resources([p], dtype, transform, report)).width]
    return pl.concat(parts) if parts else pl.DataFrame()


def _read(source: BulkSource, report: DecodeReport, resource_type: str, dtype: pl.Struct, transform: Any,
          schema: Mapping[str, Any]) -> pl.DataFrame:
    frame = collect_sequential(source.files(resource_type), dtype, transform, report)
    if frame.is_empty() and not frame.columns:
        return pl.DataFrame(schema=dict(schema))
    return frame
