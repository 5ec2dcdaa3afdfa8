"""The cross-fade detector: its training, and the motion-compensated methods' fall-back to linear
interpolation on stacks re-sampled along the slice axis."""

from __future__ import annotations

import numpy as np
import pytest

from LatentSRLib import phantom
from LatentSRLib.intensity import normalise
from LatentSRLib.interpolate import resample_along_slices as resampled
from LatentSRLib.methods import flow
from LatentSRLib.models import registry
from LatentSRLib.models.crossfade import CROP, detector_input
from LatentSRLib.synthesize import crossfade
from LatentSRLib.volume import read, write


def test_detector_input_is_the_padded_centre():
    image = np.arange(60 * 200, dtype=np.float32).reshape(60, 200) / 12000
    seen = detector_input(image)
    assert seen.shape == (CROP, CROP)
    np.testing.assert_array_equal(seen[:60], image[:, 36:164])
    assert not seen[60:].any()


def test_training_draws_blends_and_acquired_slices_and_writes_portable_weights(tmp_path):
    from LatentSRLib.training import crossfade as training
    cine = phantom.cine(frames=2, slices=4, size=40).acquired
    folder = tmp_path / "someone's scans"
    folder.mkdir()
    write(cine, folder / "cine.nii.gz")
    stacks = training.load_stacks([str(folder)])
    assert len(stacks) == 2 and all(0.0 <= s.min() and s.max() <= 1.0 for s in stacks)
    images, labels = training.draw_batch(stacks, 64, np.random.default_rng(0), (1.0, 1.0))
    assert images.shape == (64, 1, CROP, CROP) and set(labels.tolist()) == {0.0, 1.0}
    assert 16 < labels.sum() < 48

    out = training.train(training.CrossfadeTrainingConfig(out=str(tmp_path / "d.pt"), scans=[str(folder)],
                                                          widths=(4, 8), steps=3, batch=4, threads=1))
    content = registry.load(str(out), "crossfade")
    assert content["meta"]["config"]["scans"] == ["someone's scans"]
    score = crossfade.stack_score(stacks[0], str(out))
    assert 0.0 <= score <= 1.0
    assert crossfade.stack_score(np.zeros((3, 40, 40), np.float32), str(out)) is None  # nothing to judge


def test_zero_filling_enlarges_keeping_the_mean_and_the_acquired_frequencies():
    from LatentSRLib.bandlimit import zero_fill
    y, x = np.mgrid[:30, :24]
    image = 0.5 + 0.3 * np.sin(2 * np.pi * x / 12) * np.cos(2 * np.pi * y / 10)  # band-limited, periodic
    big = zero_fill(image, 2.0)
    assert big.shape == (60, 48)
    assert big.mean() == pytest.approx(image.mean(), rel=1e-5)
    np.testing.assert_allclose(big[::2, ::2], image, atol=1e-5)  # the acquired samples, unchanged
    assert big[1::2, 1::2].std() > 0.1  # and new ones between them


def test_appearance_variation_enlarges_or_smooths_and_keeps_the_range():
    from LatentSRLib.training.crossfade import draw_batch, vary_appearance
    rng = np.random.default_rng(1)
    checker = (np.indices((160, 160)).sum(0) % 2).astype(np.float32)  # sharpest possible image
    varied = [vary_appearance(checker, rng) for _ in range(12)]
    for image in varied:
        assert image.min() >= 0.0 and image.max() <= 1.0
        assert min(image.shape) >= CROP
        assert np.abs(np.diff(image, axis=1)).mean() < 0.9  # no longer a pixel-sharp checkerboard
    images, labels = draw_batch(
        [np.stack([checker, 1 - checker])], 16, rng, (1.0, 1.0), appearance_fraction=1.0)
    assert images.shape == (16, 1, CROP, CROP) and bool((images >= 0).all() and (images <= 1).all())


def test_gamma_variation_changes_the_contrast_curve_before_blending():
    """With gamma_fraction 1 every example is made of slices raised to one power in GAMMA_RANGE: a flat
    slice of 0.25 becomes 0.25 ** gamma, and a blend of 0.25 and 1 lies between the two changed slices."""
    from LatentSRLib.training.crossfade import GAMMA_RANGE, draw_batch
    stack = np.stack([np.full((CROP, CROP), 0.25, np.float32), np.ones((CROP, CROP), np.float32)])
    plain, plain_labels = draw_batch([stack], 64, np.random.default_rng(3), (1.0, 1.0))
    varied, labels = draw_batch([stack], 64, np.random.default_rng(3), (1.0, 1.0), gamma_fraction=1.0)
    low, high = 0.25 ** GAMMA_RANGE[1], 0.25 ** GAMMA_RANGE[0]
    acquired_dark = varied[(labels == 0)][:, 0].amax(dim=(1, 2)) < 0.99
    values = varied[labels == 0][acquired_dark][:, 0, 0, 0]
    assert len(values) > 5 and bool(((values >= low - 1e-6) & (values <= high + 1e-6)).all())
    assert float(values.std()) > 0.02  # gamma varies between examples
    assert set(np.unique(plain[plain_labels == 0][:, 0, 0, 0].numpy()).round(4)) <= {0.25, 1.0}
    blends = varied[labels == 1][:, 0, 0, 0]
    assert bool(((blends > low) & (blends < 1.0)).all())


@pytest.mark.integration
def test_bundled_detector_tells_resampled_validation_stacks_and_flow_falls_back_to_linear(data_dir):
    """A validation patient (never a test one): acquired, every other slice kept, flow is trusted; the
    same stack re-sampled to 0.7 of its spacing, flow returns linear interpolation exactly."""
    frame = read(data_dir / "acdc_fullfov" / "patient001" / "patient001_frame01.nii.gz").array[0]
    stack = normalise(frame, clip=True)[0]
    acquired, blended = stack[::2], resampled(stack, 0.7)[::2]
    assert crossfade.stack_score(acquired) < crossfade.ACQUIRED_SCORE
    assert crossfade.stack_score(blended) > crossfade.RESAMPLED_SCORE
    assert crossfade.resampling_trust(acquired) == 1.0 and flow.scan_confidence(blended) == 0.0
    images, confidence = flow.interpolate_stack(blended, 2)
    np.testing.assert_array_equal(images[1::2], ((1 - 0.5) * blended[:-1] + 0.5 * blended[1:]).astype(np.float32))
    assert not confidence[1::2].any()


@pytest.mark.integration
def test_the_resampling_check_can_be_switched_off_from_the_command_line(data_dir, tmp_path, capsys):
    """--no-resampling-check (for anatomy the detector does not know): flow is motion-compensated again
    on the stack the detector calls re-sampled, and the run with the check says how to get there; the
    cohort records the option in its identity."""
    from LatentSRLib.cli import main
    from LatentSRLib.cohort import Options
    frame = read(data_dir / "acdc_fullfov" / "patient001" / "patient001_frame01.nii.gz")
    stack = normalise(frame.array[0], clip=True)[0]
    blended = frame.with_array(resampled(stack, 0.7)[::2][None],
                               (frame.spacing[0], frame.spacing[1], frame.spacing[2] * 1.4))
    source = write(blended, tmp_path / "blended.nii.gz")
    outputs, printed = {}, {}
    for flag in ([], ["--no-resampling-check"]):
        out = tmp_path / f"flow{len(flag)}.nii.gz"
        assert main(["super-resolve", str(source), "-o", str(out), "--method", "flow", "--factor", "2",
                     "--quiet", *flag]) == 0
        outputs[len(flag)], printed[len(flag)] = read(out).array[0], capsys.readouterr().out
    assert printed[0].count("note: the cross-fade detector") == 1 and "--no-resampling-check" in printed[0]
    assert "note:" not in printed[1]
    kept = outputs[0][::2]
    # linear interpolation, up to the float rounding of the pipeline's intensity scaling and back
    np.testing.assert_allclose(outputs[0][1::2], 0.5 * (kept[:-1] + kept[1:]), atol=1e-5)
    assert np.abs(outputs[1][1::2] - outputs[0][1::2]).max() > 0.05
    assert Options("flow", resampling_check=False).identity("", 2)["resampling_check"] is False


@pytest.mark.integration
def test_motion_tells_the_user_once_when_the_detector_sends_frames_to_linear(data_dir):
    """Both frames of a re-sampled validation stack go to linear: one note, not one per frame; the acquired
    stack gets none. A new run starts without the last one's notes."""
    from LatentSRLib.methods.base import Run
    from LatentSRLib.synthesize.gates import RESAMPLED_NOTE
    from LatentSRLib.pipeline import super_resolve
    volume = read(data_dir / "acdc_fullfov" / "patient001" / "patient001_frame01.nii.gz")
    stack = normalise(volume.array[0], clip=True)[0]
    x, y, z = volume.spacing
    blended = volume.with_array(np.stack([resampled(stack, 0.7)[::2]] * 2), (x, y, z * 1.4))
    acquired = volume.with_array(stack[None, ::2], (x, y, z * 2))
    run = Run(device="cpu")
    super_resolve(blended, "motion", factor=2, run=run)
    assert run.notes == [RESAMPLED_NOTE]
    super_resolve(acquired, "motion", factor=2, run=run)
    assert run.notes == []
