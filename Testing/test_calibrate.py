"""Validation along in-plane axes, the correction grid and its choice, and ``latentsr adapt``."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from LatentSRLib import LatentSRError
from LatentSRLib.calibrate import GridRow, along_inplane_axis, choose, correction_grid, reformat_cases
from LatentSRLib.cli import main
from LatentSRLib.interpolate import upsample
from LatentSRLib.models import registry
from LatentSRLib.models.autoencoder import LatentInterpolationAE
from LatentSRLib.pipeline import Run, super_resolve
from LatentSRLib.volume import Volume, read, write


def thick_scan(slices: int = 12) -> Volume:
    """A smooth 3D scan, 1 mm pixels and 4 mm slices (planes along x and y of at least the 41 x 41
    pixels VIF needs): blobs that change from slice to slice."""
    z, y, x = np.mgrid[:slices, :48, :44].astype(np.float32)
    array = np.exp(-((y - 20 - z) ** 2 + (x - 22) ** 2) / 60) + 0.5 * np.exp(-((y - 12) ** 2 + (x - 8 - z) ** 2) / 20)
    return Volume(100 * array, (1.0, 1.0, 4.0))


def test_along_inplane_axis_makes_x_or_y_the_slice_axis():
    scan = thick_scan()
    dense = upsample(scan.array[0], 4, "linear", axis=0)  # 4 mm -> 1 mm: (45, 48, 44)
    along_x, along_y = along_inplane_axis(scan, "x"), along_inplane_axis(scan, "y")
    assert along_x.array.shape == (1, 44, 45, 48) and along_x.spacing == (1.0, 1.0, 1.0)
    np.testing.assert_array_equal(along_x.array[0, 5], dense[:, :, 5])
    np.testing.assert_array_equal(along_y.array[0, 7], dense[:, 7, :])
    cases = reformat_cases(scan)
    assert [c.keep_every for c in cases] == [4, 4] and cases[0].scored[:4] == [1, 2, 3, 5]
    with pytest.raises(LatentSRError, match="axis must be x or y"):
        along_inplane_axis(scan, "z")


def row(ssim_difference, psnr_difference, ssim_p=1e-3, psnr_p=1e-3, sigma=0.0, gain=1.0):
    return GridRow(sigma, gain, 0.8, ssim_difference, ssim_p, 25.0, psnr_difference, psnr_p)


def test_choose_takes_the_largest_significant_ssim_gain():
    rows = [row(0.003, -0.1), row(0.002, 0.2, gain=0.5), row(0.001, 0.3, gain=0.25), row(0.004, 0.1, ssim_p=0.2)]
    assert choose(rows) == (rows[1], True)  # row 0 loses PSNR, row 3 is not significant
    fallback, qualified = choose([row(-0.001, 0.2), row(0.001, -0.2)])
    assert not qualified and fallback.ssim_difference == 0.001


@pytest.fixture
def tiny_ae(tmp_path):
    torch.manual_seed(0)
    model = LatentInterpolationAE(base_width=4, bottleneck_width=8, latent_channels=4)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.5 * torch.randn_like(p))  # far from linear, so the correction is not ~0
    return registry.save(tmp_path / "tiny.pt", "ae", model.config, model.state_dict(),
                         {"pixel_size": 1.4, "mode": "corrected"})


def test_grid_gain_zero_is_linear_and_rows_match_the_pipeline(tiny_ae):
    """gain 0 scores exactly like linear; a grid row equals running the pipeline with those options."""
    from LatentSRLib.evaluate import compare
    cases = reformat_cases(thick_scan())
    linear, rows = correction_grid(cases, "ae", str(tiny_ae), [0.0, 2.0], [0.0, 0.5])
    by = {(r.sigma_mm, r.gain): r for r in rows}
    assert by[(0.0, 0.0)].ssim == pytest.approx(linear.ssim) and by[(0.0, 0.0)].ssim_difference == 0
    direct = []
    for case in cases:
        run = Run(weights=str(tiny_ae), correction_sigma_mm=2.0, correction_gain=0.5)
        direct += case.score("ae", super_resolve(case.kept_volume, "ae", factor=case.keep_every, run=run).array)
    assert np.mean([r.ssim for r in direct]) == pytest.approx(by[(2.0, 0.5)].ssim, abs=1e-4)
    assert by[(2.0, 0.5)].ssim != pytest.approx(linear.ssim, abs=1e-6)  # the network is at work
    content = registry.load(str(tiny_ae), "ae")
    latent = registry.save(tiny_ae.parent / "latent.pt", "ae", content["config"], content["state_dict"],
                           {**content["meta"], "mode": "latent"})
    with pytest.raises(LatentSRError, match="only the corrected mode"):
        correction_grid(cases, "ae", str(latent), [0.0], [1.0])


def test_adapt_writes_calibrated_weights(tmp_path, tiny_ae, capsys):
    from LatentSRLib.adapt import AdaptConfig, adapt
    scan = write(thick_scan(), tmp_path / "scan.nii.gz")
    result = adapt(AdaptConfig(scan=str(scan), out=str(tmp_path / "adapted.pt"), init=str(tiny_ae), epochs=1,
                               steps_per_epoch=2, batch_size=2, patch_size=32, sigmas=(0.0, 2.0), gains=(0.5, 1.0),
                               device="cpu", progress=False))
    meta = registry.load(result.weights, "ae")["meta"]
    assert (meta["correction_sigma_mm"], meta["correction_gain"]) == (result.chosen.sigma_mm, result.chosen.gain)
    assert meta["training"]["reformat_fraction"] == 0.5 and "| linear |" in meta["calibration"]
    out = super_resolve(read(scan), "ae", factor=4, run=Run(weights=str(result.weights)))
    np.testing.assert_allclose(out.array[0, ::4], read(scan).array[0], rtol=1e-6)
    # Bad scans are refused before any training.
    write(Volume(thick_scan().array, (1.0, 1.0, 1.0)), tmp_path / "iso.nii.gz")
    assert main(["adapt", str(tmp_path / "iso.nii.gz"), "--out", str(tmp_path / "x.pt"), "--init", str(tiny_ae)]) == 2
    assert "not anisotropic" in capsys.readouterr().err
