"""Assessment: the one combined result that CDS cards, the SMART app and the worklist all render.

Built only by risk/assess.py from a PatientSnapshot; the renderers never recompute clinical logic.
"""

from __future__ import annotations

from datetime import date, datetime
from enum import StrEnum

from risk.domain._checks import optional_finite, require_date, require_text
from risk.domain._value import value_type
from risk.domain.provenance import IngestionNote, SourceRef


class ScreeningProgram(StrEnum):
    USPSTF_2021 = "uspstf_2021"
    CMS_2022 = "cms_2022"
    ACS_2023 = "acs_2023"


@value_type
class EligibilityDecision:
    """Eligibility for one screening program; ``eligible`` is None when it cannot be determined."""

    program: ScreeningProgram
    eligible: bool | None
    reason: str
    missing_inputs: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        require_text("reason", self.reason)
        if self.eligible is None and not self.missing_inputs:
            raise ValueError('Argument "missing_inputs" must say what is missing when "eligible" is None.')


@value_type
class Contribution:
    """One factor's share of a prediction (log-odds scale), in words a clinician can read."""

    feature: str
    contribution: float
    description: str

    def __post_init__(self) -> None:
        require_text("feature", self.feature)
        optional_finite("contribution", self.contribution)
        require_text("description", self.description)


MODEL_LABELS: dict[str, str] = {
    "plcom2012": "PLCOm2012",
    "plcom2012-norace": "PLCOm2012noRace",
    "brock": "Brock (PanCan 2b)",
    "mayo": "Mayo",
    "va": "VA",
    "lungrads": "Lung-RADS",
    "fleischner": "Fleischner",
    "eligibility": "Screening eligibility",
    "fusion-patient": "Fusion model (patient)",
    "fusion-nodule": "Fusion model (nodule)",
}
"""How people name each model: ``RiskEstimate.model`` and ``Abstention.model`` are identifiers (logic and audit
use them); pages and cards show these labels."""


def model_label(model: str) -> str:
    """The name a clinician knows a model by (the identifier itself for one not listed)."""
    return MODEL_LABELS.get(model, model)


@value_type
class RiskEstimate:
    """A probability from a published or learned model, with what produced it."""

    model: str
    model_version: str
    outcome: str
    probability: float
    horizon_years: float | None
    citation: str
    interval: tuple[float, float] | None = None
    contributions: tuple[Contribution, ...] = ()
    learned: bool = False
    trained_on_synthetic_data: bool = False
    calibrator: str | None = None
    subject: str | None = None
    """What the probability is about when not the whole patient: the nodule's ``track_id`` (Brock)."""
    imputed: tuple[str, ...] = ()
    """Inputs that were missing and set to a documented default (e.g. education at the centring value)."""

    def __post_init__(self) -> None:
        require_text("model", self.model)
        require_text("model_version", self.model_version)
        optional_finite("probability", self.probability, low=0, high=1)
        optional_finite("horizon_years", self.horizon_years, low=0, high=30)
        if self.interval is not None:
            lo, hi = self.interval
            if not 0 <= lo <= self.probability <= hi <= 1:
                raise ValueError('Argument "interval" must bracket "probability" within [0, 1].')


@value_type
class Abstention:
    """A model that was not run, and why ("cannot score: reason")."""

    model: str
    reason: str

    def __post_init__(self) -> None:
        require_text("model", self.model)
        require_text("reason", self.reason)


@value_type
class NoduleCategory:
    """The guideline category of one tracked nodule."""

    track_id: str
    guideline: str
    category: str
    management: str
    due_date: date | None = None
    tracking_uid: str | None = None
    """The DICOM Tracking Unique Identifier of the nodule, when the SR gave one (for app links)."""
    description: str | None = None
    """The nodule in words: size, type, lobe, growth (e.g. "9.1 mm solid RUL, grew 30% in 12 months")."""
    study_date: date | None = None
    """Date of the study whose measurement the category is based on."""

    def __post_init__(self) -> None:
        require_text("track_id", self.track_id)
        require_text("guideline", self.guideline)
        require_text("category", self.category)
        require_date("due_date", self.due_date, optional=True)
        require_date("study_date", self.study_date, optional=True)


class RecommendationKind(StrEnum):
    SCREENING_LDCT = "screening_ldct"
    SHARED_DECISION_MAKING = "shared_decision_making"
    FOLLOW_UP_LDCT = "follow_up_ldct"
    FOLLOW_UP_CT = "follow_up_ct"
    DIAGNOSTIC_WORKUP = "diagnostic_workup"
    NO_ROUTINE_FOLLOW_UP = "no_routine_follow_up"


class DueStatus(StrEnum):
    NOT_YET_DUE = "not_yet_due"
    DUE = "due"
    OVERDUE = "overdue"
    NO_DATE = "no_date"


@value_type
class Recommendation:
    kind: RecommendationKind
    text: str
    basis: str
    due_date: date | None
    status: DueStatus
    track_id: str | None = None
    window_start: date | None = None
    """Earliest date the imaging is appropriate (an order before it is "too early")."""
    overdue_after: date | None = None
    """After this date the recommendation is overdue."""
    optional: bool = False
    """The guideline makes it optional (e.g. Fleischner "optional CT at 12 months")."""
    last_done: date | None = None
    """The date of the study the interval is counted from."""

    def __post_init__(self) -> None:
        require_text("text", self.text)
        require_text("basis", self.basis)
        require_date("due_date", self.due_date, optional=True)
        require_date("window_start", self.window_start, optional=True)
        require_date("overdue_after", self.overdue_after, optional=True)
        require_date("last_done", self.last_done, optional=True)
        if (self.due_date is None) != (self.status is DueStatus.NO_DATE):
            raise ValueError('Argument "status" must be NO_DATE exactly when "due_date" is None.')
        if self.window_start is not None and self.due_date is not None and self.window_start > self.due_date:
            raise ValueError('Argument "window_start" must not be after "due_date".')
        if self.overdue_after is not None and self.due_date is not None and self.overdue_after < self.due_date:
            raise ValueError('Argument "overdue_after" must not be before "due_date".')


@value_type
class StaleData:
    """A value older than the freshness limit for its kind."""

    what: str
    effective: date
    limit_days: int


class RiskFlagKind(StrEnum):
    HIGH = "high"
    """A probability at or above the policy threshold."""
    RISING = "rising"
    """Evidence that risk is increasing (e.g. a nodule grew by the NELSON rule)."""


@value_type
class RiskFlag:
    """Why the assessment calls the patient's risk high or rising (the rule and the numbers)."""

    kind: RiskFlagKind
    reason: str
    model: str | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.kind, RiskFlagKind):
            raise TypeError('Argument "kind" must be a RiskFlagKind.')
        require_text("reason", self.reason)


@value_type
class DataGap:
    """Something that could not be checked, and why ("smoking history: FHIR server timed out")."""

    what: str
    reason: str

    def __post_init__(self) -> None:
        require_text("what", self.what)
        require_text("reason", self.reason)


@value_type
class Provenance:
    sources: tuple[SourceRef, ...]
    model_versions: tuple[tuple[str, str], ...]
    generated_at: datetime
    stale: tuple[StaleData, ...] = ()


@value_type
class Assessment:
    assessment_id: str
    patient_id: str
    as_of: date
    eligibility: tuple[EligibilityDecision, ...]
    risks: tuple[RiskEstimate, ...]
    nodule_categories: tuple[NoduleCategory, ...]
    patient_category: NoduleCategory | None
    recommendations: tuple[Recommendation, ...]
    abstentions: tuple[Abstention, ...]
    provenance: Provenance
    notes: tuple[IngestionNote, ...] = ()
    risk_flags: tuple[RiskFlag, ...] = ()
    data_gaps: tuple[DataGap, ...] = ()
    last_ct_date: date | None = None
    """Date of the most recent chest CT known (any source)."""

    def __post_init__(self) -> None:
        require_text("assessment_id", self.assessment_id)
        require_text("patient_id", self.patient_id)
        require_date("as_of", self.as_of)

    def risk(self, model: str) -> RiskEstimate | None:
        return next((r for r in self.risks if r.model == model), None)
