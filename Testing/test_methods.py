"""The method list: every registered method honours the contract; the flow method's behaviour."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest

from LatentSRLib import LatentSRError, methods
from LatentSRLib.methods import Cancelled, Run, flow
from LatentSRLib.pipeline import super_resolve
from LatentSRLib.volume import Volume


def moving_disc(n_slices: int = 7, shift_px: float = 3.0, size: int = 48) -> np.ndarray:
    """(Z, Y, X) in [0, 1]: a bright disc that moves right by ``shift_px`` from slice to slice."""
    yy, xx = np.mgrid[:size, :size].astype(np.float32)
    stack = []
    for z in range(n_slices):
        cx = 12 + shift_px * z
        disc = 1.0 / (1.0 + np.exp((np.hypot(xx - cx, yy - size / 2) - 8) / 0.8))
        stack.append(0.1 + 0.8 * disc)
    return np.stack(stack).astype(np.float32)


@pytest.fixture(scope="module")
def motion_weights(tmp_path_factory):
    """An untrained refiner saved as a weights file: enough for the contract, not for quality."""
    import torch

    from LatentSRLib.models import registry
    from LatentSRLib.models.motion import MotionRefiner
    torch.manual_seed(0)
    model = MotionRefiner(widths=(8, 16))
    return str(registry.save(tmp_path_factory.mktemp("w") / "motion.pt", "motion", model.config, model.state_dict()))


def weights_for(method, motion_weights):
    return motion_weights if method.weights_kind == "motion" else None


def test_registry_names_are_unique_lower_case_and_described():
    names = [m.name for m in methods.REGISTRY]
    assert len(names) == len(set(names))
    for method in methods.REGISTRY:
        assert method.name == method.name.lower() and method.label and method.description
        assert method.kind in ("conventional", "learned")
        assert (method.weights_kind is not None) == method.learned
    assert {"linear", "bspline", "lanczos", "flow", "ae", "ae-latent", "contrastive", "motion"} <= set(names)


def test_names_are_case_insensitive_and_unknown_names_are_refused():
    assert methods.get("AE") is methods.get("ae")
    assert methods.get(" Flow ") is methods.get("flow")
    with pytest.raises(LatentSRError, match="unknown method 'cubic'"):
        methods.get("cubic")


@pytest.mark.parametrize("name", [m.name for m in methods.REGISTRY])
def test_every_method_honours_the_contract(name, oblique_volume, motion_weights):
    """Shape, geometry, acquired slices bit for bit, finite output, input untouched, progress to 1."""
    method = methods.get(name)
    before = oblique_volume.array.copy()
    seen = []
    run = Run(device="cpu", weights=weights_for(method, motion_weights), progress=seen.append)
    result = super_resolve(oblique_volume, name, factor=3, run=run)
    assert result.array.shape == (1, (6 - 1) * 3 + 1, 20, 24)
    assert result.spacing == pytest.approx((1.5, 1.25, 8.0 / 3))
    assert result.origin == oblique_volume.origin and np.array_equal(result.direction, oblique_volume.direction)
    assert np.array_equal(result.array[:, ::3], oblique_volume.array)
    assert np.isfinite(result.array).all()
    assert np.array_equal(oblique_volume.array, before)
    assert seen[-1] == 1.0 and all(0.0 <= f <= 1.0 for f in seen)
    if run.confidence is not None:
        assert run.confidence.array.shape == result.array.shape
        assert run.confidence.spacing == result.spacing
        assert 0.0 <= run.confidence.array.min() and run.confidence.array.max() <= 1.0


def test_the_method_list_does_not_import_torch_or_opencv():
    code = ("import sys, LatentSRLib.methods, LatentSRLib.pipeline; "
            "print('torch' in sys.modules, 'cv2' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.split() == ["False", "False"]


#: The flow algorithm on synthetic discs, without the cross-fade detector's gate: a flat disc on a blank
#: background is nothing like the cardiac slices it was trained on, and it calls the stack re-sampled
#: (its own tests: test_crossfade.py).
ALGORITHM_ONLY = Run(resampling_check=False)


def test_flow_follows_motion_that_linear_interpolation_cross_fades():
    stack = moving_disc()
    kept, dropped = stack[::2], stack[1::2]
    out, confidence = flow.interpolate_stack(kept, 2, ALGORITHM_ONLY)
    assert np.array_equal(out[::2], kept)
    flow_error = np.abs(out[1::2] - dropped).mean()
    linear_error = np.abs(0.5 * (kept[:-1] + kept[1:]) - dropped).mean()
    assert flow_error < 0.5 * linear_error
    assert confidence[1::2].mean() > 0.5


def test_flow_any_factor_places_the_disc_by_distance():
    stack = moving_disc(n_slices=2, shift_px=12.0)
    out, _ = flow.interpolate_stack(stack, 4, ALGORITHM_ONLY)
    xx = np.arange(stack.shape[-1])
    centres = [(img - 0.1).sum(0) @ xx / (img - 0.1).sum() for img in out]
    assert np.all(np.diff(centres) > 2.0)  # moves monotonically, not a cross-fade with a fixed centre
    assert centres[2] == pytest.approx((centres[0] + centres[4]) / 2, abs=1.0)


def test_flow_falls_back_to_linear_next_to_a_blank_slice():
    stack = moving_disc(n_slices=3)
    stack[2] = 0.0
    out, confidence = flow.interpolate_stack(stack, 2, ALGORITHM_ONLY)
    assert np.allclose(out[3], 0.5 * (stack[1] + stack[2]), atol=1e-6)
    assert confidence[3].max() == 0.0


def test_flow_self_check_trusts_a_scan_where_flow_wins_and_not_one_where_it_loses():
    assert flow.scan_confidence(moving_disc(), resampling_check=False) == 1.0
    # A stack whose middle slice is an exact cross-fade of its neighbours, which flow would move rather
    # than fade: the self-check catches this one (not a re-sampled stack seen through the protocol's
    # kept slices: that is the cross-fade detector's job, test_crossfade.py).
    a, b = moving_disc(n_slices=2, shift_px=8.0)
    assert flow.scan_confidence(np.stack([a, 0.5 * (a + b), b]), resampling_check=False) == 0.0


def test_flow_is_deterministic_and_can_be_cancelled():
    array = moving_disc()[None]
    first = methods.get("flow").upsample(array, 2, (10.0, 1.0, 1.0), Run())
    second = methods.get("flow").upsample(array, 2, (10.0, 1.0, 1.0), Run())
    assert np.array_equal(first, second)
    calls = []

    def cancel():
        calls.append(1)
        return len(calls) > 2
    with pytest.raises(Cancelled):
        methods.get("flow").upsample(array, 2, (10.0, 1.0, 1.0), Run(cancel=cancel))


def test_flow_through_the_pipeline_returns_a_confidence_volume_and_keeps_units():
    stack = 1000.0 * moving_disc()
    volume = Volume(stack[None], (1.0, 1.0, 6.0), (5.0, -3.0, 2.0), np.eye(3), np.int16)
    run = Run()
    result = super_resolve(volume, "flow", factor=2, run=run)
    assert isinstance(run.confidence, Volume) and run.confidence.spacing == result.spacing
    assert np.array_equal(result.array[:, ::2], volume.array)
    assert 50 < result.array.min() and result.array.max() < 1000  # input units, no overshoot


def test_a_gap_aware_refiner_is_told_each_gap_in_mm(tmp_path):
    """The new slices lie one slice spacing from their neighbours, the self-check's twice that: the
    refiner's last input channel says so (mm / GAP_SCALE_MM); a refiner without it gets 9 channels."""
    import torch

    from LatentSRLib.models import registry
    from LatentSRLib.models.motion import GAP_SCALE_MM, INPUTS, MotionRefiner
    torch.manual_seed(0)
    model = MotionRefiner(in_channels=len(INPUTS) + 1, widths=(8, 16))
    weights = registry.save(tmp_path / "gap.pt", "motion", model.config, model.state_dict())
    seen = []
    original = MotionRefiner.forward

    def recording(self, inputs, candidates):
        seen.append((inputs.shape[1], sorted({round(float(v), 4) for v in inputs[:, -1].flatten()})))
        return original(self, inputs, candidates)

    stack = moving_disc()[::2]  # 8 mm between its slices
    volume = Volume(stack, (1.0, 1.0, 8.0))
    try:
        MotionRefiner.forward = recording
        super_resolve(volume, "motion", factor=2, run=Run(device="cpu", weights=str(weights), resampling_check=False))
    finally:
        MotionRefiner.forward = original
    assert {channels for channels, _ in seen} == {len(INPUTS) + 1}
    gaps = {tuple(values) for _, values in seen}
    assert gaps == {(round(8.0 / GAP_SCALE_MM, 4),), (round(16.0 / GAP_SCALE_MM, 4),)}


def test_an_untrained_flow_prior_refiner_is_the_flow_method(tmp_path):
    """With ``flow_prior`` the blend starts from flow's own weights and the head at zero: before any
    training the motion method gives flow's slices (up to the prior's 2 % floor), so training can only
    learn departures from flow."""
    import torch

    from LatentSRLib.models import registry
    from LatentSRLib.models.motion import MotionRefiner
    torch.manual_seed(0)
    model = MotionRefiner(widths=(8, 16), farneback="fine", flow_prior=True, residual_scale=0.0)
    weights = registry.save(tmp_path / "prior.pt", "motion", model.config, model.state_dict())
    volume = Volume(moving_disc()[::2], (1.0, 1.0, 8.0))
    refined = super_resolve(volume, "motion", factor=2,
                            run=Run(device="cpu", weights=str(weights), resampling_check=False)).array
    flowed = super_resolve(volume, "flow", factor=2, run=Run(device="cpu", resampling_check=False)).array
    linear = super_resolve(volume, "linear", factor=2, run=Run(device="cpu")).array
    assert np.abs(refined - flowed).max() < 0.02 * np.abs(linear - flowed).max()
    plain = MotionRefiner(widths=(8, 16), farneback="fine")  # without the prior: a random blend
    plain_weights = registry.save(tmp_path / "plain.pt", "motion", plain.config, plain.state_dict())
    random_blend = super_resolve(volume, "motion", factor=2,
                                 run=Run(device="cpu", weights=str(plain_weights), resampling_check=False)).array
    assert np.abs(random_blend - flowed).max() > 0.1 * np.abs(linear - flowed).max()


def test_the_linear_logit_offset_moves_the_blend_toward_linear():
    """``linear_logit_offset`` (the bundled file's calibration) adds to linear's logit only: the weight on
    linear rises with it, the other weights keep their ratios, and the bundled file records +0.5."""
    import torch

    from LatentSRLib.models import registry
    from LatentSRLib.models.motion import CANDIDATES, INPUTS, MotionRefiner
    torch.manual_seed(0)
    inputs, candidates = torch.rand(1, len(INPUTS), 16, 16), torch.rand(1, len(CANDIDATES), 16, 16)
    plain = MotionRefiner(widths=(8, 16))
    offset = MotionRefiner(widths=(8, 16), linear_logit_offset=1.0)
    offset.load_state_dict(plain.state_dict())
    with torch.no_grad():
        (_, w0), (_, w1) = plain(inputs, candidates), offset(inputs, candidates)
    assert (w1[:, 0] > w0[:, 0]).all()
    torch.testing.assert_close(w1[:, 1:] / w1[:, 1:].sum(1, keepdim=True), w0[:, 1:] / w0[:, 1:].sum(1, keepdim=True))
    odds = (w1[:, 0] / (1 - w1[:, 0])) / (w0[:, 0] / (1 - w0[:, 0]))
    torch.testing.assert_close(odds, torch.full_like(odds, float(np.e)))
    assert registry.load("motion-acdc", "motion")["config"]["linear_logit_offset"] == 0.5


def test_learned_results_are_clipped_to_the_input_range_by_default(oblique_volume, motion_weights):
    run = Run(device="cpu", weights=motion_weights)
    clipped = super_resolve(oblique_volume, "motion", factor=2, run=run).array
    assert clipped.min() >= oblique_volume.array.min() and clipped.max() <= oblique_volume.array.max()
    free = super_resolve(oblique_volume, "motion", factor=2, run=Run(device="cpu", weights=motion_weights, clip=False))
    assert np.array_equal(np.clip(free.array, oblique_volume.array.min(), oblique_volume.array.max()), clipped)


def test_slicer_installs_what_each_method_needs(monkeypatch):
    """Torch for learned methods and for the cross-fade check (a torch network) of the flow-based ones, which
    also need OpenCV; nothing for conventional ones (nothing is installed here)."""
    import importlib.util

    from LatentSRLib.slicer import install
    absent = {"torch", "cv2"}
    real = importlib.util.find_spec
    monkeypatch.setattr(install.importlib.util, "find_spec", lambda name, *a: None if name in absent else real(name, *a))
    assert install.missing_requirements(["linear", "bspline"]) == []
    assert install.missing_requirements(["flow"]) == ["opencv-python-headless", "torch"]   # the check on
    assert install.missing_requirements(["flow"], resampling_check=False) == ["opencv-python-headless"]
    assert install.missing_requirements(["ae"]) == ["torch"]
    assert sorted(install.missing_requirements(["motion"])) == ["opencv-python-headless", "torch"]


def test_a_refiner_computes_its_candidates_with_the_flow_settings_it_was_trained_with():
    """The Farneback settings are part of a refiner's config (its network learned their errors): the
    bundled one was trained with the fine ones (the flow method's), a refiner trained with the fast ones
    gets those."""
    from LatentSRLib.models import registry
    from LatentSRLib.models.motion import MotionRefiner
    from LatentSRLib.opticalflow import FARNEBACK_FAST, FARNEBACK_FINE, estimate_flows
    stack = moving_disc(n_slices=3, shift_px=4.0, size=64)
    bundled = MotionRefiner(**registry.load("motion-acdc", "motion")["config"])
    fast = MotionRefiner(widths=(8, 16), farneback="fast")
    for model, setting in ((bundled, FARNEBACK_FINE), (fast, FARNEBACK_FAST)):
        got, expected = model.estimate_flows(stack[0], stack[2]), estimate_flows(stack[0], stack[2], setting)
        np.testing.assert_array_equal(got["farneback"][0], expected["farneback"][0])
    fine_flow = estimate_flows(stack[0], stack[2], FARNEBACK_FINE)["farneback"][0]
    assert not np.array_equal(fine_flow, fast.estimate_flows(stack[0], stack[2])["farneback"][0])
    with pytest.raises(ValueError, match="farneback must be one of"):
        MotionRefiner(farneback="slow")
