"""Motion training's triplets: slice, time and in-plane-shrunk slice triplets, and the examples' cache."""

from __future__ import annotations

import numpy as np
import pytest

from LatentSRLib import LatentSRError, phantom
from LatentSRLib.training.motion import MotionTrainingConfig, train, triplets
from LatentSRLib.volume import write


@pytest.fixture()
def scan(tmp_path):
    """A 3D phantom scan of 6 slices at 10 mm, 64 x 64 pixels."""
    cine = phantom.cine(frames=1, slices=6, size=64, slice_spacing=10.0).acquired
    path = tmp_path / "scan.nii.gz"
    write(cine, path)
    return path


def test_shrunk_triplets_are_smaller_slices_labelled_with_the_gap_they_imitate(scan):
    """With zoom_fraction, some triplets are the scan's slices shrunk in-plane to 0.4-0.7 of their size,
    and their recorded gap is the scan's own times the same factor; without it there are none, and
    the same seed gives the same triplets as before the option existed (the zoom is drawn last)."""
    plain = MotionTrainingConfig(slices=[str(scan)], asymmetric_fraction=0, time_fraction=0, max_examples=100)
    zoomed = MotionTrainingConfig(slices=[str(scan)], asymmetric_fraction=0, time_fraction=0, max_examples=100,
                                  zoom_fraction=0.5)
    without = triplets(plain, np.random.default_rng(0), progress=False)
    assert {a.shape for a, *_ in without} == {(64, 64)} and {gap for *_, gap in without} == {20.0}
    again = triplets(plain, np.random.default_rng(0), progress=False)
    assert all(np.array_equal(x[1], y[1]) for x, y in zip(without, again))
    mixed = triplets(zoomed, np.random.default_rng(0), progress=False)
    small = [(a, m, b, gap) for a, m, b, _, gap in mixed if a.shape != (64, 64)]
    assert small and len(small) < len(mixed)
    for a, m, b, gap in small:
        ratio = a.shape[0] / 64
        assert a.shape == m.shape == b.shape and 0.38 <= ratio <= 0.72
        assert gap == pytest.approx(20.0 * ratio, rel=0.05)


def test_a_cache_built_with_other_shrunk_triplets_is_refused(scan, tmp_path):
    """The cached examples record their share of shrunk triplets; training with another share is refused
    before any step, so a run never mixes up two data sets."""
    cache = tmp_path / "examples.npz"
    common = dict(slices=[str(scan)], time_fraction=0, max_examples=8, max_steps=1, batch=2, threads=1,
                  cache=str(cache), validate_every=1)
    train(MotionTrainingConfig(out=str(tmp_path / "a.pt"), zoom_fraction=0.5, **common), progress=False)
    assert cache.exists() and (tmp_path / "a.pt").exists()
    with pytest.raises(LatentSRError, match="shrunk triplets"):
        train(MotionTrainingConfig(out=str(tmp_path / "b.pt"), **common), progress=False)
    assert not (tmp_path / "b.pt").exists()
