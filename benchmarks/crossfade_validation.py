#!/usr/bin/env python3
"""How the cross-fade detector's thresholds were chosen: its stack scores on VALIDATION patients, as
acquired and re-sampled linearly along z (ratios of the slice spacing), every other slice kept as in
the protocol (the detector sees only the kept slices, as ``flow`` and ``motion`` do in an evaluation).

    .venv/bin/python benchmarks/crossfade_validation.py --weights runs/crossfade.pt \\
        ../shared/data/acdc_fullfov/patient{001,002,010,020,030,040,043,050,060,093}

Prints per ratio the scores' minimum, median and maximum; the thresholds in
LatentSRLib/synthesize/crossfade.py lie between the acquired stacks' maximum and the re-sampled ones'
bulk. ``--zoom F`` first enlarges (F > 1) or shrinks each stack in-plane, as a scanner reconstructing on a
finer (or coarser) pixel grid would show it: an acquired stack must stay acquired. Never run it on the
test patients to choose anything.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from LatentSRLib.intensity import normalise  # noqa: E402
from LatentSRLib.interpolate import resample_along_slices, shrink_in_plane  # noqa: E402
from LatentSRLib.synthesize.crossfade import resampling_trust, stack_score  # noqa: E402
from LatentSRLib.volume import find_images, read  # noqa: E402

RATIOS = (1.0, 0.9, 0.8, 0.7, 0.6, 0.5)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("paths", nargs="+")
    parser.add_argument("--weights", help="detector weights (default: the bundled one)")
    parser.add_argument("--keep-every", type=int, default=2, help="1: the whole stack, as in use")
    parser.add_argument("--zoom", type=float, help="enlarge (> 1) or shrink each stack in-plane by this first")
    args = parser.parse_args()
    stacks = [normalise(frame if not args.zoom else shrink_in_plane(frame, args.zoom), clip=True)[0]
              for path in find_images(args.paths) for frame in read(path).array]
    print(f"{len(stacks)} stacks; | ratio | score min | median | max | mean trust |")
    for ratio in RATIOS:
        scores = []
        trusts = []
        for stack in stacks:
            kept = (stack if ratio == 1.0 else resample_along_slices(stack, ratio))[::args.keep_every]
            scores.append(stack_score(kept, args.weights))
            trusts.append(resampling_trust(kept, args.weights))
        s = np.array(scores, float)
        print(f"| {ratio:.1f} | {s.min():.3f} | {np.median(s):.3f} | {s.max():.3f} | {np.mean(trusts):.2f} |")


if __name__ == "__main__":
    main()
