"""Coordinator actions on worklist items, each recorded as an event (who, when, what) and audited.

=============  ======================================================================================
contacted      a note that the patient was reached (optional text); the item stays on its queue
declined       the patient declined; a reason is required; the item leaves the queues
deferred       hidden until a date after today (required); it comes back on that date
reconciled     the result of a completed CT was reviewed and acted on (only for ``completed`` items)
reopen         clears a decline or deferral
=============  ======================================================================================
"""

from __future__ import annotations

from datetime import UTC, date, datetime
from typing import Any, Final

from sqlalchemy import select
from sqlalchemy.orm import Session

from risk.errors import InvalidInput, NotFound
from risk.population.closed_loop import RANKS, Action, Disposition, LoopState
from risk.store.audit import record_audit
from risk.store.population import WorklistEvent, WorklistItem

MAX_TEXT: Final = 500


def _text(name: str, value: str | None, *, required: bool) -> str | None:
    value = (value or "").strip()
    if required and not value:
        raise InvalidInput(name, "is required for this action")
    if len(value) > MAX_TEXT:
        raise InvalidInput(name, f"must be at most {MAX_TEXT} characters")
    return value or None


def record_action(session: Session, item_id: int, action: Action | str, *, actor: str, sites: tuple[str, ...],
                  today: date, reason: str | None = None, until: date | None = None) -> WorklistItem:
    """Apply ``action`` to the item (which must be at one of ``sites``), add its event and an audit record."""
    try:
        action = Action(action)
    except ValueError:
        raise InvalidInput("action", f"must be one of {', '.join(a.value for a in Action)}, got {action!r}") from None
    item = session.scalar(select(WorklistItem).where(WorklistItem.id == item_id).with_for_update())
    if item is None or item.site not in sites:
        raise NotFound(f"worklist item {item_id}")
    now = datetime.now(UTC)
    before = item.loop_state
    detail: dict[str, Any] = {"patient_id": item.patient_id, "kind": item.kind}
    if action is Action.CONTACTED:
        note = _text("reason", reason, required=False)
        if item.disposition not in (Disposition.DECLINED.value, Disposition.DEFERRED.value):
            item.disposition = Disposition.CONTACTED.value
        item.disposition_reason = note
        detail["note"] = note
    elif action is Action.DECLINED:
        text = _text("reason", reason, required=True)
        item.disposition, item.disposition_reason, item.deferred_until = Disposition.DECLINED.value, text, None
        detail["reason"] = text
    elif action is Action.DEFERRED:
        if until is None:
            raise InvalidInput("until", "a deferral needs a date")
        if until <= today:
            raise InvalidInput("until", f"must be after today ({today.isoformat()})")
        item.disposition, item.deferred_until = Disposition.DEFERRED.value, until
        item.disposition_reason = _text("reason", reason, required=False)
        detail["until"] = until.isoformat()
    elif action is Action.RECONCILED:
        if item.loop_state != LoopState.COMPLETED.value:
            raise InvalidInput("action", f"only a completed CT's result can be reconciled (this item is "
                               f"{item.loop_state})")
        item.loop_state, item.loop_rank = LoopState.RECONCILED.value, RANKS[LoopState.RECONCILED.value]
        item.active, item.closed_reason, item.reconciled_date = False, "reconciled", today
        detail["note"] = _text("reason", reason, required=False)
    else:
        item.disposition, item.disposition_reason, item.deferred_until = None, None, None
    item.disposition_by, item.disposition_at, item.updated_at = actor, now, now
    session.add(WorklistEvent(item_id=item.id, at=now, actor=actor, event=action.value, from_state=before,
                              to_state=item.loop_state, run_id=None, detail=detail))
    record_audit(session, actor=actor, action=f"worklist.{action.value}", entity=f"worklist_item/{item.id}",
                 detail={k: v for k, v in detail.items() if k in ("patient_id", "kind", "until")})
    return item


def item_events(session: Session, item_id: int) -> list[WorklistEvent]:
    return list(session.scalars(select(WorklistEvent).where(WorklistEvent.item_id == item_id)
                                .order_by(WorklistEvent.at, WorklistEvent.id)))
