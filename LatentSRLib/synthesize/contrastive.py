"""Inference of the contrastive SR model: super-resolve every through-plane reformat.

For a volume with slice spacing s and in-plane pixel p (after resampling to the model's 1.4 mm when
needed), the internal factor is m = factor * max(1, round(s / (factor * p))): the internal grid is
near the training pixel size and contains the requested one. Per frame: linear interpolation along
Z to m, the model on every XZ and every YZ plane (slice axis vertical, as trained), the mean of the
two orientations, every (m / factor)-th slice kept, and the acquired slices put back. When the
input's pixel size differs from the model's, only the model's correction (SR minus linear) is
resampled back in-plane and added to linear interpolation on the input grid, after the smoothing
and gain the weights record (:mod:`.correction`; default none).
"""

from __future__ import annotations

import numpy as np
import torch
from torch.nn import functional as F

from .. import LatentSRError
from ..models import registry
from ..models.contrastive import ContrastiveSR
from .correction import adjust_correction, correction_options

#: Relative in-plane spacing difference below which no in-plane resampling is done.
INPLANE_TOLERANCE = 0.02


def load_model(weights: str | None, device: torch.device) -> tuple[ContrastiveSR, float, dict]:
    """The model from a bundled name or file (None: the default bundled model), its pixel size and
    its metadata."""
    try:
        content = registry.load(weights, "contrastive")
    except LatentSRError as error:
        if weights is None:
            raise LatentSRError(f"the contrastive method has no bundled weights ({error}); "
                                "train one with `latentsr train contrastive` and pass --weights FILE") from None
        raise
    model = ContrastiveSR(**content["config"])
    model.load_state_dict(content["state_dict"])
    meta = content.get("meta", {})
    return model.to(device).eval(), float(meta.get("pixel_size", 1.4)), meta


def internal_factor(factor: int, slice_spacing: float, pixel_size: float) -> int:
    """m = factor * max(1, round(slice_spacing / (factor * pixel_size)))."""
    return factor * max(1, int(round(slice_spacing / (factor * pixel_size))))


def _resize_inplane(volume: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """(Z, Y, X) -> (Z, size[0], size[1]), bilinear keeping the field of view (pixel centres as in
    ITK resampling), antialiased when shrinking."""
    if tuple(volume.shape[1:]) == tuple(size):
        return volume
    shrinking = size[0] < volume.shape[1] or size[1] < volume.shape[2]
    return F.interpolate(volume[:, None], size=size, mode="bilinear", align_corners=False,
                         antialias=shrinking)[:, 0]


def _linear_z(volume: torch.Tensor, m: int) -> torch.Tensor:
    """(Z, Y, X) -> ((Z-1)*m+1, Y, X): exact linear interpolation (acquired slices on multiples of m)."""
    z, y, x = volume.shape
    flat = volume.permute(1, 2, 0).reshape(1, y * x, z)
    out = F.interpolate(flat, size=(z - 1) * m + 1, mode="linear", align_corners=True)
    return out.reshape(y, x, -1).permute(2, 0, 1).contiguous()


def upsample(array: np.ndarray, factor: int, spacing_zyx: tuple, run) -> np.ndarray:
    """The pipeline contract: (T, Z, Y, X) normalised float32 -> (T, (Z-1)*factor+1, Y, X)."""
    from ..training.common import pick_device

    device = pick_device(run.device)
    model, pixel, meta = load_model(run.weights, device)
    sigma_mm, gain = correction_options(meta)
    t_count, z, ny, nx = array.shape
    sz, sy, sx = (float(s) for s in spacing_zyx)
    resample = abs(sy / pixel - 1) > INPLANE_TOLERANCE or abs(sx / pixel - 1) > INPLANE_TOLERANCE
    size = (max(1, int(round(ny * sy / pixel))), max(1, int(round(nx * sx / pixel)))) if resample else (ny, nx)
    effective = min(ny * sy / size[0], nx * sx / size[1])
    m = internal_factor(factor, sz, effective)
    step = m // factor
    batch = max(1, int(run.batch_slices))
    total = t_count * (size[0] + size[1])
    done = 0
    result = np.empty((t_count, (z - 1) * factor + 1, ny, nx), np.float32)
    with torch.inference_mode():
        for t in range(t_count):
            run.check()
            frame = torch.from_numpy(np.ascontiguousarray(array[t])).float().to(device)
            lin = _linear_z(_resize_inplane(frame, size), m)  # (Zm, Y', X') at the model pixel size
            sums = torch.zeros_like(lin)
            # XZ planes (one per row y): images (Zm, X'); YZ planes (one per column x): images (Zm, Y').
            for planes, to_images, put in (
                    (size[0], lambda s: lin[:, s, :].permute(1, 0, 2), lambda s, o: sums[:, s, :].add_(o.permute(1, 0, 2))),
                    (size[1], lambda s: lin[:, :, s].permute(2, 0, 1), lambda s, o: sums[:, :, s].add_(o.permute(1, 2, 0)))):
                for start in range(0, planes, batch):
                    run.check()
                    index = slice(start, min(start + batch, planes))
                    images = to_images(index)[:, None]  # (B, 1, Zm, W)
                    put(index, model(images)[:, 0])
                    done += index.stop - index.start
                    run.report(done / total)
            # Only the model's correction to linear interpolation goes through the in-plane
            # resampling back to the input grid: the image itself is never resampled twice (that
            # round trip alone smooths, which scored +0.014 SSIM over linear on ACDC 5 mm with an
            # identity network), so an identity network returns exactly linear interpolation.
            correction = _resize_inplane(0.5 * sums - lin, (ny, nx))[::step].cpu().numpy()
            correction = adjust_correction(correction, (sy, sx), sigma_mm, gain)
            out = _linear_z(frame, factor).cpu().numpy() + correction
            out[::factor] = array[t]  # acquired slices kept
            result[t] = out
    return result
