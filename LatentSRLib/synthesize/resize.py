"""The learned methods' in-plane resampling to and from their training pixel size (one place).

Both networks were trained at 1.4 mm pixels; a scan whose pixel size differs by more than
:data:`PIXEL_SIZE_TOLERANCE` is resampled in-plane to the model's grid and the result back to the
input's grid, keeping the field of view.
"""

from __future__ import annotations

import torch
from torch.nn import functional as F

#: Relative in-plane pixel-size difference up to which no resampling to the model's grid is done.
#: (The AE used 1 %, the contrastive model 2 %; no scan of ../shared/data lies between the two.)
PIXEL_SIZE_TOLERANCE = 0.01


def model_grid(shape_yx: tuple[int, int], spacing_yx: tuple[float, float], pixel_size: float | None
               ) -> tuple[int, int] | None:
    """In-plane size at the model's pixel size (same field of view), or None when no resampling is needed."""
    if pixel_size is None or all(abs(s - pixel_size) <= PIXEL_SIZE_TOLERANCE * pixel_size for s in spacing_yx):
        return None
    return tuple(max(1, int(round(n * s / pixel_size))) for n, s in zip(shape_yx, spacing_yx))


def resize(images: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """Bilinear resampling of (..., H, W) to ``size`` keeping the field of view (pixel centres at
    half-pixel offsets from the edges, as ITK/Slicer place them); antialiased when shrinking."""
    if tuple(images.shape[-2:]) == tuple(size):
        return images
    leading = images.shape[:-2]
    flat = images.reshape(-1, 1, *images.shape[-2:])
    shrinking = size[0] < images.shape[-2] or size[1] < images.shape[-1]
    out = F.interpolate(flat, size=size, mode="bilinear", align_corners=False, antialias=shrinking)
    return out.reshape(*leading, *size)
