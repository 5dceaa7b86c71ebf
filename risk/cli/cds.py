"""``risk cds-feedback``: accept and override rates of CDS cards per card type (for dashboards and audits).

    risk cds-feedback [--since YYYY-MM-DD] [--service lung-risk]

Prints one JSON object: ``rates`` (per card type: cards issued, cards with feedback, accepted, overridden, and the
accept / override / response rates) and ``override_reasons`` (system, code, count), from the configured store.
"""

from __future__ import annotations

import argparse
import json
from datetime import UTC, date, datetime

from risk.config import load_settings
from risk.errors import InvalidInput
from risk.store import open_database
from risk.store.cds import feedback_rates, override_reason_counts


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("cds-feedback", help="accept and override rates of CDS cards per card type")
    p.add_argument("--since", help="only cards issued on or after this date (YYYY-MM-DD)")
    p.add_argument("--service", default=None, help="only this CDS service id (default: all)")
    p.set_defaults(func=rates)


def rates(args: argparse.Namespace) -> int:
    since = None
    if args.since:
        try:
            since = datetime.combine(date.fromisoformat(args.since), datetime.min.time(), UTC)
        except ValueError:
            raise InvalidInput("--since", f"not a date (YYYY-MM-DD): {args.since!r}") from None
    db = open_database(load_settings().store, migrate=True)
    try:
        with db.session() as session:
            out = {"rates": [r.to_json() for r in feedback_rates(session, since=since, service_id=args.service)],
                   "override_reasons": [{"system": s, "code": c, "count": n}
                                        for s, c, n in override_reason_counts(session)]}
    finally:
        db.dispose()
    print(json.dumps(out, indent=2))
    return 0
