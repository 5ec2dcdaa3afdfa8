#!/usr/bin/env python3
"""Does a fourth and a fifth slice help the motion? Quadratic motion trajectories on VALIDATION patients.

``flow`` moves each neighbour to the new slice along a straight line (constant in-plane velocity from
slice to slice). With the next slices out on both sides (four neighbours instead of two), the motion
can follow a parabola instead, as quadratic video interpolation does (Xu et al., NeurIPS 2019): with
the flows from A to B and from A to A' (the slice beyond A), the acceleration at A is
a = F_AB + F_AA', and the position at t moves by -a t (1 - t) / 2 against the straight line (the same
at B). ``lambda`` scales that correction (0: ``flow``'s straight lines). Flows are the ``flow``
method's (DIS + fine Farneback, per-pixel confidence; no scan gates), at t = 1/2, the protocol's
every-other-slice drop, centre crops as in ``latentsr evaluate``. The extra flows cost nothing in use:
they are the neighbouring pairs' own.

    .venv/bin/python benchmarks/four_neighbours.py ../shared/data/acdc_fullfov/patient{043,093}
    .venv/bin/python benchmarks/four_neighbours.py --zoom 0.5 \\
        ../shared/data/acdc_fullfov/patient{001,002,010,020,030,040,043,050,060,093}

Prints each lambda's mean SSIM and PSNR against lambda = 0. Never run it on the test patients to choose
anything. Measured results: Resources/Models/motion.md, "Limits".
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from LatentSRLib.evaluate import CROP, protocol_case  # noqa: E402
from LatentSRLib.interpolate import shrink_in_plane  # noqa: E402
from LatentSRLib.metrics import centre_crop, psnr, ssim  # noqa: E402
from LatentSRLib.methods.flow import blend  # noqa: E402
from LatentSRLib.opticalflow import FARNEBACK_FINE, agreement, estimate_flows, warp  # noqa: E402
from LatentSRLib.volume import find_images, read  # noqa: E402

LAMBDAS = (0.0, 0.25, 0.5, 0.75, 1.0)


def quadratic_midway(a, b, flows, outer_a, outer_b, strength: float, t: float = 0.5) -> np.ndarray:
    """``flow``'s image at t (per-pixel confidence toward linear) with the trajectories bent by
    ``strength`` x the quadratic correction; ``outer_a`` / ``outer_b``: flows from A to the slice beyond
    it and from B to the slice beyond it (None at the ends of the stack: straight lines there)."""
    blends = {}
    for name, (f_ab, f_ba) in flows.items():
        bend_a = (f_ab + outer_a[name][0]) if outer_a is not None else np.zeros_like(f_ab)
        bend_b = (f_ba + outer_b[name][0]) if outer_b is not None else np.zeros_like(f_ba)
        from_a = warp(a, t * f_ba + strength * bend_a * t * (1 - t) / 2)
        from_b = warp(b, (1 - t) * f_ab + strength * bend_b * t * (1 - t) / 2)
        blends[name] = (1 - t) * from_a + t * from_b
    parts = {"linear": (1 - t) * a + t * b, "flow": 0.5 * (blends["dis"] + blends["farneback"]),
             "confidence": agreement(blends["dis"], blends["farneback"])}
    return blend(parts, 1.0)[0]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("paths", nargs="+")
    parser.add_argument("--zoom", type=float, help="shrink each scan in-plane to this fraction first")
    args = parser.parse_args()
    scores: dict[float, list] = {lam: [] for lam in LAMBDAS}
    for path in find_images(args.paths):
        volume = read(path)
        if args.zoom:
            x, y, z = volume.spacing
            volume = volume.with_array(shrink_in_plane(volume.array[0], args.zoom)[None], (x / args.zoom, y / args.zoom, z))
        case = protocol_case(Path(path).name, volume, content_rule=True)
        truth, flows = case.truth, {}

        def between(i, j):
            if (i, j) not in flows:
                flows[(i, j)] = estimate_flows(truth[i], truth[j], FARNEBACK_FINE)
            return flows[(i, j)]

        for j in case.scored:
            outer_a = between(j - 1, j - 3) if j >= 3 else None
            outer_b = between(j + 1, j + 3) if j + 3 < len(truth) else None
            for lam in LAMBDAS:
                image = quadratic_midway(truth[j - 1], truth[j + 1], between(j - 1, j + 1), outer_a, outer_b, lam)
                ref, test = centre_crop(truth[j], CROP), centre_crop(image, CROP)
                scores[lam].append((ssim(ref, test), min(psnr(ref, test), 60.0)))
    base = np.mean(scores[0.0], 0)
    print(f"{len(scores[0.0])} slices | lambda | SSIM | PSNR (dB) | vs straight lines |")
    for lam, values in scores.items():
        mean = np.mean(values, 0)
        print(f"| {lam:.2f} | {mean[0]:.4f} | {mean[1]:.2f} | {mean[0] - base[0]:+.4f} / {mean[1] - base[1]:+.3f} dB |")


if __name__ == "__main__":
    main()
