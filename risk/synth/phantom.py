"""A schematic chest phantom in DICOM patient coordinates (LPS, mm) and its CT rendering.

Anatomy (all in mm; +x = patient left, +y = posterior, +z = head): air outside (−1000 HU); an elliptic-cylinder
body (soft tissue +40 HU) with a 12 mm subcutaneous fat ring (−100 HU); a vertebral body (+600 HU); two lung
ellipsoids (parenchyma −850 HU). Lobes are schematic: in each lung an oblique plane separates the upper (and, on
the right, middle) lobe from the lower lobe, and on the right a horizontal plane separates the upper from the
middle lobe. Nodules are ellipsoids: solid +30 HU, non-solid (ground glass) −550 HU, part-solid a −550 HU shell
around a +30 HU core. Each voxel gets its partial-volume share (supersampled occupancy), so a nodule of known size
lies exactly where the ground truth and the SR say, whatever the matrix; then Gaussian noise with the kernel's
standard deviation is added.

The geometry does not depend on the matrix: ``--ct-matrix 64`` (5.5 mm pixels, 7.5 mm slices, 40 slices),
``128`` (2.7 mm, 3.75 mm, 80 slices) and ``512`` (0.68 mm, 1.25 mm, 240 slices) image the same anatomy.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

FOV_MM = 350.0
Z_MIN_MM = -150.0
Z_EXTENT_MM = 300.0

HU_AIR = -1000.0
HU_FAT = -100.0
HU_SOFT_TISSUE = 40.0
HU_BONE = 600.0
HU_LUNG = -850.0
HU_SOLID_NODULE = 30.0
HU_GROUND_GLASS = -550.0
RESCALE_INTERCEPT = -1024.0

BODY_SEMI_AXES_MM = (170.0, 125.0)
FAT_RING_MM = 12.0
SPINE_CENTRE_MM = (0.0, 95.0)
SPINE_RADIUS_MM = 18.0


@dataclass(frozen=True, slots=True)
class LungShape:
    centre_mm: tuple[float, float, float]
    semi_axes_mm: tuple[float, float, float]


RIGHT_LUNG = LungShape((-78.0, 5.0, 15.0), (58.0, 85.0, 130.0))
LEFT_LUNG = LungShape((78.0, 5.0, 15.0), (55.0, 82.0, 125.0))
LUNGS = (RIGHT_LUNG, LEFT_LUNG)

# Lobe indices follow risk.domain.Lobe / risk.codes.LOBES order.
RUL, RML, RLL, LUL, LLL = 0, 1, 2, 3, 4
LOBE_NAMES = ("RUL", "RML", "RLL", "LUL", "LLL")
_OBLIQUE_SLOPE = 0.6
_OBLIQUE_OFFSET = -0.25
_HORIZONTAL_FISSURE = 0.15


@dataclass(frozen=True, slots=True)
class Geometry:
    """Image grid of one CT series for a given matrix size."""

    matrix: int
    pixel_spacing_mm: float
    slice_thickness_mm: float
    n_slices: int

    @property
    def x0_mm(self) -> float:
        """x (= y) of the centre of the first pixel."""
        return -FOV_MM / 2 + self.pixel_spacing_mm / 2

    def slice_z_mm(self) -> npt.NDArray[np.float64]:
        """Slice centres from head to feet (instance 1 is the most cranial slice)."""
        k = np.arange(self.n_slices)
        return np.asarray(Z_MIN_MM + Z_EXTENT_MM - (k + 0.5) * self.slice_thickness_mm, dtype=np.float64)


GEOMETRIES = {
    64: Geometry(64, FOV_MM / 64, 7.5, 40),
    128: Geometry(128, FOV_MM / 128, 3.75, 80),
    512: Geometry(512, FOV_MM / 512, 1.25, 240),
}


def lobe_of(x: npt.NDArray[np.float64], y: npt.NDArray[np.float64],
            z: npt.NDArray[np.float64]) -> npt.NDArray[np.int64]:
    """Lobe index of anatomical points (x < 0 is the right lung); the point need not be inside a lung."""
    right = x < 0
    cy = np.where(right, RIGHT_LUNG.centre_mm[1], LEFT_LUNG.centre_mm[1])
    cz = np.where(right, RIGHT_LUNG.centre_mm[2], LEFT_LUNG.centre_mm[2])
    ay = np.where(right, RIGHT_LUNG.semi_axes_mm[1], LEFT_LUNG.semi_axes_mm[1])
    az = np.where(right, RIGHT_LUNG.semi_axes_mm[2], LEFT_LUNG.semi_axes_mm[2])
    yr = (y - cy) / ay
    zr = (z - cz) / az
    upper_side = zr - _OBLIQUE_SLOPE * yr > _OBLIQUE_OFFSET
    right_lobe = np.where(upper_side, np.where(zr > _HORIZONTAL_FISSURE, RUL, RML), RLL)
    left_lobe = np.where(upper_side, LUL, LLL)
    return np.asarray(np.where(right, right_lobe, left_lobe), dtype=np.int64)


def inside_lung(x: npt.NDArray[np.float64], y: npt.NDArray[np.float64], z: npt.NDArray[np.float64],
                margin_mm: npt.NDArray[np.float64] | float = 0.0) -> npt.NDArray[np.bool_]:
    """True where a point lies inside a lung ellipsoid shrunk by ``margin_mm`` on every axis."""
    out = np.zeros(np.broadcast(x, y, z).shape, dtype=bool)
    for lung in LUNGS:
        (cx, cy, cz), (ax, ay, az) = lung.centre_mm, lung.semi_axes_mm
        d = (((x - cx) / (ax - margin_mm)) ** 2 + ((y - cy) / (ay - margin_mm)) ** 2
             + ((z - cz) / (az - margin_mm)) ** 2)
        out |= d <= 1.0
    return out


def sample_positions(rng: np.random.Generator, lobes: npt.NDArray[np.int64],
                     radius_mm: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
    """Uniform random centres (n × 3, anatomical mm) inside the given lobes, ``radius_mm`` + 3 mm from the pleura.

    Rejection sampling in the lung's bounding box; deterministic for a given generator state.
    """
    n = len(lobes)
    out = np.zeros((n, 3))
    todo = np.arange(n)
    margin = np.minimum(radius_mm + 3.0, 40.0)
    for _ in range(200):
        if len(todo) == 0:
            break
        right = lobes[todo] <= RLL
        centre = np.where(right[:, None], np.array(RIGHT_LUNG.centre_mm), np.array(LEFT_LUNG.centre_mm))
        semi = np.where(right[:, None], np.array(RIGHT_LUNG.semi_axes_mm), np.array(LEFT_LUNG.semi_axes_mm))
        candidate = centre + (rng.random((len(todo), 3)) * 2 - 1) * semi
        x, y, z = candidate[:, 0], candidate[:, 1], candidate[:, 2]
        ok = inside_lung(x, y, z, margin[todo]) & (lobe_of(x, y, z) == lobes[todo])
        out[todo[ok]] = candidate[ok]
        todo = todo[~ok]
    if len(todo):
        raise RuntimeError(f"could not place {len(todo)} nodules inside their lobes")
    return out


@dataclass(frozen=True, slots=True)
class RenderedNodule:
    """A nodule as it appears on one study (patient coordinates, this study's frame of reference)."""

    centre_mm: tuple[float, float, float]
    semi_axes_mm: tuple[float, float, float]
    """Half of the x, y and z diameters."""
    core_fraction: float
    """Solid core size relative to the nodule (part-solid); 1 = solid, 0 = non-solid."""


def render_volume(geometry: Geometry, offset_mm: tuple[float, float, float], nodules: list[RenderedNodule],
                  noise_sd_hu: float, rng: np.random.Generator) -> npt.NDArray[np.uint16]:
    """Stored pixel values (HU − RescaleIntercept), shape (slices, rows, columns), rows along +y, columns +x.

    ``offset_mm`` shifts the whole phantom (patient positioning differs between studies); nodule centres are
    already in the study's patient coordinates.
    """
    m = geometry.matrix
    coords = np.asarray(geometry.x0_mm + np.arange(m) * geometry.pixel_spacing_mm, dtype=np.float64)
    z = geometry.slice_z_mm()
    ox, oy, oz = offset_mm
    xa = (coords - ox)[None, :]
    ya = (coords - oy)[:, None]
    bx, by = BODY_SEMI_AXES_MM
    body = (xa / bx) ** 2 + (ya / by) ** 2 <= 1.0
    inner = (xa / (bx - FAT_RING_MM)) ** 2 + (ya / (by - FAT_RING_MM)) ** 2 <= 1.0
    spine = (xa - SPINE_CENTRE_MM[0]) ** 2 + (ya - SPINE_CENTRE_MM[1]) ** 2 <= SPINE_RADIUS_MM ** 2
    base2d = np.full((m, m), HU_AIR, dtype=np.float32)
    base2d[body] = HU_FAT
    base2d[inner] = HU_SOFT_TISSUE
    base2d[spine] = HU_BONE
    vol = np.empty((geometry.n_slices, m, m), dtype=np.float32)
    for k, zk in enumerate(z - oz):
        sl = base2d.copy()
        for lung in LUNGS:
            (cx, cy, cz), (ax, ay, az) = lung.centre_mm, lung.semi_axes_mm
            zr = (zk - cz) / az
            if abs(zr) >= 1.0:
                continue
            s = np.sqrt(1.0 - zr * zr)
            sl[((xa - cx) / (ax * s)) ** 2 + ((ya - cy) / (ay * s)) ** 2 <= 1.0] = HU_LUNG
        vol[k] = sl
    for nodule in nodules:
        _add_nodule(vol, geometry, z, coords, nodule)
    noise = rng.standard_normal(vol.shape, dtype=np.float32)
    noise *= np.float32(noise_sd_hu)
    vol += noise
    vol -= np.float32(RESCALE_INTERCEPT)
    np.clip(vol, 0, 4095, out=vol)
    return np.rint(vol).astype(np.uint16)


def _add_nodule(vol: npt.NDArray[np.float32], geometry: Geometry, z: npt.NDArray[np.float64],
                coords: npt.NDArray[np.float64], nodule: RenderedNodule) -> None:
    cx, cy, cz = nodule.centre_mm
    ax, ay, az = nodule.semi_axes_mm
    dx, dz = geometry.pixel_spacing_mm, geometry.slice_thickness_mm
    cols = np.nonzero(np.abs(coords - cx) <= ax + dx)[0]
    rows = np.nonzero(np.abs(coords - cy) <= ay + dx)[0]
    slices = np.nonzero(np.abs(z - cz) <= az + dz)[0]
    if len(cols) == 0 or len(rows) == 0 or len(slices) == 0:
        return
    # Sub-samples per voxel edge: about 0.5 mm apart, at least 2, at most 10.
    s_xy = int(np.clip(np.ceil(dx / 0.5), 2, 10))
    s_z = int(np.clip(np.ceil(dz / 0.5), 2, 10))
    off_xy = ((np.arange(s_xy) + 0.5) / s_xy - 0.5) * dx
    off_z = ((np.arange(s_z) + 0.5) / s_z - 0.5) * dz
    px = (coords[cols][:, None] + off_xy[None, :]).ravel()  # (ncol * s)
    py = (coords[rows][:, None] + off_xy[None, :]).ravel()
    pz = (z[slices][:, None] + off_z[None, :]).ravel()
    rx = ((px - cx) / ax) ** 2
    ry = ((py - cy) / ay) ** 2
    rz = ((pz - cz) / az) ** 2
    r2 = rz[:, None, None] + ry[None, :, None] + rx[None, None, :]
    shape = (len(slices), s_z, len(rows), s_xy, len(cols), s_xy)
    outer = (r2 <= 1.0).reshape(shape).mean(axis=(1, 3, 5), dtype=np.float64)
    core_f = nodule.core_fraction
    if core_f >= 1.0:
        core = outer
    elif core_f <= 0.0:
        core = np.zeros_like(outer)
    else:
        core = (r2 <= core_f * core_f).reshape(shape).mean(axis=(1, 3, 5), dtype=np.float64)
    box = vol[np.ix_(slices, rows, cols)].astype(np.float64)
    shell = outer - core
    box = box * (1.0 - outer) + HU_GROUND_GLASS * shell + HU_SOLID_NODULE * core
    vol[np.ix_(slices, rows, cols)] = box.astype(np.float32)
