"""Latent interpolation with the autoencoder: new slices from mixed codes of their neighbours.

For factor k, the slices between acquired slices n and n+1 at a = 1/k, ..., (k-1)/k are, by mode:

- ``latent`` (the paper): ``decode((1 - a) * z_n + a * z_{n+1})``;
- ``corrected`` (detail-preserving): ``lerp_a(x_n, x_{n+1}) + decode(mix_a) - lerp_a(decode(z_n),
  decode(z_{n+1}))``. The autoencoder's reconstruction error (its blur) cancels between the last two
  terms, so the acquired slices' detail is kept and the latent interpolation contributes what it
  changes relative to linear interpolation (moving edges rather than cross-fading them). With a
  perfect autoencoder both modes are the same.

In corrected mode the correction can be smoothed and scaled (:mod:`.correction`; recorded in the
weights, overridable with ``run.correction_sigma_mm`` / ``run.correction_gain``). It comes from a
16-channel latent at 1/16 of the image size, so its finest detail is decoder noise rather than anatomy.

The mode is recorded in the weights (``meta["mode"]``) and can be overridden with ``run.mode``. All
slices of all frames are encoded once, in batches of ``run.batch_slices`` (the memory bound), and
decoded in batches of the same size, under ``torch.inference_mode``.
"""

from __future__ import annotations


import numpy as np
import torch

from .. import LatentSRError
from ..models.autoencoder import LatentInterpolationAE, crop_to, pad_to_multiple
from ..devices import pick_device
from .correction import adjust_correction, correction_options
from .loading import load_network
from .resize import model_grid, resize

#: On CPU, the widest activation of a batch is kept under this many bytes. Larger tensors are above
#: glibc's mmap threshold (32 MB), so every convolution maps and page-faults fresh memory: batches of
#: 16 slices of 256x256 ran at 3.25 s/frame, batches of 2 at 2.4 s/frame (2-core EPYC, the phantom
#: cine of benchmarks/bench_methods.py; README, speed). GPUs keep ``run.batch_slices``.
CPU_ACTIVATION_BYTES = 16 * 2 ** 20


def load_model(weights: str | None, device: torch.device) -> tuple[LatentInterpolationAE, dict]:
    """The (cached) autoencoder for a bundled name or weights file, in eval mode on ``device``."""
    return load_network(weights, "ae", LatentInterpolationAE, device, channels_last=True)


MODES = ("latent", "corrected")


def upsample_latent(array: np.ndarray, factor: int, spacing_zyx: tuple[float, float, float], run) -> np.ndarray:
    """The paper's mode whatever the weights prefer (method name ``ae-latent``)."""
    return upsample(array, factor, spacing_zyx, run, mode="latent")


def upsample(array: np.ndarray, factor: int, spacing_zyx: tuple[float, float, float], run,
             mode: str | None = None) -> np.ndarray:
    """The pipeline contract: (T, Z, Y, X) normalised -> (T, (Z - 1) * factor + 1, Y, X)."""
    device = pick_device(run.device)
    model, meta = load_model(run.weights, device)
    mode = mode or getattr(run, "mode", None) or meta.get("mode", "latent")
    if mode not in MODES:
        raise LatentSRError(f"unknown autoencoder mode '{mode}' (choose from {', '.join(MODES)})")
    corrected = mode == "corrected"
    sigma_mm, gain = correction_options(meta, run.correction_sigma_mm, run.correction_gain)
    frames, n_slices, height, width = array.shape
    grid = model_grid((height, width), spacing_zyx[1:], meta.get("pixel_size"))
    batch = max(1, int(run.batch_slices))
    if device.type == "cpu":
        rows, columns = grid or (height, width)
        padded_area = -(-rows // model.multiple) * model.multiple * -(-columns // model.multiple) * model.multiple
        batch = max(1, min(batch, CPU_ACTIVATION_BYTES // (4 * model.config["base_width"] * padded_area)))
    n_out = (n_slices - 1) * factor + 1
    out = np.empty((frames, n_out, height, width), np.float32)

    # Work list: every decoded slice is (frame, output index, slice n, alpha).
    alphas = [j / factor for j in range(1, factor)]
    jobs = [(t, n * factor + j, n, a) for t in range(frames) for n in range(n_slices - 1)
            for j, a in enumerate(alphas, start=1)]
    if run.keep_original or corrected:
        # Acquired slices: the pipeline restores their exact values anyway (in corrected mode the
        # reconstruction term cancels there, so "replacing" them changes nothing).
        out[:, ::factor] = array
    else:
        jobs += [(t, n * factor, n, 0.0) for t in range(frames) for n in range(n_slices)]
    steps = int(np.ceil(frames * n_slices / batch)) * (2 if corrected else 1) + int(np.ceil(len(jobs) / batch))
    done = 0

    def to_model(x: np.ndarray) -> tuple[torch.Tensor, tuple[int, int]]:
        slices = torch.from_numpy(x).to(device)[:, None]
        if grid is not None:
            slices = resize(slices, grid)
        padded, size = pad_to_multiple(slices, model.multiple)
        return padded.contiguous(memory_format=torch.channels_last), size

    with torch.inference_mode():
        flat = array.reshape(frames * n_slices, height, width)
        codes = []
        for start in range(0, len(flat), batch):
            run.check()
            padded, size = to_model(flat[start:start + batch])
            codes.append(model.encode(padded))
            done += 1
            run.report(done / steps)
        latents = torch.cat(codes).view(frames, n_slices, *codes[0].shape[1:])
        if corrected:  # decoded acquired slices, in the model's grid: (T, Z, H', W')
            recons = torch.cat([model.decode(latents.flatten(0, 1)[i:i + batch])
                                for i in range(0, frames * n_slices, batch)])
            recons = recons.view(frames, n_slices, *recons.shape[-2:])
        for start in range(0, len(jobs), batch):
            run.check()
            chunk = jobs[start:start + batch]
            t = torch.tensor([j[0] for j in chunk])
            n = torch.tensor([j[2] for j in chunk])
            a = torch.tensor([j[3] for j in chunk], dtype=latents.dtype, device=device).view(-1, 1, 1, 1)
            z0 = latents[t, n]
            z1 = latents[t, torch.clamp(n + 1, max=n_slices - 1)]
            decoded = model.decode((1 - a) * z0 + a * z1)
            if corrected:
                n1 = torch.clamp(n + 1, max=n_slices - 1)
                decoded = decoded - ((1 - a) * recons[t, n][:, None] + a * recons[t, n1][:, None])
            decoded = crop_to(decoded, size)
            if grid is not None:
                decoded = resize(decoded, (height, width))
            decoded = decoded[:, 0].float().cpu().numpy()
            for (frame, index, n0, alpha), image in zip(chunk, decoded):
                if corrected:  # add the correction to linear interpolation on the input's own grid
                    image = adjust_correction(image, spacing_zyx[1:], sigma_mm, gain)
                    image = image + (1 - alpha) * array[frame, n0] + alpha * array[frame, min(n0 + 1, n_slices - 1)]
                out[frame, index] = image
            done += 1
            run.report(done / steps)
    return out
