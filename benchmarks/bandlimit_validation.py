#!/usr/bin/env python3
"""How LatentSRLib/bandlimit.py's edge threshold was chosen, and how well it finds zero-filling. No test patient.

1. **Largest fall** of each stack's mean log10 power over two adjacent bands (``BAND`` cycles per pixel
   each), per axis, on the VALIDATION patients' stacks (every other slice kept, as in an evaluation): as
   acquired, enlarged bicubically or bilinearly, and zero-filled. ``EDGE_DROP`` lies between the smooth
   enlargements' largest fall and the zero-filled stacks' smallest.
2. **False edges**: every ACDC training and validation stack (whole, even and odd slices) and the ACDC
   cine crops of non-test patients (every third frame), which are acquired as they are: an edge found
   there is a false one.
3. **Precision**: the limits found on the validation stacks zero-filled 1.25-2.5x, against 1 / factor,
   and on the cine crops (95 x 100 pixels) the share of axes on which the edge is found.

    .venv/bin/python benchmarks/bandlimit_validation.py ../shared/data

Results: Resources/Models/crossfade.md, Limits ("Scans reconstructed on a finer grid").
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
from scipy import ndimage

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "scripts"))

from LatentSRLib.bandlimit import _axis_spectra, band_levels, band_limit, zero_fill  # noqa: E402
from LatentSRLib.intensity import normalise  # noqa: E402
from LatentSRLib.volume import find_images, read  # noqa: E402
from train_motion_bundled import TEST, VALIDATION  # noqa: E402  (the one place that names them)

FACTORS = (1.25, 1.5, 2.0, 2.5)


def largest_fall(stack: np.ndarray) -> float:
    """The largest fall over two adjacent bands, over both axes (what band_limit compares with EDGE_DROP)."""
    return float(max((below - above).max() for below, above in map(band_levels, _axis_spectra(stack))))


def stacks(folder: Path, patients) -> list[np.ndarray]:
    """Every frame of the patients' scans, normalised."""
    return [normalise(frame.astype(np.float32), clip=True)[0].astype(np.float32)
            for p in sorted(patients) for path in find_images([folder / f"patient{p}"]) for frame in read(path).array]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("data", type=Path, help="the shared data folder")
    args = parser.parse_args()
    acdc = args.data / "acdc_fullfov"
    validation = stacks(acdc, VALIDATION)
    looks = {"as acquired": [lambda s: s],
             "enlarged 1.25x / 1.5x / 2x, bicubic": [lambda s, f=f: ndimage.zoom(s, (1, f, f), order=3)
                                                     for f in (1.25, 1.5, 2)],
             "enlarged 1.5x, bilinear": [lambda s: ndimage.zoom(s, (1, 1.5, 1.5), order=1)],
             "zero-filled 1.25x-2.5x": [lambda s, f=f: zero_fill(s, f) for f in FACTORS]}
    print(f"1. largest fall (log10 power), {len(validation)} validation stacks, every other slice: min / max")
    for name, look in looks.items():
        falls = [largest_fall(normalise(one(s), clip=True)[0][::2]) for one in look for s in validation]
        print(f"| {name} | {min(falls):.2f} | {max(falls):.2f} |")
    everyone = {p.name[len("patient"):] for p in acdc.glob("patient*")} - TEST
    native = [sub for s in stacks(acdc, everyone) for sub in (s, s[::2], s[1::2])]
    cines = [normalise(frame.astype(np.float32), clip=True)[0].astype(np.float32)
             for path in sorted((args.data / "acdc_cine").glob("*.nii.gz")) if path.name[7:10] not in TEST
             for frame in read(path).array[::3]]
    false_edges = sum(band_limit(s) != (1.0, 1.0) for s in native + [c[::2] for c in cines] + cines)
    print(f"2. false edges: {false_edges} of {len(native) + 2 * len(cines)} acquired stacks")
    errors = [np.abs(np.array(band_limit(normalise(zero_fill(s, f), clip=True)[0][::2])) - 1 / f).max()
              for f in FACTORS for s in validation]
    print(f"3. zero-filled validation stacks: largest error of the limit {max(errors):.3f} (of Nyquist)")
    found = [np.array(band_limit(normalise(zero_fill(c, f), clip=True)[0][::2])) < 1
             for f in (1.25, 1.5, 2.0) for c in cines[::4]]
    print(f"   cine crops zero-filled 1.25-2x: edge found on {np.mean(found):.2f} of the axes")


if __name__ == "__main__":
    main()
