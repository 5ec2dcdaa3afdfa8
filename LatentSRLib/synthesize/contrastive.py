"""Inference of the contrastive SR model: super-resolve every through-plane reformat.

For a volume with slice spacing s and in-plane pixel p (after resampling to the model's 1.4 mm when
needed), the internal factor is m = factor * max(1, round(s / (factor * p))): the internal grid is
near the training pixel size and contains the requested one. Per frame: linear interpolation along
Z to m, the model on every XZ and every YZ plane (slice axis vertical, as trained), the mean of the
two orientations, every (m / factor)-th slice kept, and the acquired slices put back. When the
input's pixel size differs from the model's, only the model's correction (SR minus linear) is
resampled back in-plane and added to linear interpolation on the input grid, after the smoothing
and gain the weights record (:mod:`.correction`; default none).

A fast student (:class:`~LatentSRLib.models.contrastive_student.InBetweenStudent`, e.g. the bundled
``contrastive-acdc-fast``) replaces the teacher's "model on every plane of (Z-1)*m+1 rows" by a
network on the Z acquired rows of each plane that outputs the teacher's correction at the new rows
j/factor of each gap: the same planes, the same mean of the two orientations and the same way back
to the input grid. It covers the internal factors m it was distilled on; outside them it runs its
teacher (recorded in its weights), with a warning.
"""

from __future__ import annotations


import warnings

import numpy as np
import torch
from torch.nn import functional as F

from .. import LatentSRError
from ..models.contrastive_student import InBetweenStudent, contrastive_network
from .autoencoder import CPU_ACTIVATION_BYTES
from .correction import adjust_correction, correction_options
from .loading import load_network
from .resize import model_grid, resize


def load_model(weights: str | None, device: torch.device) -> tuple[torch.nn.Module, float, dict]:
    """The (cached) network from a bundled name or file (None: the default bundled model): the
    teacher class or an in-between student, its pixel size and its metadata."""
    try:
        model, meta = load_network(weights, "contrastive", contrastive_network, device, channels_last=True)
    except LatentSRError as error:
        if weights is None and "no bundled" in str(error).lower():
            raise LatentSRError(f"the contrastive method has no bundled weights ({error}); "
                                "train one with `latentsr train contrastive` and pass --weights FILE") from None
        raise
    return model, float(meta.get("pixel_size", 1.4)), meta


def batch_size(requested: int, device: torch.device, width: int, image_shape: tuple[int, int]) -> int:
    """Planes per network call: ``requested``, and on CPU at most as many as keep the widest
    activation (width x rows x columns float32) under CPU_ACTIVATION_BYTES (see synthesize.autoencoder:
    larger tensors page-fault fresh memory on every convolution)."""
    batch = max(1, int(requested))
    if device.type == "cpu":
        batch = max(1, min(batch, CPU_ACTIVATION_BYTES // (4 * width * image_shape[0] * image_shape[1])))
    return batch


def internal_factor(factor: int, slice_spacing: float, pixel_size: float) -> int:
    """m = factor * max(1, round(slice_spacing / (factor * pixel_size)))."""
    return factor * max(1, int(round(slice_spacing / (factor * pixel_size))))


def _linear_z(volume: torch.Tensor, m: int) -> torch.Tensor:
    """(Z, Y, X) -> ((Z-1)*m+1, Y, X): exact linear interpolation (acquired slices on multiples of m)."""
    z, y, x = volume.shape
    flat = volume.permute(1, 2, 0).reshape(1, y * x, z)
    out = F.interpolate(flat, size=(z - 1) * m + 1, mode="linear", align_corners=True)
    return out.reshape(y, x, -1).permute(2, 0, 1).contiguous()


def student_covers(meta: dict, m: int) -> bool:
    """Whether a student distilled with ``meta`` was trained for the internal factor ``m``."""
    trained = [int(f) for f in meta.get("distillation", {}).get("factors", [])]
    return bool(trained) and min(trained) <= m <= max(trained)


def _teacher_correction(model: torch.nn.Module, frame: torch.Tensor, m: int, factor: int, run, batch_rows: int,
                        count) -> torch.Tensor:
    """(Z, Y', X') frame at the model pixel size -> ((Z-1)*factor+1, Y', X'): the model's correction to
    linear interpolation, the mean over its XZ and YZ planes on the internal grid m, every (m/factor)-th row."""
    lin = _linear_z(frame, m)  # (Zm, Y', X')
    sums = torch.zeros_like(lin)
    width = int(model.config["width"])
    # XZ planes (one per row y): images (Zm, X'); YZ planes (one per column x): images (Zm, Y').
    for planes, columns, to_images, put in (
            (lin.shape[1], lin.shape[2], lambda s: lin[:, s, :].permute(1, 0, 2),
             lambda s, o: sums[:, s, :].add_(o.permute(1, 0, 2))),
            (lin.shape[2], lin.shape[1], lambda s: lin[:, :, s].permute(2, 0, 1),
             lambda s, o: sums[:, :, s].add_(o.permute(1, 2, 0)))):
        batch = batch_size(batch_rows, frame.device, width, (lin.shape[0], columns))
        for start in range(0, planes, batch):
            run.check()
            index = slice(start, min(start + batch, planes))
            # (B, 1, Zm, W), in the model's memory format (no reorder inside the first conv)
            images = to_images(index)[:, None].contiguous(memory_format=torch.channels_last)
            put(index, model(images)[:, 0])
            count(index.stop - index.start)
    return (0.5 * sums - lin)[::m // factor]


def _student_correction(model: InBetweenStudent, frame: torch.Tensor, m: int, factor: int, run, batch_rows: int,
                        count) -> torch.Tensor:
    """(Z, Y', X') frame at the model pixel size -> ((Z-1)*factor+1, Y', X'): the student's estimate of
    the teacher's correction at the new rows j/factor of each gap (zero on the acquired rows, which the
    pipeline keeps)."""
    z = frame.shape[0]
    out = torch.zeros(((z - 1) * factor + 1, *frame.shape[1:]), dtype=frame.dtype, device=frame.device)
    positions = torch.arange(1, factor, dtype=frame.dtype, device=frame.device) / factor
    # new[j - 1, k] is the row k * factor + j
    new = out[:-1].reshape(z - 1, factor, *frame.shape[1:])[:, 1:].permute(1, 0, 2, 3)
    for planes, columns, images_of, put in (
            (frame.shape[1], frame.shape[2], lambda s: frame[:, s, :].permute(1, 0, 2),  # XZ: (Y, Z, X)
             lambda s, o: new[:, :, s, :].add_(o.permute(1, 2, 0, 3), alpha=0.5)),     # o: (Y, P, Z-1, X)
            (frame.shape[2], frame.shape[1], lambda s: frame[:, :, s].permute(2, 0, 1),  # YZ: (X, Z, Y)
             lambda s, o: new[:, :, :, s].add_(o.permute(1, 2, 3, 0), alpha=0.5))):    # o: (X, P, Z-1, Y)
        batch = batch_size(batch_rows, frame.device, int(model.config["width"]), (z, columns))
        for start in range(0, planes, batch):
            run.check()
            index = slice(start, min(start + batch, planes))
            rows = images_of(index)[:, None].contiguous(memory_format=torch.channels_last)  # (B, 1, Z, W)
            put(index, model(rows, float(m), positions))
            count(index.stop - index.start)
    return out


def upsample(array: np.ndarray, factor: int, spacing_zyx: tuple, run) -> np.ndarray:
    """The pipeline contract: (T, Z, Y, X) normalised float32 -> (T, (Z-1)*factor+1, Y, X)."""
    from ..devices import pick_device

    device = pick_device(run.device)
    model, pixel, meta = load_model(run.weights, device)
    t_count, z, ny, nx = array.shape
    sz, sy, sx = (float(s) for s in spacing_zyx)
    size = model_grid((ny, nx), (sy, sx), pixel) or (ny, nx)
    effective = min(ny * sy / size[0], nx * sx / size[1])
    m = internal_factor(factor, sz, effective)
    if isinstance(model, InBetweenStudent) and not student_covers(meta, m):
        teacher = meta.get("teacher", {}).get("name")
        trained = [int(f) for f in meta.get("distillation", {}).get("factors", [])] or [0]
        warnings.warn(f"the fast contrastive student was distilled at internal factors {min(trained)}-{max(trained)}, "
                      f"not {m} (factor {factor} at {sz:g} mm slices): running its teacher {teacher} (slower)",
                      stacklevel=2)
        model, pixel, meta = load_model(teacher, device)
    sigma_mm, gain = correction_options(meta, run.correction_sigma_mm, run.correction_gain)
    total = t_count * (size[0] + size[1])
    done = [0]

    def count(planes: int) -> None:
        done[0] += planes
        run.report(done[0] / total)

    result = np.empty((t_count, (z - 1) * factor + 1, ny, nx), np.float32)
    with torch.inference_mode():
        for t in range(t_count):
            run.check()
            frame = torch.from_numpy(np.ascontiguousarray(array[t])).float().to(device)
            resized = resize(frame, size)
            if isinstance(model, InBetweenStudent):
                correction = _student_correction(model, resized, m, factor, run, run.batch_slices, count)
            else:
                correction = _teacher_correction(model, resized, m, factor, run, run.batch_slices, count)
            # Only the model's correction to linear interpolation goes through the in-plane
            # resampling back to the input grid: the image itself is never resampled twice (that
            # round trip alone smooths, which scored +0.014 SSIM over linear on ACDC 5 mm with an
            # identity network), so an identity network returns exactly linear interpolation.
            correction = adjust_correction(resize(correction, (ny, nx)).cpu().numpy(), (sy, sx), sigma_mm, gain)
            out = _linear_z(frame, factor).cpu().numpy() + correction
            out[::factor] = array[t]  # acquired slices kept
            result[t] = out
    return result
