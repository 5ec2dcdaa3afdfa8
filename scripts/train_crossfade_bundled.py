#!/usr/bin/env python3
"""Train the bundled cross-fade detector (Resources/Models/crossfade.md) from ../shared/data.

The training patients are those of the motion model (scripts/train_motion_bundled.py, the one place
that knows the test and validation patients): the ACDC 5 mm patients and CMRxMotion are test sets and
never read; the validation patients choose the detector's thresholds (benchmarks/crossfade_validation.py).

    .venv/bin/python scripts/train_crossfade_bundled.py --out runs/crossfade.pt
"""

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from LatentSRLib.training.crossfade import CrossfadeTrainingConfig, train  # noqa: E402
from train_motion_bundled import DATA, TEST, VALIDATION, patient_folders  # noqa: E402  (this folder)


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", default="runs/crossfade.pt")
    parser.add_argument("--steps", type=int, default=900)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--init", help="continue from these weights")
    parser.add_argument("--appearance-fraction", type=float, default=0.0,
                        help="share of examples given another scanner's look (enlarged, smoothed, noisy)")
    parser.add_argument("--gamma-fraction", type=float, default=0.0,
                        help="share of examples made from slices with another contrast curve (intensity ** gamma)")
    parser.add_argument("--learning-rate", type=float, default=1e-3)
    parser.add_argument("--batch", type=int, default=32)
    args = parser.parse_args()
    everyone = {p.name[len("patient"):] for p in (DATA / "acdc_fullfov").glob("patient*")}
    training = everyone - TEST - VALIDATION
    config = CrossfadeTrainingConfig(out=args.out, scans=patient_folders(training), steps=args.steps,
                                     threads=args.threads, seed=args.seed, init=args.init,
                                     appearance_fraction=args.appearance_fraction,
                                     gamma_fraction=args.gamma_fraction, learning_rate=args.learning_rate,
                                     batch=args.batch)
    print(f"training patients: {len(training)}")
    print(f"weights written to {train(config)}")


if __name__ == "__main__":
    main()
