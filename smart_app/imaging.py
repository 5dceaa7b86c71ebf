"""Where the nodule is on its key image: a marker drawn over the PACS-rendered slice.

The key image is rendered by the PACS (WADO-RS rendered) and proxied by the app; the marker is the nodule's
centre (the SR's SCOORD3D, in patient coordinates) projected into that slice's pixel grid with the image's
Image Position/Orientation (Patient) and Pixel Spacing (PS3.3 C.7.6.2.1.1), as an SVG overlay. A centre that
does not lie on the slice (farther from its plane than the slice thickness, or 5 mm) gets no marker.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from risk.domain import NoduleObservation
from risk.imaging.geometry import SLICE_MATCH_TOLERANCE_MM, ImageGeometry

MIN_MARKER_RADIUS_PX = 3.0


@dataclass(frozen=True, slots=True)
class KeyImageMarker:
    """A circle around the nodule, in the rendered image's pixel coordinates (origin at the top-left corner)."""

    column: float
    row: float
    radius_px: float
    columns: int
    rows: int


def project(geometry: ImageGeometry, point_mm: tuple[float, float, float]) -> tuple[float, float, float]:
    """(column, row, distance from the plane in mm) of a patient-coordinate point; pixel centres are at +0.5."""
    d = np.asarray(point_mm, dtype=float) - np.asarray(geometry.image_position_mm, dtype=float)
    row_dir = np.asarray(geometry.image_orientation[:3], dtype=float)  # direction of increasing column index
    col_dir = np.asarray(geometry.image_orientation[3:], dtype=float)  # direction of increasing row index
    row_spacing, col_spacing = geometry.pixel_spacing_mm
    column = float(d @ row_dir) / col_spacing + 0.5
    row = float(d @ col_dir) / row_spacing + 0.5
    return column, row, abs(float(d @ geometry.normal))


def marker_for(observation: NoduleObservation, metadata: Any) -> KeyImageMarker | None:
    """The marker for ``observation`` on the image described by ``metadata`` (a pydicom Dataset), if it fits."""
    if observation.position is None:
        return None
    try:
        geometry = ImageGeometry.from_dataset(metadata)
        columns, rows = int(metadata.Columns), int(metadata.Rows)
    except (AttributeError, TypeError, ValueError):
        return None
    if geometry.frame_of_reference_uid != observation.position.frame_of_reference_uid:
        return None
    pos = observation.position
    column, row, off_plane = project(geometry, (pos.x_mm, pos.y_mm, pos.z_mm))
    if off_plane > max(SLICE_MATCH_TOLERANCE_MM, geometry.slice_thickness_mm or 0.0):
        return None
    if not (0 <= column <= columns and 0 <= row <= rows):
        return None
    size_mm = observation.longest_diameter_mm or 5.0
    radius = max(MIN_MARKER_RADIUS_PX, (size_mm / 2.0) / min(geometry.pixel_spacing_mm) + 2.0)
    return KeyImageMarker(column=column, row=row, radius_px=radius, columns=columns, rows=rows)
