"""``risk load DIR``: put a synthetic cohort (``risk synth`` output) into the FHIR server and the PACS.

FHIR: transaction Bundles (``fhir/bundles/*.json``, or ``fhir/ndjson/*.ndjson`` turned into PUT transactions),
authorised with a SMART Backend Services token when ``RISK_SMART_BACKEND__*`` is set (else
``RISK_FHIR__BEARER_TOKEN``, else no token). DICOM: STOW-RS in batches (``dicom/**.dcm``). Idempotent: re-running
overwrites FHIR resources with the same content and skips instances the PACS already holds. Per-file failures
are listed and the rest goes on; exit status 1 when anything failed, 2 for bad arguments or settings.

With the local stack: ``risk load DIR --env-file deploy/local/state/stack.env``.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from collections.abc import Callable
from pathlib import Path

from risk.config import Settings, load_settings
from risk.errors import InvalidInput
from risk.loading import (
    BackendServicesAuth,
    ChannelReport,
    CohortDirectory,
    Destinations,
    DicomLoader,
    FhirInput,
    FhirLoader,
    FhirTransactionClient,
    load_cohort,
)
from risk.loading.fhir_load import TokenProvider
from risk.sources.dicomweb import DicomwebSource

LOADER_SCOPE = "system/*.cu"
"""Create and update, every type: what PUT [type]/[id] transactions need (SMART v2 scope syntax)."""
PROGRESS_EVERY_S = 2.0


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("load", help="load a synthetic cohort directory into the FHIR server and the PACS",
                       description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("dir", type=Path, metavar="DIR", help="cohort directory written by `risk synth`")
    p.add_argument("--fhir-url", help="FHIR R4 base URL (default: RISK_FHIR__BASE_URL)")
    p.add_argument("--dicomweb-url", help="DICOMweb base URL (default: RISK_DICOMWEB__URL)")
    p.add_argument("--env-file", type=Path,
                   help="KEY=VALUE file whose RISK_* lines become settings (e.g. deploy/local/state/stack.env)")
    p.add_argument("--no-fhir", action="store_true", help="skip the FHIR server")
    p.add_argument("--no-dicom", action="store_true", help="skip the PACS")
    p.add_argument("--fhir-input", choices=[f.value for f in FhirInput], default=FhirInput.AUTO.value,
                   help="bundles, ndjson, or auto (bundles when there are any; default)")
    p.add_argument("--workers", type=int, default=2, help="parallel requests per destination (default 2)")
    p.add_argument("--batch-size", type=int, default=64, help="DICOM instances per STOW-RS request (default 64)")
    p.add_argument("--no-skip-existing", action="store_true",
                   help="send every DICOM instance, even those the PACS already holds")
    p.add_argument("--timeout", type=float, default=60.0, help="seconds per request (default 60)")
    p.add_argument("--quiet", action="store_true", help="no progress lines on stderr")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    if args.workers < 1:
        raise InvalidInput("--workers", f"must be at least 1, got {args.workers}")
    if args.batch_size < 1:
        raise InvalidInput("--batch-size", f"must be at least 1, got {args.batch_size}")
    if not args.timeout > 0:
        raise InvalidInput("--timeout", f"must be positive, got {args.timeout}")
    if args.env_file is not None:
        apply_env_file(args.env_file)
    settings = load_settings()
    cohort = CohortDirectory.open(args.dir)
    fhir_url = None if args.no_fhir else _url("--fhir-url", args.fhir_url or settings.fhir.base_url)
    dicom_url = None if args.no_dicom else _url("--dicomweb-url", args.dicomweb_url or settings.dicomweb.url)
    if fhir_url is None and dicom_url is None:
        raise InvalidInput("--fhir-url", "nothing to load into: give --fhir-url and/or --dicomweb-url "
                                         "(or RISK_FHIR__BASE_URL / RISK_DICOMWEB__URL, or --env-file)")
    fhir_client = FhirTransactionClient(fhir_url, token=_fhir_token(settings, args.timeout), timeout_s=args.timeout,
                                        retries=settings.fhir.retries, backoff_s=settings.fhir.backoff_s) \
        if fhir_url else None
    dicom_loader = DicomLoader(_dicom_factory(settings, dicom_url, args.timeout), workers=args.workers,
                               batch_instances=args.batch_size, skip_existing=not args.no_skip_existing) \
        if dicom_url else None
    destinations = Destinations(
        fhir=FhirLoader(fhir_client, workers=args.workers) if fhir_client else None, fhir_target=fhir_url or "",
        dicom=dicom_loader, dicom_target=dicom_url or "")
    for name, url in (("FHIR", fhir_url), ("DICOM", dicom_url)):
        if url is None:
            print(f"risk load: {name} skipped", file=sys.stderr)
    try:
        report = load_cohort(cohort, destinations, fhir_input=FhirInput(args.fhir_input),
                             progress=None if args.quiet else _progress_printer())
    finally:
        if fhir_client is not None:
            fhir_client.close()
    for line in report.lines():
        print(f"risk load: {line}")
    return 0 if report.ok else 1


def apply_env_file(path: Path) -> None:
    """Copies the ``RISK_*`` assignments of a ``KEY=VALUE`` file (comments and blank lines allowed) into the
    process environment, where :func:`risk.config.load_settings` reads them; the file wins over the environment."""
    try:
        text = path.read_text()
    except OSError as exc:
        raise InvalidInput("--env-file", f"cannot read {path}: {exc.strerror}") from exc
    for number, raw in enumerate(text.splitlines(), start=1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        key, sep, value = line.removeprefix("export ").partition("=")
        if not sep or not key.strip():
            raise InvalidInput("--env-file", f"{path} line {number}: expected KEY=VALUE")
        value = value.strip()
        if len(value) >= 2 and value[0] == value[-1] and value[0] in "'\"":
            value = value[1:-1]
        if key.strip().startswith("RISK_"):
            os.environ[key.strip()] = value


def _url(flag: str, value: object) -> str | None:
    if value is None:
        return None
    text = str(value).rstrip("/")
    if not text.startswith(("http://", "https://")):
        raise InvalidInput(flag, f"must be an http(s) URL, got {text!r}")
    return text


def _fhir_token(settings: Settings, timeout_s: float) -> str | TokenProvider | None:
    if BackendServicesAuth.configured(settings.smart_backend):
        return BackendServicesAuth.from_settings(settings.smart_backend, scope=LOADER_SCOPE,
                                                 timeout_s=max(timeout_s, settings.smart_backend.timeout_s))
    return settings.fhir.bearer_token


def _dicom_factory(settings: Settings, url: str | None, timeout_s: float) -> Callable[[], DicomwebSource]:
    d = settings.dicomweb

    def make() -> DicomwebSource:
        assert url is not None
        return DicomwebSource(url, username=d.username if d.password is not None else None,
                              password=d.password if d.username is not None else None,
                              bearer_token=d.bearer_token if d.username is None else None,
                              timeout_s=max(d.timeout_s, timeout_s), retries=d.retries, backoff_s=d.backoff_s)
    return make


def _progress_printer() -> Callable[[ChannelReport], None]:
    last = [time.monotonic()]

    def show(report: ChannelReport) -> None:
        now = time.monotonic()
        if now - last[0] >= PROGRESS_EVERY_S:
            last[0] = now
            done = report.files_loaded + len(report.failures) + report.files_skipped
            print(f"risk load: {report.channel} {done}/{report.files_total} {report.unit}", file=sys.stderr)
    return show
