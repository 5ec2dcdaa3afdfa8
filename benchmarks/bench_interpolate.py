"""Time our through-plane interpolators against SimpleITK's Resample on the same output grid.

    OMP_NUM_THREADS=1 python benchmarks/bench_interpolate.py [--repeats 5] [--slices 10] [--size 256] [--factor 7]

A random smooth (Z, Y, X) = (10, 256, 256) float32 volume is upsampled by 7 along Z (64 slices).
Prints a markdown table of median wall times over the repeats and speed-ups (SimpleITK / ours),
plus the largest difference between the two results relative to the intensity range.
SimpleITK's Lanczos visits a 10x10x10 neighbourhood per output voxel and takes tens of seconds, so
it runs once regardless of --repeats.
"""

from __future__ import annotations

import argparse
import statistics
import time

import numpy as np
import SimpleITK as sitk
from scipy import ndimage

from LatentSRLib.interpolate import upsample

SITK = {"linear": sitk.sitkLinear, "bspline": sitk.sitkBSpline, "lanczos": sitk.sitkLanczosWindowedSinc}


def sitk_upsample(array: np.ndarray, factor: int, interpolator: int) -> np.ndarray:
    """sitk.Resample of a (Z, Y, X) array onto the grid with (Z - 1) * factor + 1 slices."""
    image = sitk.GetImageFromArray(array)
    image.SetSpacing((1.5, 1.5, 10.0))
    size = [array.shape[2], array.shape[1], (array.shape[0] - 1) * factor + 1]
    spacing = (1.5, 1.5, 10.0 / factor)
    out = sitk.Resample(image, size, sitk.Transform(), interpolator, image.GetOrigin(), spacing,
                        image.GetDirection(), 0.0, sitk.sitkFloat32)
    return sitk.GetArrayFromImage(out)


def timed(function, repeats: int) -> tuple[float, object]:
    times, result = [], None
    for _ in range(repeats):
        start = time.perf_counter()
        result = function()
        times.append(time.perf_counter() - start)
    return statistics.median(times), result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--slices", type=int, default=10)
    parser.add_argument("--size", type=int, default=256)
    parser.add_argument("--factor", type=int, default=7)
    args = parser.parse_args()

    rng = np.random.default_rng(0)
    volume = ndimage.gaussian_filter(rng.random((args.slices, args.size, args.size)), 2).astype(np.float32)
    value_range = float(np.ptp(volume))
    print(f"(Z, Y, X) = {volume.shape} float32, factor {args.factor}; SimpleITK {sitk.Version.VersionString()} "
          f"with {sitk.ProcessObject.GetGlobalDefaultNumberOfThreads()} threads; median of {args.repeats} "
          "repeats (SimpleITK Lanczos: 1)\n")
    print("| method | ours (s) | SimpleITK (s) | speed-up | max abs diff / range |")
    print("|---|---:|---:|---:|---:|")
    for method, interpolator in SITK.items():
        ours, mine = timed(lambda: upsample(volume, args.factor, method, axis=0), args.repeats)
        repeats = 1 if method == "lanczos" else args.repeats
        theirs, reference = timed(lambda: sitk_upsample(volume, args.factor, interpolator), repeats)
        difference = float(np.abs(mine - reference).max()) / value_range
        print(f"| {method} | {ours:.4f} | {theirs:.4f} | {theirs / ours:.1f}x | {difference:.1e} |", flush=True)


if __name__ == "__main__":
    main()
