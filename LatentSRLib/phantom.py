"""A synthetic beating-heart cine at cardiac MRI geometry, with its thin-slice truth.

The embedded default of ``latentsr demo`` and the data of the unit tests. An analytic scene in mm
(torso, lungs, spine, vessels, a left ventricle tapering to its apex with papillary muscles and
trabeculae, a right ventricle crescent, myocardium) is sampled on a fine through-plane grid (the
truth) and every ``factor``-th slice of it is the "acquired" short-axis stack, as in the drop-slice
protocol, so any method's output can be scored against the truth.
"""

from __future__ import annotations

import dataclasses

import numpy as np
from scipy import ndimage

from .volume import Volume


@dataclasses.dataclass
class PhantomCine:
    """``acquired``: the anisotropic cine; ``truth``: the same scene at ``factor`` times finer slices."""

    acquired: Volume
    truth: Volume
    factor: int


def _heart(x: np.ndarray, y: np.ndarray, z: np.ndarray, phase: float, rng_offsets: np.ndarray) -> np.ndarray:
    """Intensities of the scene at positions (mm) for a cardiac phase in [0, 1)."""
    # Contraction: 1 at end-diastole (phase 0), about 0.7 at end-systole (phase ~0.35).
    squeeze = 1.0 - 0.3 * np.sin(np.pi * min(phase / 0.7, 1.0)) ** 2
    image = np.zeros(np.broadcast(x, y, z).shape, np.float32)
    torso = (x / 150) ** 2 + (y / 105) ** 2 < 1
    image[torso] = 0.28                                   # muscle and soft tissue
    fat = torso & ((x / 142) ** 2 + (y / 97) ** 2 >= 1)
    image[fat] = 0.85                                     # subcutaneous fat is bright in SSFP
    for side in (-1, 1):                                  # lungs: dark
        lung = ((x - side * 70) / 48) ** 2 + ((y + 5) / 70) ** 2 + (z / 140) ** 2 < 1
        image[lung] = 0.05
        for i, (dx, dy) in enumerate(rng_offsets[:6]):    # pulmonary vessels: small bright tubes
            vessel = (x - side * 70 - dx) ** 2 + (y - dy) ** 2 < (2.0 + 0.2 * i) ** 2
            image[lung & vessel] = 0.55
    spine = (x / 14) ** 2 + ((y - 80) / 14) ** 2 < 1
    image[spine] = 0.45
    image[(x / 8) ** 2 + ((y - 80) / 8) ** 2 < 1] = 0.2   # the cord inside the vertebra
    aorta = (x + 25) ** 2 + (y - 55) ** 2 < 12 ** 2
    image[aorta] = 0.95

    # Left ventricle: an ellipsoid cavity tapering from base (z=-30) to apex (z=+45).
    taper = np.clip(1 - ((z + 30) / 75) ** 2, 0, None) ** 0.5
    cx, cy = 15.0, -10.0
    r_cav = 26 * squeeze * taper
    r_epi = r_cav + 10 + 3 * (1 - squeeze)                # the wall thickens as it contracts
    d = np.hypot((x - cx) / 1.0, (y - cy) / 0.9)
    angle = np.arctan2(y - cy, x - cx)
    heart_z = (z > -32) & (z < 47)
    myocardium = heart_z & (d < r_epi) & (taper > 0)
    image[myocardium] = 0.22
    cavity = heart_z & (d < r_cav * (1 + 0.06 * np.sin(7 * angle)))  # trabeculated endocardium
    image[cavity] = 0.92
    for a0 in (0.9, 2.3):                                 # papillary muscles: dark blobs in the blood
        px, py = cx + 0.6 * r_cav * np.cos(a0), cy + 0.6 * r_cav * np.sin(a0)
        image[cavity & (np.hypot(x - px, y - py) < 4.5 * taper + 0.5)] = 0.25
    # Right ventricle: a crescent wrapped around the septum, shorter than the LV.
    rv_taper = np.clip(1 - ((z + 25) / 55) ** 2, 0, None) ** 0.5
    rv = heart_z & (np.hypot((x - cx + 30) / 1.25, (y - cy + 6)) < (30 * squeeze + 4) * rv_taper)
    rv &= ~(d < r_epi)
    image[rv] = 0.88
    rv_wall = heart_z & ~rv & ~(d < r_epi) & (np.hypot((x - cx + 30) / 1.25, (y - cy + 6)) < (30 * squeeze + 7) * rv_taper)
    image[rv_wall] = 0.25
    return image


def cine(frames: int = 20, slices: int = 10, slice_spacing: float = 10.0, pixel_size: float = 1.4,
         size: int = 128, factor: int = 5, noise: float = 0.01, seed: int = 0) -> PhantomCine:
    """A 4D short-axis cine and its truth at ``factor`` times finer slice spacing.

    Args:
        frames: cardiac phases (time points), evenly over one beat.
        slices: acquired slices; slice_spacing: mm between them.
        pixel_size: in-plane mm; size: in-plane pixels (square).
        factor: truth slices per acquired slice gap.
        noise: standard deviation of Gaussian noise (intensities are in [0, 1]).
    """
    rng = np.random.default_rng(seed)
    offsets = rng.uniform(-30, 30, size=(8, 2))
    n_truth = (slices - 1) * factor + 1
    dz = slice_spacing / factor
    z = (np.arange(n_truth) - (n_truth - 1) / 2) * dz
    c = (np.arange(size) - (size - 1) / 2) * pixel_size
    zz, yy, xx = np.meshgrid(z, c, c, indexing="ij")
    truth = np.empty((frames, n_truth, size, size), np.float32)
    for t in range(frames):
        scene = _heart(xx, yy, zz, t / frames, offsets)
        # Partial volume of the in-plane point-spread function, then scanner noise.
        scene = ndimage.gaussian_filter(scene, sigma=(0.0, 0.6, 0.6))
        truth[t] = np.clip(scene + rng.normal(0, noise, scene.shape), 0, 1)
    origin = (-c[-1], -c[-1], float(z[0]))
    truth_volume = Volume(truth, (pixel_size, pixel_size, dz), origin, np.eye(3), np.float32,
                          time_spacing=1.0 / frames, is_4d=True)
    acquired = truth_volume.with_array(truth[:, ::factor].copy(), (pixel_size, pixel_size, slice_spacing))
    return PhantomCine(acquired, truth_volume, factor)
