"""Shared fixtures: the real data folder (read-only, beside the repository) and small volumes."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

# Tests must not fight over the 2 cores with each other's thread pools.
os.environ.setdefault("OMP_NUM_THREADS", "2")

DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"


@pytest.fixture(scope="session")
def data_dir() -> Path:
    if not DATA.is_dir():
        pytest.skip(f"real data not found at {DATA}")
    return DATA


@pytest.fixture
def oblique_volume():
    """A small 3D volume with anisotropic spacing, an oblique direction and a non-zero origin."""
    from LatentSRLib.volume import Volume
    rng = np.random.default_rng(0)
    angle = np.deg2rad(20)
    direction = np.array([[np.cos(angle), -np.sin(angle), 0], [np.sin(angle), np.cos(angle), 0], [0, 0, 1]])
    direction = direction @ np.array([[1, 0, 0], [0, np.cos(0.3), -np.sin(0.3)], [0, np.sin(0.3), np.cos(0.3)]])
    array = rng.normal(100, 20, size=(1, 6, 20, 24)).astype(np.float32)
    return Volume(array, (1.5, 1.25, 8.0), (-10.0, 25.0, 3.5), direction, np.int16)
