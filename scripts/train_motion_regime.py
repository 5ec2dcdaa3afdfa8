#!/usr/bin/env python3
"""Fine-tune the motion refiner in the protocol's regime: slice triplets whose ends are 10 mm apart.

The only such triplets in ../shared/data are those of the 5 mm ACDC patients. Their roles (the data
README): **035 and 075 are trained on** here (their ED/ES volumes and every frame of their cines: slices
n - 1, n, n + 1 of a 5 mm stack), **082 chooses the checkpoint** (the same triplets of its ED/ES volumes
and cine), 081 084 085 are the test set and are never read. Each frame is percentile-normalised on its own,
as the protocol does. Resources/Models/motion.md ("In-regime retraining") records the runs and their scores.

    .venv/bin/python scripts/train_motion_regime.py --out runs/motion_r1.pt --max-minutes 20 --learning-rate 3e-4
"""

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from LatentSRLib.training.motion import MotionTrainingConfig, train  # noqa: E402

DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
TRAIN = ("035", "075")
VALIDATION = ("082",)


def scans(patients):
    """The ED/ES volumes' folder and the cine file of each patient."""
    return [str(p) for n in patients
            for p in (DATA / "acdc_fullfov" / f"patient{n}", DATA / "acdc_cine" / f"patient{n}_4d.nii.gz")]


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", default="runs/motion_regime.pt")
    parser.add_argument("--init", default="motion-acdc", help="start from these weights (default: the bundled file)")
    parser.add_argument("--max-minutes", type=float, default=20)
    parser.add_argument("--learning-rate", type=float, default=3e-4)
    parser.add_argument("--asymmetric-fraction", type=float, default=0.0,
                        help="share of n-1, n, n+2 triplets (15 mm ends, t 1/3 or 2/3)")
    parser.add_argument("--store", type=int, default=96, help="window kept around the centre (the cines are 100 x 95)")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--cache", help="keep the computed training examples in this .npz (reused when present)")
    parser.add_argument("--validate-every", type=int, default=100)
    args = parser.parse_args()
    config = MotionTrainingConfig(out=args.out, slices=scans(TRAIN), cines=(), validation=scans(VALIDATION),
                                  time_fraction=0.0, asymmetric_fraction=args.asymmetric_fraction,
                                  farneback="fine", residual_scale=0.0, init=args.init, store=args.store,
                                  learning_rate=args.learning_rate, max_minutes=args.max_minutes,
                                  threads=args.threads, seed=args.seed, cache=args.cache,
                                  validate_every=args.validate_every)
    print(f"training patients: {', '.join(TRAIN)}; validation: {', '.join(VALIDATION)}")
    print(train(config))


if __name__ == "__main__":
    main()
