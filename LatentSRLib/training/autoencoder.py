"""Training the latent-interpolation autoencoder on anisotropic scans only.

Paper (Sander et al. 2020): reconstruct random 128x128 in-plane patches (MSE, Adam), with
90-degree rotations and random intensity changes. Option ``interp_weight > 0`` adds the journal
follow-up's loss (arXiv 2202.09258): from triplets of adjacent acquired slices, the decoder must
rebuild x_n from the mixed latent 0.5 * (z_{n-1} + z_{n+1}). Both use acquired slices only.

``interp_target="corrected"`` applies that loss to the detail-preserving prediction used at inference
(see :mod:`LatentSRLib.synthesize.autoencoder`): linear interpolation of the acquired slices plus the
difference between the decoded mixed code and the linear mix of the decoded neighbours, so the
network learns the correction latent interpolation makes to linear interpolation.

Single process on cuda/mps/cpu; under ``torchrun --nproc_per_node N`` the model is wrapped in
DistributedDataParallel and each rank samples its own patches.
"""

from __future__ import annotations

import dataclasses
import math
import os
import time
from pathlib import Path
from typing import Sequence

import numpy as np
import torch
from torch.nn import functional as F
from tqdm import tqdm

from .. import LatentSRError
from ..models import registry
from ..models.autoencoder import LatentInterpolationAE
from ..devices import pick_device
from . import common
from .data import (MODEL_PIXEL_SIZE, fixed_validation_stacks, load_reformat_stacks, load_time_stacks, load_volumes,
                   patient_of, sample_stacks, split_by_patient)


@dataclasses.dataclass
class AETrainingConfig:
    data: Sequence[str]
    out: str
    validation_data: Sequence[str] = ()
    validation_patients: int = 8
    epochs: int = 20
    steps_per_epoch: int = 100
    batch_size: int = 16
    patch_size: int = 128
    learning_rate: float = 1e-3
    interp_weight: float = 0.0
    interp_target: str = "latent"
    base_width: int = 32
    latent_channels: int = 16
    depth: int = 4
    bottleneck_width: int = 256
    seed: int = 0
    device: str = "auto"
    resume: bool = False
    max_minutes: float | None = None
    max_cine_frames: int | None = 6
    validation_count: int = 64
    pixel_size: float = MODEL_PIXEL_SIZE
    progress: bool = True
    #: Start from the weights of an exported file (fine-tuning) instead of a random initialisation.
    init_weights: str | None = None
    #: Fraction of each triplet batch drawn from cines over time (``load_time_stacks``) rather than
    #: over space; these are the only examples of small changes between neighbours.
    temporal_fraction: float = 0.0
    #: Fraction of each triplet batch drawn from through-plane reformats stacked along the in-plane
    #: axes (``load_reformat_stacks``): small changes for static 3D scans, where there is no time.
    reformat_fraction: float = 0.0
    #: In-plane Gaussian smoothing (mm) of the correction at inference, recorded in the weights
    #: (see :mod:`LatentSRLib.synthesize.autoencoder`); chosen on validation after training.
    correction_sigma_mm: float = 0.0
    #: Factor on that correction at inference, recorded in the weights; chosen on validation.
    correction_gain: float = 1.0
    #: Skip data files whose path contains any of these strings (e.g. the test patients of a
    #: published evaluation); a user's data is used as given.
    exclude: Sequence[str] = ()


def corrected_middle(x0: torch.Tensor, x1: torch.Tensor, r0: torch.Tensor, r1: torch.Tensor, mixed: torch.Tensor,
                     alpha: float | torch.Tensor = 0.5) -> torch.Tensor:
    """Detail-preserving latent interpolation: lerp(x0, x1) + decode(mix) - lerp(decode(z0), decode(z1)).

    The autoencoder's reconstruction error (blur) cancels between the last two terms, and the result
    equals x0 at alpha=0 and x1 at alpha=1 exactly; what remains is the correction the latent
    interpolation makes to linear interpolation.
    """
    return (1 - alpha) * (x0 - r0) + alpha * (x1 - r1) + mixed


def losses(model: torch.nn.Module, batch: torch.Tensor, interp_weight: float,
           interp_target: str = "latent") -> dict[str, torch.Tensor]:
    """Loss terms for a batch of stacks (B, S, H, W); S=1 (paper) or 3 (with the interpolation loss).

    Returns ``recon`` (MSE of every slice's reconstruction), ``interp`` (MSE of the middle slice
    decoded from its neighbours' mixed latents; S=3 only) and ``total``.
    """
    ae = model.module if hasattr(model, "module") else model
    b, s, h, w = batch.shape
    z = ae.encode(batch.reshape(b * s, 1, h, w))
    recon = ae.decode(z).reshape(b, s, h, w)
    terms = {"recon": F.mse_loss(recon, batch)}
    total = terms["recon"]
    if interp_weight > 0 and s == 3:
        z = z.reshape(b, s, *z.shape[1:])
        middle = ae.decode(0.5 * (z[:, 0] + z[:, 2]))[:, 0]
        if interp_target == "corrected":
            middle = corrected_middle(batch[:, 0], batch[:, 2], recon[:, 0], recon[:, 2], middle)
        elif interp_target != "latent":
            raise ValueError(f"interp_target must be 'latent' or 'corrected', not {interp_target!r}")
        terms["interp"] = F.mse_loss(middle, batch[:, 1])
        total = total + interp_weight * terms["interp"]
    terms["total"] = total
    return terms


@torch.inference_mode()
def validate(model: LatentInterpolationAE, triplets: torch.Tensor, batch_size: int = 16) -> dict[str, float]:
    """Reconstruction and mid-slice interpolation MSE on fixed validation triplets.

    ``linear`` is the MSE of plain linear interpolation (the mean of the neighbours) on the same
    triplets: the number the model's ``interp`` has to beat.
    """
    model.eval()
    totals = {"recon": 0.0, "interp": 0.0, "corrected": 0.0, "linear": 0.0}
    for start in range(0, len(triplets), batch_size):
        batch = triplets[start:start + batch_size]
        middle = batch[:, 1:2]
        totals["recon"] += F.mse_loss(model(middle), middle, reduction="sum").item()
        synthetic = model.interpolate(batch[:, :1], batch[:, 2:], torch.tensor([0.5]))
        totals["interp"] += F.mse_loss(synthetic, middle, reduction="sum").item()
        r0, r1 = model(batch[:, :1]), model(batch[:, 2:])
        corrected = corrected_middle(batch[:, :1], batch[:, 2:], r0, r1, synthetic)
        totals["corrected"] += F.mse_loss(corrected, middle, reduction="sum").item()
        totals["linear"] += F.mse_loss(0.5 * (batch[:, :1] + batch[:, 2:]), middle, reduction="sum").item()
    model.train()
    return {k: v / triplets[:, 1].numel() for k, v in totals.items()}


def train(config: AETrainingConfig) -> Path:
    """Train, checkpointing every epoch; export float16 weights of the best validation epoch."""
    if config.temporal_fraction + config.reformat_fraction > 1:
        raise LatentSRError("--temporal-fraction and --reformat-fraction add up to more than 1")
    rank, world = common.distributed_context()
    device = pick_device(config.device)
    if world > 1 and device.type == "cuda":
        device = torch.device("cuda", rank % torch.cuda.device_count())
    rng = common.seed_everything(config.seed + rank)
    volumes = load_volumes(config.data, config.pixel_size, max_frames=config.max_cine_frames,
                           progress=config.progress and rank == 0, exclude=config.exclude)
    if config.validation_data:
        train_volumes = volumes
        validation_volumes = load_volumes(config.validation_data, config.pixel_size, progress=False,
                                          exclude=config.exclude)
    else:
        train_volumes, validation_volumes = split_by_patient(volumes, config.validation_patients, config.seed)
    triplets = torch.from_numpy(fixed_validation_stacks(validation_volumes or train_volumes,
                                                        config.validation_count, config.patch_size)).to(device)

    model = LatentInterpolationAE(config.base_width, config.depth, config.bottleneck_width,
                                  config.latent_channels).to(device)
    if config.init_weights and not config.resume:
        content = registry.load(config.init_weights, "ae")
        if content["config"] != model.config:
            raise LatentSRError(f"--init {config.init_weights} has architecture {content['config']}, "
                                f"not {model.config}")
        model.load_state_dict(content["state_dict"])
    # Small-change triplet sources (training patients only): cines over time, static scans' reformats.
    held = {patient_of(v) for v in validation_volumes}

    def small_change_stacks(fraction: float, loader, problem: str) -> list:
        if fraction <= 0 or config.interp_weight <= 0:
            return []
        stacks = [s for s in loader(config.data, config.pixel_size, progress=False, exclude=config.exclude)
                  if patient_of(s) not in held]
        if not stacks:
            raise LatentSRError(problem)
        return stacks

    time_stacks = small_change_stacks(config.temporal_fraction, load_time_stacks,
                                      "--temporal-fraction needs 4D cines (3 or more frames) among --data")
    reformat_stacks = small_change_stacks(config.reformat_fraction, load_reformat_stacks,
                                          "--reformat-fraction found no scans to reformat among --data")
    optimizer = torch.optim.Adam(model.parameters(), lr=config.learning_rate)
    history: list[dict] = []
    start_epoch, best, elapsed_before = 0, math.inf, 0.0
    if config.resume:
        state = common.load_checkpoint(config.out)
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        start_epoch, best, history = state["epoch"], state["best"], state["history"]
        elapsed_before = state.get("seconds", 0.0)
        rng = np.random.default_rng(state["seed_sequence"] + rank)
    trainable = model
    if world > 1:
        trainable = torch.nn.parallel.DistributedDataParallel(
            model, device_ids=[device.index] if device.type == "cuda" else None)
    neighbours = 3 if config.interp_weight > 0 else 1
    started = time.time()
    for epoch in range(start_epoch, config.epochs):
        bar = tqdm(range(config.steps_per_epoch), desc=f"epoch {epoch + 1}/{config.epochs}",
                   disable=not (config.progress and rank == 0), leave=False)
        running = 0.0
        for step in bar:
            n_time = int(round(config.batch_size * config.temporal_fraction)) if time_stacks else 0
            n_reformat = int(round(config.batch_size * config.reformat_fraction)) if reformat_stacks else 0
            parts = [sample_stacks(train_volumes, config.batch_size - n_time - n_reformat, config.patch_size,
                                   neighbours, rng)]
            for source, count in ((time_stacks, n_time), (reformat_stacks, n_reformat)):
                if count:
                    parts.append(sample_stacks(source, count, config.patch_size, 3, rng))
            stacks = np.concatenate(parts)
            batch = torch.from_numpy(stacks).to(device)
            terms = losses(trainable, batch, config.interp_weight, config.interp_target)
            optimizer.zero_grad(set_to_none=True)
            terms["total"].backward()
            optimizer.step()
            running += terms["total"].item()
            bar.set_postfix({k: f"{v.item():.4f}" for k, v in terms.items()})
        seconds = elapsed_before + time.time() - started
        scores = validate(model, triplets) if rank == 0 else {}
        record = {"epoch": epoch + 1, "train_loss": running / config.steps_per_epoch,
                  "patches": (epoch + 1) * config.steps_per_epoch * config.batch_size * world,
                  "seconds": round(seconds, 1), **{f"val_{k}": v for k, v in scores.items()}}
        history.append(record)
        if rank == 0:
            print(" ".join(f"{k}={v:.5g}" if isinstance(v, float) else f"{k}={v}" for k, v in record.items()),
                  flush=True)
            # Select on what inference uses: interpolation when trained for it, else reconstruction.
            score = (scores["recon"] if config.interp_weight == 0 else
                     scores["corrected"] if config.interp_target == "corrected" else scores["interp"])
            if score < best:
                best = score
                export(model, config, history, Path(config.out), device)
            common.save_checkpoint(config.out, {
                "model": model.state_dict(), "optimizer": optimizer.state_dict(), "epoch": epoch + 1,
                "best": best, "history": history, "seconds": seconds,
                "seed_sequence": int(rng.integers(1 << 31)), "config": dataclasses.asdict(config)})
        if config.max_minutes is not None and (time.time() - started) / 60 > config.max_minutes:
            if rank == 0:
                print(f"stopping after {epoch + 1} epochs: --max-minutes {config.max_minutes} reached", flush=True)
            break
    return Path(config.out)


def export(model: LatentInterpolationAE, config: AETrainingConfig, history: list[dict], out: Path,
           device: torch.device) -> None:
    meta = {
        "method": "latent-interpolation autoencoder (Sander et al. 2020)"
                  + (f" + interpolation loss x{config.interp_weight} on the {config.interp_target} prediction"
                     " (arXiv 2202.09258)" if config.interp_weight else ""),
        # How inference combines the decoded slices; measured, see the model card.
        "mode": "corrected" if config.interp_target == "corrected" else "latent",
        "pixel_size": config.pixel_size,
        "correction_sigma_mm": config.correction_sigma_mm,
        "correction_gain": config.correction_gain,
        "intensity": "1st/99th percentile per volume -> [0, 1]",
        "training": common.recorded_config(config),
        "history": history,
        "device": str(device),
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        "host_cpus": os.cpu_count(),
    }
    registry.save(out, "ae", model.config, model.state_dict(), meta)
