#!/usr/bin/env python3
"""Per-scan test-time adaptation of the ``motion`` refiner, measured on VALIDATION patients (not shipped).

Before a scan is super-resolved, a copy of the refiner is fine-tuned on the scan's own acquired slices: each
slice re-created from its two neighbours, which lie twice the gap apart (the only triplets with a known
middle that a scan offers in use), and, with ``--shrink F`` below 1, the same triplets shrunk in-plane by F
(so that their pixel displacements are those of the one-gap interpolation it is adapting to). Then that copy
runs, with the scan gates as shipped. Everything else is ``benchmarks/motion_validation.py`` (same views, same
options after ``--``). Result: Resources/Models/motion.md, Limits ("Adapting to each scan").

    .venv/bin/python benchmarks/motion_adaptation.py --steps 100 --learning-rate 1e-4 --shrink 0.5 -- \\
        ../shared/data/acdc_fullfov/patient043 ../shared/data/acdc_fullfov/patient093

Never run it on the test patients to choose anything.
"""

from __future__ import annotations

import argparse
import copy
import sys
import time
from pathlib import Path

import numpy as np
import torch
from torch.nn import functional as F

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from LatentSRLib.devices import pick_device  # noqa: E402
from LatentSRLib.interpolate import shrink_in_plane  # noqa: E402
from LatentSRLib.opticalflow import BLANK_STD  # noqa: E402
from LatentSRLib.synthesize import motion as inference  # noqa: E402
from LatentSRLib.training import motion as training  # noqa: E402

CROP, BATCH, STORE = 64, 8, 96


def own_triplets(array: np.ndarray, shrink: float) -> list[tuple]:
    """(A, M, B, t, gap) triplets of every frame's consecutive acquired slices (gap unused: 0)."""
    items = []
    for stack in array:
        for source in [stack] + ([shrink_in_plane(stack, shrink)] if shrink < 1 else []):
            for n in range(1, len(source) - 1):
                a, m, b = source[n - 1], source[n], source[n + 1]
                if min(a.std(), m.std(), b.std()) >= BLANK_STD:
                    items.append((a, m, b, 0.5, 0.0))
    return items


def adapted(model, array: np.ndarray, steps: int, learning_rate: float, shrink: float):
    """A fine-tuned copy of ``model`` (the refiner's own loss, L1 + 0.2 (1 - SSIM)), or ``model`` itself."""
    items = own_triplets(array, shrink)
    if not items or steps == 0:
        return model
    rng = np.random.default_rng(0)
    inputs, targets = training.examples(items, STORE, None, progress=False, farneback=model.config["farneback"])
    tuned = copy.deepcopy(model).float().train()
    optimiser = torch.optim.Adam(tuned.parameters(), lr=learning_rate)
    for _ in range(steps):
        x, y = training._batch(inputs, targets, BATCH, CROP, rng)
        out, _ = tuned(x, training._candidates(x))
        loss = F.l1_loss(out, y) + 0.2 * training.ssim_loss(out, y)
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()
    return tuned.eval()


def main() -> None:
    split = sys.argv.index("--") if "--" in sys.argv else len(sys.argv)
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=100)
    parser.add_argument("--learning-rate", type=float, default=1e-4)
    parser.add_argument("--shrink", type=float, default=0.5, help="also the triplets shrunk in-plane by this (1: not)")
    args = parser.parse_args(sys.argv[1:split])
    torch.set_num_threads(1)
    upsample, load_model, seconds = inference.upsample, inference.load_model, []

    def adapting_upsample(array, factor, spacing_zyx, run):
        model, meta = load_model(run.weights, pick_device(run.device))
        started = time.perf_counter()
        tuned = adapted(model, array, args.steps, args.learning_rate, args.shrink)
        seconds.append(time.perf_counter() - started)
        inference.load_model = lambda weights, device: (tuned, meta)
        try:
            return upsample(array, factor, spacing_zyx, run)
        finally:
            inference.load_model = load_model

    inference.upsample = adapting_upsample
    import motion_validation
    sys.argv = [sys.argv[0]] + sys.argv[split + 1:]
    motion_validation.main()
    print(f"adaptation: median {np.median(seconds):.1f} s a scan ({len(seconds)} scans)")


if __name__ == "__main__":
    main()
