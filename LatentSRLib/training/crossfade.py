"""Training the cross-fade detector (:mod:`LatentSRLib.models.crossfade`) on anisotropic scans only.

Examples, drawn afresh every step from the scans' frames (each percentile-normalised on its own):
half are acquired slices (label 0), half blends (1 - w) S_n + w S_n+1 of two neighbouring acquired
slices with w uniform in [0.25, 0.75] (label 1): what a linear re-sampling along the slice axis makes
of a stack. Blends closer to one end (w < 0.25) look like acquired slices and are left out. Each
image is the centre crop, flipped, rotated by a multiple of 90 degrees and scaled in contrast by
0.8-1.2 (scanners differ in contrast; the detector must not learn the data set's intensities).

With ``appearance_fraction`` > 0, that share of the images (of both labels alike) is first given the
look of another scanner's reconstruction (:func:`vary_appearance`): enlarged in-plane 1-2.5 times
(bilinear, bicubic or by zero-filling k-space, as many scanners reconstruct cines on a finer grid than
they acquire), or smoothed, and then, at random, given noise. A detector that never saw such slices
takes any smoothness for a cross-fade: the first bundled file called most validation stacks enlarged
1.25 times, and every one enlarged 1.5 times or smoothed by 0.7 px, re-sampled
(``benchmarks/crossfade_appearance.py``, Resources/Models/crossfade.md). A cross-fade's own mark
is the doubled edge at reduced contrast, which none of these make.

With ``gamma_fraction`` > 0, that share of the examples is made from slices given another contrast curve
(intensity ** gamma, :data:`GAMMA_RANGE`) before blending: sequences and sites differ in how bright
myocardium and blood are after percentile normalisation, and the first bundled file trusted acquired
validation stacks with gamma 0.7 only 0.32 on average (``benchmarks/crossfade_appearance.py``).
"""

from __future__ import annotations

import dataclasses
import time
from pathlib import Path
from typing import Sequence

import numpy as np
import torch
from torch.nn import functional as F

from .. import LatentSRError
from ..bandlimit import zero_fill
from ..intensity import normalise
from ..metrics import centre_crop
from ..models import registry
from ..models.crossfade import CROP, CrossfadeDetector, detector_input
from ..volume import read
from . import common
from .data import training_files

#: Blend weights of the positive examples (see the module docstring).
BLEND_WEIGHTS = (0.25, 0.75)
@dataclasses.dataclass
class CrossfadeTrainingConfig:
    """Options of the detector's training (``scans``: files or folders of 3D or 4D scans)."""

    out: str = "crossfade.pt"
    scans: Sequence[str] = ()
    exclude: Sequence[str] = ()
    widths: tuple[int, ...] = (16, 32, 32, 64)
    steps: int = 900
    batch: int = 32
    learning_rate: float = 1e-3
    contrast: tuple[float, float] = (0.8, 1.2)
    appearance_fraction: float = 0.0
    gamma_fraction: float = 0.0
    seed: int = 0
    threads: int | None = None
    init: str | None = None


def load_stacks(paths: Sequence[str], exclude: Sequence[str] = ()) -> list[np.ndarray]:
    """Every frame of every scan as a normalised (Z, Y, X) stack of at least two slices."""
    stacks = []
    for path in training_files(paths, exclude):
        for frame in read(path).array:
            if frame.shape[0] >= 2:
                stacks.append(normalise(frame, clip=True)[0].astype(np.float32))
    if not stacks:
        raise LatentSRError("no scan with two or more slices to train the cross-fade detector on")
    return stacks


#: Ranges of :func:`vary_appearance`: in-plane enlargement, Gaussian smoothing (pixels), noise (of the
#: normalised range, added to half the varied images).
ENLARGE_RANGE, SMOOTH_RANGE, NOISE_RANGE = (1.0, 2.5), (0.3, 1.2), (0.0, 0.04)


def vary_appearance(image: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """A normalised slice as another scanner's reconstruction might show it (module docstring): its centre
    enlarged (bilinear, bicubic or zero-filled) or smoothed, then half the time noise; at least CROP x CROP
    where the slice allows."""
    from scipy import ndimage

    if rng.random() < 2 / 3:
        factor = rng.uniform(*ENLARGE_RANGE)
        window = centre_crop(np.asarray(image, np.float32), int(np.ceil(CROP / factor)) + 4)  # what lands in view
        kind = int(rng.integers(3))
        image = zero_fill(window, factor) if kind == 2 else ndimage.zoom(window, factor, order=(1, 3)[kind],
                                                                         mode="nearest")
    else:
        image = ndimage.gaussian_filter(np.asarray(image, np.float32), rng.uniform(*SMOOTH_RANGE))
    if rng.random() < 0.5:
        image = image + rng.normal(0.0, rng.uniform(*NOISE_RANGE), image.shape).astype(np.float32)
    return np.clip(image, 0.0, 1.0)


#: Range of the contrast curves (gamma, drawn log-uniformly) of :func:`draw_batch`'s ``gamma_fraction``.
GAMMA_RANGE = (0.6, 1.7)


def draw_batch(stacks: list[np.ndarray], size: int, rng: np.random.Generator, contrast: tuple[float, float],
               appearance_fraction: float = 0.0, gamma_fraction: float = 0.0) -> tuple[torch.Tensor, torch.Tensor]:
    """(images (size, 1, CROP, CROP), labels (size,)): half blends of neighbours, half acquired slices,
    ``appearance_fraction`` of them with another scanner's look (:func:`vary_appearance`), and
    ``gamma_fraction`` of them made from slices with another contrast curve (intensity ** gamma, gamma in
    :data:`GAMMA_RANGE`; the blend is of the changed slices, as a re-sampling of that scanner's images)."""
    images, labels = [], []
    for _ in range(size):
        stack = stacks[rng.integers(len(stacks))]
        z = int(rng.integers(len(stack) - 1))
        pair = stack[z], stack[z + 1]
        if gamma_fraction and rng.random() < gamma_fraction:
            gamma = float(np.exp(rng.uniform(*np.log(GAMMA_RANGE))))
            pair = tuple(np.maximum(s, 0.0) ** gamma for s in pair)
        if rng.random() < 0.5:
            w = rng.uniform(*BLEND_WEIGHTS)
            image, label = (1 - w) * pair[0] + w * pair[1], 1.0
        else:
            image, label = pair[int(rng.integers(2))], 0.0
        if appearance_fraction and rng.random() < appearance_fraction:
            image = vary_appearance(image, rng)
        image = detector_input(image)
        if rng.random() < 0.5:
            image = image[::-1]
        if rng.random() < 0.5:
            image = image[:, ::-1]
        image = np.rot90(image, int(rng.integers(4)))
        images.append(np.clip(image * rng.uniform(*contrast), 0.0, 1.0))
        labels.append(label)
    return torch.from_numpy(np.stack(images)[:, None].astype(np.float32)), torch.tensor(labels)


def train(config: CrossfadeTrainingConfig) -> Path:
    """Train, write the weights (float16, kind "crossfade") and return their path."""
    if config.threads:
        torch.set_num_threads(config.threads)
    rng = common.seed_everything(config.seed)
    stacks = load_stacks(config.scans, config.exclude)
    model = CrossfadeDetector(tuple(config.widths))
    if config.init:  # continue from earlier weights (same widths)
        content = registry.load(config.init, "crossfade")
        model = CrossfadeDetector(tuple(content["config"]["widths"]))
        model.load_state_dict(content["state_dict"])
    optimiser = torch.optim.Adam(model.parameters(), lr=config.learning_rate)
    started = time.monotonic()
    history = []
    for step in range(1, config.steps + 1):
        images, labels = draw_batch(stacks, config.batch, rng, config.contrast, config.appearance_fraction,
                                    config.gamma_fraction)
        loss = F.binary_cross_entropy_with_logits(model(images), labels)
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()
        if step % 100 == 0 or step == config.steps:
            history.append({"step": step, "loss": round(loss.item(), 4),
                            "minutes": round((time.monotonic() - started) / 60, 2)})
    meta = {"steps": config.steps, "minutes": history[-1]["minutes"], "history": history,
            "stacks": len(stacks), "crop": CROP, "blend_weights": list(BLEND_WEIGHTS),
            "intensity": "1st/99th percentile per volume -> [0, 1]", "config": common.recorded_config(config)}
    registry.save(config.out, "crossfade", model.config, model.state_dict(), meta)
    return Path(config.out)
