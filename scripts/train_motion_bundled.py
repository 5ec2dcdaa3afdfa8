#!/usr/bin/env python3
"""Train the bundled motion-aware refiner (Resources/Models/motion.md) from ../shared/data.

This script, and only this script, knows which patients are the test and validation sets of the
published numbers: the ACDC 5 mm patients (035 075 081 082 084 085) and CMRxMotion are test sets and
are never read here; the validation patients choose the checkpoint.

    .venv/bin/python scripts/train_motion_bundled.py --out runs/motion.pt --max-minutes 40
"""

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from LatentSRLib.training.motion import MotionTrainingConfig, train  # noqa: E402

DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
TEST = {"035", "075", "081", "082", "084", "085"}
VALIDATION = {"001", "002", "010", "020", "030", "040", "043", "050", "060", "093"}


def patient_folders(numbers):
    return [str(DATA / "acdc_fullfov" / f"patient{n}") for n in sorted(numbers)]


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", default="runs/motion.pt")
    parser.add_argument("--max-minutes", type=float, default=40)
    parser.add_argument("--max-examples", type=int, default=6000)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--resampled-fraction", type=float, default=0.0)
    parser.add_argument("--time-fraction", type=float, default=0.5)
    parser.add_argument("--zoom-fraction", type=float, default=0.0, help="share of in-plane-shrunk slice triplets")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--cache", help="keep the computed training examples in this .npz (reused when present)")
    parser.add_argument("--init", help="start from these weights (a previous run's best) instead of random ones")
    parser.add_argument("--learning-rate", type=float, default=1e-3)
    parser.add_argument("--gap-input", action="store_true", help="the gap between the two slices as an input")
    parser.add_argument("--farneback", choices=("fast", "fine"), default="fine", help="flow candidates' settings")
    parser.add_argument("--flow-prior", action="store_true", help="start the blend from the flow method's weights")
    parser.add_argument("--residual-scale", type=float, default=0.1, help="bound of the residual (0: none)")
    args = parser.parse_args()
    everyone = {p.name[len("patient"):] for p in (DATA / "acdc_fullfov").glob("patient*")}
    training = everyone - TEST - VALIDATION
    cines = [str(f) for f in sorted((DATA / "acdc_cine").glob("patient*_4d.nii.gz"))
             if f.name[len("patient"):len("patient") + 3] not in TEST | VALIDATION]
    config = MotionTrainingConfig(out=args.out, slices=patient_folders(training), cines=cines,
                                  validation=patient_folders(VALIDATION), max_minutes=args.max_minutes,
                                  max_examples=args.max_examples, threads=args.threads,
                                  resampled_fraction=args.resampled_fraction, time_fraction=args.time_fraction,
                                  seed=args.seed, cache=args.cache, init=args.init,
                                  learning_rate=args.learning_rate, gap_input=args.gap_input,
                                  farneback=args.farneback, zoom_fraction=args.zoom_fraction,
                                  flow_prior=args.flow_prior, residual_scale=args.residual_scale)
    print(f"training patients: {len(training)}, cines: {len(cines)}, validation patients: {len(VALIDATION)}")
    print(train(config))


if __name__ == "__main__":
    main()
