"""Unpaired super-resolution with contrastive learning (Li et al. 2023, arXiv 2310.15767),
adapted to through-plane SR of anisotropic cardiac MRI without any isotropic data.

Domains (all 2D images at the model pixel size, 1.4 mm, blur direction vertical = image rows):
    source  Y_s: HR in-plane patches of anisotropic scans (sharp in both directions);
    target  X_t: through-plane reformats (XZ / YZ planes) linearly interpolated along Z, blurred
                 along the rows (the slice axis).

The paper's three flows, with our modules::

    source flow   Y_s --encoder--> f_s --sr_decoder--> Y^_s                       (== Y_s)
    cycle         Y_s --degrader--> X_{s~t} --encoder--> f_{s~t~s} --sr_decoder--> Y_{s~t~s}  (== Y_s)
    target flow   X_t --encoder--> f_t --lr_decoder--> X^_t                        (== X_t)
    inference     X_t --encoder--> f_t --sr_decoder--> Y^_t

Generator losses compare data of the same content (Y^_s/Y_s, Y_{s~t~s}/Y_s, X^_t/X_t),
discriminator losses data of the same domain (images X_{s~t} vs X_t; features f_t vs f_s), and
InfoNCE pulls f_{s~t~s} towards f_s at the same location (positives) and away from features at
other locations and other images of the batch (negatives).

Through-plane adaptation of the degradation generator: instead of decoding LR images from
features alone, it applies the acquisition model of a thick-slice scan to the HR image -- a learned
vertical slice-profile kernel, a box average over k rows (slice thickness = spacing), sampling every
k-th row at a random phase and linear re-interpolation (what the reformat of an interpolated scan
is) -- plus a small bounded learned residual (noise, contrast), trained adversarially against X_t.
The residual reads the degraded image, not f_s: see :class:`DegradationGenerator`.
"""

from __future__ import annotations

import dataclasses
import functools

import torch
from torch import nn
from torch.nn import functional as F


@dataclasses.dataclass
class LossWeights:
    """Weights of the generator's loss terms (the discriminators use plain LSGAN losses).

    Attributes:
        source: L1(Y^_s, Y_s), source-flow reconstruction (identity on HR data). Default 0: with
            the SR decoder's global residual this term is an L1 (sparsity) penalty on the decoded
            detail, and at weight 1 (or 0.1) it kept the SR network at the identity -- it could not
            even overfit one batch, while without it the same batch's cycle L1 fell 14 % in 60 steps.
        cycle: L1(Y_{s~t~s}, Y_s), the cycle HR -> synthetic LR -> SR; the term that teaches SR.
        target: L1(X^_t, X_t), target-flow reconstruction (keeps f_t informative).
        adv_image: LSGAN generator loss of D_img on X_{s~t} (synthetic LR should look like X_t).
        adv_feature: LSGAN generator loss of D_feat on f_t (target features look like source ones).
        nce: InfoNCE between f_{s~t~s} (queries) and f_s (keys); 0 disables it (the ablation).
        temperature: InfoNCE temperature tau.
        nce_locations: feature locations sampled per image for InfoNCE.

    Balance: the cycle L1 is ~0.04 while InfoNCE is ~1-3 and target L1 ~0.05-0.3, so at the first
    weights tried (target 0.5, adv_feature 0.02, nce 0.2) the encoder's gradient was mostly InfoNCE's
    and SR never beat its input on validation (500 steps, L1 0.0419-0.0429 vs 0.0402 input), whereas
    the cycle term alone reached 0.0362 in 200 steps. The defaults keep every term but at weights
    where the cycle term leads (model card: contrastive.md).
    """

    source: float = 0.0
    cycle: float = 1.0
    target: float = 0.1
    adv_image: float = 0.05
    adv_feature: float = 0.01
    nce: float = 0.02
    temperature: float = 0.07
    nce_locations: int = 64


class ResidualBlock(nn.Module):
    """x + conv(relu(conv(x))): (B, C, H, W) -> (B, C, H, W)."""

    def __init__(self, channels: int):
        super().__init__()
        self.conv1 = nn.Conv2d(channels, channels, 3, padding=1)
        self.conv2 = nn.Conv2d(channels, channels, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.conv2(F.leaky_relu(self.conv1(x), 0.2))


class Encoder(nn.Module):
    """f: image (B, 1, H, W) -> features (B, width, H, W), same resolution (shared by both domains)."""

    def __init__(self, width: int = 32, blocks: int = 3):
        super().__init__()
        self.head = nn.Conv2d(1, width, 3, padding=1)
        self.body = nn.Sequential(*[ResidualBlock(width) for _ in range(blocks)])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(self.head(x))


class ImageDecoder(nn.Module):
    """features (B, width, H, W) -> image (B, 1, H, W). Used as SR decoder and as LR decoder."""

    def __init__(self, width: int = 32, blocks: int = 1):
        super().__init__()
        self.body = nn.Sequential(*[ResidualBlock(width) for _ in range(blocks)])
        self.tail = nn.Conv2d(width, 1, 3, padding=1)

    def forward(self, f: torch.Tensor) -> torch.Tensor:
        return self.tail(F.leaky_relu(self.body(f), 0.2))


def interpolation_matrix(height: int, k: int, phase: int, device=None) -> torch.Tensor:
    """(H, H) matrix M with (M @ rows) = keep rows phase, phase+k, ... and linearly re-interpolate.

    Rows before the first or after the last kept row take its value (constant extrapolation).
    """
    return _interpolation_matrix(height, k, phase).to(device)


@functools.lru_cache(maxsize=512)
def _interpolation_matrix(height: int, k: int, phase: int) -> torch.Tensor:
    m = torch.zeros(height, height)
    kept = list(range(phase, height, k)) if k > 1 else list(range(height))
    for i in range(height):
        if i <= kept[0]:
            m[i, kept[0]] = 1.0
        elif i >= kept[-1]:
            m[i, kept[-1]] = 1.0
        else:
            j = (i - kept[0]) // k
            a, b = kept[j], kept[j + 1]
            t = (i - a) / (b - a)
            m[i, a] += 1 - t
            m[i, b] += t
    return m


def box_matrix(height: int, k: int, device=None) -> torch.Tensor:
    """(H, H) matrix averaging a window k rows wide centred on each row (a thick-slice profile).

    Odd k: k taps of 1/k; even k: k+1 taps with half weights at both ends, so the window stays
    centred (no half-pixel shift). Near the edges the weights are renormalised.
    """
    idx = torch.arange(height, device=device)
    offset = (idx[None, :] - idx[:, None]).abs().float()
    m = (offset <= k // 2).float()
    if k % 2 == 0:
        m[offset == k // 2] = 0.5
    return m / m.sum(1, keepdim=True)


def thick_slice_degrade(y: torch.Tensor, ks: list[int], phases: list[int],
                        thicknesses: list[int] | None = None) -> torch.Tensor:
    """The known part of the through-plane degradation: (B, 1, H, W) -> (B, 1, H, W).

    Per image b: average thicknesses[b] rows (default ks[b]: slices as thick as their spacing), keep
    every ks[b]-th row from phases[b], linearly re-interpolate. Thinner slices than the spacing
    (gaps between slices, or the papers' protocol of dropping every other slice) use a smaller
    thickness.
    """
    h = y.shape[-2]
    thicknesses = list(ks) if thicknesses is None else thicknesses
    mats = torch.stack([interpolation_matrix(h, k, p, y.device) @ box_matrix(h, t, y.device)
                        for k, p, t in zip(ks, phases, thicknesses)])  # (B, H, H)
    return torch.einsum("bij,bcjw->bciw", mats.to(y.dtype), y)


class DegradationGenerator(nn.Module):
    """HR image Y_s (B, 1, H, W) -> X_{s~t} (B, 1, H, W), LR-like with blur along the rows.

    X_{s~t} = D + max_residual * sigmoid(a) * tanh(residual(D)), D = thick_slice_degrade(profile * Y_s):
    a learned vertical ``profile_taps``-tap slice-profile kernel (softmax-normalised, starts as
    identity), the known sampling + linear interpolation along rows with per-image factor k, and a
    small learned residual (contrast, noise) bounded by ``max_residual``.

    The residual reads the degraded image D, not f_s as in the paper's Y_s -> f_s -> X_{s~t}:
    a residual computed from f_s can hide HR detail in X_{s~t} (the CycleGAN "steganography"
    shortcut), which lowered our cycle loss while SR of truly degraded images did not improve.
    ``f`` is accepted for the paper's interface and ignored.
    """

    def __init__(self, width: int = 32, profile_taps: int = 5, max_residual: float = 0.1):
        super().__init__()
        logits = torch.full((profile_taps,), -4.0)
        logits[profile_taps // 2] = 4.0
        self.profile_logits = nn.Parameter(logits)
        hidden = max(width // 2, 4)
        self.residual = nn.Sequential(nn.Conv2d(1, hidden, 3, padding=1), nn.LeakyReLU(0.2),
                                      nn.Conv2d(hidden, 1, 3, padding=1))
        self.max_residual = max_residual
        self.residual_gate = nn.Parameter(torch.tensor(-2.0))

    def forward(self, y: torch.Tensor, f: torch.Tensor | None, ks: list[int], phases: list[int],
                thicknesses: list[int] | None = None) -> torch.Tensor:
        kernel = torch.softmax(self.profile_logits, 0).view(1, 1, -1, 1)
        blurred = F.conv2d(F.pad(y, (0, 0, kernel.shape[2] // 2, kernel.shape[2] // 2), mode="replicate"), kernel)
        degraded = thick_slice_degrade(blurred, ks, phases, thicknesses)
        scale = self.max_residual * torch.sigmoid(self.residual_gate)
        return degraded + scale * torch.tanh(self.residual(degraded))


class PatchDiscriminator(nn.Module):
    """PatchGAN: (B, in_channels, H, W) -> (B, 1, H/4, W/4) real/fake scores (LSGAN targets 1/0)."""

    def __init__(self, in_channels: int = 1, width: int = 32, layers: int = 2):
        super().__init__()
        modules: list[nn.Module] = []
        channels = in_channels
        for level in range(layers):
            out = width * 2 ** level
            modules += [nn.Conv2d(channels, out, 4, stride=2, padding=1), nn.LeakyReLU(0.2)]
            channels = out
        modules += [nn.Conv2d(channels, 1, 3, padding=1)]
        self.layers = nn.Sequential(*modules)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.layers(x)


class ProjectionHead(nn.Module):
    """Per-location MLP (1x1 convs): (B, width, H, W) -> unit vectors (B, out_dim, H, W)."""

    def __init__(self, width: int = 32, out_dim: int = 32):
        super().__init__()
        self.layers = nn.Sequential(nn.Conv2d(width, width, 1), nn.ReLU(), nn.Conv2d(width, out_dim, 1))

    def forward(self, f: torch.Tensor) -> torch.Tensor:
        return F.normalize(self.layers(f), dim=1)


def info_nce(queries: torch.Tensor, keys: torch.Tensor, temperature: float = 0.07) -> torch.Tensor:
    """InfoNCE over N paired unit vectors: queries, keys (N, D) -> scalar.

    Query i's positive is key i; its negatives are the N - 1 other keys (other locations of the same
    image and every location of the other images in the batch).
    """
    logits = queries @ keys.t() / temperature
    return F.cross_entropy(logits, torch.arange(len(queries), device=queries.device))


def sample_locations(f: torch.Tensor, count: int, generator: torch.Generator | None = None) -> torch.Tensor:
    """Flat indices (B, count) of random feature locations, different per image."""
    b, _, h, w = f.shape
    count = min(count, h * w)
    return torch.stack([torch.randperm(h * w, generator=generator)[:count] for _ in range(b)]).to(f.device)


def gather_locations(f: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
    """(B, C, H, W) features at flat indices (B, N) -> (B * N, C)."""
    b, c = f.shape[:2]
    flat = f.flatten(2)  # (B, C, H*W)
    picked = torch.gather(flat, 2, index[:, None, :].expand(b, c, index.shape[1]))  # (B, C, N)
    return picked.permute(0, 2, 1).reshape(-1, c)


def lsgan(scores: torch.Tensor, real: bool) -> torch.Tensor:
    """Least-squares GAN loss: mean (D(x) - 1)^2 for real targets, mean D(x)^2 for fake."""
    return ((scores - 1.0) ** 2).mean() if real else (scores ** 2).mean()


class ContrastiveSR(nn.Module):
    """The generator side: encoder f, SR decoder, LR decoder, degradation generator, projection head.

    Args:
        width: feature channels of the encoder (and of everything reading features).
        encoder_blocks: residual blocks of the encoder.
        decoder_blocks: residual blocks of each image decoder.
        projection_dim: InfoNCE embedding size.
        profile_taps: taps of the degradation generator's learned slice profile.
        residual: the SR decoder adds its output to the input image (global residual, VDSR-style):
            Y^ = image + sr_decoder(f). The LR decoder never has this skip, so f_t must carry X_t.
    """

    def __init__(self, width: int = 32, encoder_blocks: int = 3, decoder_blocks: int = 1,
                 projection_dim: int = 32, profile_taps: int = 5, residual: bool = True):
        super().__init__()
        self.config = dict(width=width, encoder_blocks=encoder_blocks, decoder_blocks=decoder_blocks,
                           projection_dim=projection_dim, profile_taps=profile_taps, residual=residual)
        self.encoder = Encoder(width, encoder_blocks)
        self.sr_decoder = ImageDecoder(width, decoder_blocks)
        if residual:  # start as the identity: SR(x) = x + decoded detail, the detail starting at 0
            nn.init.zeros_(self.sr_decoder.tail.weight)
            nn.init.zeros_(self.sr_decoder.tail.bias)
        self.lr_decoder = ImageDecoder(width, decoder_blocks)
        self.degrader = DegradationGenerator(width, profile_taps)
        self.projection = ProjectionHead(width, projection_dim)

    def super_resolve(self, f: torch.Tensor, image: torch.Tensor) -> torch.Tensor:
        """SR decoder: features (B, C, H, W) of ``image`` (B, 1, H, W) -> HR image (B, 1, H, W)."""
        out = self.sr_decoder(f)
        return out + image if self.config["residual"] else out

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Inference X_t -> f_t -> Y^_t: (B, 1, H, W) blurred along rows -> (B, 1, H, W)."""
        return self.super_resolve(self.encoder(x), x)

    def flows(self, y_s: torch.Tensor, x_t: torch.Tensor, ks: list[int], phases: list[int],
              thicknesses: list[int] | None = None) -> dict[str, torch.Tensor]:
        """All tensors of one training step. y_s (B, 1, H, W) HR, x_t (B', 1, H', W') LR; per HR image
        the slice spacing ks, sampling phase and slice thickness (rows) of its synthetic degradation.

        Returns f_s, y_hat_s, x_st, f_sts, y_sts, f_t, x_hat_t (images (B,1,H,W), features (B,C,H,W)).
        """
        f_s = self.encoder(y_s)
        x_st = self.degrader(y_s, f_s, ks, phases, thicknesses)
        # The degrader learns only from the image discriminator: X_{s~t} enters the cycle detached.
        # Otherwise the cycle (and InfoNCE) losses train it to make X_{s~t} easy to super-resolve --
        # its residual then does the SR itself, and the SR network learned nothing in our runs.
        f_sts = self.encoder(x_st.detach())
        f_t = self.encoder(x_t)
        return {"f_s": f_s, "y_hat_s": self.super_resolve(f_s, y_s), "x_st": x_st, "f_sts": f_sts,
                "y_sts": self.super_resolve(f_sts, x_st.detach()), "f_t": f_t, "x_hat_t": self.lr_decoder(f_t)}


class Discriminators(nn.Module):
    """D_img on images (X_{s~t} fake vs X_t real) and D_feat on features (f_t fake vs f_s real)."""

    def __init__(self, width: int = 32, disc_width: int = 32):
        super().__init__()
        self.image = PatchDiscriminator(1, disc_width, layers=2)
        self.feature = nn.Sequential(nn.Conv2d(width, disc_width, 3, padding=1), nn.LeakyReLU(0.2),
                                     nn.Conv2d(disc_width, disc_width, 4, stride=2, padding=1), nn.LeakyReLU(0.2),
                                     nn.Conv2d(disc_width, 1, 3, padding=1))


def generator_losses(model: ContrastiveSR, discs: Discriminators, y_s: torch.Tensor, x_t: torch.Tensor,
                     ks: list[int], phases: list[int], weights: LossWeights,
                     generator: torch.Generator | None = None, thicknesses: list[int] | None = None
                     ) -> tuple[dict[str, torch.Tensor], dict]:
    """Every generator loss term (unweighted) and ``total`` (weighted); also returns the flows."""
    flows = model.flows(y_s, x_t, ks, phases, thicknesses)
    terms = {
        "source": F.l1_loss(flows["y_hat_s"], y_s),
        "cycle": F.l1_loss(flows["y_sts"], y_s),
        "target": F.l1_loss(flows["x_hat_t"], x_t),
        "adv_image": lsgan(discs.image(flows["x_st"]), real=True),
        "adv_feature": lsgan(discs.feature(flows["f_t"]), real=True),
    }
    if weights.nce > 0:
        index = sample_locations(flows["f_s"], weights.nce_locations, generator)
        q = gather_locations(model.projection(flows["f_sts"]), index)
        k = gather_locations(model.projection(flows["f_s"]), index)
        terms["nce"] = info_nce(q, k, weights.temperature)
    total = sum(getattr(weights, name) * value for name, value in terms.items())
    terms["total"] = total
    return terms, flows


def discriminator_losses(discs: Discriminators, flows: dict[str, torch.Tensor], x_t: torch.Tensor
                         ) -> dict[str, torch.Tensor]:
    """LSGAN discriminator losses on detached generator outputs: d_image, d_feature and ``total``."""
    d_image = 0.5 * (lsgan(discs.image(x_t), True) + lsgan(discs.image(flows["x_st"].detach()), False))
    d_feature = 0.5 * (lsgan(discs.feature(flows["f_s"].detach()), True)
                       + lsgan(discs.feature(flows["f_t"].detach()), False))
    return {"d_image": d_image, "d_feature": d_feature, "total": d_image + d_feature}
