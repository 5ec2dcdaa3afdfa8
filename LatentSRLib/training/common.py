"""What every training loop shares: device choice, seeding, resumable checkpoints, the training
options as a weights file records them."""

from __future__ import annotations

import dataclasses
import os
import random
from pathlib import Path
from typing import Any

import numpy as np
import torch

from .. import LatentSRError, atomic


def seed_everything(seed: int) -> np.random.Generator:
    random.seed(seed)
    torch.manual_seed(seed)
    return np.random.default_rng(seed)


def checkpoint_path(out: str | os.PathLike) -> Path:
    """The resumable checkpoint kept beside the exported weights file ``out``."""
    out = Path(out)
    return out.with_name(out.name + ".ckpt")


def recorded_config(config: Any, leave_out: tuple[str, ...] = ("progress",)) -> dict[str, Any]:
    """A training config (dataclass) as plain data for a weights file's metadata, with every absolute
    path reduced to its last component: a file that is shared must not carry the trainer's folders
    (they can name users and machines); the model card holds the reproducing command."""
    def portable(value: Any) -> Any:
        if isinstance(value, os.PathLike):
            value = os.fspath(value)
        if isinstance(value, str) and os.path.isabs(value):
            return os.path.basename(os.path.normpath(value))
        if isinstance(value, (list, tuple)):
            return [portable(v) for v in value]
        return value
    return {k: portable(v) for k, v in dataclasses.asdict(config).items() if k not in leave_out}


def plain(value: Any) -> Any:
    """``value`` with numpy scalars and arrays, paths and sets turned into what ``weights_only``
    loading accepts: tensors, dicts, lists, tuples, strings, numbers, booleans and None."""
    if isinstance(value, dict):
        return {plain(k): plain(v) for k, v in value.items()}
    if type(value) is tuple:
        return tuple(plain(v) for v in value)
    if isinstance(value, (list, tuple)):  # lists, and named tuples as lists
        return [plain(v) for v in value]
    if isinstance(value, (set, frozenset)):
        return [plain(v) for v in sorted(value, key=repr)]
    if isinstance(value, np.ndarray):
        return torch.from_numpy(np.ascontiguousarray(value))
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, os.PathLike):
        return os.fspath(value)
    return value


def save_checkpoint(out: str | os.PathLike, state: dict[str, Any]) -> None:
    """Save a resumable checkpoint of plain data only (see :func:`plain`), so loading never unpickles code."""
    path = checkpoint_path(out)
    path.parent.mkdir(parents=True, exist_ok=True)
    content = plain(state)
    # Through a private staging folder: a crash mid-write never leaves a broken checkpoint, and nothing
    # is written through a symlink planted at a fixed temporary name.
    atomic.write_file(path, lambda staged: torch.save(content, staged))


def load_checkpoint(out: str | os.PathLike) -> dict[str, Any]:
    """Load the checkpoint beside ``out`` with ``weights_only=True``: a crafted file cannot run code.

    Raises:
        LatentSRError: no checkpoint, or one holding anything but tensors and plain Python data.
    """
    path = checkpoint_path(out)
    if not path.exists():
        raise LatentSRError(f"--resume: no checkpoint at {path}")
    if path.is_dir():
        raise LatentSRError(f"--resume: {path} is a folder, not a checkpoint")
    # numpy scalars (and their dtypes) rebuild from bytes, no code: allowed for checkpoints written
    # before they were saved as plain numbers.
    numpy_scalars = [np.dtype, getattr(np, "_core", getattr(np, "core", None)).multiarray.scalar,
                     *(type(np.dtype(t)) for t in (np.float64, np.float32, np.int64, np.int32, np.bool_))]
    try:
        with torch.serialization.safe_globals(numpy_scalars):
            state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # UnpicklingError for forbidden objects; many types for garbage
        first = " ".join(str(error).split())[:160]
        raise LatentSRError(f"--resume: {path} is not a checkpoint that can be loaded safely "
                            f"(only tensors and plain data are accepted; {type(error).__name__}: {first})") from None
    if not isinstance(state, dict):
        raise LatentSRError(f"--resume: {path} is not a LatentSR checkpoint")
    return state


def distributed_context() -> tuple[int, int]:
    """(rank, world size) under torchrun, initialising the process group; (0, 1) otherwise."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return 0, 1
    import torch.distributed as dist
    if not dist.is_initialized():
        dist.init_process_group("nccl" if torch.cuda.is_available() else "gloo")
    return dist.get_rank(), world
