"""Image geometry: the SCOORD convention (pixel centre at 0.5), validation, the slice through a point."""

from __future__ import annotations

import numpy as np
import pytest
from pydicom.dataset import Dataset

from risk.imaging.geometry import ImageGeometry, StaticGeometry, nearest_slice

AXIAL = ImageGeometry("1.2.3", "1.2.3.4", "1.2.3.4.5", "F", (-100.0, -50.0, 20.0), (1, 0, 0, 0, 1, 0), (0.5, 0.7), 1.25)


def test_scoord_image_coordinates_to_patient() -> None:
    points = AXIAL.to_patient(np.array([[0.5, 0.5], [1.5, 0.5], [0.5, 1.5], [0.0, 0.0]]))
    # (column, row): columns step along x by the column spacing (0.7), rows along y by the row spacing (0.5)
    expected = [[-100.0, -50.0, 20.0], [-99.3, -50.0, 20.0], [-100.0, -49.5, 20.0], [-100.35, -50.25, 20.0]]
    assert np.allclose(points, expected)


def test_oblique_orientation_is_honoured() -> None:
    sagittal = ImageGeometry("1", "2", "3", "F", (0.0, 0.0, 0.0), (0, 1, 0, 0, 0, -1), (1.0, 1.0))
    assert sagittal.to_patient(np.array([[10.5, 4.5]]))[0].tolist() == pytest.approx([0.0, 10.0, -4.0])
    assert sagittal.distance_to_plane_mm((3.0, 50.0, 50.0)) == pytest.approx(3.0)


def test_validation_names_the_problem() -> None:
    with pytest.raises(ValueError, match="pixel_spacing_mm"):
        ImageGeometry("1", "2", "3", "F", (0.0, 0.0, 0.0), (1, 0, 0, 0, 1, 0), (0.0, 1.0))
    with pytest.raises(ValueError, match="orthonormal"):
        ImageGeometry("1", "2", "3", "F", (0.0, 0.0, 0.0), (1, 0, 0, 1, 0, 0), (1.0, 1.0))
    ds = Dataset()
    ds.SOPInstanceUID, ds.FrameOfReferenceUID, ds.ImagePositionPatient = "1.2", "1.2.3", [0, 0, 0]
    ds.ImageOrientationPatient = [1, 0, 0, 0, 1, 0]
    with pytest.raises(ValueError, match="PixelSpacing"):
        ImageGeometry.from_dataset(ds)


def test_nearest_slice_within_tolerance_and_frame() -> None:
    slices = [ImageGeometry("1", "2", f"3.{k}", "F", (0.0, 0.0, 2.5 * k), (1, 0, 0, 0, 1, 0), (1.0, 1.0), 2.5)
              for k in range(10)]
    found = nearest_slice(slices, (5.0, 5.0, 11.0), "F")
    assert found is not None and found.sop_instance_uid == "3.4"
    assert nearest_slice(slices, (5.0, 5.0, 40.0), "F") is None  # 17.5 mm beyond the last slice
    assert nearest_slice(slices, (5.0, 5.0, 11.0), "G") is None  # another frame of reference
    assert StaticGeometry(slices).image("3.2") is slices[2]
