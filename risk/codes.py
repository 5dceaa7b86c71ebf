"""Every clinical code the service reads or writes, as a named constant, in one place.

Each constant records where it was verified (``verified``). Two mechanical checks back the
numeric identifiers and run in ``tests/test_codes.py``:

* LOINC codes carry a mod-10 check digit after the dash (LOINC Users' Guide, "Calculating Mod 10
  check digits"). 8664-7 and 63640-6, often quoted for smoking, fail it and are not codes.
* SNOMED CT concept ids end in a Verhoeff check digit preceded by a two-digit partition
  identifier (SNOMED CT Technical Implementation Guide, "Check-digit").

DICOM (DCM) and SNOMED codes that appear in ``pydicom.sr.codedict`` are cross-checked against it
in the same test. RadLex ids come from the ACR/RSNA OIDM pulmonary-nodule CDE draft
(shared/reference/interop.md §5.2); they have no check digit and are marked ``verified="OIDM
staging CDE (not yet RadLex-confirmed)"`` so a reader knows how far to trust them.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

# --- Code systems (FHIR canonical URIs) ---------------------------------------------------------
LOINC = "http://loinc.org"
SNOMED = "http://snomed.info/sct"
ICD10CM = "http://hl7.org/fhir/sid/icd-10-cm"
UCUM = "http://unitsofmeasure.org"
DCM = "http://dicom.nema.org/resources/ontology/DCM"
RADLEX = "http://www.radlex.org"
UMLS = "http://www.nlm.nih.gov/research/umls"
CPT = "http://www.ama-assn.org/go/cpt"
HCPCS = "https://www.cms.gov/Medicare/Coding/HCPCSReleaseCodeSets"
CPT_OID = "urn:oid:2.16.840.1.113883.6.12"
"""CPT by its HL7 OID, as some order catalogs send it (read side only; we write ``CPT``)."""
HCPCS_OID = "urn:oid:2.16.840.1.113883.6.285"
"""HCPCS by its HL7 OID (read side only)."""
OBSERVATION_CATEGORY = "http://terminology.hl7.org/CodeSystem/observation-category"
CONDITION_CATEGORY = "http://terminology.hl7.org/CodeSystem/condition-category"
CONDITION_CLINICAL = "http://terminology.hl7.org/CodeSystem/condition-clinical"
CONDITION_VERIFICATION = "http://terminology.hl7.org/CodeSystem/condition-ver-status"
V3_ROLE_CODE = "http://terminology.hl7.org/CodeSystem/v3-RoleCode"
V2_0203 = "http://terminology.hl7.org/CodeSystem/v2-0203"
CDC_RACE_ETHNICITY = "urn:oid:2.16.840.1.113883.6.238"
DICOM_UID = "urn:dicom:uid"
ENDPOINT_CONNECTION_TYPE = "http://terminology.hl7.org/CodeSystem/endpoint-connection-type"
META_TAG_SYNTHETIC = "https://lungrisk.example.org/fhir/CodeSystem/data-provenance"
PLCO_EDUCATION_LEVEL_SYSTEM = "https://lungrisk.example.org/fhir/CodeSystem/plco-education-level"
"""Project code system for LOINC 82589-3 answers: PLCOm2012 education levels "1"-"6" (clinical-models.md §2)."""

# DICOM coding-scheme designators for each FHIR system (PS3.16 Table 8-1).
DICOM_SCHEME_BY_SYSTEM = {
    LOINC: "LN",
    SNOMED: "SCT",
    DCM: "DCM",
    RADLEX: "RADLEX",
    UCUM: "UCUM",
    UMLS: "UMLS",
}
SYSTEM_BY_DICOM_SCHEME = {v: k for k, v in DICOM_SCHEME_BY_SYSTEM.items()}


@dataclass(frozen=True, slots=True)
class Code:
    """A coded concept: ``system`` (FHIR canonical URI), ``code`` and ``display``.

    ``verified`` says where the code was checked. It converts to a FHIR Coding and to a DICOM
    coded concept, so the same constant serves both worlds.
    """

    system: str
    code: str
    display: str
    verified: str = ""

    def __post_init__(self) -> None:
        if not self.system:
            raise ValueError('Argument "system" must not be empty.')
        if not self.code or self.code != self.code.strip():
            raise ValueError(f'Argument "code" must be a non-empty trimmed string, got {self.code!r}.')
        if not self.display:
            raise ValueError('Argument "display" must not be empty.')

    def coding(self) -> dict[str, str]:
        """The FHIR ``Coding`` JSON for this code."""
        return {"system": self.system, "code": self.code, "display": self.display}

    def concept(self, text: str | None = None) -> dict[str, Any]:
        """A FHIR ``CodeableConcept`` JSON with this one coding."""
        out: dict[str, Any] = {"coding": [self.coding()]}
        if text:
            out["text"] = text
        return out

    def matches(self, system: str | None, code: str | None) -> bool:
        return code == self.code and (system is None or system == self.system)

    def dicom(self) -> Any:
        """A ``highdicom.sr.CodedConcept`` (imported lazily: highdicom is heavy)."""
        from highdicom.sr import CodedConcept

        scheme = DICOM_SCHEME_BY_SYSTEM.get(self.system)
        if scheme is None:
            raise ValueError(f"No DICOM coding scheme designator for system {self.system!r}.")
        return CodedConcept(value=self.code, scheme_designator=scheme, meaning=self.display[:64])


def _loinc(code: str, display: str, verified: str = "LOINC check digit; display per interop.md §3") -> Code:
    return Code(LOINC, code, display, verified)


def _sct(code: str, display: str, verified: str = "SNOMED Verhoeff check digit") -> Code:
    return Code(SNOMED, code, display, verified)


def _dcm(code: str, display: str) -> Code:
    return Code(DCM, code, display, "pydicom.sr.codedict (DCM)")


def _radlex(code: str, display: str) -> Code:
    return Code(RADLEX, code, display, "OIDM staging CDE (not yet RadLex-confirmed)")


def _icd(code: str, display: str) -> Code:
    return Code(ICD10CM, code, display, "ICD-10-CM 2025 tabular list")


# --- Smoking (US Core Smoking Status; interop.md §3.2) -----------------------------------------
SMOKING_STATUS = _loinc("72166-2", "Tobacco smoking status")
TOBACCO_USE_HISTORY = _loinc("11367-0", "History of Tobacco use")
SMOKING_STATUS_NHIS = _loinc("76691-5", "Tobacco smoking status NHIS")
CIGARETTE_PACKS_PER_DAY = _loinc("8663-7", "Cigarettes smoked current (pack per day) - Reported")
CIGARETTES_PER_DAY = _loinc("64218-1", "How many cigarettes do you smoke per day now")
SMOKING_DURATION_YEARS = _loinc("88029-4", "Tobacco use duration")
YEARS_SINCE_QUIT = _loinc("63632-4", "About how long since you completely quit smoking cigarettes")
SMOKING_QUIT_DATE = _loinc("74010-0", "Date quit tobacco smoking")
PACK_YEARS = _sct("401201003", "Cigarette pack-years")
PACK_YEARS_CALCULATED = _sct("782516008", "Number of calculated smoking pack years")

# Smoking-status answers, with the displays of the US Core 6.1.0 archive value set (ONC 2015 Edition).
CURRENT_EVERY_DAY_SMOKER = _sct("449868002", "Current every day smoker")
CURRENT_SOME_DAY_SMOKER = _sct("428041000124106", "Current some day smoker")
FORMER_SMOKER = _sct("8517006", "Former smoker")
NEVER_SMOKER = _sct("266919005", "Never smoker")
SMOKER_STATUS_UNKNOWN = _sct("77176002", "Smoker, current status unknown")
UNKNOWN_IF_EVER_SMOKED = _sct("266927001", "Unknown if ever smoked")
CURRENT_HEAVY_SMOKER = _sct("428071000124103", "Current heavy tobacco smoker")
CURRENT_LIGHT_SMOKER = _sct("428061000124105", "Current light tobacco smoker")

CURRENT_SMOKER_ANSWERS = (
    CURRENT_EVERY_DAY_SMOKER,
    CURRENT_SOME_DAY_SMOKER,
    SMOKER_STATUS_UNKNOWN,
    CURRENT_HEAVY_SMOKER,
    CURRENT_LIGHT_SMOKER,
)
FORMER_SMOKER_ANSWERS = (FORMER_SMOKER,)
NEVER_SMOKER_ANSWERS = (NEVER_SMOKER,)
UNKNOWN_SMOKER_ANSWERS = (UNKNOWN_IF_EVER_SMOKED,)

# --- Vital signs, anthropometrics, social history ----------------------------------------------
BMI = _loinc("39156-5", "Body mass index (BMI) [Ratio]")
BODY_WEIGHT = _loinc("29463-7", "Body weight")
BODY_HEIGHT = _loinc("8302-2", "Body height")
HIGHEST_EDUCATION = _loinc("82589-3", "Highest level of education")
PLCO_EDUCATION_LEVELS = {
    str(level): Code(PLCO_EDUCATION_LEVEL_SYSTEM, str(level), display, "PLCOm2012 levels (clinical-models.md §2)")
    for level, display in (
        (1, "Less than high-school graduate"), (2, "High-school graduate"),
        (3, "Post-high-school training other than college"), (4, "Some college"), (5, "College graduate"),
        (6, "Postgraduate or professional degree"),
    )
}

# --- Laboratory panel (documented in risk/extract/labs.py) -------------------------------------
WBC = _loinc("6690-2", "Leukocytes [#/volume] in Blood by Automated count")
HEMOGLOBIN = _loinc("718-7", "Hemoglobin [Mass/volume] in Blood")
PLATELETS = _loinc("777-3", "Platelets [#/volume] in Blood by Automated count")
NEUTROPHILS = _loinc("751-8", "Neutrophils [#/volume] in Blood by Automated count")
LYMPHOCYTES = _loinc("731-0", "Lymphocytes [#/volume] in Blood by Automated count")
CRP = _loinc("1988-5", "C reactive protein [Mass/volume] in Serum or Plasma")
ALBUMIN = _loinc("1751-7", "Albumin [Mass/volume] in Serum or Plasma")
CEA = _loinc("2039-6", "Carcinoembryonic Ag [Mass/volume] in Serum or Plasma")
FEV1 = _loinc("20150-9", "FEV1")
FEV1_FVC = _loinc("19926-5", "FEV1/FVC")

# --- Conditions (interop.md §3.4) ----------------------------------------------------------------
COPD = _sct("13645005", "Chronic obstructive lung disease")
EMPHYSEMA = _sct("87433001", "Pulmonary emphysema")
LUNG_CANCER = _sct("363358000", "Malignant tumor of lung")
PRIMARY_LUNG_CANCER = _sct("93880001", "Primary malignant neoplasm of lung")
MALIGNANT_NEOPLASM = _sct("363346000", "Malignant neoplastic disease")
PERSONAL_HISTORY_OF_CANCER = _sct("266987004", "History of malignant neoplasm")
IMMUNODEFICIENCY = _sct("234532001", "Immunodeficiency disorder")

ICD_COPD = _icd("J44.9", "Chronic obstructive pulmonary disease, unspecified")
ICD_COPD_EXACERBATION = _icd("J44.1", "Chronic obstructive pulmonary disease with (acute) exacerbation")
ICD_COPD_INFECTION = _icd("J44.0", "Chronic obstructive pulmonary disease with acute lower respiratory infection")
ICD_EMPHYSEMA = _icd("J43.9", "Emphysema, unspecified")
ICD_LUNG_CANCER = _icd("C34.90", "Malignant neoplasm of unspecified part of unspecified bronchus or lung")
ICD_FAMILY_HISTORY_LUNG_CANCER = _icd(
    "Z80.1", "Family history of malignant neoplasm of trachea, bronchus and lung"
)
ICD_HISTORY_NICOTINE_DEPENDENCE = _icd("Z87.891", "Personal history of nicotine dependence")
ICD_NICOTINE_DEPENDENCE_CIGARETTES = _icd("F17.210", "Nicotine dependence, cigarettes, uncomplicated")
# ICD-10-CM prefixes (a code belongs to the group when it starts with the prefix).
ICD_PREFIX_COPD = ("J44",)
ICD_PREFIX_EMPHYSEMA = ("J43",)
ICD_PREFIX_LUNG_CANCER = ("C34",)
ICD_PREFIX_MALIGNANT_NEOPLASM = tuple(f"C{n:02d}" for n in range(0, 97))
ICD_PREFIX_HISTORY_OF_CANCER = ("Z85",)
ICD_PREFIX_IMMUNODEFICIENCY = ("D80", "D81", "D82", "D83", "D84", "B20")

# --- Family history (v3 RoleCode, first-degree relatives) ---------------------------------------
FIRST_DEGREE_RELATIVE_CODES = frozenset(
    {"FTH", "MTH", "NFTH", "NMTH", "PRN", "NPRN", "BRO", "SIS", "NBRO", "NSIS", "SIB", "NSIB",
     "SON", "DAU", "CHILD", "NCHILD", "TWIN", "TWINBRO", "TWINSIS"}
)

# --- US Core race and ethnicity (OMB categories, CDC Race & Ethnicity code system) --------------
US_CORE_RACE_URL = "http://hl7.org/fhir/us/core/StructureDefinition/us-core-race"
US_CORE_ETHNICITY_URL = "http://hl7.org/fhir/us/core/StructureDefinition/us-core-ethnicity"
OMB_WHITE = Code(CDC_RACE_ETHNICITY, "2106-3", "White", "CDC Race & Ethnicity 1.2")
OMB_BLACK = Code(CDC_RACE_ETHNICITY, "2054-5", "Black or African American", "CDC Race & Ethnicity 1.2")
OMB_ASIAN = Code(CDC_RACE_ETHNICITY, "2028-9", "Asian", "CDC Race & Ethnicity 1.2")
OMB_AIAN = Code(CDC_RACE_ETHNICITY, "1002-5", "American Indian or Alaska Native", "CDC Race & Ethnicity 1.2")
OMB_NHPI = Code(
    CDC_RACE_ETHNICITY, "2076-8", "Native Hawaiian or Other Pacific Islander", "CDC Race & Ethnicity 1.2"
)
OMB_HISPANIC = Code(CDC_RACE_ETHNICITY, "2135-2", "Hispanic or Latino", "CDC Race & Ethnicity 1.2")
OMB_NOT_HISPANIC = Code(CDC_RACE_ETHNICITY, "2186-5", "Not Hispanic or Latino", "CDC Race & Ethnicity 1.2")

# --- Orders (interop.md §3.8) -------------------------------------------------------------------
CPT_LDCT_SCREENING = Code(
    CPT, "71271", "Computed tomography, thorax, low dose for lung cancer screening, without contrast",
    "CPT 2021 (effective 2021-01-01)",
)
CPT_CT_CHEST_WITHOUT_CONTRAST = Code(CPT, "71250", "Computed tomography, thorax; without contrast", "CPT")
CPT_CT_CHEST_WITH_CONTRAST = Code(CPT, "71260", "Computed tomography, thorax; with contrast", "CPT")
CPT_CT_CHEST_WITH_AND_WITHOUT = Code(
    CPT, "71270", "Computed tomography, thorax; without contrast, followed by contrast", "CPT"
)
HCPCS_LDCT_LEGACY = Code(HCPCS, "G0297", "Low dose CT scan (LDCT) for lung cancer screening", "HCPCS (retired 2020)")
HCPCS_SDM_VISIT = Code(
    HCPCS, "G0296", "Counseling visit to discuss need for lung cancer screening using LDCT", "HCPCS"
)
CHEST_CT_ORDER_CODES = (
    CPT_LDCT_SCREENING,
    CPT_CT_CHEST_WITHOUT_CONTRAST,
    CPT_CT_CHEST_WITH_CONTRAST,
    CPT_CT_CHEST_WITH_AND_WITHOUT,
    HCPCS_LDCT_LEGACY,
)
SCREENING_ORDER_CODES = (CPT_LDCT_SCREENING, HCPCS_LDCT_LEGACY)
IMAGING_SERVICE_CATEGORY = _sct("363679005", "Imaging", "FHIR R4 servicerequest-category example value set")

# --- CDS Hooks cards and model outputs (the service's own code systems) -------------------------------
CDS_CARD_TYPE_SYSTEM = "https://lungrisk.example.org/fhir/CodeSystem/cds-card-type"
"""``card.source.topic``: what a card is about; feedback rates are reported per card type."""
CDS_OVERRIDE_REASON_SYSTEM = "https://lungrisk.example.org/fhir/CodeSystem/cds-override-reason"
"""``card.overrideReasons`` (CDS Hooks 2.0 §Card: each reason MUST carry a display)."""
RISK_MODEL_SYSTEM = "https://lungrisk.example.org/fhir/CodeSystem/risk-model"
"""``RiskAssessment.method``: which published or learned model produced a probability."""
_OWN = "the service's own code system"


def _card_type(code: str, display: str) -> Code:
    return Code(CDS_CARD_TYPE_SYSTEM, code, display, _OWN)


def _override(code: str, display: str) -> Code:
    return Code(CDS_OVERRIDE_REASON_SYSTEM, code, display, _OWN)


CARD_SCREENING_DUE = _card_type("screening-due", "Lung cancer screening due")
CARD_NODULE_FOLLOW_UP = _card_type("nodule-follow-up", "Pulmonary nodule follow-up")
CARD_HIGH_RISK = _card_type("high-risk", "High or rising lung cancer risk")
CARD_DATA_GAPS = _card_type("data-gaps", "Lung cancer risk check incomplete")
CARD_ORDER_ELIGIBILITY = _card_type("order-eligibility", "Screening LDCT order: eligibility")
CARD_ORDER_SHARED_DECISION = _card_type("order-shared-decision", "Screening LDCT order: shared decision-making")
CARD_ORDER_TIMING = _card_type("order-timing", "Chest CT order: follow-up timing")
CARD_ORDER_DUPLICATE = _card_type("order-duplicate", "Chest CT order: duplicate imaging")

OVERRIDE_ALREADY_SCHEDULED = _override("already-scheduled", "Imaging already scheduled or done elsewhere")
OVERRIDE_PATIENT_DECLINED = _override("patient-declined", "Patient declined after discussion")
OVERRIDE_CLINICAL_JUDGEMENT = _override("clinical-judgement", "Not appropriate for this patient (clinical judgement)")
OVERRIDE_LIMITED_LIFE_EXPECTANCY = _override(
    "limited-life-expectancy", "Comorbidity limits life expectancy or curative treatment"
)
OVERRIDE_DATA_INCORRECT = _override("data-incorrect", "Patient data shown is incorrect or out of date")
OVERRIDE_SPECIALIST_CARE = _override("specialist-care", "Nodule managed by pulmonology or oncology")
OVERRIDE_CLINICAL_INDICATION = _override("clinical-indication", "Imaging needed now for a clinical indication")

MODEL_PLCOM2012 = Code(RISK_MODEL_SYSTEM, "plcom2012", "PLCOm2012 6-year lung cancer risk", _OWN)
MODEL_PLCOM2012_NORACE = Code(RISK_MODEL_SYSTEM, "plcom2012-norace", "PLCOm2012noRace 6-year lung cancer risk", _OWN)
MODEL_BROCK = Code(RISK_MODEL_SYSTEM, "brock", "Brock (PanCan) nodule malignancy probability", _OWN)

# --- DICOM / TID 1500 (interop.md §5.1-5.2) -----------------------------------------------------
MODALITY_CT = _dcm("CT", "Computed Tomography")
MODALITY_SR = _dcm("SR", "SR Document")
IMAGING_MEASUREMENT_REPORT = _dcm("126000", "Imaging Measurement Report")
IMAGING_MEASUREMENTS = _dcm("126010", "Imaging Measurements")
MEASUREMENT_GROUP = _dcm("125007", "Measurement Group")
TRACKING_IDENTIFIER = _dcm("112039", "Tracking Identifier")
TRACKING_UNIQUE_IDENTIFIER = _dcm("112040", "Tracking Unique Identifier")
FINDING = _dcm("121071", "Finding")
ALGORITHM_NAME = _dcm("111001", "Algorithm Name")
ALGORITHM_VERSION = _dcm("111003", "Algorithm Version")
PROBABILITY_OF_CANCER = _dcm("111047", "Probability of cancer")
IMAGE_REGION = _dcm("111030", "Image Region")
SPICULATED = _dcm("112136", "Spiculated")
GROUND_GLASS_OPACITY = _dcm("112120", "Ground glass opacity")
MEAN_ATTENUATION = _dcm("112181", "Mean Attenuation Coefficient")

NODULE = _sct("27925004", "Nodule", "pydicom.sr.codedict (SCT)")
LUNG = _sct("39607008", "Lung", "pydicom.sr.codedict (SCT)")
FINDING_SITE = _sct("363698007", "Finding Site", "pydicom.sr.codedict (SCT)")
MORPHOLOGICALLY_ABNORMAL_STRUCTURE = _sct("49755003", "Morphologically abnormal structure")
DIAMETER = _sct("81827009", "Diameter", "pydicom.sr.codedict (SCT)")
LONG_AXIS = _sct("103339001", "Long Axis", "pydicom.sr.codedict (SCT)")
SHORT_AXIS = _sct("103340004", "Short Axis", "pydicom.sr.codedict (SCT)")
VOLUME = _sct("118565006", "Volume", "pydicom.sr.codedict (SCT)")
RIGHT = _sct("24028007", "Right", "pydicom.sr.codedict (SCT)")
LEFT = _sct("7771000", "Left", "pydicom.sr.codedict (SCT)")
UPPER_LOBE_OF_RIGHT_LUNG = _sct("42400003", "Upper lobe of right lung")
MIDDLE_LOBE_OF_RIGHT_LUNG = _sct("72481006", "Middle lobe of right lung")
LOWER_LOBE_OF_RIGHT_LUNG = _sct("266005", "Lower lobe of right lung")
UPPER_LOBE_OF_LEFT_LUNG = _sct("44714003", "Upper lobe of left lung")
LOWER_LOBE_OF_LEFT_LUNG = _sct("41224006", "Lower lobe of left lung")
LOBES = {
    "RUL": UPPER_LOBE_OF_RIGHT_LUNG,
    "RML": MIDDLE_LOBE_OF_RIGHT_LUNG,
    "RLL": LOWER_LOBE_OF_RIGHT_LUNG,
    "LUL": UPPER_LOBE_OF_LEFT_LUNG,
    "LLL": LOWER_LOBE_OF_LEFT_LUNG,
}
CT_UNSPECIFIED_BODY_REGION = _loinc("25045-6", "CT unspecified body region", "pydicom.sr.codedict (LN)")
CT_CHEST = _loinc("24627-2", "CT Chest", "LOINC check digit; RSNA/LOINC Playbook")

# TID 1500 reading (risk/imaging/sr.py). DICOM CID 6170 "Lobe of Lung" codes the lobe as Upper lobe of lung /
# Middle lobe of right lung / Lower lobe of lung post-coordinated with Laterality (CID 244); pre-coordinated
# lateralised SNOMED lobes are accepted too.
FINDINGS_CATEGORY = _sct("276214006", "Finding category", "pydicom.sr.codedict (SCT)")
LATERALITY = _sct("272741003", "Laterality", "pydicom.sr.codedict (SCT)")
TOPOGRAPHICAL_MODIFIER = _sct("106233006", "Topographical modifier", "pydicom.sr.codedict (SCT)")
MEASUREMENT_METHOD = _sct("370129005", "Measurement Method", "pydicom.sr.codedict (SCT)")
LOBE_OF_LUNG = _sct("31094006", "Lobe of lung", "pydicom.sr.codedict (SCT)")
UPPER_LOBE_OF_LUNG = _sct("45653009", "Upper lobe of lung", "pydicom.sr.codedict (SCT); DICOM CID 6170")
LOWER_LOBE_OF_LUNG = _sct("90572001", "Lower lobe of lung", "pydicom.sr.codedict (SCT); DICOM CID 6170")
MIDDLE_LOBE_OF_LUNG = _sct("40020002", "Middle lobe of lung", "pydicom.sr.codedict (SCT)")
MASS = _sct("4147007", "Mass", "pydicom.sr.codedict (SCT)")
MICRONODULE = _dcm("112122", "Micronodule")
REFERENCED_SEGMENT = _dcm("121191", "Referenced Segment")
VOLUME_SURFACE = _dcm("121231", "Volume Surface")
REGION_IN_SPACE = _dcm("130488", "Region in Space")

# Legacy SNOMED-RT (SRT) designators seen in older vendor SRs, mapped to SCT (DICOM CP-1850).
SRT_TO_SCT = {
    "G-D705": VOLUME.code,
    "G-C0E3": FINDING_SITE.code,
    "M-01000": MORPHOLOGICALLY_ABNORMAL_STRUCTURE.code,
    "G-A100": RIGHT.code,
    "G-A101": LEFT.code,
    "M-03010": NODULE.code,
    "T-28000": LUNG.code,
    "G-A22A": DIAMETER.code,
    "G-A193": LONG_AXIS.code,
    "G-A194": SHORT_AXIS.code,
}

# --- RadLex qualitative evaluations (no DICOM CID exists for these; interop.md §5.2) ------------
SOLIDNESS = _radlex("RID46010", "Solidness descriptor")
SOLID = _radlex("RID5741", "Solid")
PART_SOLID = _radlex("RID46011", "Partially solid")
NON_SOLID = _radlex("RID46016", "Non-solid")
MARGIN = _radlex("RID5972", "Margin")
MARGIN_SMOOTH = _radlex("RID5714", "Smooth margin")
MARGIN_LOBULATED = _radlex("RID5711", "Lobulated margin")
MARGIN_IRREGULAR = _radlex("RID5715", "Irregular margin")
MARGIN_SPICULATED = _radlex("RID5713", "Spiculated margin")
SOLID_COMPONENT_DIAMETER = _radlex("RID50154", "Solid component of part-solid nodule")
LUNG_RADS_ASSESSMENT = _radlex("RID50134", "Lung-RADS assessment")
LUNG_RADS_CATEGORY_CODES = {
    "0": _radlex("RID50135", "Lung-RADS 0"),
    "1": _radlex("RID50136", "Lung-RADS 1"),
    "2": _radlex("RID50137", "Lung-RADS 2"),
    "3": _radlex("RID50138", "Lung-RADS 3"),
    "4A": _radlex("RID50139", "Lung-RADS 4A"),
    "4B": _radlex("RID50140", "Lung-RADS 4B"),
    "4X": _radlex("RID50141", "Lung-RADS 4X"),
}

# --- UCUM units ----------------------------------------------------------------------------------
UNIT_MM = "mm"
UNIT_MM3 = "mm3"
UNIT_KG_M2 = "kg/m2"
UNIT_KG = "kg"
UNIT_CM = "cm"
UNIT_PACK_YEARS = "{pack-years}"
UNIT_PER_DAY = "/d"
UNIT_PACKS_PER_DAY = "{packs}/d"
UNIT_YEAR = "a"
UNIT_PERCENT = "%"
UNIT_G_DL = "g/dL"
UNIT_MG_L = "mg/L"
UNIT_10_3_UL = "10*3/uL"
UNIT_LITER = "L"
UNIT_NG_ML = "ng/mL"
UNIT_HU = "[hnsf'U]"
UNIT_CM3 = "cm3"
UNIT_ML = "mL"
UNIT_UM = "um"
UNIT_ONE = "1"
"""UCUM "no units" (a ratio or probability as a fraction)."""


# --- Synthetic cohort (risk/synth): FHIR structural codes, unit variants, DICOM units -----------
SYNTHETIC_DATA_TAG = Code(META_TAG_SYNTHETIC, "synthetic", "Synthetic data - not for clinical use",
                          "project code system (risk/synth)")
CATEGORY_SOCIAL_HISTORY = Code(OBSERVATION_CATEGORY, "social-history", "Social History", "FHIR R4 observation-category")
CATEGORY_VITAL_SIGNS = Code(OBSERVATION_CATEGORY, "vital-signs", "Vital Signs", "FHIR R4 observation-category")
CATEGORY_LABORATORY = Code(OBSERVATION_CATEGORY, "laboratory", "Laboratory", "FHIR R4 observation-category")
CONDITION_PROBLEM_LIST_ITEM = Code(CONDITION_CATEGORY, "problem-list-item", "Problem List Item",
                                   "FHIR R4 condition-category")
CONDITION_ENCOUNTER_DIAGNOSIS = Code(CONDITION_CATEGORY, "encounter-diagnosis", "Encounter Diagnosis",
                                     "FHIR R4 condition-category")
CLINICAL_STATUS_ACTIVE = Code(CONDITION_CLINICAL, "active", "Active", "FHIR R4 condition-clinical")
CLINICAL_STATUS_RESOLVED = Code(CONDITION_CLINICAL, "resolved", "Resolved", "FHIR R4 condition-clinical")
VERIFICATION_STATUS_CONFIRMED = Code(CONDITION_VERIFICATION, "confirmed", "Confirmed", "FHIR R4 condition-ver-status")
IDENTIFIER_TYPE_MRN = Code(V2_0203, "MR", "Medical record number", "HL7 v2 table 0203")
IDENTIFIER_TYPE_ACCESSION = Code(V2_0203, "ACSN", "Accession ID", "HL7 v2 table 0203")
ENDPOINT_DICOM_WADO_RS = Code(ENDPOINT_CONNECTION_TYPE, "dicom-wado-rs", "DICOM WADO-RS",
                              "FHIR R4 endpoint-connection-type (interop.md §3.6)")
DIABETES_MELLITUS = _sct("73211009", "Diabetes mellitus")
RELATIONSHIP_FATHER = Code(V3_ROLE_CODE, "FTH", "father", "HL7 v3 RoleCode")
RELATIONSHIP_MOTHER = Code(V3_ROLE_CODE, "MTH", "mother", "HL7 v3 RoleCode")
RELATIONSHIP_BROTHER = Code(V3_ROLE_CODE, "BRO", "brother", "HL7 v3 RoleCode")
RELATIONSHIP_SISTER = Code(V3_ROLE_CODE, "SIS", "sister", "HL7 v3 RoleCode")
RELATIONSHIP_UNCLE = Code(V3_ROLE_CODE, "UNCLE", "uncle", "HL7 v3 RoleCode (second-degree)")
RELATIONSHIP_AUNT = Code(V3_ROLE_CODE, "AUNT", "aunt", "HL7 v3 RoleCode (second-degree)")
ICD_PERSONAL_HISTORY_OF_CANCER = _icd("Z85.9", "Personal history of malignant neoplasm, unspecified")
ICD_SOLITARY_PULMONARY_NODULE = _icd("R91.1", "Solitary pulmonary nodule")
MAXIMUM = _sct("56851009", "Maximum", "pydicom.sr.codedict (SCT); DICOM CID 7464 derivation")
UCUM_MILLIMETER = Code(UCUM, UNIT_MM, "mm", "pydicom.sr.codedict (UCUM)")
UCUM_CUBIC_MILLIMETER = Code(UCUM, UNIT_MM3, "cubic millimeter", "pydicom.sr.codedict (UCUM)")
UCUM_NO_UNITS = Code(UCUM, UNIT_ONE, "no units", "pydicom.sr.codedict (UCUM)")
URI_RFC3986 = "urn:ietf:rfc:3986"
"""FHIR system for ImagingStudy.series.instance.sopClass (``urn:oid:<SOP Class UID>``)."""
# Unit variants the generator writes at small rates to exercise conversion (risk/features/rules.py tables).
UNIT_10_9_L = "10*9/L"
UNIT_G_L = "g/L"
UNIT_MG_DL = "mg/dL"
UNIT_INCH = "[in_i]"
UNIT_POUND = "[lb_av]"
OBSERVER_TYPE_DEVICE = _dcm("121007", "Device")
QUALITATIVE_EVALUATIONS = Code(UMLS, "C0034375", "Qualitative Evaluations",
                               "DICOM PS3.16 TID 1500 row 12 (interop.md §5.1)")


# --- Mechanical checks (used by tests and by ingestion to reject malformed codes) ---------------
def loinc_check_digit_ok(code: str) -> bool:
    """True when ``code`` ("NNNNN-C") carries a valid LOINC mod-10 check digit."""
    body, sep, check = code.partition("-")
    if not sep or not body.isdigit() or len(check) != 1 or not check.isdigit():
        return False
    total = 0
    for position, char in enumerate(reversed(body), start=1):
        digit = int(char)
        if position % 2 == 1:
            total += sum(int(d) for d in str(digit * 2))
        else:
            total += digit
    return (10 - total % 10) % 10 == int(check)


_VERHOEFF_D = (
    (0, 1, 2, 3, 4, 5, 6, 7, 8, 9), (1, 2, 3, 4, 0, 6, 7, 8, 9, 5), (2, 3, 4, 0, 1, 7, 8, 9, 5, 6),
    (3, 4, 0, 1, 2, 8, 9, 5, 6, 7), (4, 0, 1, 2, 3, 9, 5, 6, 7, 8), (5, 9, 8, 7, 6, 0, 4, 3, 2, 1),
    (6, 5, 9, 8, 7, 1, 0, 4, 3, 2), (7, 6, 5, 9, 8, 2, 1, 0, 4, 3), (8, 7, 6, 5, 9, 3, 2, 1, 0, 4),
    (9, 8, 7, 6, 5, 4, 3, 2, 1, 0),
)
_VERHOEFF_P = (
    (0, 1, 2, 3, 4, 5, 6, 7, 8, 9), (1, 5, 7, 6, 2, 8, 3, 0, 9, 4), (5, 8, 0, 3, 7, 9, 6, 1, 4, 2),
    (8, 9, 1, 6, 0, 4, 3, 5, 2, 7), (9, 4, 5, 3, 1, 2, 6, 8, 7, 0), (4, 2, 8, 6, 5, 7, 3, 9, 0, 1),
    (2, 7, 9, 3, 8, 0, 6, 4, 1, 5), (7, 0, 4, 6, 9, 1, 3, 2, 5, 8),
)


def snomed_check_digit_ok(sctid: str) -> bool:
    """True when ``sctid`` is a well-formed SNOMED CT concept id with a valid Verhoeff digit."""
    if not sctid.isdigit() or not 6 <= len(sctid) <= 18 or sctid[0] == "0":
        return False
    check = 0
    for i, char in enumerate(reversed(sctid)):
        check = _VERHOEFF_D[check][_VERHOEFF_P[i % 8][int(char)]]
    return check == 0


def all_codes() -> list[tuple[str, Code]]:
    """Every module-level ``Code`` constant with its name (for tests and documentation)."""
    out: list[tuple[str, Code]] = []
    for name, value in globals().items():
        if isinstance(value, Code):
            out.append((name, value))
        elif isinstance(value, dict):
            out.extend((f"{name}[{k}]", v) for k, v in value.items() if isinstance(v, Code))
    return out
