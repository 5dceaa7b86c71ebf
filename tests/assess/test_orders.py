"""Order checks (order-select / order-sign): duplicate imaging, screening eligibility and shared decision-making,
timing against the guideline (too early, due, overdue)."""

from __future__ import annotations

from datetime import date, timedelta
from typing import Any

from risk.assess import OrderFindingKind, OrderKind, ProposedOrder, assess, check_order
from tests.assess.builders import AS_OF, observation, snapshot, study, track


def _order(kind: OrderKind = OrderKind.CHEST_CT, when: date = AS_OF, ref: str = "ServiceRequest/o1") -> ProposedOrder:
    return ProposedOrder(reference=ref, kind=kind, code_display="CT chest", order_date=when)


def _kinds(s: Any, order: ProposedOrder, **kw: Any) -> list[OrderFindingKind]:
    return [f.kind for f in check_order(assess(s), s, order, **kw)]


def _lung_rads_3(days_ago: int) -> Any:
    seen = AS_OF - timedelta(days=days_ago)
    return snapshot(studies=(study("1.2", seen),),
                    tracks=(track("n1", observation("1.2", seen, long_mm=7.0, short_mm=6.2)),))


def test_follow_up_timing() -> None:
    s = _lung_rads_3(60)
    assert _kinds(s, _order(when=AS_OF)) == [OrderFindingKind.TOO_EARLY]
    assert _kinds(s, _order(when=AS_OF + timedelta(days=125))) == [OrderFindingKind.DUE]
    assert _kinds(s, _order(when=AS_OF + timedelta(days=240))) == [OrderFindingKind.OVERDUE]
    finding = check_order(assess(s), s, _order(when=AS_OF))[0]
    assert finding.recommendation is not None and finding.related_date == finding.recommendation.due_date
    assert "days early" in finding.detail


def test_duplicate_imaging_recent_ct_and_same_session() -> None:
    s = snapshot(studies=(study("1.5", AS_OF - timedelta(days=12), "CT chest with contrast"),))
    assert OrderFindingKind.DUPLICATE in _kinds(s, _order())
    assert OrderFindingKind.DUPLICATE not in _kinds(s, _order(when=AS_OF + timedelta(days=40)))
    other = _order(ref="ServiceRequest/o0")
    findings = check_order(assess(snapshot()), snapshot(), _order(), session_orders=(other, _order()))
    assert [f.duplicate_of for f in findings if f.kind is OrderFindingKind.DUPLICATE] == ["ServiceRequest/o0"]


def test_screening_order_eligibility() -> None:
    assert OrderFindingKind.NOT_ELIGIBLE in _kinds(snapshot(age=45), _order(OrderKind.SCREENING_LDCT))
    unknown = _kinds(snapshot(pack_years=None, cigarettes_per_day=None), _order(OrderKind.SCREENING_LDCT))
    assert OrderFindingKind.ELIGIBILITY_UNKNOWN in unknown
    first = _kinds(snapshot(), _order(OrderKind.SCREENING_LDCT))
    assert OrderFindingKind.SHARED_DECISION_REQUIRED in first
    screened = snapshot(studies=(study("1.1", AS_OF - timedelta(days=360)),))
    assert _kinds(screened, _order(OrderKind.SCREENING_LDCT)) == [OrderFindingKind.DUE]


def test_diagnostic_ct_without_a_plan_has_nothing_to_say() -> None:
    s = snapshot(age=45, pack_years=5)  # not eligible, no nodules, no recent CT
    assert _kinds(s, _order()) == []
