"""A fast student of the contrastive SR network: the teacher's correction on the new rows of a
reformat, computed from the acquired rows alone (issue #15, contrastive speed).

Why the acquired rows are enough: at inference the teacher (:class:`~.contrastive.ContrastiveSR`)
runs on reformat planes linearly interpolated along the slice axis by the internal factor m (about
1.4 mm rows: 73 rows for 10 slices at 10 mm), so every one of its input rows is a blend of two
acquired rows, and only its output on the rows at j / factor of each gap is used. The map "acquired
rows -> the teacher's correction at fraction t of each gap" is therefore a function of Z rows, not of
(Z-1)*m+1: a network on the acquired rows does about m times less work per layer. m itself (how many
interpolated rows the teacher saw between two acquired ones, set by slice spacing / pixel size) is a
constant input channel, and t a shift of the per-position head's features.
"""

from __future__ import annotations

import torch
from torch import nn

ARCHITECTURE = "in-between"
M_SCALE = 8.0  # the constant channel holds m / M_SCALE (m = 8 for 10 mm slices at 1.4 mm pixels, factor 2)


class _Block(nn.Module):
    """Two 3x3 convolutions with a skip; the second dilated across the plane (along a row) so the
    student nearly reaches the teacher's 29-pixel receptive field there (27) at the same cost."""

    def __init__(self, width: int, dilation: int):
        super().__init__()
        self.first = nn.Conv2d(width, width, 3, padding=1)
        self.second = nn.Conv2d(width, width, 3, padding=(1, dilation), dilation=(1, dilation))
        self.act = nn.LeakyReLU(0.2, inplace=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.second(self.act(self.first(x)))


class InBetweenStudent(nn.Module):
    """(B, 1, Z, W) acquired rows of a reformat plane, the teacher's internal factor m and positions
    t in (0, 1) -> (B, P, Z-1, W): the teacher's correction at fraction t of the way from each acquired
    row to the next (t = j / factor: any factor whose rows lie on the teacher's grid).

    The acquired rows' features are computed once; each position costs only a small head.

    Args:
        width: feature channels of the body (32 with 3 blocks: a 10x256x256 frame's 512 planes at
            factor 2 in under 2 s on two CPU cores, README "Speed").
        blocks: residual blocks of two convolutions after the first convolution.
        dilation: column dilation of every block's second convolution.
        head_width: channels of the per-position head.
        architecture: recorded in the weights' config (always "in-between").
    """

    def __init__(self, width: int = 32, blocks: int = 3, dilation: int = 2, head_width: int = 16,
                 architecture: str = ARCHITECTURE):
        super().__init__()
        if architecture != ARCHITECTURE:
            raise ValueError(f"not an {ARCHITECTURE} student: {architecture}")
        self.config = {"width": width, "blocks": blocks, "dilation": dilation, "head_width": head_width,
                       "architecture": ARCHITECTURE}
        self.head = nn.Sequential(nn.Conv2d(2, width, 3, padding=1), nn.LeakyReLU(0.2, inplace=True))
        self.body = nn.Sequential(*[_Block(width, dilation) for _ in range(blocks)])
        # A 2-row kernel without vertical padding: one row of features per pair of neighbouring acquired rows.
        self.pair = nn.Sequential(nn.LeakyReLU(0.2), nn.Conv2d(width, head_width, (2, 3), padding=(0, 1)))
        self.position = nn.Linear(2, head_width)  # (t, t(1-t)) -> a per-channel shift of the pair features
        self.out = nn.Sequential(nn.LeakyReLU(0.2), nn.Conv2d(head_width, head_width, (1, 3), padding=(0, 1)),
                                 nn.LeakyReLU(0.2), nn.Conv2d(head_width, 1, (1, 3), padding=(0, 1)))

    def forward(self, rows: torch.Tensor, m: float | torch.Tensor, t: float | torch.Tensor) -> torch.Tensor:
        """rows (B, 1, Z, W); m a number or (B,); t a number, (P,) shared positions or (B, P) -> (B, P, Z-1, W)."""
        b = rows.shape[0]
        code = torch.as_tensor(m, dtype=rows.dtype, device=rows.device).reshape(-1, 1, 1, 1) / M_SCALE
        x = torch.cat([rows, code.expand(b, 1, *rows.shape[2:])], dim=1)
        pair = self.pair(self.body(self.head(x)))  # (B, C, Z-1, W)
        t = torch.as_tensor(t, dtype=rows.dtype, device=rows.device)
        t = t.reshape(1, -1).expand(b, -1) if t.ndim < 2 else t  # (B, P)
        shift = self.position(torch.stack([t, t * (1 - t)], dim=-1))  # (B, P, C)
        p = t.shape[1]
        features = pair[:, None] + shift[..., None, None]  # (B, P, C, Z-1, W)
        out = self.out(features.reshape(b * p, *pair.shape[1:]))
        return out.reshape(b, p, *out.shape[2:])


def contrastive_network(**config) -> nn.Module:
    """The network a contrastive weights file holds: the student when its config says so, else the
    teacher class (files written before students existed carry no "architecture")."""
    from .contrastive import ContrastiveSR

    if config.get("architecture") == ARCHITECTURE:
        return InBetweenStudent(**config)
    return ContrastiveSR(**config)
