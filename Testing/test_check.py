"""Check on this scan: the drop-slice protocol on (part of) one frame of the user's scan."""

from __future__ import annotations

import math
import time
from pathlib import Path

import numpy as np
import pytest

from LatentSRLib import LatentSRError, check, cli, evaluate
from LatentSRLib.pipeline import Cancelled
from LatentSRLib.volume import Volume, write

DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"


def ramp_volume(slices: int = 11, frames: int = 1) -> Volume:
    """Slices that change linearly along z (linear interpolation is exact) with in-plane detail."""
    z, y, x = np.meshgrid(np.arange(slices), np.arange(150), np.arange(140), indexing="ij")
    frame = 100 + 40 * np.sin(0.3 * x) * np.cos(0.2 * y) + 8.0 * z * np.sin(0.05 * x * y / 10)
    array = np.stack([frame + t for t in range(frames)]).astype(np.float32)
    return Volume(array, (1.4, 1.4, 8.0), (5.0, -3.0, 2.0), np.eye(3), np.int16, 1.0, 0.0, frames > 1)


def test_linear_wins_where_it_is_exact_and_the_table_says_so():
    result = check.check_scan(ramp_volume(), ["bspline", "linear"], max_seconds=60)
    assert result.winner == "linear"
    assert [row.method for row in result.rows] == ["linear", "bspline"]
    linear = result.rows[0]
    assert linear.ssim > 0.999 and linear.psnr > 40 and linear.n == 2
    assert result.slices == (3, 5)          # a slab around the middle (slices 2-6), starting on an even slice
    assert result.frame == 0
    table = result.table()
    assert "Linear" in table and "B-spline" in table and "winner on this scan: Linear" in table
    assert result.cells()[0][:2] == ["Linear", f"{linear.ssim:.3f}"]


def test_it_reuses_the_protocol_scores():
    """The same slices, crop and metrics as evaluate's protocol on that part of the scan."""
    volume = ramp_volume()
    result = check.check_scan(volume, ["bspline"], max_seconds=60, crop=None, max_scored=5)
    part, start = check.slab(volume, 0, 5, None)
    rows = evaluate.evaluate_volume("part", part, ["bspline"])
    assert start == 0 and result.slices == tuple(r.slice for r in rows)
    assert result.rows[0].ssim == pytest.approx(np.mean([r.ssim for r in rows]))
    assert result.rows[0].psnr == pytest.approx(np.mean([r.psnr for r in rows]))


def test_slab_keeps_its_place_in_the_world():
    volume = ramp_volume(frames=3)
    volume.direction = np.array([[0.0, -1.0, 0.0], [1.0, 0.0, 0.0], [0.0, 0.0, 1.0]])
    part, start = check.slab(volume, frame=2, max_scored=2, crop=128)
    assert part.array.shape == (1, 5, 128, 128) and start == 2 and not part.is_4d
    # Voxel (x, y, z) = (6, 11, 2) of the scan is voxel (0, 0, 0) of the part: same world point.
    np.testing.assert_allclose(part.origin, np.asarray(volume.origin) + volume.direction @ (np.array(volume.spacing) * [6, 11, 2]))
    np.testing.assert_array_equal(part.array[0], volume.array[2, 2:7, 11:139, 6:134])


def test_time_limit_and_cancel():
    result = check.check_scan(ramp_volume(), ["linear", "bspline"], max_seconds=0)
    assert result.winner is None and all(row.note == "not started: time limit" for row in result.rows)
    assert "no method finished in time" in result.table()
    with pytest.raises(Cancelled):
        check.check_scan(ramp_volume(), ["linear"], cancel=lambda: True)


def test_bad_input_is_one_clear_error():
    with pytest.raises(LatentSRError, match="at least 3 are needed"):
        check.check_scan(ramp_volume(slices=2), ["linear"])
    with pytest.raises(LatentSRError, match="frame 4 does not exist"):
        check.check_scan(ramp_volume(frames=2), ["linear"], frame=4)
    with pytest.raises(LatentSRError, match="unknown method"):
        check.check_scan(ramp_volume(), ["nearest"])


def test_default_methods_follow_the_registry(monkeypatch):
    from LatentSRLib import pipeline
    names = check.default_methods()
    assert "linear" in names and "lanczos" not in names and "ae-latent" not in names
    assert all(name in pipeline.METHODS for name in names)


def test_result_round_trips_through_json_with_unfinished_methods():
    result = check.CheckResult((check.CheckRow("linear", "Linear", 0.5, 20.0, 2, 0.1),
                                check.CheckRow("ae", "AE", math.nan, math.nan, 0, 30.0, "stopped at the time limit")),
                               "linear", 3, (5, 7), 30.2)
    back = check.from_dict(check.to_dict(result))
    assert back.winner == "linear" and back.frame == 3 and back.slices == (5, 7)
    assert math.isnan(back.rows[1].ssim) and back.rows[1].note == "stopped at the time limit"


def test_cli_prints_the_table_and_the_winner(tmp_path, capsys):
    path = write(ramp_volume(), tmp_path / "scan.nii.gz")
    assert cli.main(["check", str(path), "--methods", "linear,bspline"]) == 0
    out = capsys.readouterr().out
    assert "winner on this scan: Linear" in out and "B-spline" in out
    assert cli.main(["check", str(path), "--methods", "nearest"]) == 2
    assert "unknown method" in capsys.readouterr().err


@pytest.mark.integration
def test_a_typical_cardiac_frame_within_30_seconds(data_dir):
    """Default methods on a full field-of-view ACDC frame (not a test patient): an answer within the limit."""
    from LatentSRLib.volume import read
    volume = read(data_dir / "acdc_fullfov" / "patient001" / "patient001_frame01.nii.gz")
    started = time.monotonic()
    result = check.check_scan(volume, max_seconds=30, device="cpu")
    assert time.monotonic() - started < 33            # the limit, plus scoring the last finished method
    assert result.winner is not None
    assert {row.method for row in result.rows} >= {"linear", "bspline"}


@pytest.mark.integration
def test_ranking_agrees_with_the_full_protocol_on_real_scans(data_dir):
    """The quick check (2 slices, centre crop) picks the full protocol's winner on most real scans
    (the conventional methods and flow here, to stay fast; benchmarks in the report cover the rest)."""
    from LatentSRLib.volume import read
    methods = [m for m in ("linear", "bspline", "flow") if m in check.default_methods()]
    scans = [data_dir / "cmrxmotion" / f"{p}" / f"{p}-ED.nii.gz" for p in ("P001-1", "P002-1", "P003-1")]
    scans += [data_dir / "acdc_fullfov" / f"patient{n:03d}" / f"patient{n:03d}_frame01.nii.gz" for n in (1, 11)]
    agree = 0
    for path in scans:
        volume = read(path)
        frame = volume.with_array(volume.array[:1])
        quick = check.check_scan(frame, methods, max_seconds=120)
        rows = evaluate.evaluate_volume(path.name, frame, methods)
        full = {m: np.mean([r.ssim for r in rows if r.method == m]) for m in methods}
        agree += quick.winner == max(full, key=full.get)
    assert agree >= 3, f"the quick check agreed with the full protocol on {agree} of {len(scans)} scans"
