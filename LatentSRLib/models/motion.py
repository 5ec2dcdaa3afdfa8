"""The motion-aware refiner: a small U-Net that blends motion-compensated candidates per pixel.

In the spirit of the RIFE / IFRNet frame-interpolation family, but on top of a fixed classical flow
rather than a learned one: for a new slice at position t between acquired slices A and B, the
candidates are linear interpolation and the one-sided warps of A and B along two optical-flow
estimates (:func:`LatentSRLib.opticalflow.candidates`). The network sees the neighbours, the
candidates, the estimators' agreement and t, and returns a per-pixel softmax over the candidates plus
a small bounded residual:

    out = sum_k softmax(w)_k * candidate_k + residual_scale * tanh(r)

Because linear interpolation is one of the candidates, the network can fall back to it wherever the
warps are wrong, and its weight on linear is a learned confidence (1 - w_linear).

With ``flow_prior`` the blend starts from the ``flow`` method's own weights: the logits are
log(w_flow) + the network's output, whose last layer starts at zero, so an untrained refiner is
``flow`` (:func:`flow_weights`) and training learns only where to depart from it.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

#: The candidate images, in the order of the network's blend weights.
CANDIDATES = ("linear", "dis_a", "dis_b", "farneback_a", "farneback_b")
#: The input channels (9): the two neighbours, the candidates, the estimators' agreement and t.
INPUTS = ("a", "b") + CANDIDATES + ("confidence", "t")
#: A gap-aware refiner has one more input, last: the distance between A and B in mm over this scale
#: (0 for time triplets of a cine, whose ends lie in the same slice plane).
GAP_SCALE_MM = 20.0
#: Share of a flow prior spread evenly over the candidates, so that no candidate's logit is -inf.
PRIOR_FLOOR = 0.02


def flow_weights(inputs: torch.Tensor) -> torch.Tensor:
    """The ``flow`` method's per-pixel weights on the candidates, from the refiner's inputs.

    ``flow`` is linear + c * (mean of the two estimators' blends - linear), c the estimators' agreement
    (:func:`LatentSRLib.opticalflow.candidates`): weights (1 - c, c (1 - t) / 2, c t / 2, c (1 - t) / 2,
    c t / 2) in :data:`CANDIDATES`' order, here mixed with :data:`PRIOR_FLOOR` of an even blend.

    Shapes: (B, >= len(INPUTS), H, W) -> (B, len(CANDIDATES), H, W), summing to 1 over dim 1.
    """
    c = inputs[:, INPUTS.index("confidence")].float().clamp(0.0, 1.0)
    t = inputs[:, INPUTS.index("t")].float()
    half_a, half_b = c * (1 - t) / 2, c * t / 2
    prior = torch.stack([1 - c, half_a, half_b, half_a, half_b], 1)
    return (1 - PRIOR_FLOOR) * prior + PRIOR_FLOOR / len(CANDIDATES)


def _conv(c_in: int, c_out: int) -> nn.Sequential:
    """3x3 convolution + LeakyReLU (shape-preserving)."""
    return nn.Sequential(nn.Conv2d(c_in, c_out, 3, padding=1), nn.LeakyReLU(0.1, inplace=True))


class MotionRefiner(nn.Module):
    """Per-pixel candidate blend + residual from a small U-Net.

    One convolution at full resolution, two per coarser level (each halves the resolution): the
    blend weights are smooth, so most of the work is done at 1/2 and 1/4 resolution, which keeps the
    network cheap enough to train and run on a CPU (~60k parameters at the default widths).

    Args:
        in_channels: len(INPUTS) = 9, or 10 for a gap-aware refiner (:func:`network_inputs`' gap_mm).
        candidates: len(CANDIDATES) = 5.
        widths: channels at full, 1/2, 1/4, ... resolution.
        residual_scale: bound of the residual, in normalised intensity units.
        farneback: the Farneback settings its candidates are computed with, by name
            (:data:`LatentSRLib.opticalflow.FARNEBACK_SETTINGS`): the network learns their errors.
        flow_prior: add log(:func:`flow_weights`) to the blend logits and start the head at zero.
        linear_logit_offset: added to the linear candidate's blend logit; above 0 the refiner falls back to
            linear more, trading a little sharpness (SSIM) for PSNR. A calibration of trained weights, set
            in their config and chosen on validation patients (Resources/Models/motion.md, "Choice").

    Shapes:
        forward(inputs (B, in_channels, H, W), candidates (B, candidates, H, W))
        -> (image (B, 1, H, W), weights (B, candidates, H, W)); H and W any size (padded inside).
    """

    def __init__(self, in_channels: int = len(INPUTS), candidates: int = len(CANDIDATES),
                 widths: tuple[int, ...] = (16, 32, 64), residual_scale: float = 0.1,
                 farneback: str = "fast", flow_prior: bool = False, linear_logit_offset: float = 0.0) -> None:
        super().__init__()
        from ..opticalflow import FARNEBACK_SETTINGS
        if farneback not in FARNEBACK_SETTINGS:
            raise ValueError(f"farneback must be one of {sorted(FARNEBACK_SETTINGS)}, got {farneback!r}")
        widths = tuple(int(w) for w in widths)
        self.config = dict(in_channels=in_channels, candidates=candidates, widths=list(widths),
                           residual_scale=residual_scale, farneback=farneback, flow_prior=flow_prior,
                           linear_logit_offset=linear_logit_offset)
        self.residual_scale = residual_scale
        self.stem = _conv(in_channels, widths[0])
        self.down = nn.ModuleList(nn.Sequential(_conv(widths[i], widths[i + 1]), _conv(widths[i + 1], widths[i + 1]))
                                  for i in range(len(widths) - 1))
        self.up = nn.ModuleList(_conv(widths[i] + widths[i + 1], widths[i]) for i in range(len(widths) - 1))
        self.head = nn.Conv2d(widths[0], candidates + 1, 1)
        self.multiple = 2 ** (len(widths) - 1)
        self.flow_prior = flow_prior
        self.linear_logit_offset = float(linear_logit_offset)
        if flow_prior:  # untrained, the refiner is the flow method (its residual 0)
            nn.init.zeros_(self.head.weight)
            nn.init.zeros_(self.head.bias)

    def estimate_flows(self, a, b) -> dict:
        """Both optical flows between slices ``a`` and ``b`` (numpy) with the settings this network
        was trained with (:func:`LatentSRLib.opticalflow.estimate_flows`)."""
        from ..opticalflow import FARNEBACK_SETTINGS, estimate_flows
        return estimate_flows(a, b, FARNEBACK_SETTINGS[self.config["farneback"]])

    def forward(self, inputs: torch.Tensor, candidates: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        out = self.head_output(inputs)
        weights = torch.softmax(self.blend_logits(inputs, out), 1)
        image = (weights * candidates).sum(1, keepdim=True) + self.residual_scale * torch.tanh(out[:, -1:])
        return image, weights

    def blend_logits(self, inputs: torch.Tensor, out: torch.Tensor) -> torch.Tensor:
        """The candidates' blend logits from :meth:`head_output`'s ``out``: with the flow prior and the
        linear offset where this refiner has them. (B, candidates + 1, H, W) -> (B, candidates, H, W), a new
        tensor (benchmarks/motion_validation.py's ablations change it in place)."""
        logits = out[:, :-1].clone()
        if self.flow_prior:
            logits = logits + torch.log(flow_weights(inputs)).to(logits.dtype)
        logits[:, CANDIDATES.index("linear")] += self.linear_logit_offset
        return logits

    def head_output(self, inputs: torch.Tensor) -> torch.Tensor:
        """The blend logits and the residual before its bound: (B, in_channels, H, W) ->
        (B, candidates + 1, H, W), the residual last (benchmarks/motion_validation.py's ablations)."""
        height, width = inputs.shape[-2:]
        pad = (0, (-width) % self.multiple, 0, (-height) % self.multiple)
        x = self.stem(F.pad(inputs, pad, mode="replicate"))
        skips = [x]
        for block in self.down:
            x = block(F.avg_pool2d(x, 2))
            skips.append(x)
        for i in reversed(range(len(self.up))):
            x = F.interpolate(x, scale_factor=2, mode="bilinear", align_corners=False)
            x = self.up[i](torch.cat([x, skips[i]], 1))
        return self.head(x)[..., :height, :width]


def network_inputs(a, b, t: float, flows: dict | None = None, gap_mm: float | None = None):
    """The refiner's inputs for position ``t`` between normalised slices ``a`` and ``b`` (numpy);
    with ``gap_mm`` (a gap-aware refiner) one more channel, ``gap_mm / GAP_SCALE_MM``.

    Returns:
        (inputs (len(INPUTS) [+ 1], Y, X) float32, candidates (len(CANDIDATES), Y, X) float32, parts:
        the dict of :func:`LatentSRLib.opticalflow.candidates`).
    """
    import numpy as np

    from ..opticalflow import candidates

    parts = candidates(a, b, t, flows)
    named = {"a": a, "b": b, "t": np.full_like(a, t, dtype=np.float32), **parts}
    channels = [np.asarray(named[k], np.float32) for k in INPUTS]
    if gap_mm is not None:
        channels.append(np.full_like(channels[0], gap_mm / GAP_SCALE_MM))
    inputs = np.stack(channels)
    first = INPUTS.index(CANDIDATES[0])
    return inputs, inputs[first:first + len(CANDIDATES)], parts
