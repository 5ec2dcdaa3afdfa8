#!/usr/bin/env python3
"""Does the cross-fade detector mistake another scanner's look for re-sampling? VALIDATION patients only.

Each frame is first given the look of another reconstruction: enlarged in-plane (bilinear, bicubic, or by
zero-filling k-space, as many scanners reconstruct cines on a finer grid than they acquire), smoothed,
given noise, another contrast (gamma) or a coil's shading, or shrunk. Then every other slice is kept, as in an evaluation, once as acquired and once
after a linear re-sampling along z to 0.8 of the spacing. Printed per look: the mean trust (1: acquired,
0: re-sampled; ``LatentSRLib/synthesize/crossfade.py``) and its minimum over the acquired stacks, and the
mean trust on the re-sampled ones. An acquired stack should keep trust 1 whatever its look, a
re-sampled one trust 0.

    .venv/bin/python benchmarks/crossfade_appearance.py [--weights runs/crossfade.pt] \\
        ../shared/data/acdc_fullfov/patient{001,002,010,020,030,040,043,050,060,093}

Results: Resources/Models/crossfade.md, "Other scanners' looks".
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
from scipy import ndimage

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from LatentSRLib.intensity import normalise  # noqa: E402
from LatentSRLib.interpolate import resample_along_slices  # noqa: E402
from LatentSRLib.synthesize.crossfade import resampling_trust  # noqa: E402
from LatentSRLib.bandlimit import zero_fill  # noqa: E402
from LatentSRLib.volume import find_images, read  # noqa: E402


def shading(shape: tuple) -> np.ndarray:
    """A smooth multiplicative field from 0.7 to 1.3 across the image (a surface coil's sensitivity)."""
    y, x = np.mgrid[:shape[1], :shape[2]]
    return (1.0 + 0.3 * np.cos(np.pi * y / shape[1]) * np.cos(0.5 * np.pi * x / shape[2]))[None].astype(np.float32)


def looks(rng: np.random.Generator) -> dict:
    """In-plane transforms of a (Z, Y, X) frame, by name."""
    def noisy(image: np.ndarray, sigma: float) -> np.ndarray:
        return image + rng.normal(0, sigma, image.shape)

    return {
        "as acquired": lambda s: s,
        "enlarged 1.25x, bicubic": lambda s: ndimage.zoom(s, (1, 1.25, 1.25), order=3),
        "enlarged 1.5x, bilinear": lambda s: ndimage.zoom(s, (1, 1.5, 1.5), order=1),
        "enlarged 2x, bicubic": lambda s: ndimage.zoom(s, (1, 2, 2), order=3),
        "enlarged 1.25x, zero-filled": lambda s: zero_fill(s, 1.25),
        "enlarged 1.5x, zero-filled": lambda s: zero_fill(s, 1.5),
        "enlarged 2x, zero-filled": lambda s: zero_fill(s, 2.0),
        "enlarged 2x, zero-filled, noise 3 %": lambda s: noisy(zero_fill(s, 2.0), 0.03 * np.percentile(s, 99)),
        "smoothed, 0.7 px": lambda s: ndimage.gaussian_filter(s, (0, 0.7, 0.7)),
        "noise, 1.5 % of the 99th percentile": lambda s: noisy(s, 0.015 * np.percentile(s, 99)),
        "noise, 3 % of the 99th percentile": lambda s: noisy(s, 0.03 * np.percentile(s, 99)),
        "contrast, gamma 0.7": lambda s: np.maximum(s, 0) ** 0.7,
        "contrast, gamma 1.5": lambda s: np.maximum(s, 0) ** 1.5,
        "coil shading, +-30 % across the image": lambda s: s * shading(s.shape),
        "shrunk to 0.75": lambda s: ndimage.zoom(ndimage.gaussian_filter(s, (0, 0.5, 0.5)), (1, 0.75, 0.75), order=1),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("paths", nargs="+")
    parser.add_argument("--weights", help="detector weights (default: the bundled one)")
    args = parser.parse_args()
    frames = [frame.astype(np.float32) for path in find_images(args.paths) for frame in read(path).array]
    print(f"{len(frames)} stacks | look | acquired: mean trust (min) | re-sampled 0.8: mean trust |")
    for name, look in looks(np.random.default_rng(0)).items():
        acquired, resampled = [], []
        for frame in frames:
            stack = normalise(look(frame), clip=True)[0].astype(np.float32)
            acquired.append(resampling_trust(stack[::2], args.weights))
            resampled.append(resampling_trust(resample_along_slices(stack, 0.8)[::2], args.weights))
        print(f"| {name} | {np.mean(acquired):.2f} ({np.min(acquired):.2f}) | {np.mean(resampled):.2f} |", flush=True)


if __name__ == "__main__":
    main()
