#!/usr/bin/env python3
"""Experiments of issue 28 (not product code): the motion refiner with better warps, in the 10 mm regime.

The bundled refiner (:mod:`LatentSRLib.models.motion`) can only choose, per pixel, between linear
interpolation and four fixed one-sided warps along OpenCV's flows. Two designs on top of its U-Net:

- learned flow corrections (the default): four more outputs, a bounded correction (``--max-shift`` px) of
  each side's sampling offset along the mean of the two estimators' flows; the neighbours warped along the
  corrected offsets (torch ``grid_sample``, differentiable) are two more candidates of the blend (their
  logits start at -4, the corrections at 0, so training starts next to the bundled refiner);
- ``--no-warp --residual R``: an intensity residual bounded by R (starting at 0), for where every warp fails.

``--no-warp`` alone is the bundled design fine-tuned (with another loss than the product's trainer). Each
starts from the bundled file and is trained on the 10 mm triplets of the 5 mm patients **035 and 075**
(ED/ES volumes and every cine frame); **082** chooses the checkpoint (the same triplets); 081 084 085
are never read. ``--loss``: L1 + 0.2 (1 - SSIM) (the bundled file's), the squared error (what PSNR
scores), or the squared error + 0.01 (1 - SSIM); ``--head-only`` trains the 1x1 output layer only.

    .venv/bin/python scripts/train_motion_warp.py --out runs/motion_w1.pt --max-minutes 20
    .venv/bin/python benchmarks/motion_regime.py --warp runs/motion_w1.pt    # the protocol on 082

Resources/Models/motion.md ("In-regime retraining and better warps") records the runs: none passed.
"""

from __future__ import annotations

import argparse
import math
import sys
import time
from pathlib import Path

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from LatentSRLib.models import registry  # noqa: E402
from LatentSRLib.models.motion import CANDIDATES, MotionRefiner, network_inputs  # noqa: E402
from LatentSRLib.opticalflow import FARNEBACK_SETTINGS, estimate_flows  # noqa: E402
from LatentSRLib.training.motion import MotionTrainingConfig, _centre_crop, ssim_loss, triplets  # noqa: E402

DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
TRAIN, VALIDATION = ("035", "075"), ("082",)
NEW_LOGIT_START = -4.0


def scans(patients):
    return [str(p) for n in patients
            for p in (DATA / "acdc_fullfov" / f"patient{n}", DATA / "acdc_cine" / f"patient{n}_4d.nii.gz")]


class WarpRefiner(nn.Module):
    """The bundled refiner's U-Net with 4 more outputs (flow corrections, px) and 2 more candidates.

    forward(inputs (B, 9, H, W), candidates (B, 5, H, W), a, b (B, 1, H, W), base (B, 4, H, W): the
    one-sided sampling offsets t F_ba and (1 - t) F_ab of the mean flow, (x, y) each)
    -> (image (B, 1, H, W), weights (B, 7, H, W)); weights[:, 0] is linear's.
    """

    def __init__(self, max_shift: float = 3.0, linear_logit_offset: float = 0.5, widths=(16, 32, 64),
                 warp: bool = True, residual: float = 0.0):
        super().__init__()
        self.warp = warp  # False: the new candidates are off, this is the bundled refiner's design
        self.residual = float(residual)  # bound of an intensity residual (the head's last output), 0: none
        self.net = MotionRefiner(in_channels=9, candidates=11, widths=widths, residual_scale=0.0, farneback="fine")
        self.max_shift, self.linear_logit_offset = float(max_shift), float(linear_logit_offset)
        self.config = dict(max_shift=max_shift, linear_logit_offset=linear_logit_offset, widths=list(widths),
                           warp=warp, residual=residual)

    def start_from(self, bundled: MotionRefiner) -> None:
        """Copy the bundled refiner; the new candidates start nearly unused, the corrections at 0."""
        state = {k: v for k, v in bundled.state_dict().items() if not k.startswith("head.")}
        self.net.load_state_dict(state, strict=False)
        with torch.no_grad():
            self.net.head.weight.zero_()
            self.net.head.bias.zero_()
            self.net.head.weight[:5] = bundled.head.weight[:5]
            self.net.head.bias[:5] = bundled.head.bias[:5]
            self.net.head.bias[5:7] = NEW_LOGIT_START

    def forward(self, inputs, candidates, a, b, base):
        out = self.net.head_output(inputs)
        logits = out[:, :7].clone()
        logits[:, 0] = logits[:, 0] + self.linear_logit_offset
        if not self.warp:
            logits[:, 5:7] = float("-inf")
        shift = self.max_shift * torch.tanh(out[:, 7:11])
        warped_a = sample(a, base[:, 0:2] + shift[:, 0:2])
        warped_b = sample(b, base[:, 2:4] + shift[:, 2:4])
        weights = torch.softmax(logits, 1)
        image = (weights * torch.cat([candidates, warped_a, warped_b], 1)).sum(1, keepdim=True)
        if self.residual:
            image = image + self.residual * torch.tanh(out[:, 11:12])
        return image, weights


def sample(image: torch.Tensor, offset: torch.Tensor) -> torch.Tensor:
    """``image`` (B, 1, H, W) at p + offset(p) (px, (x, y)), bilinear, edges replicated (as opticalflow.warp)."""
    height, width = image.shape[-2:]
    gy, gx = torch.meshgrid(torch.arange(height, dtype=image.dtype), torch.arange(width, dtype=image.dtype),
                            indexing="ij")
    x = (gx + offset[:, 0]) * (2 / max(width - 1, 1)) - 1
    y = (gy + offset[:, 1]) * (2 / max(height - 1, 1)) - 1
    return F.grid_sample(image, torch.stack([x, y], -1), mode="bilinear", padding_mode="border", align_corners=True)


def example(a, b, t, flows):
    """(inputs 9, candidates 5, a, b, base offsets 4) as numpy float32 for one position."""
    x, c, _ = network_inputs(a, b, t, flows)
    f_ab = 0.5 * (flows["dis"][0] + flows["farneback"][0])
    f_ba = 0.5 * (flows["dis"][1] + flows["farneback"][1])
    base = np.concatenate([np.moveaxis(t * f_ba, -1, 0), np.moveaxis((1 - t) * f_ab, -1, 0)]).astype(np.float32)
    return x, c, a[None].astype(np.float32), b[None].astype(np.float32), base


def build(patients, store: int, seed: int) -> np.ndarray:
    """(N, 9 + 1 + 1 + 4 + 1, store, store) float32: inputs, a, b, base offsets, target (centre windows)."""
    config = MotionTrainingConfig(slices=scans(patients), time_fraction=0.0, asymmetric_fraction=0.0,
                                  max_examples=100_000)
    rows = []
    for a, m, b, t, _ in triplets(config, np.random.default_rng(seed), progress=False):
        flows = estimate_flows(a, b, FARNEBACK_SETTINGS["fine"])
        x, _, a1, b1, base = example(a, b, t, flows)
        rows.append(_centre_crop(np.concatenate([x, a1, b1, base, m[None]]), store, None))
    return np.stack(rows).astype(np.float32)


def split(batch: torch.Tensor):
    """inputs, candidates, a, b, base, target from a built batch."""
    first = 2
    return (batch[:, :9], batch[:, first:first + len(CANDIDATES)], batch[:, 9:10], batch[:, 10:11],
            batch[:, 11:15], batch[:, 15:16])


def flip(batch: np.ndarray, axis: int) -> np.ndarray:
    """Mirror examples along x (axis -1) or y (-2): the offsets' component along that axis changes sign."""
    batch = batch[..., ::-1] if axis == -1 else batch[..., ::-1, :]
    batch = batch.copy()
    component = 0 if axis == -1 else 1
    batch[:, 11 + component] *= -1
    batch[:, 13 + component] *= -1
    return batch


def psnr_gain(model, data: np.ndarray) -> float:
    """Mean PSNR gain (dB) over linear on the stored windows."""
    with torch.inference_mode():
        x, c, a, b, base, y = split(torch.from_numpy(data))
        out, _ = model(x, c, a, b, base)
        mse = ((out - y) ** 2).mean((1, 2, 3))
        lin = ((c[:, :1] - y) ** 2).mean((1, 2, 3))
        return float((10 * torch.log10(lin / mse.clamp_min(1e-10))).mean())


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", default="runs/motion_w1.pt")
    parser.add_argument("--max-minutes", type=float, default=20)
    parser.add_argument("--learning-rate", type=float, default=1e-4)
    parser.add_argument("--max-shift", type=float, default=3.0)
    parser.add_argument("--loss", choices=("l1ssim", "mse", "msessim"), default="l1ssim",
                        help="l1ssim: L1 + 0.2 (1 - SSIM) (the bundled file's); mse; msessim: MSE + 0.01 (1 - SSIM)")
    parser.add_argument("--no-warp", dest="warp", action="store_false",
                        help="without the corrected warps: the bundled design fine-tuned (the retraining variant)")
    parser.add_argument("--store", type=int, default=96)
    parser.add_argument("--crop", type=int, default=64)
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--validate-every", type=int, default=50)
    parser.add_argument("--residual", type=float, default=0.0,
                        help="add a bounded intensity residual (starts at 0), for where every warp fails")
    parser.add_argument("--head-only", action="store_true",
                        help="train only the 1x1 output layer (the U-Net's features stay the bundled file's)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    torch.set_num_threads(1)
    torch.manual_seed(args.seed)
    rng = np.random.default_rng(args.seed)
    cache = Path(f"runs/warp_examples_{args.store}.npz")
    if cache.exists():
        with np.load(cache) as saved:
            train_data, val_data = saved["train"], saved["val"]
    else:
        train_data, val_data = build(TRAIN, args.store, 0), build(VALIDATION, args.store, 1)
        np.savez(cache, train=train_data, val=val_data)
    print(f"{len(train_data)} training triplets (035, 075), {len(val_data)} validation (082)", flush=True)
    bundled = registry.load("motion-acdc", "motion")
    reference = MotionRefiner(**bundled["config"])
    reference.load_state_dict(bundled["state_dict"])
    model = WarpRefiner(args.max_shift, bundled["config"]["linear_logit_offset"], warp=args.warp,
                        residual=args.residual)
    model.start_from(reference)
    model.eval()
    history = [{"step": 0, "val_gain_db": psnr_gain(model, val_data)}]
    start = ' + the new candidates nearly off' if args.warp else ''
    print(f"step 0 (the bundled refiner{start}): {history[0]['val_gain_db']:+.3f} dB",
          flush=True)
    best = -math.inf
    trained = model.net.head.parameters() if args.head_only else model.parameters()
    optimiser = torch.optim.AdamW(trained, lr=args.learning_rate, weight_decay=1e-4)
    started, step = time.monotonic(), 0
    model.train()
    while time.monotonic() - started < 60 * args.max_minutes:
        done = (time.monotonic() - started) / (60 * args.max_minutes)
        for group in optimiser.param_groups:
            group["lr"] = args.learning_rate * 0.5 * (1 + math.cos(math.pi * min(done, 1.0)))
        index = rng.integers(0, len(train_data), args.batch)
        y0, x0 = rng.integers(0, args.store - args.crop + 1, 2)
        batch = train_data[index, :, y0:y0 + args.crop, x0:x0 + args.crop]
        if rng.random() < 0.5:
            batch = flip(batch, -1)
        if rng.random() < 0.5:
            batch = flip(batch, -2)
        x, c, a, b, base, y = split(torch.from_numpy(np.ascontiguousarray(batch)))
        out, _ = model(x, c, a, b, base)
        if args.loss == "l1ssim":
            loss = F.l1_loss(out, y) + 0.2 * ssim_loss(out, y)
        else:
            loss = F.mse_loss(out, y) + (0.01 * ssim_loss(out, y) if args.loss == "msessim" else 0.0)
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()
        step += 1
        if step % args.validate_every == 0:
            model.eval()
            gain = psnr_gain(model, val_data)
            model.train()
            history.append({"step": step, "minutes": round((time.monotonic() - started) / 60, 2),
                            "loss": float(loss.detach()), "val_gain_db": gain})
            print(history[-1], flush=True)
            if gain > best:
                best = gain
                torch.save({"config": model.config, "state_dict": model.state_dict(), "history": history,
                            "args": vars(args)}, args.out)
    print(f"best validation gain {best:+.3f} dB (step 0: {history[0]['val_gain_db']:+.3f} dB)")


if __name__ == "__main__":
    main()
