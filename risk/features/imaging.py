"""Nodule tracks → the imaging features of the fusion models, one function for both paths.

Online the observations come from a PatientSnapshot's NoduleTracks (parsed TID 1500 SRs, linked by
risk/imaging/tracking.py); offline from a table of what the vendor SR reported (the synthetic cohort's
``truth/nodules.parquet`` ``sr_*`` columns, or a site's SR export with the same columns). Both are turned into
:class:`ReportedNodule` lists per track and go through the same pure functions below, so the two paths cannot
compute a feature differently.

Definitions (fusion_models/features.py names the features):

* Only observations on or before the as-of date count.
* **Latest CT**: the patient's most recent CT study date (``last_ct_date`` from the EHR row: FHIR ImagingStudy,
  plus PACS studies online); its nodules are the tracks observed on that date. No CT at all → every imaging
  feature is missing (the network's imaging branch is off); a CT without nodules → ``nodule_count`` = 0.
* **Index nodule**: the largest (longest diameter; sphere-equivalent from the volume when no diameter) nodule on
  the latest CT that is not calcified; ties broken by track key.
* **Growth** of a track: between its last two observations on different dates, as risk/imaging/tracking.py
  does: on measured volumes when both have one, else on the two-axis ellipsoid π/6·L·S², else on spheres of the
  longest diameter (risk.guidelines.growth). ``doublings_per_year`` = log2(V2/V1) · 365.25 / days (negative when
  shrinking); ``volume_change_pct`` = (V2 − V1)/V1 · 100.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import date
from typing import Any

import polars as pl

from risk.domain import NoduleComposition, NoduleObservation, NoduleTrack, PatientSnapshot
from risk.guidelines.growth import ellipsoid_volume_mm3, sphere_volume_mm3

DAYS_PER_YEAR = 365.25
_COMPOSITIONS = {c.value for c in NoduleComposition} - {NoduleComposition.UNKNOWN.value}
_MARGINS = {"smooth", "lobulated", "irregular", "spiculated"}
UPPER_LOBES = frozenset({"RUL", "LUL"})


@dataclass(frozen=True, slots=True)
class ReportedNodule:
    """One nodule on one study, as reported (measurements in mm / mm³, categories as risk.domain values)."""

    track_key: str
    study_date: date
    diameter_mm: float | None = None
    long_axis_mm: float | None = None
    short_axis_mm: float | None = None
    volume_mm3: float | None = None
    solid_component_mm: float | None = None
    composition: str | None = None
    margin: str | None = None
    lobe: str | None = None
    ai_probability: float | None = None

    @property
    def longest_mm(self) -> float | None:
        if self.diameter_mm is not None:
            return self.diameter_mm
        if self.long_axis_mm is not None:
            return self.long_axis_mm
        if self.volume_mm3 is not None:
            return float((6.0 * self.volume_mm3 / math.pi) ** (1.0 / 3.0))
        return None


def from_observation(track_key: str, obs: NoduleObservation) -> ReportedNodule:
    composition = obs.composition.value if obs.composition is not NoduleComposition.UNKNOWN else None
    margin = obs.margin.value if obs.margin.value in _MARGINS else None
    return ReportedNodule(track_key=track_key, study_date=obs.study_date, diameter_mm=obs.diameter_mm,
                          long_axis_mm=obs.long_axis_mm, short_axis_mm=obs.short_axis_mm, volume_mm3=obs.volume_mm3,
                          solid_component_mm=obs.solid_component_mm, composition=composition, margin=margin,
                          lobe=obs.lobe.value if obs.lobe is not None else None,
                          ai_probability=obs.ai_malignancy_probability)


def track_key(track: NoduleTrack) -> str:
    """The track's Tracking Unique Identifier when its observations agree on one, else its track id."""
    uids = {o.tracking_uid for o in track.observations}
    if len(uids) == 1 and None not in uids:
        return str(next(iter(uids)))
    return track.track_id


def tracks_from_snapshot(snapshot: PatientSnapshot) -> list[list[ReportedNodule]]:
    """The snapshot's tracks as ReportedNodule lists (oldest first), observations on or before as-of only."""
    out: list[list[ReportedNodule]] = []
    for track in snapshot.nodule_tracks:
        key = track_key(track)
        obs = [from_observation(key, o) for o in track.observations if o.study_date <= snapshot.as_of]
        if obs:
            out.append(obs)
    return out


def _growth(track: Sequence[ReportedNodule]) -> tuple[float, float, float] | None:
    """(volume change %, interval days, doublings per year) between the last two dated observations."""
    latest = track[-1]
    previous = next((o for o in reversed(track[:-1]) if o.study_date < latest.study_date), None)
    if previous is None:
        return None
    days = float((latest.study_date - previous.study_date).days)
    v1, v2 = _volumes(previous, latest)
    if v1 is None or v2 is None or v1 <= 0 or v2 <= 0:
        return None
    return (v2 - v1) / v1 * 100.0, days, math.log2(v2 / v1) * DAYS_PER_YEAR / days


def _volumes(a: ReportedNodule, b: ReportedNodule) -> tuple[float | None, float | None]:
    if a.volume_mm3 is not None and b.volume_mm3 is not None:
        return a.volume_mm3, b.volume_mm3
    if None not in (a.long_axis_mm, a.short_axis_mm, b.long_axis_mm, b.short_axis_mm):
        return (ellipsoid_volume_mm3(a.long_axis_mm, a.short_axis_mm, a.short_axis_mm),  # type: ignore[arg-type]
                ellipsoid_volume_mm3(b.long_axis_mm, b.short_axis_mm, b.short_axis_mm))  # type: ignore[arg-type]
    la, lb = a.longest_mm, b.longest_mm
    if la is None or lb is None:
        return None, None
    return sphere_volume_mm3(la), sphere_volume_mm3(lb)


def nodule_features(track: Sequence[ReportedNodule], nodule_count: int) -> dict[str, Any]:
    """The nodule-task imaging features of one track (at its latest observation)."""
    latest = track[-1]
    growth = _growth(track)
    return {
        "nodule_diameter_mm": latest.longest_mm,
        "nodule_volume_mm3": latest.volume_mm3,
        "nodule_composition": latest.composition,
        "nodule_solid_component_mm": latest.solid_component_mm,
        "nodule_margin": latest.margin,
        "nodule_upper_lobe": None if latest.lobe is None else latest.lobe in UPPER_LOBES,
        "nodule_ai_probability": latest.ai_probability,
        "nodule_count": float(nodule_count),
        "nodule_observation_count": float(len({o.study_date for o in track})),
        "nodule_volume_change_pct": None if growth is None else growth[0],
        "nodule_growth_interval_days": None if growth is None else growth[1],
        "nodule_doublings_per_year": None if growth is None else growth[2],
    }


def nodules_per_date(tracks: Iterable[Sequence[ReportedNodule]]) -> dict[date, int]:
    counts: dict[date, int] = {}
    for track in tracks:
        for d in {o.study_date for o in track}:
            counts[d] = counts.get(d, 0) + 1
    return counts


def nodule_rows(tracks: Sequence[Sequence[ReportedNodule]]) -> list[tuple[str, dict[str, Any]]]:
    """(track key, nodule-task imaging features) for every track, in track-key order."""
    counts = nodules_per_date(tracks)
    rows = [(t[-1].track_key, nodule_features(t, counts[t[-1].study_date])) for t in tracks]
    return sorted(rows, key=lambda r: r[0])


_EMPTY_PATIENT: dict[str, Any] = {
    "ct_study_count": None, "nodule_count": None, "index_nodule_diameter_mm": None,
    "index_nodule_composition": None, "index_nodule_solid_component_mm": None, "index_nodule_spiculated": None,
    "index_nodule_upper_lobe": None, "index_nodule_ai_probability": None, "index_nodule_volume_change_pct": None,
    "index_nodule_growth_interval_days": None, "index_nodule_doublings_per_year": None, "max_ai_probability": None,
}


def patient_imaging_features(tracks: Sequence[Sequence[ReportedNodule]], *, ct_study_count: int | None,
                             last_ct_date: date | None) -> dict[str, Any]:
    """The patient-task imaging features (see the module docstring for the definitions)."""
    out = dict(_EMPTY_PATIENT)
    dates = [o.study_date for t in tracks for o in t]
    latest_ct = max([d for d in (last_ct_date, max(dates, default=None)) if d is not None], default=None)
    count = max(ct_study_count or 0, 1 if dates else 0)
    if latest_ct is None or count == 0:
        return out
    on_latest = [t for t in tracks if t[-1].study_date == latest_ct]
    out["ct_study_count"] = float(count)
    out["nodule_count"] = float(len(on_latest))
    ai = [t[-1].ai_probability for t in on_latest if t[-1].ai_probability is not None]
    out["max_ai_probability"] = max(ai) if ai else None
    candidates = [t for t in on_latest if t[-1].composition != "calcified" and t[-1].longest_mm is not None]
    if not candidates:
        return out
    index = max(candidates, key=lambda t: (t[-1].longest_mm, _neg_key(t[-1].track_key)))
    latest = index[-1]
    growth = _growth(index)
    out.update({
        "index_nodule_diameter_mm": latest.longest_mm,
        "index_nodule_composition": latest.composition,
        "index_nodule_solid_component_mm": latest.solid_component_mm,
        "index_nodule_spiculated": None if latest.margin is None else latest.margin == "spiculated",
        "index_nodule_upper_lobe": None if latest.lobe is None else latest.lobe in UPPER_LOBES,
        "index_nodule_ai_probability": latest.ai_probability,
        "index_nodule_volume_change_pct": None if growth is None else growth[0],
        "index_nodule_growth_interval_days": None if growth is None else growth[1],
        "index_nodule_doublings_per_year": None if growth is None else growth[2],
    })
    return out


def _neg_key(key: str) -> tuple[int, ...]:
    """Sort key that makes the lexicographically smallest track key win a size tie under max()."""
    return tuple(-ord(c) for c in key)


# --- offline: a table of reported nodules ------------------------------------------------------------------
REPORTED_COLUMNS = {
    "patient_id": "patient_id", "tracking_uid": "track_key", "study_date": "study_date",
    "sr_long_axis_mm": "long_axis_mm", "sr_short_axis_mm": "short_axis_mm", "sr_volume_mm3": "volume_mm3",
    "sr_solid_component_mm": "solid_component_mm", "composition": "composition", "margin": "margin",
    "lobe": "lobe", "ai_probability": "ai_probability",
}
"""Columns of the synthetic cohort's truth/nodules.parquet that hold what the vendor SR reported (its SR
writes Diameter = the measured long axis, so ``diameter_mm`` = ``sr_long_axis_mm``)."""


def tracks_from_table(nodules: pl.DataFrame, as_of: date) -> dict[str, list[list[ReportedNodule]]]:
    """Reported nodules (rows the AI detected, on or before ``as_of``) grouped per patient and track."""
    frame = nodules
    if "detected_by_ai" in frame.columns:
        frame = frame.filter(pl.col("detected_by_ai"))
    frame = (frame.filter(pl.col("study_date") <= as_of).select(list(REPORTED_COLUMNS))
             .rename(REPORTED_COLUMNS).sort("patient_id", "track_key", "study_date"))
    out: dict[str, list[list[ReportedNodule]]] = {}
    current: list[ReportedNodule] = []
    current_key: tuple[str, str] | None = None
    for r in frame.iter_rows(named=True):
        key = (r["patient_id"], r["track_key"])
        if key != current_key:
            current = []
            out.setdefault(r["patient_id"], []).append(current)
            current_key = key
        current.append(_reported(r))
    return out


def _reported(r: Mapping[str, Any]) -> ReportedNodule:
    composition = r["composition"] if r["composition"] in _COMPOSITIONS else None
    margin = r["margin"] if r["margin"] in _MARGINS else None
    return ReportedNodule(track_key=r["track_key"], study_date=r["study_date"], diameter_mm=r["long_axis_mm"],
                          long_axis_mm=r["long_axis_mm"], short_axis_mm=r["short_axis_mm"],
                          volume_mm3=r["volume_mm3"], solid_component_mm=r["solid_component_mm"],
                          composition=composition, margin=margin, lobe=r["lobe"], ai_probability=r["ai_probability"])
