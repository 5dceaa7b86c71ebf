"""The assessment core: PatientSnapshot (+ an optional fusion model) → :class:`risk.domain.Assessment`.

``assess(snapshot, fusion=None, policy=DEFAULT_POLICY)`` is the one place where eligibility, guideline
categories, published-model risks, the fusion model's risk, recommendations with due dates, abstentions and
provenance are combined (policy documented in :mod:`risk.assess.policy`). ``check_order`` judges a proposed
chest CT order against an assessment (order-select / order-sign).
"""

from risk.assess.core import assess, eligible_programs
from risk.assess.orders import (
    OrderFinding,
    OrderFindingKind,
    OrderKind,
    ProposedOrder,
    check_order,
    next_imaging,
)
from risk.assess.policy import DEFAULT_POLICY, AssessmentPolicy, DueWindow, add_months, due_window
from risk.assess.risks import FusionPredictorLike

__all__ = [
    "DEFAULT_POLICY",
    "AssessmentPolicy",
    "DueWindow",
    "FusionPredictorLike",
    "OrderFinding",
    "OrderFindingKind",
    "OrderKind",
    "ProposedOrder",
    "add_months",
    "assess",
    "check_order",
    "due_window",
    "eligible_programs",
    "next_imaging",
]
