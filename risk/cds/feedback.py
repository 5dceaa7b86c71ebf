"""The CDS Hooks 2.0 feedback endpoint: ``POST {baseUrl}/cds-services/{id}/feedback``.

The body SHALL be ``{"feedback": [...]}``; each item names a ``card`` (its uuid), an ``outcome`` (``accepted`` or
``overridden``), ``acceptedSuggestions`` (required for accepted: ``[{"id": suggestion uuid}]``), an optional
``overrideReason`` (``reason`` Coding and/or ``userComment``) and ``outcomeTimestamp`` (RFC 3339, UTC).

Validation is all-or-nothing: the first bad item is answered 422 with an OperationOutcome naming the field
(``feedback[2].outcome``), and nothing is stored. A card the service never issued, or an accepted suggestion that
is not one of the card's, is a bad item. Storage is idempotent: the same item sent twice is stored once (the spec
lets clients repeat feedback). Accept and override rates per card type: :func:`risk.store.cds.feedback_rates`.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import orjson

from risk.errors import InvalidInput
from risk.store.cds import cards_by_uuid, feedback_digest, insert_feedback
from risk.store.db import Database

OUTCOMES = ("accepted", "overridden")
MAX_ITEMS = 500
MAX_COMMENT = 4000


@dataclass(frozen=True, slots=True)
class FeedbackItem:
    card: str
    outcome: str
    outcome_timestamp: datetime
    accepted_suggestions: tuple[str, ...]
    override_system: str | None
    override_code: str | None
    user_comment: str | None
    digest: str


def parse_feedback(body: bytes) -> list[FeedbackItem]:
    try:
        data = orjson.loads(body)
    except orjson.JSONDecodeError:
        raise InvalidInput("body", "is not valid JSON") from None
    if not isinstance(data, dict) or not isinstance(data.get("feedback"), list):
        raise InvalidInput("feedback", "the body must be an object with a 'feedback' array")
    items = data["feedback"]
    if not items:
        raise InvalidInput("feedback", "must not be empty")
    if len(items) > MAX_ITEMS:
        raise InvalidInput("feedback", f"at most {MAX_ITEMS} items per request")
    return [_item(raw, f"feedback[{i}]") for i, raw in enumerate(items)]


def _item(raw: Any, where: str) -> FeedbackItem:
    if not isinstance(raw, dict):
        raise InvalidInput(where, "must be an object")
    card = raw.get("card")
    if not isinstance(card, str) or not card or len(card) > 64:
        raise InvalidInput(f"{where}.card", "is required: the card's uuid")
    outcome = raw.get("outcome")
    if outcome not in OUTCOMES:
        raise InvalidInput(f"{where}.outcome", "must be 'accepted' or 'overridden'")
    timestamp = _timestamp(raw.get("outcomeTimestamp"), f"{where}.outcomeTimestamp")
    accepted: list[str] = []
    suggestions = raw.get("acceptedSuggestions")
    if outcome == "accepted" and (not isinstance(suggestions, list) or not suggestions):
        raise InvalidInput(f"{where}.acceptedSuggestions", "is required for an accepted outcome")
    if suggestions is not None:
        if not isinstance(suggestions, list):
            raise InvalidInput(f"{where}.acceptedSuggestions", "must be an array")
        for j, s in enumerate(suggestions):
            if not isinstance(s, dict) or not isinstance(s.get("id"), str) or not s["id"]:
                raise InvalidInput(f"{where}.acceptedSuggestions[{j}].id", "is required: the suggestion's uuid")
            accepted.append(s["id"])
    system = code = comment = None
    reason = raw.get("overrideReason")
    if reason is not None:
        if not isinstance(reason, dict):
            raise InvalidInput(f"{where}.overrideReason", "must be an object")
        coding = reason.get("reason")
        if coding is not None:
            if not isinstance(coding, dict) or not isinstance(coding.get("code"), str) \
                    or not isinstance(coding.get("system"), str) or not coding["code"] or not coding["system"]:
                raise InvalidInput(f"{where}.overrideReason.reason", "must be a Coding with code and system")
            system, code = coding["system"], coding["code"]
        comment = reason.get("userComment")
        if comment is not None and (not isinstance(comment, str) or len(comment) > MAX_COMMENT):
            raise InvalidInput(f"{where}.overrideReason.userComment", f"must be text of at most {MAX_COMMENT} "
                               "characters")
    return FeedbackItem(card=card, outcome=outcome, outcome_timestamp=timestamp,
                        accepted_suggestions=tuple(accepted), override_system=system, override_code=code,
                        user_comment=comment, digest=feedback_digest(raw))


def _timestamp(value: Any, where: str) -> datetime:
    if not isinstance(value, str) or "T" not in value:
        raise InvalidInput(where, "is required: an RFC 3339 date-time, e.g. 2025-06-11T10:05:31Z")
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00").replace("z", "+00:00"))
    except ValueError:
        raise InvalidInput(where, f"is not an RFC 3339 date-time: {value!r}") from None
    if parsed.tzinfo is None:
        raise InvalidInput(where, "must carry a time zone (UTC: 'Z')")
    return parsed.astimezone(UTC)


def store_feedback(db: Database, service_id: str, items: list[FeedbackItem]) -> int:
    """Check every item against the issued cards and store the new ones (all or nothing). Returns new rows."""
    now = datetime.now(UTC)
    with db.session() as session:
        cards = cards_by_uuid(session, (i.card for i in items))
        rows = []
        for index, item in enumerate(items):
            card = cards.get(item.card)
            if card is None or card.service_id != service_id:
                raise InvalidInput(f"feedback[{index}].card", "is not a card this service issued")
            known = {s["uuid"] for s in card.suggestions or ()}
            for j, sid in enumerate(item.accepted_suggestions):
                if sid not in known:
                    raise InvalidInput(f"feedback[{index}].acceptedSuggestions[{j}].id",
                                       "is not a suggestion of this card")
            rows.append({"item_digest": item.digest, "service_id": service_id, "card_uuid": item.card,
                         "card_type": card.card_type, "outcome": item.outcome,
                         "outcome_timestamp": item.outcome_timestamp,
                         "accepted_suggestions": list(item.accepted_suggestions) or None,
                         "override_system": item.override_system, "override_code": item.override_code,
                         "user_comment": item.user_comment, "received_at": now})
        return insert_feedback(session, rows)
