"""Loading a learned method's network from its weights, once per process (one place for all three).

The cache key is the file's path, its sha256 (a replaced file is reloaded and re-checked), the
network class and the device, so a worker that runs many studies loads each model once.
"""

from __future__ import annotations

import functools

import torch

from .. import LatentSRError
from ..models import registry


@functools.lru_cache(maxsize=8)
def _load(path: str, digest: str, kind: str, network: type, device: str, channels_last: bool
          ) -> tuple[torch.nn.Module, dict]:
    content = registry.load(path, kind)
    try:  # a config with unknown or ill-typed settings is a file for another network, as a shape mismatch is
        model = network(**content["config"])
        model.load_state_dict(content["state_dict"])
    except (RuntimeError, TypeError, ValueError):
        raise LatentSRError(f"{path} does not match the {kind} network's architecture {content['config']}") from None
    model = model.to(device)
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
    return model.eval(), content.get("meta", {})


def load_network(weights: str | None, kind: str, network: type, device: torch.device,
                 channels_last: bool = False) -> tuple[torch.nn.Module, dict]:
    """(model in eval mode on ``device``, its metadata) for a bundled name or weights file of ``kind``.

    ``channels_last``: oneDNN runs 3x3 convolutions without layout reorders, 1.3-2x faster on CPU
    (the AE and the contrastive model measured it; README, speed); the result is the same up to float
    rounding.

    Raises:
        LatentSRError: unknown name, missing or corrupt file, weights of another kind or architecture.
    """
    path, _ = registry.resolve(weights, kind)
    if not path.exists():
        raise LatentSRError(f"weights file is missing: {path}")
    return _load(str(path), registry.sha256(path), kind, network, str(device), channels_last)
