"""What every training loop shares: device choice, seeding, resumable checkpoints."""

from __future__ import annotations

import os
import random
from pathlib import Path
from typing import Any

import numpy as np
import torch

from .. import LatentSRError


def pick_device(device: str = "auto") -> torch.device:
    """"auto" -> cuda, else mps, else cpu; an explicit name is checked to exist."""
    if device == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    try:
        chosen = torch.device(device)
    except RuntimeError:
        raise LatentSRError(f"unknown device '{device}' (use auto, cpu, cuda, cuda:N or mps)") from None
    if chosen.type == "cuda" and not torch.cuda.is_available():
        raise LatentSRError("device 'cuda' was asked for but no CUDA GPU is available")
    if chosen.type == "mps" and not (getattr(torch.backends, "mps", None) and torch.backends.mps.is_available()):
        raise LatentSRError("device 'mps' was asked for but Apple's MPS is not available")
    return chosen


def seed_everything(seed: int) -> np.random.Generator:
    random.seed(seed)
    torch.manual_seed(seed)
    return np.random.default_rng(seed)


def checkpoint_path(out: str | os.PathLike) -> Path:
    """The resumable checkpoint kept beside the exported weights file ``out``."""
    out = Path(out)
    return out.with_name(out.name + ".ckpt")


def save_checkpoint(out: str | os.PathLike, state: dict[str, Any]) -> None:
    path = checkpoint_path(out)
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(path.name + ".tmp")
    torch.save(state, temporary)
    os.replace(temporary, path)  # a crash mid-write never leaves a broken checkpoint


def load_checkpoint(out: str | os.PathLike) -> dict[str, Any]:
    path = checkpoint_path(out)
    if not path.exists():
        raise LatentSRError(f"--resume: no checkpoint at {path}")
    return torch.load(path, map_location="cpu", weights_only=False)


def distributed_context() -> tuple[int, int]:
    """(rank, world size) under torchrun, initialising the process group; (0, 1) otherwise."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return 0, 1
    import torch.distributed as dist
    if not dist.is_initialized():
        dist.init_process_group("nccl" if torch.cuda.is_available() else "gloo")
    return dist.get_rank(), world
