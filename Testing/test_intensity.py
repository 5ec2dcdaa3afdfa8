import numpy as np
import pytest

from LatentSRLib.intensity import PercentileScaling, normalise


def test_percentiles_map_to_zero_and_one_and_back_exactly():
    rng = np.random.default_rng(1)
    raw = rng.integers(0, 4000, size=(2, 5, 30, 30)).astype(np.float32)
    scaled, scaling = normalise(raw)
    assert np.percentile(scaled, 1) == pytest.approx(0, abs=1e-6)
    assert np.percentile(scaled, 99) == pytest.approx(1, abs=1e-6)
    assert scaled.max() > 1  # not clipped: the inverse must be exact
    np.testing.assert_allclose(scaling.inverse(scaled), raw, atol=1e-3)
    assert normalise(raw, clip=True)[0].max() == 1


def test_constant_volume_does_not_divide_by_zero():
    scaling = PercentileScaling.fit(np.full((4, 4), 7.0))
    assert np.isfinite(scaling.forward(np.full((4, 4), 7.0))).all()
