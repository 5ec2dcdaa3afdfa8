"""Device selection for the learned methods and training: "auto" -> CUDA, else MPS, else CPU.

Ground layer: inference (``synthesize``) and ``training`` both import it, so running a model never
loads the training package.
"""

from __future__ import annotations

from . import LatentSRError


def pick_device(device: str = "auto"):
    """A ``torch.device``: "auto" -> cuda, else mps, else cpu; an explicit name is checked to exist."""
    import torch  # only the learned methods and training need it

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
