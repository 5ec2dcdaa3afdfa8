"""The latent-interpolation autoencoder of Sander, de Vos and Isgum (2020).

A 2D convolutional autoencoder learns in-plane slices. A slice between acquired slices n and n+1
is synthesised as ``decode((1 - a) * encode(x_n) + a * encode(x_{n+1}))``.

Encoder: ``depth`` blocks of two 3x3 convolutions (leaky ReLU, batch norm), the first convolution
of each block doubling the width (``base_width`` in the first block), each block ending in 2x2
average pooling; then 3x3 convolutions of ``bottleneck_width`` and ``latent_channels`` kernels.
Decoder: the mirror, with nearest-neighbour upsampling and two final 3x3 convolutions.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F


def conv_block(in_channels: int, out_channels: int, negative_slope: float = 0.01) -> nn.Sequential:
    """3x3 convolution (zero padding 1) -> leaky ReLU -> batch norm, as in the paper."""
    return nn.Sequential(
        nn.Conv2d(in_channels, out_channels, kernel_size=3, padding=1),
        nn.LeakyReLU(negative_slope),
        nn.BatchNorm2d(out_channels),
    )


class Encoder(nn.Module):
    """(B, 1, H, W) -> (B, latent_channels, H / 2**depth, W / 2**depth)."""

    def __init__(self, base_width: int = 32, depth: int = 4, bottleneck_width: int = 256,
                 latent_channels: int = 16, in_channels: int = 1):
        super().__init__()
        layers: list[nn.Module] = []
        channels = in_channels
        for level in range(depth):
            width = base_width * 2 ** level
            layers += [conv_block(channels, width), conv_block(width, width), nn.AvgPool2d(2)]
            channels = width
        layers += [conv_block(channels, bottleneck_width),
                   # The latent is linear (no activation, no norm) so that mixing codes stays meaningful.
                   nn.Conv2d(bottleneck_width, latent_channels, kernel_size=3, padding=1)]
        self.layers = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.layers(x)


class Decoder(nn.Module):
    """(B, latent_channels, h, w) -> (B, 1, h * 2**depth, w * 2**depth)."""

    def __init__(self, base_width: int = 32, depth: int = 4, bottleneck_width: int = 256,
                 latent_channels: int = 16, out_channels: int = 1):
        super().__init__()
        layers: list[nn.Module] = [conv_block(latent_channels, bottleneck_width)]
        channels = bottleneck_width
        for level in reversed(range(depth)):
            width = base_width * 2 ** level
            layers += [nn.Upsample(scale_factor=2, mode="nearest"), conv_block(channels, width),
                       conv_block(width, width)]
            channels = width
        layers += [conv_block(channels, base_width),
                   nn.Conv2d(base_width, out_channels, kernel_size=3, padding=1)]
        self.layers = nn.Sequential(*layers)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.layers(z)


class LatentInterpolationAE(nn.Module):
    """The autoencoder; the paper's numbers are the defaults.

    Args:
        base_width: kernels in the first block (32), doubled at each following block.
        depth: pooling blocks (4), so the latent is 1/16 of the input size.
        bottleneck_width: kernels of the convolution before the latent (256).
        latent_channels: channels of the latent code (16).
    """

    def __init__(self, base_width: int = 32, depth: int = 4, bottleneck_width: int = 256,
                 latent_channels: int = 16):
        super().__init__()
        self.config = dict(base_width=base_width, depth=depth, bottleneck_width=bottleneck_width,
                           latent_channels=latent_channels)
        self.encoder = Encoder(base_width, depth, bottleneck_width, latent_channels)
        self.decoder = Decoder(base_width, depth, bottleneck_width, latent_channels)

    @property
    def multiple(self) -> int:
        """In-plane sizes must be multiples of this (inputs are padded to it)."""
        return 2 ** self.config["depth"]

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        """(B, 1, H, W) -> (B, C, H/16, W/16); H and W multiples of :attr:`multiple`."""
        return self.encoder(x)

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        """(B, C, h, w) -> (B, 1, 16h, 16w)."""
        return self.decoder(z)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Reconstruction: (B, 1, H, W) -> (B, 1, H, W)."""
        return self.decode(self.encode(x))

    def interpolate(self, x0: torch.Tensor, x1: torch.Tensor, alphas: torch.Tensor) -> torch.Tensor:
        """Slices between x0 and x1, (B, 1, H, W) each, at fractions ``alphas`` (A,) -> (B, A, H, W)."""
        z0, z1 = self.encode(x0), self.encode(x1)
        a = alphas.to(z0).view(1, -1, 1, 1, 1)
        mixed = (1 - a) * z0[:, None] + a * z1[:, None]  # (B, A, C, h, w)
        b, n = mixed.shape[:2]
        return self.decode(mixed.flatten(0, 1)).view(b, n, *x0.shape[-2:])


def pad_to_multiple(x: torch.Tensor, multiple: int) -> tuple[torch.Tensor, tuple[int, int]]:
    """Zero-pad the last two axes up to multiples of ``multiple``; returns the original (H, W)."""
    height, width = x.shape[-2:]
    pad_h, pad_w = (-height) % multiple, (-width) % multiple
    if pad_h or pad_w:
        # Split the padding evenly so the anatomy stays centred where the network saw it in training.
        x = F.pad(x, (pad_w // 2, pad_w - pad_w // 2, pad_h // 2, pad_h - pad_h // 2))
    return x, (height, width)


def crop_to(x: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """Undo :func:`pad_to_multiple`."""
    height, width = size
    top = (x.shape[-2] - height) // 2
    left = (x.shape[-1] - width) // 2
    return x[..., top:top + height, left:left + width]
