"""Loads DICOM Part-10 files into a PACS with STOW-RS (dicomweb-client, through :class:`DicomwebSource`).

Files are read header-first and grouped by series; with ``skip_existing`` a QIDO-RS instance search per series
finds what the PACS already holds, and only the rest is sent, in batches (at most ``batch_instances``
instances or ``batch_bytes`` bytes per STOW-RS request) by ``workers`` threads. Re-storing an instance is
harmless anyway (Orthanc keeps the first copy), so a re-run is safe either way; skipping makes it fast.

A batch the PACS refuses as a whole is retried one instance at a time, so the failure lands on the file that
caused it. An outage (no answer, 5xx after retries) stops the channel with "unavailable".
"""

from __future__ import annotations

import threading
import time
from collections import defaultdict
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import pydicom
from pydicom.dataset import Dataset
from pydicom.errors import InvalidDicomError

from risk.errors import InvalidInput, UpstreamRejected, UpstreamUnavailable
from risk.loading.report import ChannelReport, FileFailure
from risk.sources.dicomweb import DicomwebSource

HEADER_TAGS = ("StudyInstanceUID", "SeriesInstanceUID", "SOPInstanceUID")


@dataclass(frozen=True, slots=True)
class DicomFile:
    path: Path
    study_instance_uid: str
    series_instance_uid: str
    sop_instance_uid: str
    size_bytes: int


def read_headers(paths: Sequence[Path], failures: list[FileFailure]) -> list[DicomFile]:
    """The UIDs of each readable DICOM file; unreadable ones go to ``failures``."""
    out: list[DicomFile] = []
    for path in paths:
        try:
            ds = pydicom.dcmread(path, stop_before_pixels=True, specific_tags=list(HEADER_TAGS))
            uids = [str(ds.get(t, "") or "") for t in HEADER_TAGS]
            size = path.stat().st_size
        except (OSError, InvalidDicomError, ValueError, TypeError, EOFError) as exc:
            failures.append(FileFailure(str(path), f"not a readable DICOM file: {exc}"))
            continue
        missing = [t for t, v in zip(HEADER_TAGS, uids, strict=True) if not v]
        if missing:
            failures.append(FileFailure(str(path), f"missing {', '.join(missing)}"))
            continue
        out.append(DicomFile(path, uids[0], uids[1], uids[2], size))
    return out


class DicomLoader:
    def __init__(self, source_factory: Callable[[], DicomwebSource], *, workers: int = 2,
                 batch_instances: int = 64, batch_bytes: int = 32 * 1024 * 1024, skip_existing: bool = True) -> None:
        if workers < 1:
            raise ValueError(f'Argument "workers" must be at least 1, got {workers!r}.')
        if batch_instances < 1:
            raise ValueError(f'Argument "batch_instances" must be at least 1, got {batch_instances!r}.')
        self._factory = source_factory
        self._local = threading.local()
        self.workers = workers
        self.batch_instances = batch_instances
        self.batch_bytes = batch_bytes
        self.skip_existing = skip_existing

    def _source(self) -> DicomwebSource:
        source: DicomwebSource | None = getattr(self._local, "source", None)
        if source is None:
            source = self._local.source = self._factory()
        return source

    def load(self, paths: Sequence[Path], report: ChannelReport,
             progress: Callable[[ChannelReport], None] | None = None) -> ChannelReport:
        started = time.monotonic()
        report.files_total = len(paths)
        files = read_headers(paths, report.failures)
        by_series: dict[tuple[str, str], list[DicomFile]] = defaultdict(list)
        for f in files:
            by_series[(f.study_instance_uid, f.series_instance_uid)].append(f)
        lock = threading.Lock()
        stop = threading.Event()

        def outage(exc: UpstreamUnavailable) -> None:
            with lock:
                if not stop.is_set():
                    report.outage = str(exc)
                stop.set()

        def missing_in(series: tuple[str, str]) -> list[DicomFile]:
            wanted = by_series[series]
            if not self.skip_existing or stop.is_set():
                return wanted
            try:
                present = {r.sop_instance_uid for r in self._source().search_instances(*series)}
            except UpstreamUnavailable as exc:
                outage(exc)
                return []
            except (UpstreamRejected, InvalidInput):
                return wanted
            todo = [f for f in wanted if f.sop_instance_uid not in present]
            with lock:
                report.files_skipped += len(wanted) - len(todo)
            return todo

        def store(batch: list[DicomFile]) -> None:
            if stop.is_set():
                return
            datasets: list[tuple[DicomFile, Dataset]] = []
            for f in batch:
                try:
                    datasets.append((f, pydicom.dcmread(f.path)))
                except (OSError, InvalidDicomError, ValueError, TypeError, EOFError) as exc:
                    with lock:
                        report.failures.append(FileFailure(str(f.path), f"not a readable DICOM file: {exc}"))
            try:
                self._store(datasets, report, lock)
            except UpstreamUnavailable as exc:
                outage(exc)
                return
            if progress is not None:
                with lock:
                    progress(report)

        with ThreadPoolExecutor(max_workers=self.workers, thread_name_prefix="dicom-load") as pool:
            todo: list[DicomFile] = []
            for files_of_series in pool.map(missing_in, list(by_series)):
                todo.extend(files_of_series)
            list(pool.map(store, self._batches(todo)))
        report.seconds = time.monotonic() - started
        return report

    def _batches(self, files: list[DicomFile]) -> list[list[DicomFile]]:
        batches: list[list[DicomFile]] = []
        current: list[DicomFile] = []
        size = 0
        for f in files:
            if current and (len(current) >= self.batch_instances or size + f.size_bytes > self.batch_bytes):
                batches.append(current)
                current, size = [], 0
            current.append(f)
            size += f.size_bytes
        if current:
            batches.append(current)
        return batches

    def _store(self, datasets: list[tuple[DicomFile, Dataset]], report: ChannelReport, lock: threading.Lock) -> None:
        if not datasets:
            return
        try:
            result = self._source().store_instances([ds for _, ds in datasets])
        except (UpstreamRejected, InvalidInput) as exc:
            if len(datasets) > 1:  # find the culprit(s): one instance per request
                for one in datasets:
                    self._store([one], report, lock)
                return
            with lock:
                report.failures.append(FileFailure(str(datasets[0][0].path), str(exc)))
            return
        by_sop = {f.sop_instance_uid: f for f, _ in datasets}
        failed = dict(result.failed)
        with lock:
            for sop, reason in failed.items():
                f = by_sop.get(sop)
                report.failures.append(FileFailure(str(f.path) if f else sop, f"STOW-RS refused: {reason}"))
            stored = [sop for sop in by_sop if sop not in failed]
            report.files_loaded += len(stored)
            report.items_loaded += len(stored)
