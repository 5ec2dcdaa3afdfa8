"""Training the motion-aware refiner (:mod:`LatentSRLib.models.motion`) on anisotropic scans only.

No high-resolution truth: every example is a triplet of acquired images (A, M, B) in which M lies
between A and B, and the network learns to re-create M from A and B through the flow candidates:

- slice triplets: slices n - i, n, n + j of a 3D scan (or of each frame of a cine), t = i / (i + j);
  their ends are 2-3 slice spacings apart, wider than at use, where new slices lie within one gap;
- time triplets: one slice of a 4D cine at frames f - i, f, f + j (i, j in 1..4): the heart's motion
  over the cardiac cycle, with the small, smooth displacements between close slices that the
  10-20 mm gaps of the slice triplets never show;
- shrunk slice triplets: slice triplets of a scan first shrunk in-plane to 0.4-0.7 of its size
  (:func:`LatentSRLib.interpolate.shrink_in_plane`): the same anatomy, smaller, so that its 10-20 mm
  gaps show the in-plane displacements (in pixels) of 5-10 mm gaps, the gaps the method fills in use
  and that no non-test scan offers as triplets (``zoom_fraction`` of the examples);
- resampled-stack triplets: slice triplets of a scan first re-sampled linearly along the slice axis
  to 0.5-0.9 of its spacing. Public data sets are often distributed re-sampled through-plane (the
  CMRxMotion stacks are: many slices are near-exact blends of their neighbours), and there the
  in-between slice is a cross-fade that no motion explains; these examples teach the blend weights
  when to stay with linear interpolation. Off by default: they also taught the network to stay with
  linear where close acquired neighbours look alike (the bundled file with 25 % of them lost 0.52 dB
  to flow on the ACDC test patients), and the cross-fade detector (:mod:`LatentSRLib.synthesize.crossfade`)
  now sends re-sampled stacks to linear interpolation before the network runs.

Candidates are computed once per triplet on the whole slice (flow needs the context), then a
``store`` x ``store`` crop near the centre is kept; training takes random ``crop`` x ``crop``
windows of it with flips and 90-degree rotations (exact for warps computed before the flip).
"""

from __future__ import annotations

import dataclasses
import math
import time
from pathlib import Path
from typing import Sequence

import numpy as np
import torch
from torch.nn import functional as F
from tqdm import tqdm

from .. import LatentSRError
from ..intensity import normalise
from ..interpolate import resample_along_slices, shrink_in_plane
from ..models import registry
from ..models.motion import CANDIDATES, INPUTS, MotionRefiner, network_inputs
from ..opticalflow import FARNEBACK_SETTINGS, estimate_flows
from ..volume import read
from ..devices import pick_device
from . import common
from .data import training_files


@dataclasses.dataclass
class MotionTrainingConfig:
    """Options of ``latentsr train motion`` (paths are files or folders)."""

    out: str = "motion.pt"
    slices: Sequence[str] = ()
    cines: Sequence[str] = ()
    validation: Sequence[str] = ()
    resampled_fraction: float = 0.0
    zoom_fraction: float = 0.0
    zoom_range: tuple[float, float] = (0.4, 0.7)
    gap_input: bool = False
    farneback: str = "fine"
    flow_prior: bool = False
    residual_scale: float = 0.1
    time_fraction: float = 0.5
    asymmetric_fraction: float = 0.3
    max_examples: int = 6000
    store: int = 128
    crop: int = 64
    batch: int = 16
    learning_rate: float = 1e-3
    widths: tuple[int, ...] = (16, 32, 64)
    cache: str | None = None
    exclude: Sequence[str] = ()
    init: str | None = None
    max_minutes: float = 30.0
    max_steps: int = 100_000
    validate_every: int = 250
    seed: int = 0
    device: str = "auto"
    threads: int | None = None


def _frames(path: str) -> tuple[np.ndarray, float]:
    """(T, Z, Y, X) of a file, each frame percentile-normalised to [0, 1] on its own, and its slice
    spacing (mm)."""
    volume = read(path)
    frames = np.stack([normalise(frame, clip=True)[0] for frame in volume.array]).astype(np.float32)
    return frames, float(volume.spacing[2])


def _centre_crop(image: np.ndarray, size: int, rng: np.random.Generator | None) -> np.ndarray:
    """A size x size window near the centre (random offset within 10 % with ``rng``), edge-padded."""
    pad = [(0, 0)] * (image.ndim - 2) + [(max(0, size - n) // 2, max(0, size - n) - max(0, size - n) // 2)
                                        for n in image.shape[-2:]]
    image = np.pad(image, pad, mode="edge")
    starts = []
    for n in image.shape[-2:]:
        centre = (n - size) // 2
        jitter = int(0.1 * n) if rng is not None else 0
        starts.append(int(np.clip(centre + (rng.integers(-jitter, jitter + 1) if jitter else 0), 0, n - size)))
    return image[..., starts[0]:starts[0] + size, starts[1]:starts[1] + size]


def _blank(image: np.ndarray) -> bool:
    return float(image.std()) < 1e-3


def triplets(config: MotionTrainingConfig, rng: np.random.Generator, progress: bool = True
             ) -> list[tuple[np.ndarray, np.ndarray, np.ndarray, float, float]]:
    """(A, M, B, t, gap between A and B in mm) triplets from the configured scans, at most
    ``max_examples``, mixed as configured (time triplets: gap 0)."""
    space, resampled, zoomed, times = [], [], [], []
    def files(paths):
        return training_files(paths, config.exclude) if paths else []

    for path in tqdm(files(config.slices), desc="slice triplets",
                     disable=not progress):
        stacks, spacing = _frames(path)
        for stack in stacks:
            fraction = rng.uniform(0.5, 0.9)
            sources = [(stack, space, spacing),
                       (resample_along_slices(stack, fraction), resampled, spacing * fraction)]
            if config.zoom_fraction:  # (drawn last: without it, the random stream is that of earlier files)
                zoom = rng.uniform(*config.zoom_range)  # the gap such a triplet imitates: its own, times zoom
                sources.append((shrink_in_plane(stack, zoom), zoomed, spacing * zoom))
            for source, target, step in sources:
                for n in range(1, len(source) - 1):
                    i, j = tuple(rng.permutation([1, 2])) if rng.random() < config.asymmetric_fraction else (1, 1)
                    if n - i < 0 or n + j >= len(source):
                        continue
                    a, m, b = source[n - i], source[n], source[n + j]
                    if not (_blank(a) or _blank(m) or _blank(b)):
                        target.append((a, m, b, float(i / (i + j)), float((i + j) * step)))
    for path in tqdm(files(config.cines), desc="time triplets",
                     disable=not progress):
        cine = read(path).array
        if cine.shape[0] < 5:
            continue
        cine = normalise(cine, clip=True)[0].astype(np.float32)  # one scaling: frames stay comparable
        frames = cine.shape[0]
        for f in range(frames):
            for z in range(cine.shape[1]):
                i, j = rng.integers(1, 5, size=2)
                a, m, b = cine[(f - i) % frames, z], cine[f, z], cine[(f + j) % frames, z]
                if not (_blank(a) or _blank(m) or _blank(b)):
                    times.append((a, m, b, float(i / (i + j)), 0.0))
    n_time = min(len(times), int(config.time_fraction * config.max_examples))
    n_resampled = min(len(resampled), int(config.resampled_fraction * config.max_examples))
    n_zoomed = min(len(zoomed), int(config.zoom_fraction * config.max_examples))
    n_space = min(len(space), config.max_examples - n_time - n_resampled - n_zoomed)
    picked = []
    for pool, count in ((space, n_space), (resampled, n_resampled), (zoomed, n_zoomed), (times, n_time)):
        picked += [pool[k] for k in rng.choice(len(pool), size=count, replace=False)] if count else []
    if not picked:
        raise LatentSRError("no training triplets: give scans with at least 3 slices (--slices) or 4D cines (--cines)")
    return picked


def examples(items, store: int, rng: np.random.Generator | None, progress: bool = True, gap_input: bool = False,
             farneback: str = "fine") -> tuple[np.ndarray, np.ndarray]:
    """Network inputs (N, len(INPUTS) [+ 1 with ``gap_input``], store, store) and targets
    (N, 1, store, store), float16; the flows with the named Farneback settings."""
    inputs = np.empty((len(items), len(INPUTS) + int(gap_input), store, store), np.float16)
    targets = np.empty((len(items), 1, store, store), np.float16)
    for k, (a, m, b, t, gap_mm) in enumerate(tqdm(items, desc="flow candidates", disable=not progress)):
        flows = estimate_flows(a, b, FARNEBACK_SETTINGS[farneback])
        x, _, _ = network_inputs(a, b, t, flows, gap_mm=gap_mm if gap_input else None)
        both = _centre_crop(np.concatenate([x, m[None]]), store, rng)
        inputs[k], targets[k] = both[:-1], both[-1:]
    return inputs, targets


def ssim_loss(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """1 - mean SSIM (Gaussian window sigma 1.5, data range 1), as the protocol scores."""
    radius = 5
    g = torch.exp(-torch.arange(-radius, radius + 1, dtype=x.dtype) ** 2 / (2 * 1.5 ** 2))
    g = (g / g.sum()).to(x.device)
    kx, ky = g.view(1, 1, 1, -1), g.view(1, 1, -1, 1)

    def blur(v):
        return F.conv2d(F.conv2d(v, kx), ky)

    mx, my = blur(x), blur(y)
    vx, vy, cxy = blur(x * x) - mx ** 2, blur(y * y) - my ** 2, blur(x * y) - mx * my
    c1, c2 = 0.01 ** 2, 0.03 ** 2
    s = ((2 * mx * my + c1) * (2 * cxy + c2)) / ((mx ** 2 + my ** 2 + c1) * (vx + vy + c2))
    return 1 - s.mean()


def _batch(inputs: np.ndarray, targets: np.ndarray, size: int, crop: int, rng: np.random.Generator):
    index = rng.integers(0, len(inputs), size=size)
    y0, x0 = rng.integers(0, inputs.shape[-1] - crop + 1, size=2)
    x = inputs[index, :, y0:y0 + crop, x0:x0 + crop].astype(np.float32)
    y = targets[index, :, y0:y0 + crop, x0:x0 + crop].astype(np.float32)
    k = int(rng.integers(4))
    x, y = np.rot90(x, k, axes=(2, 3)), np.rot90(y, k, axes=(2, 3))
    if rng.random() < 0.5:
        x, y = x[..., ::-1], y[..., ::-1]
    return torch.from_numpy(np.ascontiguousarray(x)), torch.from_numpy(np.ascontiguousarray(y))


def _candidates(x: torch.Tensor) -> torch.Tensor:
    first = INPUTS.index(CANDIDATES[0])
    return x[:, first:first + len(CANDIDATES)]


def _psnr_gain(model, inputs, targets, device) -> tuple[float, float]:
    """Mean PSNR gain (dB) over linear of the model and of plain flow on fixed validation examples."""
    gains_model, gains_flow = [], []
    with torch.inference_mode():
        for k in range(0, len(inputs), 32):
            x = torch.from_numpy(inputs[k:k + 32].astype(np.float32)).to(device)
            y = torch.from_numpy(targets[k:k + 32].astype(np.float32)).to(device)
            out, _ = model(x, _candidates(x))
            c = _candidates(x)
            # plain flow at t = 1/2 (the validation triplets are symmetric): both estimators, both sides
            flow = 0.25 * (c[:, 1:5].sum(1, keepdim=True))
            for pred, gains in ((out, gains_model), (flow, gains_flow)):
                mse = ((pred - y) ** 2).mean((1, 2, 3))
                lin = ((c[:, :1] - y) ** 2).mean((1, 2, 3))
                gains.extend((10 * torch.log10(lin / mse.clamp_min(1e-10))).tolist())
    return float(np.mean(gains_model)), float(np.mean(gains_flow))


def train(config: MotionTrainingConfig, progress: bool = True) -> Path:
    """Build the examples, train, keep the weights that re-create the validation triplets best."""
    rng = common.seed_everything(config.seed)
    if config.threads:
        torch.set_num_threads(config.threads)
    device = pick_device(config.device)
    if config.farneback not in FARNEBACK_SETTINGS:
        raise LatentSRError(f"unknown Farneback settings '{config.farneback}' (one of {', '.join(FARNEBACK_SETTINGS)})")
    if config.cache and Path(config.cache).exists():
        with np.load(config.cache) as cached:
            inputs, targets = cached["inputs"], cached["targets"]
            made_with = str(cached["farneback"]) if "farneback" in cached else "fast"
            zoomed = float(cached["zoom_fraction"]) if "zoom_fraction" in cached else 0.0
        if zoomed != config.zoom_fraction:
            raise LatentSRError(f"the cached examples in {config.cache} have {zoomed:g} shrunk triplets, "
                                f"not --zoom-fraction {config.zoom_fraction:g}")
        if made_with != config.farneback:
            raise LatentSRError(f"the cached examples in {config.cache} were built with the '{made_with}' "
                                f"Farneback settings, not '{config.farneback}'")
        if inputs.shape[1] != len(INPUTS) + int(config.gap_input):
            raise LatentSRError(f"the cached examples in {config.cache} were built "
                                f"{'without' if config.gap_input else 'with'} the gap input")
    else:
        inputs, targets = examples(triplets(config, rng, progress), config.store, rng, progress, config.gap_input,
                                   config.farneback)
        if config.cache:
            np.savez(config.cache, inputs=inputs, targets=targets, farneback=config.farneback,
                     zoom_fraction=config.zoom_fraction)
    if config.validation:
        # With shrunk triplets in training, half the validation triplets are shrunk too: the checkpoint is
        # then chosen for narrow gaps as well as for the validation scans' own 13-20 mm.
        held = MotionTrainingConfig(slices=config.validation, time_fraction=0, resampled_fraction=0,
                                    zoom_fraction=0.5 if config.zoom_fraction else 0.0,
                                    zoom_range=config.zoom_range, asymmetric_fraction=0, max_examples=400)
        val_inputs, val_targets = examples(triplets(held, np.random.default_rng(1), progress), config.store,
                                           None, progress, config.gap_input, config.farneback)
    model = MotionRefiner(in_channels=inputs.shape[1], widths=config.widths, farneback=config.farneback,
                          flow_prior=config.flow_prior, residual_scale=config.residual_scale)
    if config.init:
        content = registry.load(config.init, "motion")
        model = MotionRefiner(**content["config"])
        if model.config["farneback"] != config.farneback:
            raise LatentSRError(f"--init {config.init} was trained with the '{model.config['farneback']}' "
                                f"Farneback settings: match --farneback to it")
        if model.config["in_channels"] != inputs.shape[1]:
            raise LatentSRError(f"--init {config.init} was trained {'with' if not config.gap_input else 'without'} "
                                "the gap input: match --gap-input to it")
        if model.config.get("flow_prior", False) != config.flow_prior:
            raise LatentSRError(f"--init {config.init} was trained {'with' if not config.flow_prior else 'without'} "
                                "the flow prior: match --flow-prior to it")
        model.load_state_dict(content["state_dict"])
    model = model.to(device)
    optimiser = torch.optim.AdamW(model.parameters(), lr=config.learning_rate, weight_decay=1e-4)
    started, step, best = time.monotonic(), 0, -math.inf
    history = []
    bar = tqdm(total=config.max_steps, desc="training motion", disable=not progress)
    while step < config.max_steps and time.monotonic() - started < 60 * config.max_minutes:
        # Cosine decay of the learning rate over the time budget (or the step budget, whichever is nearer).
        progress_done = max((time.monotonic() - started) / (60 * config.max_minutes), step / config.max_steps)
        for group in optimiser.param_groups:
            group["lr"] = config.learning_rate * 0.5 * (1 + math.cos(math.pi * min(progress_done, 1.0)))
        x, y = _batch(inputs, targets, config.batch, config.crop, rng)
        x, y = x.to(device), y.to(device)
        out, _ = model(x, _candidates(x))
        loss = F.l1_loss(out, y) + 0.2 * ssim_loss(out, y)
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()
        step += 1
        bar.update(1)
        if step % config.validate_every == 0 or step == config.max_steps:
            model.eval()
            score = _psnr_gain(model, val_inputs, val_targets, device) if config.validation else (-loss.item(), 0.0)
            model.train()
            history.append({"step": step, "minutes": round((time.monotonic() - started) / 60, 2),
                            "loss": loss.item(), "val_gain_db": score[0], "val_flow_gain_db": score[1]})
            bar.set_postfix(loss=f"{loss.item():.4f}", val=f"{score[0]:+.2f}/{score[1]:+.2f} dB")
            if score[0] > best:
                best = score[0]
                meta = {"steps": step, "minutes": history[-1]["minutes"], "history": history,
                        "examples": len(inputs), "config": common.recorded_config(config)}
                registry.save(config.out, "motion", model.config, model.state_dict(), meta)
    bar.close()
    if not history:
        raise LatentSRError("training stopped before the first validation; raise --max-minutes")
    return Path(config.out)
