"""A per-process cache of patients' imaging results for hook calls (PACS queries off the hot path).

Key: the patient's DICOM Patient IDs (MRNs), the Study Instance UIDs the EHR lists, and the as-of date: a new
study in the EHR, or a new day, is a different key. Only complete answers (``SourceState.OK``) are kept, for
``ttl_s`` seconds, at most ``max_entries`` (the oldest are dropped first). The imaging-feature cache
(risk.imaging.cache, SR parses by SOP Instance UID) sits underneath and is shared by every process.
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from collections.abc import Sequence
from datetime import date

from risk.deadline import Deadline
from risk.domain.snapshot import SourceState
from risk.extract.snapshot import ImagingOutcome
from risk.snapshots import ImagingLoader

Key = tuple[tuple[str, ...], tuple[str, ...], date]


class CachedImaging:
    def __init__(self, loader: ImagingLoader, *, ttl_s: float = 300.0, max_entries: int = 10_000) -> None:
        self.loader = loader
        self.ttl_s = ttl_s
        self.max_entries = max_entries
        self._entries: OrderedDict[Key, tuple[float, ImagingOutcome]] = OrderedDict()
        self._lock = threading.Lock()
        self.hits = 0
        self.misses = 0

    @staticmethod
    def key(dicom_patient_ids: Sequence[str], study_uids: Sequence[str], as_of: date) -> Key:
        return tuple(sorted(set(dicom_patient_ids))), tuple(sorted(set(study_uids))), as_of

    def has(self, dicom_patient_ids: Sequence[str], study_uids: Sequence[str], as_of: date) -> bool:
        """True when a call with these arguments would be answered from the cache (no PACS traffic)."""
        entry = self._entries.get(self.key(dicom_patient_ids, study_uids, as_of))
        return entry is not None and time.monotonic() - entry[0] < self.ttl_s

    def __call__(self, *, dicom_patient_ids: Sequence[str], study_uids: Sequence[str], as_of: date,
                 deadline: Deadline) -> ImagingOutcome:
        key = self.key(dicom_patient_ids, study_uids, as_of)
        now = time.monotonic()
        with self._lock:
            entry = self._entries.get(key)
            if entry is not None and now - entry[0] < self.ttl_s:
                self.hits += 1
                return entry[1]
        self.misses += 1
        result = self.loader(dicom_patient_ids=dicom_patient_ids, study_uids=study_uids, as_of=as_of,
                             deadline=deadline)
        if result.status.state is SourceState.OK and self.ttl_s > 0:
            with self._lock:
                self._entries[key] = (now, result)
                self._entries.move_to_end(key)
                while len(self._entries) > self.max_entries:
                    self._entries.popitem(last=False)
        return result
