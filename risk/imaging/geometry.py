"""Image geometry: image (SCOORD) coordinates to patient (SCOORD3D) coordinates, and the slice at a point.

A SCOORD in an SR is in image coordinates of one referenced image: (column, row), with (0.0, 0.0) at the
top-left corner of the top-left pixel and the pixel centre at (0.5, 0.5) (PS3.3 C.18.6.1.1). It is mapped to
the patient coordinate system of the image's frame of reference with the image's Image Position (Patient),
Image Orientation (Patient) and Pixel Spacing (PS3.3 C.7.6.2.1.1), by highdicom's
``ImageToReferenceTransformer`` (same convention).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np

SLICE_MATCH_TOLERANCE_MM = 5.0
"""A point belongs to the nearest slice only if it lies within this distance of the slice's plane (or within
the slice thickness when that is larger): a point outside every slice has no key image."""


@dataclass(frozen=True, slots=True)
class ImageGeometry:
    """Where one image (one frame of a single-frame CT) lies in its frame of reference."""

    study_instance_uid: str
    series_instance_uid: str
    sop_instance_uid: str
    frame_of_reference_uid: str
    image_position_mm: tuple[float, float, float]
    image_orientation: tuple[float, float, float, float, float, float]
    pixel_spacing_mm: tuple[float, float]
    """(row spacing, column spacing), as in Pixel Spacing (0028,0030)."""
    slice_thickness_mm: float | None = None

    def __post_init__(self) -> None:
        values = (*self.image_position_mm, *self.image_orientation, *self.pixel_spacing_mm)
        if not all(math.isfinite(v) for v in values):
            raise ValueError('Arguments "image_position_mm", "image_orientation" and "pixel_spacing_mm" '
                             "must be finite.")
        if min(self.pixel_spacing_mm) <= 0:
            raise ValueError(f'Argument "pixel_spacing_mm" must be positive, got {self.pixel_spacing_mm!r}.')
        row, col = np.array(self.image_orientation[:3]), np.array(self.image_orientation[3:])
        if abs(np.linalg.norm(row) - 1) > 0.01 or abs(np.linalg.norm(col) - 1) > 0.01 or abs(row @ col) > 0.01:
            raise ValueError(f'Argument "image_orientation" must be two orthonormal vectors, '
                             f"got {self.image_orientation!r}.")

    @property
    def normal(self) -> np.ndarray:
        return np.cross(np.array(self.image_orientation[:3]), np.array(self.image_orientation[3:]))

    def to_patient(self, image_points: np.ndarray) -> np.ndarray:
        """(n, 2) image coordinates (column, row) → (n, 3) patient coordinates in mm."""
        from highdicom.spatial import ImageToReferenceTransformer

        transformer = ImageToReferenceTransformer(
            image_position=self.image_position_mm, image_orientation=self.image_orientation,
            pixel_spacing=self.pixel_spacing_mm,
        )
        return np.asarray(transformer(np.asarray(image_points, dtype=float).reshape(-1, 2)), dtype=float)

    def distance_to_plane_mm(self, point: Sequence[float]) -> float:
        return float(abs((np.asarray(point, dtype=float) - np.array(self.image_position_mm)) @ self.normal))

    @classmethod
    def from_dataset(cls, dataset: Any, *, study_instance_uid: str | None = None,
                     series_instance_uid: str | None = None) -> ImageGeometry:
        """From a CT instance or its WADO-RS metadata (single-frame images only).

        Raises ``ValueError`` naming the missing or malformed attribute.
        """
        for keyword in ("SOPInstanceUID", "FrameOfReferenceUID", "ImagePositionPatient", "ImageOrientationPatient",
                        "PixelSpacing"):
            if keyword not in dataset or dataset.get(keyword) in (None, ""):
                raise ValueError(f'Image {dataset.get("SOPInstanceUID", "?")} has no "{keyword}".')
        ipp = [float(v) for v in dataset.ImagePositionPatient]
        iop = [float(v) for v in dataset.ImageOrientationPatient]
        spacing = [float(v) for v in dataset.PixelSpacing]
        if len(ipp) != 3 or len(iop) != 6 or len(spacing) != 2:
            raise ValueError(f"Image {dataset.SOPInstanceUID} has malformed geometry attributes.")
        thickness = dataset.get("SliceThickness")
        return cls(
            study_instance_uid=str(study_instance_uid or dataset.get("StudyInstanceUID", "")),
            series_instance_uid=str(series_instance_uid or dataset.get("SeriesInstanceUID", "")),
            sop_instance_uid=str(dataset.SOPInstanceUID),
            frame_of_reference_uid=str(dataset.FrameOfReferenceUID),
            image_position_mm=(ipp[0], ipp[1], ipp[2]),
            image_orientation=(iop[0], iop[1], iop[2], iop[3], iop[4], iop[5]),
            pixel_spacing_mm=(spacing[0], spacing[1]),
            slice_thickness_mm=float(thickness) if thickness not in (None, "") else None,
        )


def nearest_slice(slices: Sequence[ImageGeometry], point: Sequence[float],
                  frame_of_reference_uid: str) -> ImageGeometry | None:
    """The slice of ``frame_of_reference_uid`` whose plane is nearest to ``point`` (None if none is close)."""
    best: tuple[float, ImageGeometry] | None = None
    for geometry in slices:
        if geometry.frame_of_reference_uid != frame_of_reference_uid:
            continue
        distance = geometry.distance_to_plane_mm(point)
        if best is None or distance < best[0]:
            best = (distance, geometry)
    if best is None:
        return None
    limit = max(SLICE_MATCH_TOLERANCE_MM, best[1].slice_thickness_mm or 0.0)
    return best[1] if best[0] <= limit else None


class GeometrySource(Protocol):
    """What the SR parser needs from the PACS to place SCOORD regions and find key images."""

    def image(self, sop_instance_uid: str) -> ImageGeometry | None:
        """The geometry of one referenced image (None when it cannot be had; the reason is noted by the source)."""
        ...

    def slices(self, frame_of_reference_uid: str) -> Sequence[ImageGeometry]:
        """Every image of the SR's evidence series in that frame of reference (may be empty)."""
        ...


class StaticGeometry:
    """A :class:`GeometrySource` over images already at hand (tests, and SRs parsed next to their CT)."""

    def __init__(self, images: Sequence[ImageGeometry]) -> None:
        self._by_uid = {g.sop_instance_uid: g for g in images}

    def image(self, sop_instance_uid: str) -> ImageGeometry | None:
        return self._by_uid.get(sop_instance_uid)

    def slices(self, frame_of_reference_uid: str) -> Sequence[ImageGeometry]:
        return [g for g in self._by_uid.values() if g.frame_of_reference_uid == frame_of_reference_uid]

    @classmethod
    def from_datasets(cls, datasets: Sequence[Any]) -> StaticGeometry:
        return cls([ImageGeometry.from_dataset(d) for d in datasets])
