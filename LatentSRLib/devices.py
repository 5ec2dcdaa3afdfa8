"""Device selection for the learned methods and training: "auto" -> CUDA, else MPS, else CPU.

Ground layer: inference (``synthesize``) and ``training`` both import it, so running a model never
loads the training package.
"""

from __future__ import annotations

import re

from . import LatentSRError

#: The devices LatentSR runs on. torch knows more names (meta, xla, hpu, ...), but a model moved to
#: them either holds no data (meta) or needs a backend LatentSR does not set up.
DEVICE_PATTERN = re.compile(r"auto|cpu|mps|cuda(:\d+)?")
DEVICE_HELP = "auto, cpu, cuda, cuda:N or mps"


def check_device_name(device: str) -> str:
    """Refuse a device LatentSR cannot run on, without importing torch (so a conventional run, which
    never uses the device, still catches a typo before any work)."""
    if not isinstance(device, str) or not DEVICE_PATTERN.fullmatch(device.strip()):
        raise LatentSRError(f"unknown device '{device}' (use {DEVICE_HELP})")
    return device.strip()


def pick_device(device: str = "auto"):
    """A ``torch.device``: "auto" -> cuda, else mps, else cpu; an explicit name is checked to exist."""
    device = check_device_name(device)
    import torch  # only the learned methods and training need it

    if device == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    chosen = torch.device(device)
    if chosen.type == "cuda" and not torch.cuda.is_available():
        raise LatentSRError("device 'cuda' was asked for but no CUDA GPU is available")
    if chosen.type == "cuda" and chosen.index is not None and chosen.index >= torch.cuda.device_count():
        raise LatentSRError(f"device '{device}' was asked for but there are {torch.cuda.device_count()} CUDA GPUs "
                            f"(cuda:0 to cuda:{torch.cuda.device_count() - 1})")
    if chosen.type == "mps" and not (getattr(torch.backends, "mps", None) and torch.backends.mps.is_available()):
        raise LatentSRError("device 'mps' was asked for but Apple's MPS is not available")
    return chosen
