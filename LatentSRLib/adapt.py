"""Adapt the autoencoder to one static anisotropic scan, self-supervised (``latentsr adapt``).

The workflow that made the cardiac model beat interpolation on the thick-slice Colin27 brain (model
card ae.md, "Brain"), in one call, using the scan alone and never a high-resolution truth:

1. fine-tune the given weights on the scan: space triplets of its acquired slices plus, for
   ``reformat_fraction`` of them, triplets of its through-plane reformats stacked along the in-plane
   axes (small changes of its own anatomy; :func:`LatentSRLib.training.data.load_reformat_stacks`);
2. score the correction smoothing/gain grid on the scan's in-plane-axis protocol
   (:mod:`LatentSRLib.calibrate`) and record the setting :func:`LatentSRLib.calibrate.choose` picks
   in the weights, with the grid itself (``meta["calibration"]``).
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Sequence

from . import LatentSRError
from .calibrate import GridRow, choose, correction_grid, grid_markdown, reformat_cases
from .models import registry
from .training.autoencoder import AETrainingConfig, train
from .volume import read


@dataclasses.dataclass
class AdaptConfig:
    """Options of :func:`adapt`; the training defaults are those of the bundled ``ae-colin27``."""

    scan: str
    out: str
    init: str | None = None
    max_minutes: float | None = 40.0
    epochs: int = 1000
    steps_per_epoch: int = 25
    batch_size: int = 8
    patch_size: int = 128
    learning_rate: float = 1e-4
    reformat_fraction: float = 0.5
    sigmas: Sequence[float] = (0.0, 1.0, 2.0, 3.0)
    gains: Sequence[float] = (0.25, 0.5, 0.75, 1.0)
    seed: int = 0
    device: str = "auto"
    progress: bool = True


@dataclasses.dataclass
class AdaptResult:
    weights: Path
    chosen: GridRow
    beats_linear: bool
    table: str


def adapt(config: AdaptConfig) -> AdaptResult:
    """Fine-tune, calibrate and write ``config.out`` (a resumable ``.ckpt`` of the training stays beside it).

    Raises:
        LatentSRError: a 4D scan, a scan that is not anisotropic (slice spacing under 1.5 in-plane
            pixels: nothing to super-resolve), or unusable init weights.
    """
    limit = config.max_minutes
    if limit is not None and not float(limit) > 0:  # NaN compares false with the time: it never stopped
        raise LatentSRError(f"the training time must be a positive number of minutes, got {limit}")
    volume = read(config.scan)
    if volume.n_frames > 1:
        raise LatentSRError(f"{config.scan} has {volume.n_frames} frames: adapt works on one static 3D scan "
                            "(for cines, train with --temporal-fraction)")
    sx, sy, sz = volume.spacing
    if sz < 1.5 * min(sx, sy):
        raise LatentSRError(f"{config.scan} is not anisotropic (slices {sz:g} mm apart, pixels {min(sx, sy):g} mm): "
                            "there is nothing to adapt to")
    init = registry.load(config.init, "ae")
    architecture = init["config"]
    train(AETrainingConfig(
        data=[config.scan], out=config.out, init_weights=str(init["path"]), interp_weight=1.0,
        interp_target="corrected", reformat_fraction=config.reformat_fraction, epochs=config.epochs,
        steps_per_epoch=config.steps_per_epoch, batch_size=config.batch_size, patch_size=config.patch_size,
        learning_rate=config.learning_rate, base_width=architecture["base_width"], depth=architecture["depth"],
        bottleneck_width=architecture["bottleneck_width"], latent_channels=architecture["latent_channels"],
        pixel_size=float(init["meta"].get("pixel_size", 1.4)), seed=config.seed, device=config.device,
        max_minutes=config.max_minutes, progress=config.progress))
    cases = reformat_cases(volume, None, Path(config.scan).name)
    linear, rows = correction_grid(cases, "ae", config.out, config.sigmas, config.gains, config.device)
    chosen, qualified = choose(rows)
    table = grid_markdown(linear, rows, chosen)
    registry.copy_with_meta(config.out, config.out, "ae", correction_sigma_mm=chosen.sigma_mm,
                            correction_gain=chosen.gain, calibration=table, adapted_to=str(config.scan))
    return AdaptResult(Path(config.out), chosen, qualified, table)
