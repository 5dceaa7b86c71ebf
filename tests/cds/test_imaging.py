"""The per-process imaging cache of hook calls: complete answers reused, outages never cached."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import date
from typing import Any

from risk.cds.imaging import CachedImaging
from risk.deadline import Deadline
from risk.domain import SourceState, SourceStatus
from tests.cds.test_hooks import Imaging

DAY = date(2025, 6, 2)


class Loader:
    def __init__(self, state: SourceState = SourceState.OK) -> None:
        self.calls = 0
        self.state = state

    def __call__(self, *, dicom_patient_ids: Sequence[str], study_uids: Sequence[str], as_of: date,
                 deadline: Deadline) -> Any:
        self.calls += 1
        return Imaging(status=SourceStatus("pacs", self.state))


def _load(cache: CachedImaging, uids: Sequence[str] = ("1.2",), day: date = DAY) -> Any:
    return cache(dicom_patient_ids=["MRN1"], study_uids=uids, as_of=day, deadline=Deadline(1))


def test_complete_results_are_reused_until_the_key_changes() -> None:
    loader = Loader()
    cache = CachedImaging(loader, ttl_s=60)
    first = _load(cache)
    assert _load(cache) is first and loader.calls == 1 and cache.hits == 1
    _load(cache, uids=("1.2", "1.3"))  # a new study in the EHR
    _load(cache, day=date(2025, 6, 3))  # a new day
    assert loader.calls == 3


def test_outages_and_zero_ttl_are_not_cached() -> None:
    loader = Loader(SourceState.UNAVAILABLE)
    cache = CachedImaging(loader, ttl_s=60)
    _load(cache)
    _load(cache)
    assert loader.calls == 2
    loader = Loader()
    cache = CachedImaging(loader, ttl_s=0)
    _load(cache)
    _load(cache)
    assert loader.calls == 2


def test_size_is_bounded() -> None:
    loader = Loader()
    cache = CachedImaging(loader, ttl_s=60, max_entries=2)
    for uid in ("a", "b", "c"):
        _load(cache, uids=(uid,))
    _load(cache, uids=("a",))  # evicted first
    assert loader.calls == 4
