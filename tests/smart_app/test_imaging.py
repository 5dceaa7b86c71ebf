"""The key-image marker: the nodule centre projected into the slice's pixel grid (PS3.3 C.7.6.2.1.1)."""

from __future__ import annotations

from datetime import date

import pytest
from pydicom.dataset import Dataset

from risk.domain import NoduleObservation, PatientPosition, dicom_ref
from smart_app.imaging import marker_for

FOR = "1.2.3.9"


def _slice(z: float = -100.0) -> Dataset:
    ds = Dataset()
    ds.SOPInstanceUID = "1.2.3.4.5"
    ds.FrameOfReferenceUID = FOR
    ds.ImagePositionPatient = [-160.0, -160.0, z]  # centre of the top-left pixel
    ds.ImageOrientationPatient = [1, 0, 0, 0, 1, 0]
    ds.PixelSpacing = [0.625, 0.5]  # row spacing (y), column spacing (x)
    ds.SliceThickness = 1.25
    ds.Rows, ds.Columns = 512, 640
    return ds


def _obs(x: float, y: float, z: float, frame: str = FOR) -> NoduleObservation:
    return NoduleObservation("1.2.3", date(2026, 1, 1), dicom_ref("1.2.3.7"), diameter_mm=8.0,
                             position=PatientPosition(x, y, z, frame))


def test_centre_projects_to_column_and_row() -> None:
    m = marker_for(_obs(-110.0, -135.0, -100.4), _slice())
    assert m is not None
    assert m.column == pytest.approx((-110 + 160) / 0.5 + 0.5)   # x along rows → column index
    assert m.row == pytest.approx((-135 + 160) / 0.625 + 0.5)    # y along columns → row index
    assert m.radius_px == pytest.approx(4.0 / 0.5 + 2.0)
    assert (m.columns, m.rows) == (640, 512)


def test_no_marker_off_the_slice_outside_the_image_or_in_another_frame() -> None:
    assert marker_for(_obs(-110.0, -135.0, -90.0), _slice()) is None      # 10 mm from the plane
    assert marker_for(_obs(500.0, -135.0, -100.0), _slice()) is None      # outside the pixel grid
    assert marker_for(_obs(-110.0, -135.0, -100.0, "9.9"), _slice()) is None
    bad = _slice()
    del bad.PixelSpacing
    assert marker_for(_obs(-110.0, -135.0, -100.0), bad) is None
