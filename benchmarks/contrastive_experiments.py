"""The contrastive paper's two experiments on our data, at a reduced scale (CPU):

(a) with vs without the InfoNCE loss;  (b) quality against the number of HR volumes (1, 2, 4, all).

Every arm trains the bundled recipe (``LossWeights`` defaults, encoder of 5 blocks, batch 12 of
64x64 patches, Adam 5e-4) for the same number of steps from the same seed, on one load of the data,
and is scored on the held-out patients' validation set after every epoch (SR L1 and PSNR against
the HR patch, next to the input = linear interpolation). The table reports each arm's best epoch.

    python benchmarks/contrastive_experiments.py --steps 100 --epochs 3 --out runs/experiments
"""

from __future__ import annotations

import argparse
import dataclasses
import time
from pathlib import Path

import torch

from LatentSRLib.training.contrastive import ContrastiveTrainingConfig, load_domains, train

ARMS = {  # name: (use InfoNCE, HR volumes)
    "InfoNCE, all HR volumes": (True, None),
    "no InfoNCE, all HR volumes": (False, None),
    "InfoNCE, 1 HR volume": (True, 1),
    "InfoNCE, 2 HR volumes": (True, 2),
    "InfoNCE, 4 HR volumes": (True, 4),
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", nargs="+", default=["../shared/data/acdc_fullfov", "../shared/data/cmrxmotion"])
    parser.add_argument("--out", default="runs/experiments")
    parser.add_argument("--steps", type=int, default=100, help="steps per epoch")
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--arms", help="comma-separated subset of arm numbers (1-5)")
    args = parser.parse_args()
    torch.set_num_threads(1)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    base = ContrastiveTrainingConfig(hr=args.data, lr=args.data, out="", epochs=args.epochs,
                                     steps_per_epoch=args.steps, batch_size=12, encoder_blocks=5, seed=0,
                                     device="cpu", progress=False)
    loaded = load_domains(base)
    chosen = list(ARMS.items())
    if args.arms:
        chosen = [chosen[int(i) - 1] for i in args.arms.split(",")]
    rows = []
    for name, (nce, hr_count) in chosen:
        file = out / ("co_" + name.replace(", ", "_").replace(" ", "-") + ".pt")
        config = dataclasses.replace(base, out=str(file), use_contrastive=nce, hr_count=hr_count)
        started = time.time()
        train(config, loaded)
        history = torch.load(str(file) + ".ckpt", weights_only=False)["history"]
        best = min(history, key=lambda h: h["val_sr_l1"])
        rows.append((name, best, history, time.time() - started))
        print(f"{name}: best val L1 {best['val_sr_l1']:.5f} at step {best['steps']}", flush=True)
    input_l1, input_psnr = rows[0][1]["val_input_l1"], rows[0][1]["val_input_psnr"]
    print(f"\n{args.epochs} epochs x {args.steps} steps per arm, seed 0; validation input (linear) "
          f"L1 {input_l1:.5f}, PSNR {input_psnr:.2f} dB\n")
    print("| arm | best val L1 (step) | vs linear | PSNR at best (dB) | L1 per epoch | minutes |")
    print("|---|---:|---:|---:|---|---:|")
    for name, best, history, seconds in rows:
        per_epoch = " ".join(f"{h['val_sr_l1']:.4f}" for h in history)
        print(f"| {name} | {best['val_sr_l1']:.5f} ({best['steps']}) | {100 * (best['val_sr_l1'] / input_l1 - 1):+.1f} % "
              f"| {best['val_sr_psnr']:.2f} | {per_epoch} | {seconds / 60:.1f} |")


if __name__ == "__main__":
    main()
