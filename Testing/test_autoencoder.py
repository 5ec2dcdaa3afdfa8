"""The latent-interpolation autoencoder: architecture, training steps, weights files, inference."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from LatentSRLib import LatentSRError
from LatentSRLib.models import registry
from LatentSRLib.models.autoencoder import LatentInterpolationAE, crop_to, pad_to_multiple
from LatentSRLib.pipeline import Run, super_resolve
from LatentSRLib.training.autoencoder import AETrainingConfig, losses, train
from LatentSRLib.volume import Volume, read


def test_paper_architecture_defaults():
    model = LatentInterpolationAE()
    convs = [m for m in model.encoder.modules() if isinstance(m, torch.nn.Conv2d)]
    # 4 blocks of two convs with 32, 64, 128, 256 kernels, then 256 and 16.
    assert [c.out_channels for c in convs] == [32, 32, 64, 64, 128, 128, 256, 256, 256, 16]
    assert all(c.kernel_size == (3, 3) and c.padding == (1, 1) for c in convs)
    assert sum(isinstance(m, torch.nn.AvgPool2d) for m in model.encoder.modules()) == 4
    assert sum(isinstance(m, torch.nn.Upsample) and m.mode == "nearest" for m in model.decoder.modules()) == 4
    with torch.no_grad():
        z = model.eval().encode(torch.zeros(2, 1, 128, 96))
    assert z.shape == (2, 16, 8, 6)


def test_any_inplane_size_works_through_padding():
    x = torch.rand(3, 1, 37, 50)
    padded, size = pad_to_multiple(x, 16)
    assert padded.shape[-2:] == (48, 64)
    torch.testing.assert_close(crop_to(padded, size), x)


def test_interpolate_mixes_latents():
    model = LatentInterpolationAE(base_width=4, bottleneck_width=8, latent_channels=2).eval()
    x0, x1 = torch.rand(2, 1, 1, 32, 32)
    with torch.no_grad():
        out = model.interpolate(x0, x1, torch.tensor([0.0, 0.5, 1.0]))
        torch.testing.assert_close(out[:, 0:1], model(x0))
        torch.testing.assert_close(out[:, 2:3], model(x1))
        mid = model.decode(0.5 * (model.encode(x0) + model.encode(x1)))
        torch.testing.assert_close(out[:, 1:2], mid)


def test_interpolation_loss_is_added_for_triplets():
    torch.manual_seed(0)
    model = LatentInterpolationAE(base_width=4, bottleneck_width=8, latent_channels=2)
    batch = torch.rand(2, 3, 32, 32)
    with_interp = losses(model, batch, 1.0)
    assert set(with_interp) == {"recon", "interp", "total"}
    torch.testing.assert_close(with_interp["total"], with_interp["recon"] + with_interp["interp"])
    assert set(losses(model, batch[:, :1], 0.0)) == {"recon", "total"}


def _training_data(tmp_path, n=3):
    """Small smooth anisotropic volumes written as files, so training reads them as a user's would."""
    from LatentSRLib.volume import write
    tmp_path.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[:48, :48]
    for i in range(n):
        slices = [np.exp(-((yy - 24 - 3 * z) ** 2 + (xx - 20 - 2 * i) ** 2) / (60 + 10 * z)) for z in range(5)]
        array = np.stack(slices)[None] + rng.normal(0, 0.01, (1, 5, 48, 48))
        write(Volume(array, (1.4, 1.4, 8.0)), tmp_path / f"case{i}_frame01.nii.gz")
    return tmp_path


@pytest.mark.parametrize("interp_weight", [0.0, 1.0])
def test_training_reduces_the_loss_and_resumes(tmp_path, interp_weight):
    data = _training_data(tmp_path / "data")
    out = tmp_path / "ae.pt"
    config = AETrainingConfig(data=[str(data)], out=str(out), validation_patients=1, epochs=4, steps_per_epoch=6,
                              batch_size=4, patch_size=32, base_width=4, bottleneck_width=8, latent_channels=4,
                              interp_weight=interp_weight, validation_count=4, device="cpu", progress=False)
    train(config)
    history = torch.load(str(out) + ".ckpt", weights_only=False)["history"]
    assert len(history) == 4
    # The exported weights are those of the best validation epoch, with the history up to it.
    exported = registry.load(str(out), "ae")["meta"]["history"]
    key = "val_interp" if interp_weight else "val_recon"
    assert exported[-1][key] == min(h[key] for h in history)
    assert history[-1]["train_loss"] < history[0]["train_loss"]
    config.epochs, config.resume = 5, True
    train(config)
    assert len(torch.load(str(out) + ".ckpt", weights_only=False)["history"]) == 5


@pytest.fixture
def tiny_weights(tmp_path):
    torch.manual_seed(0)
    model = LatentInterpolationAE(base_width=4, bottleneck_width=8, latent_channels=4)
    return registry.save(tmp_path / "tiny.pt", "ae", model.config, model.state_dict(), {"pixel_size": 1.4})


def test_inference_keeps_geometry_and_acquired_slices(tiny_weights, oblique_volume):
    out = super_resolve(oblique_volume, "ae", factor=3, run=Run(weights=str(tiny_weights), device="cpu",
                                                                batch_slices=5))
    assert out.array.shape == (1, 16, 20, 24)
    assert out.spacing == pytest.approx((1.5, 1.25, 8.0 / 3))
    assert out.origin == oblique_volume.origin
    np.testing.assert_array_equal(out.direction, oblique_volume.direction)
    np.testing.assert_array_equal(out.array[:, ::3], oblique_volume.array)
    assert np.isfinite(out.array).all()


def test_inference_batch_size_does_not_change_the_result(tiny_weights, oblique_volume):
    a = super_resolve(oblique_volume, "ae", factor=2, run=Run(weights=str(tiny_weights), batch_slices=1))
    b = super_resolve(oblique_volume, "ae", factor=2, run=Run(weights=str(tiny_weights), batch_slices=64))
    np.testing.assert_allclose(a.array, b.array, atol=1e-4)


def test_replacing_originals_uses_the_reconstruction(tiny_weights, oblique_volume):
    out = super_resolve(oblique_volume, "ae", factor=2, run=Run(weights=str(tiny_weights), keep_original=False))
    assert not np.allclose(out.array[:, ::2], oblique_volume.array)


def test_corrupt_or_foreign_weights_give_clear_errors(tmp_path, tiny_weights, oblique_volume):
    garbage = tmp_path / "garbage.pt"
    garbage.write_bytes(b"\x00" * 100)
    with pytest.raises(LatentSRError, match="not a readable weights file"):
        super_resolve(oblique_volume, "ae", factor=2, run=Run(weights=str(garbage)))
    foreign = tmp_path / "foreign.pt"
    torch.save({"weights": torch.zeros(3)}, foreign)
    with pytest.raises(LatentSRError, match="not a LatentSR weights file"):
        super_resolve(oblique_volume, "ae", factor=2, run=Run(weights=str(foreign)))
    with pytest.raises(LatentSRError, match="neither a file nor a bundled model"):
        super_resolve(oblique_volume, "ae", factor=2, run=Run(weights=str(tmp_path / "none.pt")))


def test_sha256_of_bundled_weights_is_checked(tmp_path, tiny_weights, monkeypatch):
    folder = tmp_path / "models"
    folder.mkdir()
    (folder / "tiny.pt").write_bytes(tiny_weights.read_bytes())
    monkeypatch.setenv("LATENTSR_MODELS", str(folder))
    registry.register("tiny", "tiny.pt", "ae", "test model", default=True)
    assert registry.load(None, "ae")["config"]["base_width"] == 4
    data = bytearray((folder / "tiny.pt").read_bytes())
    data[-10] ^= 0xFF
    (folder / "tiny.pt").write_bytes(bytes(data))
    with pytest.raises(LatentSRError, match="corrupt"):
        registry.load("tiny", "ae")


def test_bundled_weights_run_on_a_real_crop(data_dir):
    if not any(e["kind"] == "ae" for e in registry.manifest().values()):
        pytest.skip("no bundled autoencoder weights")
    volume = read(data_dir / "acdc_fullfov" / "patient035" / "patient035_frame01.nii.gz")
    crop = volume.with_array(volume.array[:, :5, 80:176, 60:156].copy())
    out = super_resolve(crop, "ae", factor=2, run=Run(device="cpu"))
    assert out.array.shape == (1, 9, 96, 96)
    np.testing.assert_array_equal(out.array[:, ::2], crop.array)
    # A synthesised slice resembles its neighbours more than a random image would.
    between = out.array[0, 1]
    assert np.corrcoef(between.ravel(), crop.array[0, 0].ravel())[0, 1] > 0.5


def test_brain_adapted_weights_on_a_real_thick_slice_crop(data_dir):
    """ae-colin27 (bundled) on 5 mm slices of the Colin27 brain: options recorded, acquired slices
    kept, new slices a measured correction of linear interpolation (not linear itself, and as close
    to the 1 mm truth as linear within 5 %: the gain over linear is only measurable over the whole
    brain, see ae.md)."""
    if "ae-colin27" not in registry.manifest():
        pytest.skip("no bundled brain-adapted autoencoder")
    assert {k: registry.load("ae-colin27", "ae")["meta"][k] for k in ("correction_sigma_mm", "correction_gain")} \
        == {"correction_sigma_mm": 2.0, "correction_gain": 0.5}
    truth = read(data_dir / "brain" / "colin27_t1_1mm.nii.gz").array[:, 80:106, 60:156, 40:136]
    thick = Volume(truth[:, ::5].copy(), (1.0, 1.0, 5.0))
    out = super_resolve(thick, "ae", factor=5, run=Run(device="cpu", weights="ae-colin27")).array
    linear = super_resolve(thick, "linear", factor=5, run=Run()).array
    np.testing.assert_array_equal(out[:, ::5], thick.array)
    new = [j for j in range(26) if j % 5]
    error, linear_error = (float(((a[0, new] - truth[0, new]) ** 2).mean()) for a in (out, linear))
    assert np.abs(out - linear).max() > 1 and abs(error / linear_error - 1) < 0.05


def test_corrected_mode_is_linear_plus_the_latent_correction(tiny_weights, oblique_volume):
    """corrected = lerp(x) + decode(mix) - lerp(decode(z)), computed here independently."""
    from LatentSRLib.intensity import PercentileScaling
    oblique_volume.spacing = (1.4, 1.4, 8.0)  # the model's pixel size: no in-plane resampling
    from LatentSRLib.synthesize.autoencoder import load_model
    out = super_resolve(oblique_volume, "ae", factor=2, run=Run(weights=str(tiny_weights), mode="corrected"))
    model, _ = load_model(str(tiny_weights), torch.device("cpu"))
    scaling = PercentileScaling.fit(oblique_volume.array)
    x = torch.from_numpy(scaling.forward(oblique_volume.array)[0])[:, None]   # (6, 1, 20, 24)
    padded, size = pad_to_multiple(x, 16)
    with torch.no_grad():
        z = model.encode(padded)
        recon = crop_to(model.decode(z), size)
        mixed = crop_to(model.decode(0.5 * (z[:-1] + z[1:])), size)
    expected = 0.5 * (x[:-1] + x[1:]) + mixed - 0.5 * (recon[:-1] + recon[1:])
    np.testing.assert_allclose(out.array[0, 1::2], scaling.inverse(expected[:, 0].numpy()), rtol=1e-4, atol=1e-2)
    latent = super_resolve(oblique_volume, "ae-latent", factor=2, run=Run(weights=str(tiny_weights)))
    np.testing.assert_allclose(latent.array[0, 1::2], scaling.inverse(mixed[:, 0].numpy()), rtol=1e-4, atol=1e-2)
    with pytest.raises(LatentSRError, match="unknown autoencoder mode"):
        super_resolve(oblique_volume, "ae", factor=2, run=Run(weights=str(tiny_weights), mode="magic"))


def test_correction_smoothing_filters_only_the_correction(tiny_weights, oblique_volume):
    """With sigma > 0 the new slices are linear + the Gaussian-smoothed correction (sigma in mm,
    so per axis in pixels of the input grid); acquired slices stay exact; weights can record it."""
    from scipy import ndimage
    from LatentSRLib.intensity import PercentileScaling
    oblique_volume.spacing = (1.4, 1.4, 8.0)
    plain = super_resolve(oblique_volume, "ae", factor=2, run=Run(weights=str(tiny_weights), mode="corrected"))
    smooth = super_resolve(oblique_volume, "ae", factor=2, run=Run(weights=str(tiny_weights), mode="corrected",
                                                                   correction_sigma_mm=2.8))
    scaling = PercentileScaling.fit(oblique_volume.array)
    x = scaling.forward(oblique_volume.array)[0]
    linear = 0.5 * (x[:-1] + x[1:])
    correction = scaling.forward(plain.array[0, 1::2]) - linear
    expected = linear + ndimage.gaussian_filter(correction, (0, 2, 2), mode="nearest")
    np.testing.assert_allclose(scaling.forward(smooth.array[0, 1::2]), expected, atol=2e-3)
    np.testing.assert_array_equal(smooth.array[0, ::2], oblique_volume.array[0])
    assert np.abs(np.diff(smooth.array[0, 1::2] - plain.array[0, 1::2], axis=-1)).mean() > 0  # it did something
    # Recorded in the weights: the same result without the run option.
    content = registry.load(str(tiny_weights), "ae")
    recorded = registry.save(tiny_weights.parent / "smooth.pt", "ae", content["config"], content["state_dict"],
                             {**content["meta"], "correction_sigma_mm": 2.8})
    again = super_resolve(oblique_volume, "ae", factor=2, run=Run(weights=str(recorded), mode="corrected"))
    np.testing.assert_array_equal(again.array, smooth.array)
    with pytest.raises(LatentSRError, match="non-negative"):
        super_resolve(oblique_volume, "ae", factor=2, run=Run(weights=str(tiny_weights), mode="corrected",
                                                              correction_sigma_mm=-1))


def test_corrected_training_objective(tmp_path):
    torch.manual_seed(0)
    model = LatentInterpolationAE(base_width=4, bottleneck_width=8, latent_channels=2)
    batch = torch.rand(2, 3, 32, 32)
    terms = losses(model.eval(), batch, 1.0, "corrected")
    with torch.no_grad():
        recon, z = model(batch.reshape(6, 1, 32, 32)).reshape(2, 3, 32, 32), model.encode(batch.reshape(6, 1, 32, 32))
        z = z.reshape(2, 3, *z.shape[1:])
        mixed = model.decode(0.5 * (z[:, 0] + z[:, 2]))[:, 0]
        expected = 0.5 * (batch[:, 0] + batch[:, 2]) + mixed - 0.5 * (recon[:, 0] + recon[:, 2])
    torch.testing.assert_close(terms["interp"], torch.mean((expected - batch[:, 1]) ** 2))


def test_init_starts_from_given_weights_and_checks_the_architecture(tmp_path, tiny_weights):
    data = _training_data(tmp_path / "data")
    config = AETrainingConfig(data=[str(data)], out=str(tmp_path / "ft.pt"), validation_patients=1, epochs=1,
                              steps_per_epoch=1, batch_size=2, patch_size=32, base_width=4, bottleneck_width=8,
                              latent_channels=4, learning_rate=0.0, validation_count=2, device="cpu",
                              progress=False, init_weights=str(tiny_weights))
    train(config)
    start = registry.load(str(tiny_weights), "ae")["state_dict"]
    tuned = registry.load(str(tmp_path / "ft.pt"), "ae")["state_dict"]
    # With a zero learning rate only batch-norm running statistics can move; every weight is the init's.
    for name, value in start.items():
        if "running" not in name and "num_batches" not in name:
            torch.testing.assert_close(tuned[name], value, atol=1e-3, rtol=1e-3)  # float16 export
    with pytest.raises(LatentSRError, match="architecture"):
        train(AETrainingConfig(**{**config.__dict__, "base_width": 8, "out": str(tmp_path / "bad.pt")}))


def _cine_file(tmp_path, frames=6):
    """A 4D cine whose blob grows over time: (T=frames, Z=3, 40, 40) at 1.4 x 1.4 x 10 mm."""
    from LatentSRLib.volume import write
    yy, xx = np.mgrid[:40, :40]
    array = np.stack([np.stack([np.exp(-((yy - 20) ** 2 + (xx - 20) ** 2) / (30 + 8 * t + 5 * z))
                                for z in range(3)]) for t in range(frames)]).astype(np.float32)
    path = tmp_path / "case9_4d.nii.gz"
    volume = Volume(array, (1.4, 1.4, 10.0))
    volume.is_4d = True
    write(volume, path)
    return path


def test_time_stacks_hold_each_slice_over_time(tmp_path):
    from LatentSRLib.training.data import load_time_stacks
    path = _cine_file(tmp_path)
    stacks = load_time_stacks([str(path)], strides=(1, 2), progress=False)
    # 3 slices x 2 strides; stride 2 keeps frames 0, 2, 4.
    assert sorted(s.slices.shape[0] for s in stacks) == [3, 3, 3, 6, 6, 6]
    by_name = {s.name: s.slices for s in stacks}
    one, two = by_name["case9_4d.nii.gz[z=1,stride=1]"], by_name["case9_4d.nii.gz[z=1,stride=2]"]
    np.testing.assert_allclose(two, one[::2])
    # The blob grows over time, so neighbouring entries differ (small changes) but are not equal.
    assert 0 < np.abs(one[1] - one[0]).mean() < np.abs(one[0]).mean()
    # 3D files (one frame) contribute nothing.
    assert load_time_stacks([str(_training_data(tmp_path / "d3", n=1))], progress=False) == []


def test_reformat_stacks_are_through_plane_planes_along_the_inplane_axes(tmp_path):
    from LatentSRLib.interpolate import upsample
    from LatentSRLib.training.data import in_model_space, load_reformat_stacks
    from LatentSRLib.volume import read
    data = _training_data(tmp_path / "data", n=1)  # (5, 48, 48) at 1.4 x 1.4 x 8 mm
    stacks = load_reformat_stacks([str(data)], strides=(1, 2), progress=False)
    by_name = {s.name: s.slices for s in stacks}
    # Per axis: stride 1 (one stack) and stride 2 (starts 0 and 1).
    assert len(stacks) == 6
    # 8 mm slices interpolated to ~1.4 mm: factor round(8 / 1.4) = 6, so (5 - 1) * 6 + 1 = 25 rows.
    dense = upsample(in_model_space(read(next(data.iterdir())), 1.4)[0], 6, "linear", axis=0)
    along_x = by_name["case0_frame01.nii.gz[t=0,along=x,stride=1,start=0]"]
    assert along_x.shape == (48, 25, 48)
    np.testing.assert_allclose(along_x[10], dense[:, :, 10])
    np.testing.assert_allclose(by_name["case0_frame01.nii.gz[t=0,along=y,stride=2,start=1]"][3], dense[:, 7, :])
    # Neighbouring planes are a small step apart: different, but much closer than the acquired slices.
    step = np.abs(along_x[21] - along_x[20]).mean()
    assert 0 < step < np.abs(dense[6] - dense[0]).mean()


@pytest.mark.parametrize("source", ["temporal_fraction", "reformat_fraction"])
def test_training_with_small_change_triplets(tmp_path, source):
    """Triplets over time (4D cines) or from through-plane reformats (static scans) join the batches."""
    data = _training_data(tmp_path / "data")
    _cine_file(data)
    out = tmp_path / "ae.pt"
    config = AETrainingConfig(data=[str(data)], out=str(out), validation_data=[str(_training_data(tmp_path / "v", 1))],
                              epochs=2, steps_per_epoch=3,
                              batch_size=4, patch_size=32, base_width=4, bottleneck_width=8, latent_channels=4,
                              interp_weight=1.0, interp_target="corrected", validation_count=4, device="cpu",
                              progress=False, **{source: 0.5})
    train(config)
    assert registry.load(str(out), "ae")["meta"]["training"][source] == 0.5
    if source == "temporal_fraction":
        with pytest.raises(LatentSRError, match="4D cines"):
            train(AETrainingConfig(**{**config.__dict__, "data": [str(_training_data(tmp_path / "d3"))],
                                      "out": str(tmp_path / "x.pt")}))
    else:
        with pytest.raises(LatentSRError, match="add up to more than 1"):
            train(AETrainingConfig(**{**config.__dict__, "reformat_fraction": 0.8, "temporal_fraction": 0.5,
                                      "out": str(tmp_path / "x.pt")}))