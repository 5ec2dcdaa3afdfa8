"""Unit tests of the contrastive SR method (Li et al. 2023, through-plane adaptation): seconds, CPU."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from LatentSRLib import LatentSRError  # noqa: E402
from LatentSRLib.models import registry  # noqa: E402
from LatentSRLib.models.contrastive import (ContrastiveSR, Discriminators, LossWeights,  # noqa: E402
                                            discriminator_losses, generator_losses, info_nce,
                                            thick_slice_degrade)
from LatentSRLib.pipeline import Run, super_resolve  # noqa: E402
from LatentSRLib.synthesize.contrastive import internal_factor, upsample  # noqa: E402
from LatentSRLib.training.contrastive import (linear_along_z, sample_reformats, step_on_batch,  # noqa: E402
                                              validate, validation_set)
from LatentSRLib.training.data import TrainingVolume  # noqa: E402

DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"
TINY = dict(width=8, encoder_blocks=1, decoder_blocks=1, projection_dim=8)


def tiny(seed: int = 0):
    torch.manual_seed(seed)
    return ContrastiveSR(**TINY), Discriminators(width=8, disc_width=8)


def batch(seed: int = 0, b: int = 4, size: int = 16):
    g = torch.Generator().manual_seed(seed)
    y = torch.rand(b, 1, size, size, generator=g)
    x = thick_slice_degrade(torch.rand(b, 1, size, size, generator=g), [3] * b, [0] * b)
    return y, x, [3] * b, [i % 3 for i in range(b)]


def test_generator_terms_shapes_finite_and_gradients():
    model, discs = tiny()
    with torch.no_grad():  # the SR decoder's last layer starts at zero (identity); make it live
        model.sr_decoder.tail.weight.normal_(0, 0.1)
    y, x, ks, phases = batch()
    terms, flows = generator_losses(model, discs, y, x, ks, phases, LossWeights(nce_locations=16))
    assert set(terms) == {"source", "cycle", "target", "adv_image", "adv_feature", "nce", "total"}
    assert all(v.ndim == 0 and torch.isfinite(v) for v in terms.values())
    for name in ("f_s", "f_sts", "f_t"):
        assert flows[name].shape == (4, 8, 16, 16)
    for name in ("y_hat_s", "x_st", "y_sts", "x_hat_t"):
        assert flows[name].shape == (4, 1, 16, 16)

    def grads(loss, modules):
        model.zero_grad(), discs.zero_grad()
        loss.backward(retain_graph=True)
        return {m: any(p.grad is not None and p.grad.abs().sum() > 0 for p in getattr(model, m).parameters())
                for m in modules}

    mods = ("encoder", "sr_decoder", "lr_decoder", "degrader", "projection")
    assert grads(terms["source"], mods) == dict(encoder=True, sr_decoder=True, lr_decoder=False,
                                                 degrader=False, projection=False)
    # The degrader learns from the image discriminator only (X_{s~t} is detached in the cycle).
    assert grads(terms["cycle"], mods) == dict(encoder=True, sr_decoder=True, lr_decoder=False,
                                                degrader=False, projection=False)
    assert grads(terms["target"], mods) == dict(encoder=True, sr_decoder=False, lr_decoder=True,
                                                 degrader=False, projection=False)
    assert grads(terms["nce"], mods) == dict(encoder=True, sr_decoder=False, lr_decoder=False,
                                              degrader=False, projection=True)
    assert grads(terms["adv_image"], mods)["degrader"] and grads(terms["adv_feature"], mods)["encoder"]
    d_terms = discriminator_losses(discs, flows, x)
    model.zero_grad()
    d_terms["total"].backward()
    assert all(p.grad is None for p in model.parameters())  # generator outputs are detached
    assert all(p.grad is not None for p in discs.parameters())


def test_no_contrastive_ablation_drops_the_term():
    model, discs = tiny()
    terms, _ = generator_losses(model, discs, *batch(), LossWeights(nce=0.0))
    assert "nce" not in terms


def test_info_nce_lower_for_aligned_than_shuffled():
    g = torch.Generator().manual_seed(0)
    keys = torch.nn.functional.normalize(torch.randn(64, 16, generator=g), dim=1)
    queries = torch.nn.functional.normalize(keys + 0.1 * torch.randn(64, 16, generator=g), dim=1)
    aligned = info_nce(queries, keys, 0.07)
    shuffled = info_nce(queries[torch.randperm(64, generator=g)], keys, 0.07)
    assert aligned < 0.5 < shuffled


@pytest.mark.parametrize("k", [3, 4])
def test_thick_slice_degrade_is_centred(k):
    ramp = torch.arange(20.0).view(1, 1, 20, 1).expand(1, 1, 20, 4)
    out = thick_slice_degrade(ramp, [k], [1])
    # A ramp is unchanged by a centred box (away from the edges) and by linear re-interpolation.
    assert torch.allclose(out[0, 0, 1 + k:1 + 3 * k], ramp[0, 0, 1 + k:1 + 3 * k], atol=1e-5)
    step = torch.zeros(1, 1, 20, 3)
    step[:, :, 10:] = 1
    out = thick_slice_degrade(step, [k], [0])
    assert out[0, 0, 0].sum() == 0 and out[0, 0, -1].sum() == 3 and (out[0, 0, 1:] - out[0, 0, :-1] >= -1e-6).all()


def test_training_steps_reduce_the_loss():
    model, discs = tiny(1)
    opt_g = torch.optim.Adam(model.parameters(), 3e-3, betas=(0.5, 0.999))
    opt_d = torch.optim.Adam(discs.parameters(), 3e-3, betas=(0.5, 0.999))
    y, x, ks, phases = batch(1)
    weights = LossWeights(nce_locations=16)
    g = torch.Generator().manual_seed(0)
    totals = [step_on_batch(model, discs, opt_g, opt_d, y, x, ks, phases, weights, g)["total"] for _ in range(30)]
    assert np.mean(totals[-5:]) < np.mean(totals[:5])


def test_sampling_and_validation_data():
    rng = np.random.default_rng(0)
    volume = TrainingVolume("v", rng.random((6, 30, 40)).astype(np.float32), 7.0)
    patches, ks = sample_reformats([volume], 3, 24, 1.4, rng)
    assert patches.shape == (3, 1, 24, 24) and ks == [5, 5, 5] and np.isfinite(patches).all()
    lin = linear_along_z(np.arange(3, dtype=np.float32)[:, None], 4)
    assert np.allclose(lin[:, 0], np.arange(9) / 4)
    hr, degraded = validation_set([volume], 4, 24, 5)
    scores = validate(ContrastiveSR(**TINY), hr, degraded)
    # An untrained residual model is the identity: it scores exactly like its input.
    assert scores["sr_l1"] == pytest.approx(scores["input_l1"], abs=1e-6)
    # Thin slices (1 row) keep more of a smooth pattern than slices as thick as their spacing,
    # whose box average flattens it.
    rows = np.sin(2 * np.pi * np.arange(30) / 20)[None, :, None] * np.ones((6, 1, 40))
    smooth = TrainingVolume("s", (0.5 + 0.4 * rows).astype(np.float32), 7.0)
    hr_thick, thick = validation_set([smooth], 4, 24, 5)
    hr_thin, thin = validation_set([smooth], 4, 24, 5, thickness=1)
    torch.testing.assert_close(hr_thin, hr_thick)
    assert (thin - hr_thin).abs().mean() < 0.85 * (thick - hr_thick).abs().mean()


def test_internal_factor():
    assert internal_factor(2, 10.0, 1.4) == 8   # 1.25 mm internal grid, every 4th slice kept
    assert internal_factor(7, 10.0, 1.4) == 7
    assert internal_factor(2, 2.0, 1.4) == 2


@pytest.fixture()
def tiny_weights(tmp_path):
    model, _ = tiny(2)
    with torch.no_grad():  # a non-identity model so that the test sees the network at work
        model.sr_decoder.tail.weight.normal_(0, 0.01)
    return str(registry.save(tmp_path / "tiny.pt", "contrastive", model.config, model.state_dict(),
                             {"pixel_size": 1.4}))


def real_crop(size: int = 40) -> np.ndarray:
    path = DATA / "acdc_fullfov" / "patient001" / "patient001_frame01.nii.gz"
    if not path.exists():
        pytest.skip(f"no real data at {path}")
    from LatentSRLib.volume import read
    v = read(path)
    _, z, y, x = v.array.shape
    crop = v.array[:, :, y // 2 - size // 2:y // 2 + size // 2, x // 2 - size // 2:x // 2 + size // 2]
    return v.with_array(np.ascontiguousarray(crop[:, :5]))


def test_upsample_on_real_crop_keeps_shape_and_acquired_slices(tiny_weights):
    volume = real_crop()
    fractions = []
    out = super_resolve(volume, "contrastive", factor=2, weights=tiny_weights, device="cpu", batch_slices=16,
                        progress=fractions.append)
    assert out.array.shape == (1, 9, 40, 40)
    assert np.array_equal(out.array[:, ::2], volume.array)
    assert np.isfinite(out.array).all() and fractions[-1] == 1.0
    # The raw method output keeps the acquired slices too (normalised units), for 4D input as well.
    array = np.stack([volume.array[0], volume.array[0] * 0.5]) / volume.array.max()
    raw = upsample(array.astype(np.float32), 3, (10.0, 1.5625, 1.5625), Run(weights=tiny_weights, device="cpu"))
    assert raw.shape == (2, 13, 40, 40)
    assert np.allclose(raw[:, ::3], array)


def test_cancel_and_missing_weights(tiny_weights, tmp_path, monkeypatch):
    from LatentSRLib.pipeline import Cancelled
    array = np.random.default_rng(0).random((1, 3, 12, 12)).astype(np.float32)
    with pytest.raises(Cancelled):
        upsample(array, 2, (10.0, 1.4, 1.4), Run(weights=tiny_weights, device="cpu", cancel=lambda: True))
    monkeypatch.setenv("LATENTSR_MODELS", str(tmp_path / "empty"))
    with pytest.raises(LatentSRError, match="no bundled weights"):
        upsample(array, 2, (10.0, 1.4, 1.4), Run(device="cpu"))


def test_bundled_weights_if_registered():
    if not any(e.get("kind") == "contrastive" for e in registry.manifest().values()):
        pytest.skip("no bundled contrastive weights registered")
    volume = real_crop(32)
    out = super_resolve(volume, "contrastive", factor=2, device="cpu")
    assert out.array.shape == (1, 9, 32, 32) and np.isfinite(out.array).all()
    assert np.array_equal(out.array[:, ::2], volume.array)


def test_identity_network_returns_linear_interpolation(tmp_path):
    """An untrained residual model is the identity: the method must then equal linear interpolation,
    also when the input is resampled in-plane to the model's pixel size (no smoothing round trip)."""
    model = ContrastiveSR(**TINY)
    weights = str(registry.save(tmp_path / "identity.pt", "contrastive", model.config, model.state_dict(),
                                {"pixel_size": 1.4}))
    array = np.random.default_rng(0).random((1, 4, 20, 24)).astype(np.float32)
    for spacing in ((10.0, 1.4, 1.4), (10.0, 1.75, 1.75)):
        out = upsample(array, 2, spacing, Run(weights=weights, device="cpu"))
        assert np.allclose(out, linear_along_z(array[0], 2)[None], atol=1e-5)


def test_thinner_slices_than_their_spacing_blur_less():
    g = torch.Generator().manual_seed(0)
    image = torch.rand(1, 1, 30, 8, generator=g)
    thick = thick_slice_degrade(image, [5], [0])
    thin = thick_slice_degrade(image, [5], [0], thicknesses=[1])
    # Thickness 1 is point sampling: the kept rows are the image's own rows.
    torch.testing.assert_close(thin[0, 0, 0::5], image[0, 0, 0::5])
    assert not torch.allclose(thick[0, 0, 5::5], image[0, 0, 5::5])
    # Default thickness is the spacing.
    torch.testing.assert_close(thick_slice_degrade(image, [5], [0], thicknesses=[5]), thick)


def test_recorded_correction_smoothing_and_gain(tiny_weights):
    """Weights recording a calibration return linear + gain * smooth(correction) (in-plane only), and
    keep the acquired slices."""
    from scipy import ndimage
    array = np.random.default_rng(1).random((1, 4, 20, 24)).astype(np.float32)
    spacing = (10.0, 1.4, 1.75)
    calibrated = str(registry.copy_with_meta(tiny_weights, Path(tiny_weights).with_name("cal.pt"), "contrastive",
                                             correction_sigma_mm=2.8, correction_gain=0.5))
    raw = upsample(array, 2, spacing, Run(weights=tiny_weights, device="cpu"))
    out = upsample(array, 2, spacing, Run(weights=calibrated, device="cpu"))
    linear = linear_along_z(array[0], 2)[None]
    expected = linear + 0.5 * ndimage.gaussian_filter(raw - linear, (0, 0, 2.8 / 1.4, 2.8 / 1.75), mode="nearest")
    expected[:, ::2] = array
    np.testing.assert_allclose(out, expected, atol=1e-5)
    assert np.abs(raw - linear).max() > 1e-4  # the network is at work, so the test sees the calibration


def test_brain_calibrated_bundle_is_the_default_network_with_its_correction_halved():
    """contrastive-colin27 holds contrastive-acdc's tensors plus a calibration (1 mm, gain 0.5)."""
    manifest = registry.manifest()
    if "contrastive-colin27" not in manifest or "contrastive-acdc" not in manifest:
        pytest.skip("brain-calibrated contrastive weights not bundled")
    brain, cardiac = registry.load("contrastive-colin27", "contrastive"), registry.load("contrastive-acdc", "contrastive")
    assert all(torch.equal(brain["state_dict"][k], v) for k, v in cardiac["state_dict"].items())
    assert (brain["meta"]["correction_sigma_mm"], brain["meta"]["correction_gain"]) == (1.0, 0.5)
    volume = real_crop(32)
    outputs = [super_resolve(volume, "contrastive", factor=2, device="cpu", weights=name).array
               for name in ("contrastive-acdc", "contrastive-colin27")]
    linear = super_resolve(volume, "linear", factor=2).array
    # Halving (and smoothing) the correction brings the new slices closer to linear interpolation.
    assert 0 < np.abs(outputs[1] - linear).mean() < np.abs(outputs[0] - linear).mean()


def test_batching_and_the_model_cache_do_not_change_the_result(tiny_weights, tmp_path):
    """Results do not depend on the batch size (the CPU cap), the cached model is reused, and a
    weights file replaced in place is reloaded (the cache is keyed by its sha256)."""
    from LatentSRLib.synthesize.contrastive import CPU_ACTIVATION_BYTES, batch_size, load_model
    array = np.random.default_rng(2).random((2, 4, 20, 24)).astype(np.float32)
    one = upsample(array, 2, (10.0, 1.4, 1.4), Run(weights=tiny_weights, device="cpu", batch_slices=1))
    many = upsample(array, 2, (10.0, 1.4, 1.4), Run(weights=tiny_weights, device="cpu", batch_slices=64))
    np.testing.assert_allclose(one, many, atol=1e-6)
    assert load_model(tiny_weights, torch.device("cpu"))[0] is load_model(tiny_weights, torch.device("cpu"))[0]
    identity = ContrastiveSR(**TINY)
    registry.save(tiny_weights, "contrastive", identity.config, identity.state_dict(), {"pixel_size": 1.4})
    again = upsample(array, 2, (10.0, 1.4, 1.4), Run(weights=tiny_weights, device="cpu"))
    np.testing.assert_allclose(again, np.stack([linear_along_z(a, 2) for a in array]), atol=1e-5)
    # The CPU cap: 73 rows x 256 columns x 32 channels of float32 is 2.4 MB, so 7 planes a call.
    assert batch_size(16, torch.device("cpu"), 32, (73, 256)) == CPU_ACTIVATION_BYTES // (4 * 32 * 73 * 256) == 7
    assert batch_size(16, torch.device("cpu"), 32, (2000, 2000)) == 1
