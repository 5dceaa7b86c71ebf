"""``risk population``: score a population, export the registry CSV, print a worklist queue.

    risk population score --ndjson DIR [--as-of YYYY-MM-DD] [--engine polars|dask]     # a folder of NDJSON
    risk population score --export [--group ID] [--since INSTANT] [--types T,T]          # Bulk $export (FHIR server)
    risk population export-registry --from 2026-01-01 --to 2026-06-30 [--site S] [--out FILE]
    risk population worklist --queue annual_due [--site S] [--csv FILE]

``score`` writes the results, the worklist and a run record to the store (``store.url``) and prints a summary;
a progress bar is shown on a terminal (``--no-progress`` to hide it). Bad arguments exit with status 2 and one line
naming the argument; an unreachable FHIR server or PACS exits with status 1 and says so.
"""

from __future__ import annotations

import argparse
import sys
from datetime import UTC, date, datetime
from pathlib import Path

import orjson

from risk.errors import InvalidInput, UpstreamRejected, UpstreamUnavailable

EXIT_UPSTREAM = 1


def _date(name: str, value: str | None) -> date | None:
    if value is None:
        return None
    try:
        return date.fromisoformat(value)
    except ValueError:
        raise InvalidInput(name, f"must be a date YYYY-MM-DD, got {value!r}") from None


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("population", help="population scoring, worklist and registry export",
                       description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    psub = p.add_subparsers(dest="population_command", required=True, metavar="COMMAND")

    sc = psub.add_parser("score", help="score every patient of a Bulk export (or a folder of NDJSON)")
    src = sc.add_mutually_exclusive_group(required=True)
    src.add_argument("--ndjson", type=Path, metavar="DIR", help="folder of Bulk NDJSON files (and manifest.json)")
    src.add_argument("--export", action="store_true", help="run a Bulk $export against fhir.base_url")
    sc.add_argument("--group", metavar="ID", help="export Group/ID/$export instead of the whole server")
    sc.add_argument("--patient-level", action="store_true", help="export Patient/$export")
    sc.add_argument("--since", metavar="INSTANT", help="_since for the export (e.g. 2026-06-01T00:00:00Z)")
    sc.add_argument("--types", metavar="T,T", help="_type list (default: population.export_types)")
    sc.add_argument("--as-of", metavar="YYYY-MM-DD", help="the run's date (default: today, UTC)")
    sc.add_argument("--engine", choices=("polars", "dask"), help="override population.engine")
    sc.add_argument("--full-digest", action="store_true", help="hash every input byte (default: head/tail)")
    sc.add_argument("--sync-pacs", action="store_true", help="parse missing SRs from the PACS first")
    sc.add_argument("--sr-tables", type=Path, metavar="DIR",
                    help="read what the vendor SRs reported from DIR/truth/{nodules,studies}.parquet (a `risk synth` "
                         "cohort, or a site's SR export with the same columns) instead of the imaging-feature cache")
    sc.add_argument("--no-progress", action="store_true", help="no progress bar")
    sc.add_argument("--json", action="store_true", help="print the summary as JSON")
    sc.set_defaults(func=score)

    rg = psub.add_parser("export-registry", help="ACR LCSR-style CSV of the exams in a date range")
    rg.add_argument("--from", dest="start", required=True, metavar="YYYY-MM-DD")
    rg.add_argument("--to", dest="end", required=True, metavar="YYYY-MM-DD")
    rg.add_argument("--site", action="append", help="facility/site (repeatable; default: every site)")
    rg.add_argument("--out", type=Path, help="write here (default: stdout)")
    rg.set_defaults(func=export_registry)

    wl = psub.add_parser("worklist", help="print one queue of the worklist (priority order)")
    wl.add_argument("--queue", required=True, help="eligible_never_screened | annual_due | nodule_follow_up | "
                    "high_risk_no_plan | awaiting_reconciliation")
    wl.add_argument("--site", action="append", help="site (repeatable; default: every site)")
    wl.add_argument("--as-of", metavar="YYYY-MM-DD", help="today (default: today, UTC)")
    wl.add_argument("--csv", type=Path, help="write the whole queue as CSV here (default: first page on stdout)")
    wl.set_defaults(func=worklist)


def _open() -> tuple[object, object]:
    from risk.config import load_settings
    from risk.store import open_database

    settings = load_settings()
    return settings, open_database(settings.store, migrate=True)


def score(args: argparse.Namespace) -> int:
    from risk.config import Settings
    from risk.population.bulk_export import ExportRequest
    from risk.population.runs import RunOptions, run_population
    from risk.store.db import Database

    settings, db = _open()
    assert isinstance(settings, Settings) and isinstance(db, Database)
    as_of = _date("--as-of", args.as_of) or datetime.now(UTC).date()
    export = None
    if args.export:
        since = None
        if args.since:
            try:
                since = datetime.fromisoformat(args.since.replace("Z", "+00:00"))
            except ValueError:
                raise InvalidInput("--since", f"must be an ISO instant, got {args.since!r}") from None
            if since.tzinfo is None:
                raise InvalidInput("--since", "must include a time zone (e.g. Z)")
        types = tuple(t.strip() for t in args.types.split(",") if t.strip()) if args.types \
            else settings.population.export_types
        level = "group" if args.group else "patient" if args.patient_level else "system"
        export = ExportRequest(level=level, group_id=args.group, types=types, since=since)  # type: ignore[arg-type]
    elif args.group or args.since or args.types or args.patient_level:
        raise InvalidInput("--export", "--group, --patient-level, --since and --types need --export")
    options = RunOptions(as_of=as_of, folder=args.ndjson, export=export, engine=args.engine,
                         triggered_by="cli", progress=not args.no_progress and sys.stderr.isatty(),
                         full_digest=args.full_digest, sync_pacs=True if args.sync_pacs else None)
    observations = None
    if args.sr_tables is not None:
        from risk.population.nodules import TableObservations

        truth = args.sr_tables / "truth"
        if not (truth / "nodules.parquet").is_file() or not (truth / "studies.parquet").is_file():
            raise InvalidInput("--sr-tables", f"{truth} has no nodules.parquet and studies.parquet")
        observations = TableObservations.from_cohort(args.sr_tables)
    try:
        summary = run_population(settings, db, options, observations=observations)
    except (UpstreamUnavailable, UpstreamRejected) as exc:
        print(f"risk: {exc}", file=sys.stderr)
        return EXIT_UPSTREAM
    finally:
        db.dispose()
    if args.json:
        sys.stdout.write(orjson.dumps({"run_id": summary.run_id, "status": summary.status,
                                       "as_of": summary.as_of.isoformat(), "inputs_digest": summary.inputs_digest,
                                       "counts": summary.counts, "timings_s": summary.timings_s,
                                       "model_versions": summary.model_versions,
                                       "duration_s": summary.duration_s}).decode() + "\n")
        return 0
    c = summary.counts
    print(f"risk population: run {summary.run_id} {summary.status} in {summary.duration_s:.1f} s "
          f"(as of {summary.as_of.isoformat()}, inputs {summary.inputs_digest})")
    print(f"  patients {c['patients']}, eligible {c['eligible_any']} (unknown {c['eligibility_unknown']}), "
          f"PLCOm2012 scored {c['plco_scored']}, fusion scored {c['fusion_scored']}, high risk {c['high_risk']}, "
          f"with nodules {c['with_nodules']} (re-assessed {c['nodules_reassessed']})")
    print("  queues: " + ", ".join(f"{k} {v}" for k, v in c["queues"].items()))
    return 0


def _sites(session: object, given: list[str] | None) -> list[str]:
    from risk.population.dashboard import all_sites

    sites = given or all_sites(session)  # type: ignore[arg-type]
    if not sites:
        raise InvalidInput("--site", "no site has results yet (run `risk population score` first)")
    return sites


def export_registry(args: argparse.Namespace) -> int:
    from risk.population.registry import RegistryRange, csv_text, registry_rows
    from risk.store.audit import record_audit
    from risk.store.db import Database

    start, end = _date("--from", args.start) or date.min, _date("--to", args.end) or date.max
    if end < start:
        raise InvalidInput("--to", f"must not be before --from ({start.isoformat()})")
    period = RegistryRange(start, end)
    _settings, db = _open()
    assert isinstance(db, Database)
    invalid = total = 0
    try:
        with db.session() as s:
            sites = _sites(s, args.site)
            rows = list(registry_rows(s, period, sites))
            total = len(rows)
            invalid = sum(1 for r in rows if not r["valid"])
            text = "".join(csv_text(iter(rows)))
            record_audit(s, actor="cli", action="population.registry_export", entity="registry",
                         detail={"from": period.start.isoformat(), "to": period.end.isoformat(), "sites": sites,
                                 "rows": total, "invalid_rows": invalid})
    finally:
        db.dispose()
    if args.out:
        args.out.write_text(text)
    else:
        sys.stdout.write(text)
    print(f"risk population: {total} registry row(s), {invalid} with missing required fields", file=sys.stderr)
    return 0


def worklist(args: argparse.Namespace) -> int:
    from risk.population.worklist import Queue, WorklistFilter, csv_lines, page
    from risk.store.audit import record_audit
    from risk.store.db import Database

    try:
        queue = Queue(args.queue)
    except ValueError:
        raise InvalidInput("--queue", f"must be one of {', '.join(q.value for q in Queue)}") from None
    today = _date("--as-of", args.as_of) or datetime.now(UTC).date()
    _settings, db = _open()
    assert isinstance(db, Database)
    try:
        with db.session() as s:
            filt = WorklistFilter(sites=tuple(_sites(s, args.site)))
            if args.csv:
                with args.csv.open("w", newline="") as fh:
                    for chunk in csv_lines(s, queue, filt, today=today):
                        fh.write(chunk)
                action = "population.worklist_export"
            else:
                pg = page(s, queue, filt, today=today, page_size=50)
                print(f"{queue.label}: {pg.total} item(s)")
                for r in pg.rows:
                    print(f"  {r['priority']:8.3f}  {r['patient_id']:<14} {r['due_date'] or '-':<10} "
                          f"{r['due_status']:<11} {r['loop_state']:<11} {r['text']}")
                action = "population.worklist_view"
            record_audit(s, actor="cli", action=action, entity=f"worklist/{queue.value}",
                         detail={"sites": list(filt.sites)})
    finally:
        db.dispose()
    return 0
