"""Training the unpaired contrastive SR model (Li et al. 2023) on anisotropic scans only.

HR source Y_s: random in-plane patches of ``hr_count`` anisotropic volumes (1.4 mm pixels).
LR target X_t: random through-plane reformats (XZ and YZ planes) of the ``lr`` volumes, linearly
interpolated along Z by k = round(slice spacing / 1.4 mm), slice axis vertical, randomly flipped.
The two sets are unpaired; HR patches feed the source flow and the cycle, LR patches the target
flow and the discriminators. See :mod:`LatentSRLib.models.contrastive` for the losses.

Validation (no isotropic truth exists): held-out patients' in-plane HR patches degraded the known
way -- average rows over the slice thickness, keep every k-th row, re-interpolate linearly (the
reformat of a thick-slice scan), with k the training scans' own factor and the middle of the
training thickness range, so validation scores the degradation the model is trained for -- scored
by L1 and PSNR of the SR output against the HR patch, next to the same numbers for the degraded
input itself (= linear interpolation), so the log shows whether the model beats interpolation.
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
from tqdm import tqdm

from ..models import registry
from ..models.contrastive import (ContrastiveSR, Discriminators, LossWeights, discriminator_losses,
                                  generator_losses, thick_slice_degrade)
from ..devices import pick_device
from . import common
from .data import (MODEL_PIXEL_SIZE, TrainingVolume, load_volumes, pad_to, patient_of, sample_stacks,
                   split_by_patient)


@dataclasses.dataclass
class ContrastiveTrainingConfig:
    """Options of :func:`train` (CLI: ``latentsr train contrastive``).

    Attributes:
        hr: files/folders of anisotropic scans whose in-plane slices are the HR source domain.
        lr: files/folders whose through-plane reformats are the LR target domain (may equal ``hr``).
        out: weights file to write (float16); a resumable ``.ckpt`` is kept beside it.
        hr_count: use at most this many HR volumes (3D frames), chosen with ``seed``; None: all.
        validation_patients: patients held out of both domains for validation.
        epochs, steps_per_epoch, batch_size, patch_size, learning_rate: the usual.
        weights: generator loss weights (see :class:`LossWeights`).
        use_contrastive: False sets the InfoNCE weight to 0 (the paper's ablation).
        width, encoder_blocks, decoder_blocks: network size.
        residual: the SR decoder adds its output to its input image (see ContrastiveSR).
        thickness_range: slice thickness of the synthetic degradation as a fraction (low, high) of
            the spacing k, drawn per patch. Clinical stacks are often thinner than their spacing
            (gaps), and so are the papers' protocol inputs (5 mm slices, every other one dropped);
            (1, 1) is the thickness = spacing model.
        val_k: rows skipped by the validation degradation; None: the LR scans' median factor k
            (7 for 10 mm slices at 1.4 mm). Rows averaged: k times the middle of ``thickness_range``.
        max_minutes: stop (after validating and checkpointing) once this wall time is passed.
        exclude: skip data files whose path contains any of these strings (e.g. the test patients
            of a published evaluation); a user's data is used as given.
    """

    hr: Sequence[str]
    lr: Sequence[str]
    out: str
    hr_count: int | None = None
    validation_patients: int = 6
    epochs: int = 10
    steps_per_epoch: int = 40
    batch_size: int = 8
    patch_size: int = 64
    learning_rate: float = 5e-4
    weights: LossWeights = dataclasses.field(default_factory=LossWeights)
    use_contrastive: bool = True
    width: int = 32
    encoder_blocks: int = 3
    decoder_blocks: int = 1
    residual: bool = True
    thickness_range: tuple[float, float] = (0.5, 1.0)
    val_k: int | None = None
    validation_count: int = 48
    seed: int = 0
    device: str = "auto"
    resume: bool = False
    max_minutes: float | None = None
    max_cine_frames: int | None = 2
    pixel_size: float = MODEL_PIXEL_SIZE
    progress: bool = True
    exclude: Sequence[str] = ()


def linear_along_z(slices: np.ndarray, factor: int) -> np.ndarray:
    """(Z, ...) -> ((Z-1)*factor+1, ...) linear interpolation along axis 0.

    Uses :func:`LatentSRLib.interpolate.upsample` when that module exists, else an equivalent lerp.
    """
    if factor == 1:
        return slices
    try:
        from ..interpolate import upsample  # type: ignore
        return np.asarray(upsample(slices, factor, "linear", axis=0), dtype=np.float32)
    except (ImportError, TypeError):
        z = slices.shape[0]
        position = np.arange((z - 1) * factor + 1) / factor
        low = np.minimum(np.floor(position).astype(int), z - 2)
        t = (position - low).reshape(-1, *([1] * (slices.ndim - 1))).astype(np.float32)
        return (1 - t) * slices[low] + t * slices[low + 1]


def lr_factor(volume: TrainingVolume, pixel_size: float) -> int:
    return max(1, int(round(volume.slice_spacing / pixel_size)))


def sample_reformats(volumes: Sequence[TrainingVolume], count: int, size: int, pixel_size: float,
                     rng: np.random.Generator, augment: bool = True) -> tuple[np.ndarray, list[int]]:
    """``count`` through-plane patches (count, 1, size, size), slice axis vertical, and their k.

    Each: a random volume, an XZ or YZ plane, linear interpolation along Z by k, a random
    size x size crop (edge-replicated when the stack is shorter), random flips and intensity change.
    """
    out = np.empty((count, 1, size, size), np.float32)
    ks = []
    for i in range(count):
        volume = volumes[rng.integers(len(volumes))]
        slices = volume.slices  # (Z, Y, X)
        if rng.random() < 0.5:
            plane = slices[:, rng.integers(slices.shape[1]), :]  # XZ: (Z, X)
        else:
            plane = slices[:, :, rng.integers(slices.shape[2])]  # YZ: (Z, Y)
        k = lr_factor(volume, pixel_size)
        width = plane.shape[1]
        left = rng.integers(0, max(width - size, 0) + 1)
        plane = linear_along_z(np.ascontiguousarray(plane[:, left:left + size]), k)
        top = rng.integers(0, max(plane.shape[0] - size, 0) + 1)
        patch = plane[top:top + size]
        if patch.shape[0] < size:
            pad = size - patch.shape[0]
            patch = np.pad(patch, ((pad // 2, pad - pad // 2), (0, 0)), mode="edge")
        patch = pad_to(patch, size)
        if augment:
            if rng.random() < 0.5:
                patch = patch[::-1]
            if rng.random() < 0.5:
                patch = patch[:, ::-1]
            gamma = float(np.exp(rng.uniform(np.log(0.7), np.log(1.4))))
            patch = np.clip(patch, 0, None) ** gamma * float(rng.uniform(0.8, 1.2))
        out[i, 0] = patch
        ks.append(min(k, size - 1))
    return out, ks


def validation_set(volumes: Sequence[TrainingVolume], count: int, size: int, k: int, seed: int = 1234,
                   thickness: int | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Fixed (HR, degraded) in-plane patch pairs (count, 1, size, size): average ``thickness`` rows
    (default k), keep every k-th row (phase varies), linear re-interpolation."""
    rng = np.random.default_rng(seed)
    hr = torch.from_numpy(sample_stacks(list(volumes), count, size, 1, rng, augment_patches=False))
    phases = [int(p) for p in rng.integers(0, k, count)]
    return hr, thick_slice_degrade(hr, [k] * count, phases, [thickness or k] * count)


def psnr(a: torch.Tensor, b: torch.Tensor) -> float:
    """Mean per-image PSNR with data range 1."""
    mse = ((a - b) ** 2).flatten(1).mean(1).clamp_min(1e-10)
    return float((10 * torch.log10(1.0 / mse)).mean())


@torch.inference_mode()
def validate(model: ContrastiveSR, hr: torch.Tensor, degraded: torch.Tensor, batch_size: int = 16
             ) -> dict[str, float]:
    """L1 / PSNR of SR(degraded) vs HR (``sr_*``) and of the degraded input vs HR (``input_*``)."""
    model.eval()
    device = next(model.parameters()).device
    outputs = [model(degraded[i:i + batch_size].to(device)).cpu() for i in range(0, len(degraded), batch_size)]
    model.train()
    sr = torch.cat(outputs).clamp(0, 1)
    return {"sr_l1": float((sr - hr).abs().mean()), "sr_psnr": psnr(sr, hr),
            "input_l1": float((degraded - hr).abs().mean()), "input_psnr": psnr(degraded, hr)}


def load_domains(config: ContrastiveTrainingConfig) -> tuple[list, list]:
    """All volumes of the HR and LR paths (the same list when the paths are the same)."""
    show = config.progress
    hr_all = load_volumes(config.hr, config.pixel_size, max_frames=config.max_cine_frames, progress=show,
                          exclude=config.exclude)
    same = sorted(map(str, config.lr)) == sorted(map(str, config.hr))
    lr_all = hr_all if same else load_volumes(config.lr, config.pixel_size, max_frames=config.max_cine_frames,
                                              progress=show, exclude=config.exclude)
    return hr_all, lr_all


def prepare_data(config: ContrastiveTrainingConfig, loaded: tuple[list, list] | None = None
                 ) -> tuple[list, list, list]:
    """(HR training volumes, LR training volumes, validation volumes); validation patients are
    held out of both domains. ``loaded``: the result of :func:`load_domains`, to skip reading."""
    hr_all, lr_all = loaded if loaded is not None else load_domains(config)
    hr_train, validation = split_by_patient(hr_all, config.validation_patients, config.seed)
    held = {patient_of(v) for v in validation}
    lr_train = [v for v in lr_all if patient_of(v) not in held]
    if config.hr_count is not None and config.hr_count < len(hr_train):
        chosen = np.random.default_rng(config.seed).choice(len(hr_train), config.hr_count, replace=False)
        hr_train = [hr_train[i] for i in sorted(chosen)]
    return hr_train, lr_train, validation or hr_train


def train(config: ContrastiveTrainingConfig, loaded: tuple[list, list] | None = None) -> Path:
    """Train with checkpoints every epoch (resumable); export float16 weights of the best epoch
    (lowest validation SR L1) to ``config.out``. Returns ``config.out``.

    ``loaded``: volumes already read by :func:`load_domains` (experiments reuse one load)."""
    rank, world = common.distributed_context()  # under torchrun: one process per GPU (or CPU rank)
    device = pick_device(config.device)
    if world > 1 and device.type == "cuda":
        device = torch.device("cuda", rank % torch.cuda.device_count())
    rng = common.seed_everything(config.seed)  # the same initial weights on every rank
    weights = dataclasses.replace(config.weights, nce=config.weights.nce if config.use_contrastive else 0.0)
    hr_train, lr_train, validation = prepare_data(config, loaded)
    val_k = config.val_k or int(np.median([lr_factor(v, config.pixel_size) for v in lr_train]))
    val_thickness = max(1, int(round(val_k * sum(config.thickness_range) / 2)))
    val_hr, val_degraded = validation_set(validation, config.validation_count, config.patch_size, val_k,
                                          thickness=val_thickness)
    if config.progress:
        print(f"HR volumes {len(hr_train)}, LR volumes {len(lr_train)}, validation volumes {len(validation)}",
              flush=True)

    model = ContrastiveSR(config.width, config.encoder_blocks, config.decoder_blocks,
                         residual=config.residual).to(device)
    discs = Discriminators(config.width).to(device)
    opt_g = torch.optim.Adam(model.parameters(), lr=config.learning_rate, betas=(0.5, 0.999))
    opt_d = torch.optim.Adam(discs.parameters(), lr=config.learning_rate, betas=(0.5, 0.999))
    history: list[dict] = []
    start_epoch, best, elapsed_before = 0, math.inf, 0.0
    if config.resume:
        state = common.load_checkpoint(config.out)
        model.load_state_dict(state["model"])
        discs.load_state_dict(state["discriminators"])
        opt_g.load_state_dict(state["opt_g"])
        opt_d.load_state_dict(state["opt_d"])
        start_epoch, best, history = state["epoch"], state["best"], state["history"]
        elapsed_before = state.get("seconds", 0.0)
        rng = np.random.default_rng(state["seed_sequence"])
        torch.manual_seed(state["seed_sequence"])
    if rank:  # each rank samples its own patches; rank 0 draws as a single process does
        rng = np.random.default_rng([int(rng.integers(1 << 31)), rank])
    torch_generator = torch.Generator().manual_seed(config.seed + rank)
    started = time.time()
    out_of_time = False
    for epoch in range(start_epoch, config.epochs):
        bar = tqdm(range(config.steps_per_epoch), desc=f"epoch {epoch + 1}/{config.epochs}",
                   disable=not (config.progress and rank == 0), leave=False)
        sums: dict[str, float] = {}
        steps = 0
        for _ in bar:
            terms = train_step(model, discs, opt_g, opt_d, hr_train, lr_train, config, weights, rng,
                               torch_generator, device)
            for name, value in terms.items():
                sums[name] = sums.get(name, 0.0) + value
            steps += 1
            bar.set_postfix({k: f"{v:.3f}" for k, v in terms.items() if k in ("total", "cycle", "nce")})
            if config.max_minutes is not None and _any_rank((time.time() - started) / 60 > config.max_minutes, device):
                out_of_time = True
                break
        seconds = elapsed_before + time.time() - started
        scores = validate(model, val_hr, val_degraded)
        record = {"epoch": epoch + 1, "steps": (history[-1]["steps"] if history else 0) + steps,
                  "seconds": round(seconds, 1), **{f"train_{k}": v / max(steps, 1) for k, v in sums.items()},
                  **{f"val_{k}": v for k, v in scores.items()}}
        history.append(record)
        if rank == 0:  # every rank holds the same weights (averaged gradients); rank 0 writes
            print(" ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in record.items()),
                  flush=True)
        if scores["sr_l1"] < best:
            best = scores["sr_l1"]
            if rank == 0:
                export(model, config, weights, history, Path(config.out), device)
        if rank == 0:
            common.save_checkpoint(config.out, {
                "model": model.state_dict(), "discriminators": discs.state_dict(), "opt_g": opt_g.state_dict(),
                "opt_d": opt_d.state_dict(), "epoch": epoch + 1, "best": best, "history": history,
                "seconds": seconds, "seed_sequence": int(rng.integers(1 << 31)),
                "config": dataclasses.asdict(config)})
        if out_of_time:
            print(f"stopping after {epoch + 1} epochs: max_minutes {config.max_minutes} reached", flush=True)
            break
    return Path(config.out)


def train_step(model: ContrastiveSR, discs: Discriminators, opt_g, opt_d, hr_volumes, lr_volumes,
               config: ContrastiveTrainingConfig, weights: LossWeights, rng: np.random.Generator,
               torch_generator: torch.Generator | None, device: torch.device) -> dict[str, float]:
    """One generator and one discriminator update on freshly sampled HR and LR patches."""
    y_s = torch.from_numpy(sample_stacks(hr_volumes, config.batch_size, config.patch_size, 1, rng)).to(device)
    x_np, ks = sample_reformats(lr_volumes, config.batch_size, config.patch_size, config.pixel_size, rng)
    x_t = torch.from_numpy(x_np).to(device)
    phases = [int(rng.integers(k)) for k in ks]
    low, high = config.thickness_range
    thicknesses = [max(1, int(round(k * rng.uniform(low, high)))) for k in ks]
    return step_on_batch(model, discs, opt_g, opt_d, y_s, x_t, ks, phases, weights, torch_generator,
                         thicknesses)


def _average_gradients(module: torch.nn.Module) -> None:
    """Under torchrun, average gradients over the ranks (DistributedDataParallel's job; it cannot do it
    here because the losses call submodules, not ``forward``). No-op in a single process."""
    if not (torch.distributed.is_available() and torch.distributed.is_initialized()):
        return
    world = torch.distributed.get_world_size()
    for parameter in module.parameters():
        if parameter.grad is not None:  # the same parameters on every rank (the same graph)
            torch.distributed.all_reduce(parameter.grad)
            parameter.grad /= world


def _any_rank(flag: bool, device: torch.device) -> bool:
    """True on every rank if it is True on any (so all ranks stop at the same step)."""
    if not (torch.distributed.is_available() and torch.distributed.is_initialized()):
        return flag
    value = torch.tensor([float(flag)], device=device)  # NCCL reduces tensors on this rank's GPU
    torch.distributed.all_reduce(value, op=torch.distributed.ReduceOp.MAX)
    return bool(value.item())


def step_on_batch(model, discs, opt_g, opt_d, y_s, x_t, ks, phases, weights, torch_generator=None,
                  thicknesses=None) -> dict[str, float]:
    """Generator update (all generator terms) then discriminator update; returns the loss values."""
    for p in discs.parameters():
        p.requires_grad_(False)
    terms, flows = generator_losses(model, discs, y_s, x_t, ks, phases, weights, torch_generator, thicknesses)
    opt_g.zero_grad(set_to_none=True)
    terms["total"].backward()
    _average_gradients(model)
    opt_g.step()
    for p in discs.parameters():
        p.requires_grad_(True)
    d_terms = discriminator_losses(discs, flows, x_t)
    opt_d.zero_grad(set_to_none=True)
    d_terms["total"].backward()
    _average_gradients(discs)
    opt_d.step()
    values = {k: float(v.detach()) for k, v in terms.items()}
    values.update({k: float(v.detach()) for k, v in d_terms.items() if k != "total"})
    return values


def export(model: ContrastiveSR, config: ContrastiveTrainingConfig, weights: LossWeights, history: list[dict],
           out: Path, device: torch.device) -> None:
    meta = {
        "method": "unpaired contrastive SR (Li et al. 2023, arXiv 2310.15767), through-plane adaptation"
                  + ("" if weights.nce > 0 else " without the contrastive loss"),
        "pixel_size": config.pixel_size,
        "intensity": "1st/99th percentile per volume -> [0, 1]",
        "orientation": "slice axis vertical (image rows)",
        "training": common.recorded_config(config),
        "loss_weights": dataclasses.asdict(weights),
        "history": history,
        "device": str(device),
        "torch": str(torch.__version__),
        "threads": torch.get_num_threads(),
        "host_cpus": os.cpu_count(),
    }
    registry.save(out, "contrastive", model.config, model.state_dict(), meta)
