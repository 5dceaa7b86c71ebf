"""``risk imaging``: one patient's imaging from the configured PACS: studies, nodule tracks with growth, notes.

    risk imaging --patient-id B0000001                      # DICOM Patient ID (the MRN)
    risk imaging --study-uid 1.2.826.0... --as-of 2026-06-30
    risk imaging --patient-id B0000001 --dicom-dir OUT/dicom  # a folder instead of RISK_DICOMWEB__URL

Parsed SRs go to the imaging-feature cache of the configured store (``--no-cache`` to bypass it), so running it
ahead of time keeps SR parsing off the CDS hot path. Prints JSON; exit status 1 when the PACS could not be read
(status unavailable), 2 for bad arguments.
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import asdict, is_dataclass
from datetime import date
from enum import Enum
from pathlib import Path
from typing import Any

import orjson

from risk.config import load_settings
from risk.deadline import Deadline
from risk.errors import InvalidInput


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("imaging", help="a patient's studies and nodule tracks from the PACS (and warm the cache)",
                       description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--patient-id", action="append", default=[], help="DICOM Patient ID (repeatable)")
    p.add_argument("--study-uid", action="append", default=[], help="Study Instance UID (repeatable)")
    p.add_argument("--as-of", type=_date, default=None, help="YYYY-MM-DD (default: today)")
    p.add_argument("--dicom-dir", type=Path, default=None, help="read this DICOM folder instead of the PACS")
    p.add_argument("--no-cache", action="store_true", help="do not read or write the imaging-feature cache")
    p.add_argument("--timeout", type=float, default=120.0, help="total time budget in seconds (default 120)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from risk.domain import SourceState
    from risk.imaging.cache import ImagingFeatureCache
    from risk.imaging.pipeline import load_imaging
    from risk.sources.dicomweb import DicomFolderSource, open_dicom_source
    from risk.store import open_database

    if not args.patient_id and not args.study_uid:
        raise InvalidInput("patient_id", "give --patient-id or --study-uid")
    if not args.timeout > 0:
        raise InvalidInput("timeout", "must be positive")
    settings = load_settings()
    source = DicomFolderSource(args.dicom_dir) if args.dicom_dir else open_dicom_source(settings.dicomweb)
    if source is None:
        raise InvalidInput("dicomweb.url", "no PACS configured: set RISK_DICOMWEB__URL or RISK_DICOMWEB__FILE_DIR, "
                                           "or pass --dicom-dir")
    database = None if args.no_cache else open_database(settings.store)
    try:
        cache = ImagingFeatureCache(database) if database is not None else None
        result = load_imaging(source, cache, dicom_patient_ids=args.patient_id, study_uids=args.study_uid,
                              as_of=args.as_of or date.today(), deadline=Deadline(args.timeout))
    finally:
        if database is not None:
            database.dispose()
    sys.stdout.buffer.write(orjson.dumps(_plain(result), option=orjson.OPT_INDENT_2) + b"\n")
    return 1 if result.status.state is SourceState.UNAVAILABLE else 0


def _plain(value: Any) -> Any:
    if is_dataclass(value) and not isinstance(value, type):
        return {k: _plain(v) for k, v in asdict(value).items() if v is not None}
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items() if v is not None}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    if isinstance(value, Enum):
        return value.value
    if isinstance(value, date):
        return value.isoformat()
    return value


def _date(text: str) -> date:
    try:
        return date.fromisoformat(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"not a date (YYYY-MM-DD): {text!r}") from exc
