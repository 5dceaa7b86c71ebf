"""FHIR R4 JSON for the synthetic cohort: one patient's resources, built as plain dicts (serialised with orjson).

Shapes follow shared/reference/interop.md §3 (US Core where one exists). Resource ids are deterministic
(``Patient/lca-0000001``, ``Observation/lca-0000001-smoking-1``, ``ImagingStudy/lca-0000001-ct-2`` ...; the
full list is in README.md). Every resource carries ``meta.tag`` = risk.codes.SYNTHETIC_DATA_TAG.

Tests validate every resource type with ``fhir.resources.R4B`` models; the generator itself does not (too slow for
a million patients: interop.md measured 10 ms per bundle).
"""

from __future__ import annotations

import zlib
from collections.abc import Callable
from datetime import date
from typing import Any

import numpy as np
from pydicom.uid import Comprehensive3DSRStorage

from risk import codes
from risk.synth import model as M
from risk.synth import uids
from risk.synth.model import Cohort
from risk.synth.phantom import GEOMETRIES
from risk.synth.risk_equations import RACE_ORDER
from risk.synth.sites import SiteProfile

Resource = dict[str, Any]

STUDY_DESCRIPTION = "SYNTHETIC LDCT chest - not for clinical use"
CT_SERIES_DESCRIPTION = "SYNTHETIC LDCT axial - not for clinical use"
SR_SERIES_DESCRIPTION = "SYNTHETIC vendor AI nodule SR - not for clinical use"
SR_SERIES_NUMBER = 900
CT_SERIES_NUMBER = 2



_CONCEPTS: dict[int, dict[str, Any]] = {}
_CODINGS: dict[int, dict[str, str]] = {}


def _cc(code: codes.Code) -> dict[str, Any]:
    """The CodeableConcept of ``code``, built once and shared (the output is serialised, never mutated).

    Keyed by identity: the codes are module-level constants of risk.codes (hashing the dataclass costs more).
    """
    try:
        return _CONCEPTS[id(code)]
    except KeyError:
        return _CONCEPTS.setdefault(id(code), code.concept())


def _coding(code: codes.Code) -> dict[str, str]:
    try:
        return _CODINGS[id(code)]
    except KeyError:
        return _CODINGS.setdefault(id(code), code.coding())


META = {"tag": [_coding(codes.SYNTHETIC_DATA_TAG)]}
"""``meta`` of every resource: the synthetic-data tag."""
_SOCIAL = [_cc(codes.CATEGORY_SOCIAL_HISTORY)]
_VITALS = [_cc(codes.CATEGORY_VITAL_SIGNS)]
_LAB = [_cc(codes.CATEGORY_LABORATORY)]
_ACTIVE = _cc(codes.CLINICAL_STATUS_ACTIVE)
_RESOLVED = _cc(codes.CLINICAL_STATUS_RESOLVED)
_CONFIRMED = _cc(codes.VERIFICATION_STATUS_CONFIRMED)
_PROBLEM = [_cc(codes.CONDITION_PROBLEM_LIST_ITEM)]
_ENCOUNTER_DX = [_cc(codes.CONDITION_ENCOUNTER_DIAGNOSIS)]

_RACE_CODES = {
    "white": codes.OMB_WHITE, "black": codes.OMB_BLACK, "asian": codes.OMB_ASIAN,
    "american_indian_alaska_native": codes.OMB_AIAN, "native_hawaiian_pacific_islander": codes.OMB_NHPI,
}
_FIRST_DEGREE = (codes.RELATIONSHIP_FATHER, codes.RELATIONSHIP_MOTHER, codes.RELATIONSHIP_BROTHER,
                 codes.RELATIONSHIP_SISTER)

# Lab analytes: code, canonical unit, (alternative unit, factor from canonical, decimals).
LAB_CODES = (codes.WBC, codes.HEMOGLOBIN, codes.PLATELETS, codes.NEUTROPHILS, codes.LYMPHOCYTES, codes.CRP,
              codes.ALBUMIN, codes.FEV1, codes.FEV1_FVC)
LAB_UNITS = (codes.UNIT_10_3_UL, codes.UNIT_G_DL, codes.UNIT_10_3_UL, codes.UNIT_10_3_UL, codes.UNIT_10_3_UL,
              codes.UNIT_MG_L, codes.UNIT_G_DL, codes.UNIT_LITER, codes.UNIT_PERCENT)
LAB_ALT_UNITS = (
    (codes.UNIT_10_9_L, 1.0, 1), (codes.UNIT_G_L, 10.0, 0), (codes.UNIT_10_9_L, 1.0, 0),
    (codes.UNIT_10_9_L, 1.0, 2), (codes.UNIT_10_9_L, 1.0, 2), (codes.UNIT_MG_DL, 0.1, 2),
    (codes.UNIT_G_L, 10.0, 0), (codes.UNIT_ML, 1000.0, 0), (codes.UNIT_ONE, 0.01, 3),
)


def lab_reported(analyte: int, value: float, alt_unit: bool) -> tuple[float, str]:
    """The value and UCUM unit a lab result is reported with (the canonical unit, or its documented variant)."""
    if not alt_unit:
        return value, LAB_UNITS[analyte]
    unit, factor, decimals = LAB_ALT_UNITS[analyte]
    return round(value * factor, decimals), unit


def day_strings(as_of: date, days: np.ndarray) -> list[str]:
    """ISO dates of day offsets from ``as_of`` ("" where the offset is NaN)."""
    arr = np.asarray(days, dtype=np.float64)
    ok = ~np.isnan(arr)
    out = np.full(arr.shape, "", dtype=object)
    if ok.any():
        d = np.datetime64(as_of, "D") + arr[ok].astype(np.int64).astype("timedelta64[D]")
        out[ok] = np.datetime_as_string(d, unit="D").astype(object)
    return list(out)


def endpoint(site: SiteProfile, dicomweb_url: str) -> Resource:
    """The site's PACS as a FHIR Endpoint (DICOMweb WADO-RS base URL)."""
    return {
        "resourceType": "Endpoint", "id": site.endpoint_id, "meta": META, "status": "active",
        "connectionType": _coding(codes.ENDPOINT_DICOM_WADO_RS),
        "name": f"{site.institution} PACS (synthetic)",
        "payloadType": [{"text": "DICOM"}], "payloadMimeType": ["application/dicom"], "address": dicomweb_url,
    }


class PatientResources:
    """Builds each patient's FHIR resources for one simulated chunk (lists prepared once per chunk)."""

    def __init__(self, cohort: Cohort, *, ct_matrix: int) -> None:
        self.c = cohort
        self.site = cohort.site
        self.seed = cohort.seed
        p = cohort.patients
        n = len(p)
        self.n = n
        ds = lambda a: day_strings(cohort.as_of, a)  # noqa: E731
        self.index = p.index.tolist()
        self.female = p.female.tolist()
        self.race = p.race.tolist()
        self.birth = ds(p.birth_day)
        self.visit = ds(p.smoking_visit_day)
        self.visit_day = p.smoking_visit_day.tolist()
        self.conflict_date = ds(p.smoking_visit_day - 1826)
        self.t0_plus = ds(p.t0_day + 14)
        self.smoking = p.smoking_t0.tolist()
        self.cpd = p.cigarettes_per_day.tolist()
        self.years = p.years_smoked_t0.tolist()
        self.py = p.pack_years.tolist()
        self.quit_day = p.quit_day.tolist()
        self.quit = ds(p.quit_day)
        self.quit_plus = ds(p.quit_day + 30)
        self.height = p.height_cm.tolist()
        self.weight = p.weight_kg.tolist()
        self.bmi = p.bmi.tolist()
        self.education = p.education.tolist()
        self.copd = p.copd.tolist()
        self.copd_onset = ds(p.copd_onset_day)
        self.emph = p.emphysema_condition.tolist()
        self.pc = p.personal_cancer.tolist()
        self.pc_form = p.personal_cancer_form.tolist()
        self.pc_date = ds(p.personal_cancer_day)
        self.pc_end = ds(p.personal_cancer_day + 365)
        self.cancer_recorded = (p.cancer & (np.nan_to_num(p.onset_day, nan=1.0) <= 0)).tolist()
        self.onset = ds(p.onset_day)
        self.recorded = ds(np.minimum(p.onset_day + 7, 0))
        self.fam = p.family_history.tolist()
        self.fam_rel = p.family_history_relation.tolist()
        self.fam_cond = p.family_history_as_condition.tolist()
        self.fam_age = p.family_history_onset_age.tolist()
        self.fam2 = p.second_degree_family_history.tolist()
        self.fam_other = p.other_family_history.tolist()
        flags = ("bmi_form", "height_weight_alt_units", "education_recorded", "smoking_conflict",
                 "smoking_quantities", "packs_per_day_form", "copd_icd", "emphysema_icd", "personal_cancer_icd",
                 "cancer_icd")
        self.flag = {name: getattr(p, name).tolist() for name in flags}

        s = cohort.studies
        self.s_bounds = M.group_bounds(s.patient, n).tolist()
        self.s_ord = s.ordinal.tolist()
        self.s_kind = s.kind.tolist()
        self.s_date = ds(s.day)
        self.s_auth = ds(s.day - 14)
        self.s_minute = s.minute.tolist()
        self.n_ct = GEOMETRIES[ct_matrix].n_slices
        lab = cohort.labs
        self.l_bounds = M.group_bounds(lab.patient, n).tolist()
        self.l_analyte = lab.analyte.tolist()
        self.l_draw = lab.draw.tolist()
        self.l_value = lab.value.tolist()
        self.l_alt = lab.alt_unit.tolist()
        self.l_missing = lab.missing_unit.tolist()
        self.l_date = ds(lab.day)
        o = cohort.orders
        self.o_bounds = M.group_bounds(o.patient, n).tolist()
        self.o_due = ds(o.due_day)
        self.o_auth = ds(o.authored_day)
        self.o_ord = o.ordinal.tolist()
        self._dup_salt = f"{self.seed}:".encode()

    # -- helpers ----------------------------------------------------------------------------------------------
    def patient_id(self, i: int) -> str:
        return uids.patient_id(self.site.id_prefix, self.index[i])

    def _duplicated(self, resource_id: str) -> bool:
        return zlib.crc32(self._dup_salt + resource_id.encode()) % 1000 < M.DUPLICATE_OBSERVATION_PER_MILLE

    # -- the patient's resources ------------------------------------------------------------------------------
    def resources(self, i: int) -> list[Resource]:
        """All resources of patient ``i`` (chunk-local index), in transaction order."""
        pid = self.patient_id(i)
        subject = {"reference": f"Patient/{pid}"}
        out: list[Resource] = [self._patient(i, pid)]
        observations: list[Resource] = []
        obs: Callable[..., None] = lambda *a, **k: observations.append(_observation(subject, *a, **k))  # noqa: E731
        self._smoking(i, pid, obs)
        self._body(i, pid, obs)
        if self.flag["education_recorded"][i]:
            level = codes.PLCO_EDUCATION_LEVELS[str(self.education[i])]
            obs(f"{pid}-education-1", _SOCIAL, codes.HIGHEST_EDUCATION, self.visit[i],
                valueCodeableConcept=_cc(level))
        self._labs(i, pid, obs)
        for o in observations:
            out.append(o)
            if self._duplicated(o["id"]):
                out.append({**o, "id": o["id"] + "-dup"})
        out.extend(self._conditions(i, pid, subject))
        out.extend(self._family_history(i, pid, subject))
        out.extend(self._imaging(i, pid, subject))
        return out

    def _patient(self, i: int, pid: str) -> Resource:
        race = RACE_ORDER[self.race[i]].value
        hispanic = race == "hispanic"
        race_code = codes.OMB_WHITE if hispanic else _RACE_CODES[race]
        eth_code = codes.OMB_HISPANIC if hispanic else codes.OMB_NOT_HISPANIC
        return {
            "resourceType": "Patient", "id": pid, "meta": META,
            "extension": [
                {"url": codes.US_CORE_RACE_URL, "extension": [
                    {"url": "ombCategory", "valueCoding": _coding(race_code)},
                    {"url": "text", "valueString": race_code.display}]},
                {"url": codes.US_CORE_ETHNICITY_URL, "extension": [
                    {"url": "ombCategory", "valueCoding": _coding(eth_code)},
                    {"url": "text", "valueString": eth_code.display}]},
            ],
            "identifier": [{"use": "usual", "type": _cc(codes.IDENTIFIER_TYPE_MRN),
                            "system": self.site.mrn_system, "value": uids.mrn(self.site.mrn_prefix, self.index[i])}],
            "name": [{"use": "official", "family": "Synthetic", "given": [pid.upper()],
                      "text": f"Synthetic {pid.upper()} (not a real person)"}],
            "gender": "female" if self.female[i] else "male",
            "birthDate": self.birth[i],
        }

    def _smoking(self, i: int, pid: str, obs: Callable[..., None]) -> None:
        status = self.smoking[i]
        visit = self.visit[i]
        if status == M.CURRENT:
            answer = codes.CURRENT_SOME_DAY_SMOKER if self.cpd[i] < 5 else codes.CURRENT_EVERY_DAY_SMOKER
        elif status == M.FORMER:
            answer = codes.FORMER_SMOKER
        else:
            answer = codes.NEVER_SMOKER
        if self.flag["smoking_conflict"][i]:
            obs(f"{pid}-smoking-0", _SOCIAL, codes.SMOKING_STATUS, self.conflict_date[i],
                valueCodeableConcept=_cc(codes.NEVER_SMOKER))
        obs(f"{pid}-smoking-1", _SOCIAL, codes.SMOKING_STATUS, visit, valueCodeableConcept=_cc(answer))
        if status == M.CURRENT and self.quit[i]:
            obs(f"{pid}-smoking-2", _SOCIAL, codes.SMOKING_STATUS, self.quit_plus[i],
                valueCodeableConcept=_cc(codes.FORMER_SMOKER))
            obs(f"{pid}-quitdate-2", _SOCIAL, codes.SMOKING_QUIT_DATE, self.quit_plus[i], valueDateTime=self.quit[i])
        if status == M.NEVER:
            return
        quantities = self.flag["smoking_quantities"][i]
        if quantities == 0:
            cpd = self.cpd[i]
            if self.flag["packs_per_day_form"][i]:
                obs(f"{pid}-ppd-1", _SOCIAL, codes.CIGARETTE_PACKS_PER_DAY, visit,
                    valueQuantity=_qty(round(cpd / 20.0, 2), "packs/day", codes.UNIT_PACKS_PER_DAY))
            else:
                obs(f"{pid}-cpd-1", _SOCIAL, codes.CIGARETTES_PER_DAY, visit,
                    valueQuantity=_qty(cpd, "cigarettes/day", codes.UNIT_PER_DAY))
            obs(f"{pid}-yearssmoked-1", _SOCIAL, codes.SMOKING_DURATION_YEARS, visit,
                valueQuantity=_qty(self.years[i], "years", codes.UNIT_YEAR))
            if status == M.FORMER:
                obs(f"{pid}-quitdate-1", _SOCIAL, codes.SMOKING_QUIT_DATE, visit, valueDateTime=self.quit[i])
        if quantities in (0, 1):
            obs(f"{pid}-packyears-1", _SOCIAL, codes.PACK_YEARS, visit,
                valueQuantity=_qty(self.py[i], "pack-years", codes.UNIT_PACK_YEARS))

    def _body(self, i: int, pid: str, obs: Callable[..., None]) -> None:
        form = self.flag["bmi_form"][i]
        visit = self.visit[i]
        if form in (0, 1):
            obs(f"{pid}-bmi-1", _VITALS, codes.BMI, visit, valueQuantity=_qty(self.bmi[i], "kg/m2", codes.UNIT_KG_M2))
        if form in (0, 2):
            if self.flag["height_weight_alt_units"][i]:
                height = _qty(round(self.height[i] / 2.54, 1), "in", codes.UNIT_INCH)
                weight = _qty(round(self.weight[i] / 0.45359237, 1), "lb", codes.UNIT_POUND)
            else:
                height = _qty(self.height[i], "cm", codes.UNIT_CM)
                weight = _qty(self.weight[i], "kg", codes.UNIT_KG)
            obs(f"{pid}-height-1", _VITALS, codes.BODY_HEIGHT, visit, valueQuantity=height)
            obs(f"{pid}-weight-1", _VITALS, codes.BODY_WEIGHT, visit, valueQuantity=weight)

    def _labs(self, i: int, pid: str, obs: Callable[..., None]) -> None:
        for j in range(self.l_bounds[i], self.l_bounds[i + 1]):
            analyte = self.l_analyte[j]
            kind = "spiro" if analyte >= M.LAB_FEV1 else "lab"
            value, unit = lab_reported(analyte, self.l_value[j], self.l_alt[j])
            quantity: dict[str, Any] = {"value": value}
            if not self.l_missing[j]:
                quantity.update(unit=unit, system=codes.UCUM, code=unit)
            obs(f"{pid}-{kind}-{self.l_draw[j]}-{M.LAB_SLUGS[analyte]}", _LAB, LAB_CODES[analyte], self.l_date[j],
                valueQuantity=quantity)

    def _conditions(self, i: int, pid: str, subject: dict[str, str]) -> list[Resource]:
        out: list[Resource] = []
        flag = self.flag
        if self.copd[i]:
            out.append(_condition(f"{pid}-copd", subject, codes.ICD_COPD if flag["copd_icd"][i] else codes.COPD,
                                  self.copd_onset[i], icd=flag["copd_icd"][i]))
        if self.emph[i]:
            icd = flag["emphysema_icd"][i]
            out.append(_condition(f"{pid}-emphysema", subject, codes.ICD_EMPHYSEMA if icd else codes.EMPHYSEMA,
                                  self.t0_plus[i], icd=icd))
        if self.pc[i]:
            if flag["personal_cancer_icd"][i]:
                out.append(_condition(f"{pid}-prior-cancer", subject, codes.ICD_PERSONAL_HISTORY_OF_CANCER,
                                      self.pc_date[i], icd=True))
            elif self.pc_form[i] == 0:
                out.append(_condition(f"{pid}-prior-cancer", subject, codes.PERSONAL_HISTORY_OF_CANCER,
                                      self.pc_date[i]))
            else:
                out.append(_condition(f"{pid}-prior-cancer", subject, codes.MALIGNANT_NEOPLASM, self.pc_date[i],
                                      abated=self.pc_end[i]))
        if self.cancer_recorded[i]:
            icd = flag["cancer_icd"][i]
            c = _condition(f"{pid}-lung-cancer", subject, codes.ICD_LUNG_CANCER if icd else codes.LUNG_CANCER,
                           self.onset[i], icd=icd)
            c["recordedDate"] = self.recorded[i]
            out.append(c)
        if self.fam[i] and self.fam_cond[i]:
            out.append(_condition(f"{pid}-family-history-lung-cancer", subject,
                                  codes.ICD_FAMILY_HISTORY_LUNG_CANCER, self.visit[i], icd=True, onset=False))
        return out

    def _family_history(self, i: int, pid: str, subject: dict[str, str]) -> list[Resource]:
        out: list[Resource] = []
        patient = {"reference": subject["reference"]}
        if self.fam[i] and not self.fam_cond[i]:
            out.append(_fmh(f"{pid}-fmh-1", patient, self.visit[i], _FIRST_DEGREE[self.fam_rel[i]],
                            codes.LUNG_CANCER, self.fam_age[i]))
        if self.fam2[i]:
            rel = codes.RELATIONSHIP_AUNT if self.index[i] % 2 else codes.RELATIONSHIP_UNCLE
            out.append(_fmh(f"{pid}-fmh-2", patient, self.visit[i], rel, codes.LUNG_CANCER, self.fam_age[i]))
        if self.fam_other[i]:
            rel = codes.RELATIONSHIP_MOTHER if self.index[i] % 3 else codes.RELATIONSHIP_FATHER
            out.append(_fmh(f"{pid}-fmh-3", patient, self.visit[i], rel, codes.DIABETES_MELLITUS, None))
        return out

    def _imaging(self, i: int, pid: str, subject: dict[str, str]) -> list[Resource]:
        out: list[Resource] = []
        seed, site_no, index = self.seed, self.site.number, self.index[i]
        smoking = self.smoking[i]
        screening_reason = (codes.ICD_NICOTINE_DEPENDENCE_CIGARETTES if smoking == M.CURRENT
                            else codes.ICD_HISTORY_NICOTINE_DEPENDENCE if smoking == M.FORMER else None)
        for j in range(self.s_bounds[i], self.s_bounds[i + 1]):
            k = self.s_ord[j]
            follow_up = self.s_kind[j] in (M.FOLLOW_UP_3M, M.FOLLOW_UP_6M)
            order_code = codes.CPT_CT_CHEST_WITHOUT_CONTRAST if follow_up else codes.CPT_LDCT_SCREENING
            reason = codes.ICD_SOLITARY_PULMONARY_NODULE if follow_up else screening_reason
            order_id = f"{pid}-ldct-{k}"
            order = _service_request(order_id, subject, order_code, "completed", self.s_date[j], self.s_auth[j],
                                     reason)
            minute = self.s_minute[j]
            study_uid = uids.study_uid(seed, site_no, index, k)
            started = f"{self.s_date[j]}T{minute // 60:02d}:{minute % 60:02d}:00Z"
            study = {
                "resourceType": "ImagingStudy", "id": f"{pid}-ct-{k}", "meta": META,
                "identifier": [
                    {"use": "official", "system": codes.DICOM_UID, "value": f"urn:oid:{study_uid}"},
                    {"type": _cc(codes.IDENTIFIER_TYPE_ACCESSION),
                     "value": uids.accession_number(self.site.accession_prefix, index, k)},
                ],
                "status": "available",
                "modality": [_coding(codes.MODALITY_CT), _coding(codes.MODALITY_SR)],
                "subject": subject, "started": started,
                "basedOn": [{"reference": f"ServiceRequest/{order_id}"}],
                "endpoint": [{"reference": f"Endpoint/{self.site.endpoint_id}"}],
                "numberOfSeries": 2, "numberOfInstances": self.n_ct + 1,
                "procedureCode": [_cc(order_code)],
                "description": STUDY_DESCRIPTION,
                "series": [
                    {"uid": uids.ct_series_uid(seed, site_no, index, k), "number": CT_SERIES_NUMBER,
                     "modality": _coding(codes.MODALITY_CT), "description": CT_SERIES_DESCRIPTION,
                     "numberOfInstances": self.n_ct, "started": started},
                    {"uid": uids.sr_series_uid(seed, site_no, index, k), "number": SR_SERIES_NUMBER,
                     "modality": _coding(codes.MODALITY_SR), "description": SR_SERIES_DESCRIPTION,
                     "numberOfInstances": 1, "started": started,
                     "instance": [{"uid": uids.sr_instance_uid(seed, site_no, index, k),
                                   "sopClass": {"system": codes.URI_RFC3986,
                                                "code": f"urn:oid:{Comprehensive3DSRStorage}"},
                                   "number": 1}]},
                ],
            }
            out.append(order)
            out.append(study)
        for j in range(self.o_bounds[i], self.o_bounds[i + 1]):
            out.append(_service_request(f"{pid}-ldct-fu-{self.o_ord[j]}", subject,
                                        codes.CPT_CT_CHEST_WITHOUT_CONTRAST, "active", self.o_due[j], self.o_auth[j],
                                        codes.ICD_SOLITARY_PULMONARY_NODULE))
        return out


def _qty(value: float, unit: str, code: str) -> dict[str, Any]:
    return {"value": value, "unit": unit, "system": codes.UCUM, "code": code}


def _observation(subject: dict[str, str], resource_id: str, category: list[dict[str, Any]], code: codes.Code,
                 effective: str, **value: Any) -> Resource:
    return {"resourceType": "Observation", "id": resource_id, "meta": META, "status": "final",
            "category": category, "code": _cc(code), "subject": subject, "effectiveDateTime": effective,
            **value}


def _condition(resource_id: str, subject: dict[str, str], code: codes.Code, when: str, *, icd: bool = False,
               abated: str | None = None, onset: bool = True) -> Resource:
    out: Resource = {
        "resourceType": "Condition", "id": resource_id, "meta": META,
        "clinicalStatus": _RESOLVED if abated else _ACTIVE, "verificationStatus": _CONFIRMED,
        "category": _ENCOUNTER_DX if icd else _PROBLEM, "code": _cc(code), "subject": subject,
    }
    if onset:
        out["onsetDateTime"] = when
    if abated:
        out["abatementDateTime"] = abated
    out["recordedDate"] = when
    return out


def _fmh(resource_id: str, patient: dict[str, str], when: str, relationship: codes.Code, condition: codes.Code,
         onset_age: int | None) -> Resource:
    cond: dict[str, Any] = {"code": _cc(condition)}
    if onset_age is not None:
        cond["onsetAge"] = {"value": onset_age, "unit": "years", "system": codes.UCUM, "code": codes.UNIT_YEAR}
    return {"resourceType": "FamilyMemberHistory", "id": resource_id, "meta": META, "status": "completed",
            "patient": patient, "date": when, "relationship": _cc(relationship), "condition": [cond]}


def _service_request(resource_id: str, subject: dict[str, str], code: codes.Code, status: str, occurrence: str,
                     authored: str, reason: codes.Code | None) -> Resource:
    out: Resource = {
        "resourceType": "ServiceRequest", "id": resource_id, "meta": META, "status": status, "intent": "order",
        "category": [_cc(codes.IMAGING_SERVICE_CATEGORY)], "code": _cc(code), "subject": subject,
        "occurrenceDateTime": occurrence, "authoredOn": authored,
    }
    if reason is not None:
        out["reasonCode"] = [_cc(reason)]
    return out
