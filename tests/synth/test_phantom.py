"""The chest phantom: lobes, nodule placement and partial-volume rendering put the right amount of nodule in the
right place."""

from __future__ import annotations

import numpy as np
import pytest

from risk.synth import phantom as P


def test_geometries_cover_the_same_chest() -> None:
    for m, g in P.GEOMETRIES.items():
        assert g.matrix == m
        assert g.pixel_spacing_mm * m == pytest.approx(P.FOV_MM)
        assert g.slice_thickness_mm * g.n_slices == pytest.approx(P.Z_EXTENT_MM)
        z = g.slice_z_mm()
        assert z[0] > z[-1]  # instance 1 is the most cranial slice
        assert z.max() < P.Z_MIN_MM + P.Z_EXTENT_MM and z.min() > P.Z_MIN_MM


def test_lobes_partition_each_lung_with_upper_lobes_on_top() -> None:
    rng = np.random.default_rng(0)
    pts = rng.uniform([-140, -90, -120], [140, 95, 150], (200_000, 3))
    inside = P.inside_lung(pts[:, 0], pts[:, 1], pts[:, 2])
    pts = pts[inside]
    lobe = P.lobe_of(pts[:, 0], pts[:, 1], pts[:, 2])
    share = np.bincount(lobe, minlength=5) / len(lobe)
    assert np.all(share > 0.05)  # every lobe exists
    assert np.all(pts[lobe <= P.RLL, 0] < 0) and np.all(pts[lobe >= P.LUL, 0] > 0)
    for upper, lower in ((P.RUL, P.RLL), (P.LUL, P.LLL)):
        assert pts[lobe == upper, 2].mean() > pts[lobe == lower, 2].mean() + 40


def test_sampled_positions_respect_lobe_and_margin() -> None:
    rng = np.random.default_rng(1)
    lobes = rng.integers(0, 5, 500)
    radius = rng.uniform(1, 20, 500)
    c = P.sample_positions(rng, lobes, radius)
    assert np.array_equal(P.lobe_of(c[:, 0], c[:, 1], c[:, 2]), lobes)
    assert np.all(P.inside_lung(c[:, 0], c[:, 1], c[:, 2], margin_mm=radius + 2.9))


@pytest.mark.parametrize("matrix", [64, 128])
@pytest.mark.parametrize(("core", "hu"), [(1.0, P.HU_SOLID_NODULE), (0.0, P.HU_GROUND_GLASS)])
def test_rendered_nodule_has_its_volume_and_centre(matrix: int, core: float, hu: float) -> None:
    g = P.GEOMETRIES[matrix]
    centre = (-80.3, 10.7, 40.2)
    semi = (5.0, 4.0, 4.5)
    offset = (1.5, -2.0, 3.0)
    with_nodule = P.render_volume(g, offset, [P.RenderedNodule(centre, semi, core)], 0.0, np.random.default_rng(0))
    without = P.render_volume(g, offset, [], 0.0, np.random.default_rng(0))
    excess = with_nodule.astype(float) - without.astype(float)
    assert excess.min() >= -0.5  # the nodule only adds attenuation to lung
    voxel_mm3 = g.pixel_spacing_mm ** 2 * g.slice_thickness_mm
    volume = excess.sum() * voxel_mm3 / (hu - P.HU_LUNG)
    assert volume == pytest.approx(np.pi * 4 / 3 * np.prod(semi), rel=0.03)
    k, r, c = np.indices(excess.shape)
    coords = g.x0_mm + np.arange(matrix) * g.pixel_spacing_mm
    w = excess / excess.sum()
    got = ((w * coords[c]).sum(), (w * coords[r]).sum(), (w * g.slice_z_mm()[k]).sum())
    voxel = (g.pixel_spacing_mm, g.pixel_spacing_mm, g.slice_thickness_mm)
    for axis in range(3):
        assert got[axis] == pytest.approx(centre[axis], abs=0.04 * voxel[axis])


def test_background_anatomy_and_noise() -> None:
    g = P.GEOMETRIES[128]
    stored = P.render_volume(g, (0.0, 0.0, 0.0), [], 30.0, np.random.default_rng(2))
    hu = stored.astype(float) + P.RESCALE_INTERCEPT
    k = g.n_slices // 2
    coords = g.x0_mm + np.arange(128) * g.pixel_spacing_mm
    col = lambda x: int(np.argmin(abs(coords - x)))  # noqa: E731
    lung = hu[k - 2:k + 3, col(-10) - 2:col(-10) + 3, col(-78) - 2:col(-78) + 3]
    assert lung.mean() == pytest.approx(P.HU_LUNG, abs=8)
    assert lung.std() == pytest.approx(30.0, rel=0.25)
    assert hu[k, 0, 0] == pytest.approx(P.HU_AIR, abs=130)  # corner: air (clipped at -1024)
    assert hu[k, col(95), col(0)] == pytest.approx(P.HU_BONE, abs=130)  # spine
