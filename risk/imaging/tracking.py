"""Longitudinal nodule tracking: observations from successive studies linked into tracks, with growth.

Linking, in order of trust:

1. **Tracking Unique Identifier** (DCM 112040): the vendor's assertion that two measurement groups are the same
   nodule. Observations with the same UID join one track; two different UIDs are never merged by position.
2. **Position and size**, for observations without a UID (vendors omit it; interop.md §5.5) or with a UID not
   seen before: the observation is compared with the latest positioned observation of each track not yet seen
   on this study. Positions of two studies are only comparable after aligning their frames of reference
   (each CT acquisition normally has its own; patient positioning differs by millimetres to centimetres):

   * **anchors**: the median displacement of nodules linked by tracking UID between the two studies;
   * **same frame of reference**: no displacement;
   * **constellation**: the translation that superimposes the most size- and lobe-compatible pairs, accepted
     when at least ``MIN_CONSTELLATION_SUPPORT`` (2) nodules agree;
   * otherwise **unaligned**: patient coordinates are compared as they are (their axes are patient-based; two
     chest CTs of one patient usually differ by millimetres to a few centimetres of positioning), with the wider
     tolerance ``UNALIGNED_MATCH_DISTANCE_MM``; and when exactly one pair of nodules of the two studies is
     compatible, both in the same named lobe, that pair is linked even farther apart (the link then rests on
     lobe and size alone, and the track says so). Origins that differ by more than the tolerance (another
     scanner's convention) leave nodules unlinked: they show as new and resolved, each with its note, never
     silently merged.

Tolerances (module constants; the numbers are engineering choices, documented here and in the notes):

* ``MATCH_DISTANCE_MM`` = 10 mm + ``MATCH_DISTANCE_PER_DIAMETER`` (0.5) × the larger diameter: residual
  displacement after a rigid translation (different inspiration depth, measurement of the centre) is a few
  millimetres for most nodules; 10 mm covers it with margin while staying below the usual distance between two
  distinct nodules; a growing nodule's centre moves by up to its change in radius, hence the diameter term.
  Unaligned, ``UNALIGNED_MATCH_DISTANCE_MM`` = 20 mm replaces the 10 mm (positioning differences are added).
* Size compatibility: the later longest diameter (or sphere-equivalent diameter from the volume) lies within
  [``SIZE_RATIO_MIN`` (0.4), ``SIZE_RATIO_MAX`` (2.5)] × the earlier one, ± ``SIZE_SLACK_MM`` (1.5 mm, about the
  inter-reader variability of manual diameters). 2.5× in diameter is a 15-fold volume increase, more than a
  100-day VDT produces in a year, so only implausible pairs (a 4 mm nodule and a 25 mm mass) are refused.
* Lobe: when both observations name a lobe, they must agree.
* Ambiguity: a link needs the best candidate to be clearly best (the second best at least
  ``AMBIGUITY_RATIO`` (1.5) times farther, on both sides); an ambiguous observation starts a new track, with a
  note, rather than risk merging two nodules (which could hide or invent growth).
* Duplicates within one study: the same tracking UID twice, or two reports from different SR instances within
  ``DUPLICATE_DISTANCE_MM`` (3 mm) and ``DUPLICATE_SIZE_MM`` (1.5 mm) in the same frame of reference, are one
  nodule: the more complete observation is kept.

Status (risk.domain.TrackStatus) is relative to the **evaluated** studies (those whose SR was read, even when
it reported nothing): BASELINE when there is only one; NEW when first seen on the latest; PERSISTENT when seen on
the latest and earlier; RESOLVED when not seen on the latest.

Growth is computed between a track's last two observations at different dates with
``risk.guidelines.growth.assess_growth``, on the measured volumes when both have one (``VolumeMethod.MEASURED``),
else on the two-axis ellipsoid π/6·L·S² when both have long and short axes (``ELLIPSOID_2_AXES``), else on spheres
of the longest diameter (``SPHERE``); the method is in the result.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import date

import numpy as np

from risk.domain import (
    IngestionNote,
    NoduleObservation,
    NoduleTrack,
    NoteCode,
    NoteSeverity,
    TrackLinkage,
    TrackStatus,
)
from risk.guidelines.growth import (
    GrowthResult,
    VolumeMethod,
    assess_growth,
    ellipsoid_volume_mm3,
    sphere_volume_mm3,
)

MATCH_DISTANCE_MM = 10.0
MATCH_DISTANCE_PER_DIAMETER = 0.5
UNALIGNED_MATCH_DISTANCE_MM = 20.0
SIZE_RATIO_MIN = 0.4
SIZE_RATIO_MAX = 2.5
SIZE_SLACK_MM = 1.5
AMBIGUITY_RATIO = 1.5
DUPLICATE_DISTANCE_MM = 3.0
DUPLICATE_SIZE_MM = 1.5
MIN_CONSTELLATION_SUPPORT = 2

TRACKING_SOURCE = "nodule-tracking"


@dataclass(frozen=True, slots=True)
class TrackingResult:
    tracks: tuple[NoduleTrack, ...]
    notes: tuple[IngestionNote, ...]


@dataclass(slots=True)
class _Track:
    observations: list[NoduleObservation]
    uids: set[str] = field(default_factory=set)
    position_linked: bool = False
    notes: list[str] = field(default_factory=list)

    def on(self, study_uid: str) -> bool:
        return any(o.study_instance_uid == study_uid for o in self.observations)

    def last_positioned(self) -> NoduleObservation | None:
        for observation in reversed(self.observations):
            if observation.position is not None:
                return observation
        return None


@dataclass(frozen=True, slots=True)
class _Alignment:
    offset: np.ndarray
    method: str
    unaligned: bool = False
    """No translation could be estimated: positions are compared as they are, with the wider tolerance."""
    only_pair: tuple[int, int] | None = None
    """(id of the earlier, id of the current observation) when exactly one lobe- and size-compatible pair exists."""


def track_nodules(observations: Sequence[NoduleObservation], *,
                  evaluated_studies: Sequence[tuple[str, date]] | None = None) -> TrackingResult:
    """Link ``observations`` into tracks, flag their status and compute their growth.

    ``evaluated_studies`` are (StudyInstanceUID, date) of every study whose nodule report was read, including
    reports with no nodules; by default, the studies of the observations.
    """
    notes: list[IngestionNote] = []
    studies = {o.study_instance_uid: o.study_date for o in observations}
    for uid, day in evaluated_studies or ():
        studies.setdefault(uid, day)
    order = sorted(studies.items(), key=lambda item: (item[1], item[0]))
    by_study: dict[str, list[NoduleObservation]] = {uid: [] for uid, _ in order}
    for observation in observations:
        by_study[observation.study_instance_uid].append(observation)

    tracks: list[_Track] = []
    by_uid: dict[str, _Track] = {}
    aligner = _Aligner(tracks)
    for study_uid, _day in order:
        here = _deduplicate(by_study[study_uid], by_uid, notes)
        rest: list[NoduleObservation] = []
        for observation in here:
            track = by_uid.get(observation.tracking_uid) if observation.tracking_uid else None
            if track is not None and not track.on(study_uid):
                track.observations.append(observation)
            else:
                rest.append(observation)
        aligner.record_uid_links(study_uid)
        for observation, track in _match_by_position(rest, here, tracks, study_uid, aligner, notes):
            if track is None:
                track = _Track([observation])
                tracks.append(track)
            else:
                track.observations.append(observation)
                track.position_linked = True
            if observation.tracking_uid:
                track.uids.add(observation.tracking_uid)
                by_uid.setdefault(observation.tracking_uid, track)

    latest = order[-1][0] if order else None
    out = [_finish(track, latest, len(order), notes) for track in tracks]
    out.sort(key=lambda t: (t.first.study_date, t.track_id))
    return TrackingResult(tuple(out), tuple(notes))


# --- Duplicates -------------------------------------------------------------------------------------------------
def _deduplicate(observations: list[NoduleObservation], by_uid: dict[str, _Track],
                 notes: list[IngestionNote]) -> list[NoduleObservation]:
    kept: list[NoduleObservation] = []
    for observation in sorted(observations, key=lambda o: -_completeness(o)):
        twin = next((k for k in kept if _same_nodule(k, observation)), None)
        if twin is None:
            kept.append(observation)
            continue
        if observation.tracking_uid and twin.tracking_uid and observation.tracking_uid != twin.tracking_uid:
            # Two reports of one nodule with two UIDs (two algorithms): later studies may use either.
            track = by_uid.get(twin.tracking_uid)
            if track is not None:
                by_uid.setdefault(observation.tracking_uid, track)
        notes.append(IngestionNote(
            NoteSeverity.INFO, NoteCode.DUPLICATE, observation.source.reference,
            f"nodule reported twice on study {observation.study_instance_uid} "
            f"({_describe(observation)}); the more complete report was kept"))
    return kept


def _same_nodule(a: NoduleObservation, b: NoduleObservation) -> bool:
    if a.tracking_uid and a.tracking_uid == b.tracking_uid:
        return True
    if a.source.reference == b.source.reference or a.position is None or b.position is None:
        return False  # within one SR, two groups are two findings
    if a.position.frame_of_reference_uid != b.position.frame_of_reference_uid:
        return False
    size_a, size_b = _size_mm(a), _size_mm(b)
    return (a.position.distance_mm(b.position) <= DUPLICATE_DISTANCE_MM and size_a is not None
            and size_b is not None and abs(size_a - size_b) <= DUPLICATE_SIZE_MM)


def _completeness(o: NoduleObservation) -> int:
    return sum(v is not None for v in (o.diameter_mm, o.long_axis_mm, o.short_axis_mm, o.volume_mm3, o.position,
                                       o.lobe, o.tracking_uid, o.ai_malignancy_probability))


# --- Alignment of two studies ---------------------------------------------------------------------------------
class _Aligner:
    """Translations between the frames of reference of two studies, cached per pair."""

    def __init__(self, tracks: list[_Track]) -> None:
        self._tracks = tracks
        self._cache: dict[tuple[str, str], _Alignment] = {}
        self._uid_pairs: dict[tuple[str, str], list[np.ndarray]] = {}

    def record_uid_links(self, study_uid: str) -> None:
        """Remember displacements of nodules linked by tracking UID into ``study_uid`` (the anchors)."""
        for track in self._tracks:
            current = [o for o in track.observations if o.study_instance_uid == study_uid and o.position]
            if not current or not track.uids:
                continue
            now = current[0]
            for earlier in track.observations:
                if earlier is now or earlier.position is None or earlier.study_instance_uid == study_uid:
                    continue
                if earlier.tracking_uid and earlier.tracking_uid == now.tracking_uid:
                    assert now.position is not None
                    self._uid_pairs.setdefault((earlier.study_instance_uid, study_uid), []).append(
                        _xyz(now) - _xyz(earlier))

    def align(self, earlier: NoduleObservation, study_uid: str, candidates: Sequence[NoduleObservation],
              ) -> _Alignment:
        key = (earlier.study_instance_uid, study_uid)
        if key not in self._cache:
            self._cache[key] = self._compute(earlier, study_uid, candidates)
        return self._cache[key]

    def _compute(self, earlier: NoduleObservation, study_uid: str,
                 candidates: Sequence[NoduleObservation]) -> _Alignment:
        anchors = self._uid_pairs.get((earlier.study_instance_uid, study_uid))
        if anchors:
            return _Alignment(np.median(np.array(anchors), axis=0), f"{len(anchors)} tracking-UID anchor(s)")
        frames_now = {o.position.frame_of_reference_uid for o in candidates if o.position is not None}
        assert earlier.position is not None
        if frames_now == {earlier.position.frame_of_reference_uid}:
            return _Alignment(np.zeros(3), "same frame of reference")
        before = [t.observations[i] for t in self._tracks for i in range(len(t.observations))
                  if t.observations[i].study_instance_uid == earlier.study_instance_uid
                  and t.observations[i].position is not None]
        now = [o for o in candidates if o.position is not None]
        return _constellation(before, now)


def _constellation(before: Sequence[NoduleObservation], now: Sequence[NoduleObservation]) -> _Alignment:
    """The translation that superimposes the most compatible nodule pairs of two studies."""
    pairs = [(a, b) for a in before for b in now if _compatible(a, b)]
    best: tuple[int, float, np.ndarray] | None = None
    for a, b in pairs:
        offset = _xyz(b) - _xyz(a)
        matched = _greedy_matches(before, now, offset)
        residual = sum(d for _, _, d in matched)
        if best is None or len(matched) > best[0] or (len(matched) == best[0] and residual < best[1]):
            best = (len(matched), residual, offset)
    unaligned = _Alignment(np.zeros(3), "none: different frames of reference and nothing to register them",
                           unaligned=True)
    if best is None:
        return unaligned
    support, _, offset = best
    if support >= MIN_CONSTELLATION_SUPPORT:
        matched = _greedy_matches(before, now, offset)
        refined = np.median(np.array([_xyz(b) - _xyz(a) for a, b, _ in matched]), axis=0)
        return _Alignment(refined, f"constellation of {support} nodules")
    if len(pairs) == 1 and pairs[0][0].lobe is not None and pairs[0][0].lobe == pairs[0][1].lobe:
        return _Alignment(unaligned.offset, unaligned.method, unaligned=True,
                          only_pair=(id(pairs[0][0]), id(pairs[0][1])))
    return unaligned


def _greedy_matches(before: Sequence[NoduleObservation], now: Sequence[NoduleObservation], offset: np.ndarray,
                    ) -> list[tuple[NoduleObservation, NoduleObservation, float]]:
    scored = []
    for a in before:
        for b in now:
            if not _compatible(a, b):
                continue
            distance = float(np.linalg.norm(_xyz(b) - (_xyz(a) + offset)))
            if distance <= _tolerance_mm(a, b):
                scored.append((distance, a, b))
    scored.sort(key=lambda item: item[0])
    used_a: set[int] = set()
    used_b: set[int] = set()
    out = []
    for distance, a, b in scored:
        if id(a) in used_a or id(b) in used_b:
            continue
        used_a.add(id(a))
        used_b.add(id(b))
        out.append((a, b, distance))
    return out


# --- Position-and-size matching -------------------------------------------------------------------------------
def _match_by_position(observations: list[NoduleObservation], here: list[NoduleObservation], tracks: list[_Track],
                       study_uid: str, aligner: _Aligner, notes: list[IngestionNote],
                       ) -> list[tuple[NoduleObservation, _Track | None]]:
    """Pairs (observation, track to join, or None for a new track), closest clear pairs first."""
    open_tracks = [t for t in tracks if not t.on(study_uid) and t.last_positioned() is not None]
    pairs: dict[tuple[int, int], tuple[float, float, _Alignment]] = {}
    for oi, observation in enumerate(observations):
        if observation.position is None:
            continue
        for ti, track in enumerate(open_tracks):
            if observation.tracking_uid and track.uids and observation.tracking_uid not in track.uids:
                continue  # two different tracking UIDs: the vendor says two nodules
            earlier = track.last_positioned()
            assert earlier is not None
            if not _compatible(earlier, observation):
                continue
            alignment = aligner.align(earlier, study_uid, here)
            distance = float(np.linalg.norm(_xyz(observation) - (_xyz(earlier) + alignment.offset)))
            tolerance = _tolerance_mm(earlier, observation, unaligned=alignment.unaligned)
            if distance <= tolerance:
                pairs[(oi, ti)] = (distance, tolerance, alignment)
            elif alignment.only_pair == (id(earlier), id(observation)):
                pairs[(oi, ti)] = (tolerance, tolerance, alignment)  # weakest evidence: ranked last

    links: dict[int, int] = {}
    while pairs:
        (oi, ti), (distance, tolerance, alignment) = min(pairs.items(), key=lambda item: item[1][0])
        rivals = [d for (o, t), (d, _, _) in pairs.items() if (o == oi) != (t == ti)]
        involved = [key for key in pairs if key[0] == oi or key[1] == ti]
        if rivals and min(rivals) < AMBIGUITY_RATIO * max(distance, 0.5):
            losers = {o for o, _ in involved}
            for o in sorted(losers):
                notes.append(IngestionNote(
                    NoteSeverity.WARNING, NoteCode.CONFLICT, observations[o].source.reference,
                    f"nodule ({_describe(observations[o])}) on {observations[o].study_date.isoformat()} lies within "
                    "tolerance of more than one candidate; not linked by position (starts a new track)"))
            for key in [k for k in pairs if k[0] in losers or k[1] == ti]:
                del pairs[key]
            continue
        links[oi] = ti
        track = open_tracks[ti]
        earlier = track.last_positioned()
        assert earlier is not None
        when = f"{observations[oi].study_date.isoformat()} linked to {earlier.study_date.isoformat()}"
        if alignment.unaligned and distance > tolerance - 1e-9 and alignment.only_pair is not None:
            track.notes.append(f"{when} by lobe and size only: the only pair of nodules of the two studies in the "
                               "same lobe with compatible sizes (different frames of reference, nothing to align "
                               "them with)")
        elif alignment.unaligned:
            track.notes.append(f"{when} by position and size without registration: {distance:.1f} mm apart in "
                               f"patient coordinates (tolerance {tolerance:.1f} mm; the studies have different "
                               "frames of reference and nothing to align them with)")
        else:
            track.notes.append(f"{when} by position and size: {distance:.1f} mm apart (tolerance {tolerance:.1f} mm) "
                               f"after alignment by {alignment.method}")
        for key in involved:
            del pairs[key]

    result: list[tuple[NoduleObservation, _Track | None]] = []
    has_open = any(not t.on(study_uid) for t in tracks)
    for oi, observation in enumerate(observations):
        if oi in links:
            result.append((observation, open_tracks[links[oi]]))
            continue
        if observation.position is None and not observation.tracking_uid and has_open:
            notes.append(IngestionNote(
                NoteSeverity.INFO, NoteCode.MISSING_VALUE, observation.source.reference,
                f"nodule ({_describe(observation)}) has neither a tracking UID nor a position: it cannot be "
                "linked to earlier studies and starts a new track"))
        result.append((observation, None))
    return result


def _compatible(a: NoduleObservation, b: NoduleObservation) -> bool:
    if a.lobe is not None and b.lobe is not None and a.lobe != b.lobe:
        return False
    size_a, size_b = _size_mm(a), _size_mm(b)
    if size_a is None or size_b is None:
        return True
    return SIZE_RATIO_MIN * size_a - SIZE_SLACK_MM <= size_b <= SIZE_RATIO_MAX * size_a + SIZE_SLACK_MM


def _tolerance_mm(a: NoduleObservation, b: NoduleObservation, *, unaligned: bool = False) -> float:
    base = UNALIGNED_MATCH_DISTANCE_MM if unaligned else MATCH_DISTANCE_MM
    return base + MATCH_DISTANCE_PER_DIAMETER * max(_size_mm(a) or 0.0, _size_mm(b) or 0.0)


def _size_mm(o: NoduleObservation) -> float | None:
    if o.longest_diameter_mm is not None:
        return o.longest_diameter_mm
    if o.volume_mm3 is not None:
        return float((6.0 * o.volume_mm3 / math.pi) ** (1.0 / 3.0))
    return None


def _xyz(o: NoduleObservation) -> np.ndarray:
    assert o.position is not None
    return np.array([o.position.x_mm, o.position.y_mm, o.position.z_mm])


# --- Finishing: status, growth, ids ---------------------------------------------------------------------------
def _finish(track: _Track, latest_study: str | None, n_studies: int, notes: list[IngestionNote]) -> NoduleTrack:
    observations = sorted(track.observations, key=lambda o: (o.study_date, o.study_instance_uid))
    if n_studies <= 1:
        status = TrackStatus.BASELINE
    elif observations[-1].study_instance_uid == latest_study:
        status = TrackStatus.NEW if len(observations) == 1 else TrackStatus.PERSISTENT
    else:
        status = TrackStatus.RESOLVED
    if len(observations) == 1:
        linkage = TrackLinkage.SINGLE
    elif track.position_linked:
        linkage = TrackLinkage.POSITION_AND_SIZE
    else:
        linkage = TrackLinkage.TRACKING_UID
    growth, growth_note = _growth(observations)
    track_notes = list(track.notes)
    if growth_note:
        track_notes.append(growth_note)
    track_id = next((o.tracking_uid for o in observations if o.tracking_uid), None) or _local_id(observations[0])
    if growth_note and len(observations) > 1:
        notes.append(IngestionNote(NoteSeverity.INFO, NoteCode.MISSING_VALUE, observations[-1].source.reference,
                                   f"track {track_id}: {growth_note}"))
    return NoduleTrack(track_id=track_id, observations=tuple(observations), status=status, linkage=linkage,
                       growth=growth, notes=tuple(track_notes))


def _growth(observations: list[NoduleObservation]) -> tuple[GrowthResult | None, str | None]:
    if len(observations) < 2:
        return None, None
    last = observations[-1]
    earlier = next((o for o in reversed(observations[:-1]) if o.study_date < last.study_date), None)
    if earlier is None:
        return None, "growth not computed: every observation has the same study date"
    interval = (last.study_date - earlier.study_date).days
    pair = _volumes(earlier, last)
    if pair is None:
        return None, "growth not computed: the two latest observations share no size measure"
    v1, v2, method = pair
    return assess_growth(v1, v2, interval, method), None


def _volumes(a: NoduleObservation, b: NoduleObservation) -> tuple[float, float, VolumeMethod] | None:
    if a.volume_mm3 is not None and b.volume_mm3 is not None:
        return a.volume_mm3, b.volume_mm3, VolumeMethod.MEASURED
    if None not in (a.long_axis_mm, a.short_axis_mm, b.long_axis_mm, b.short_axis_mm):
        assert a.long_axis_mm and a.short_axis_mm and b.long_axis_mm and b.short_axis_mm
        return (ellipsoid_volume_mm3(a.long_axis_mm, a.short_axis_mm, a.short_axis_mm),
                ellipsoid_volume_mm3(b.long_axis_mm, b.short_axis_mm, b.short_axis_mm), VolumeMethod.ELLIPSOID_2_AXES)
    da, db = a.longest_diameter_mm, b.longest_diameter_mm
    if da is not None and db is not None:
        return sphere_volume_mm3(da), sphere_volume_mm3(db), VolumeMethod.SPHERE
    return None


def _local_id(first: NoduleObservation) -> str:
    """A stable id for a track without a tracking UID: from its first observation's source and location."""
    where = first.position
    key = "|".join([first.source.reference, first.study_instance_uid, str(first.tracking_identifier),
                    f"{where.x_mm:.1f},{where.y_mm:.1f},{where.z_mm:.1f}" if where else "-",
                    f"{_size_mm(first) or 0:.2f}", str(first.lobe)])
    return "local-" + hashlib.sha256(key.encode()).hexdigest()[:20]


def _describe(o: NoduleObservation) -> str:
    size = _size_mm(o)
    parts = [f"{size:.1f} mm" if size is not None else "size unknown"]
    if o.lobe is not None:
        parts.append(o.lobe.value)
    if o.tracking_identifier:
        parts.append(repr(o.tracking_identifier))
    return ", ".join(parts)
