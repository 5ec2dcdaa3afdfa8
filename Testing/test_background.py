"""Background runs in a plain process (no Slicer, no Qt), and the out-of-memory fallback."""

from __future__ import annotations

import logging
import stat
import sys
import time

import numpy as np
import pytest

from LatentSRLib import LatentSRError, background, fallback, pipeline
from LatentSRLib.pipeline import Cancelled, Run, super_resolve
from LatentSRLib.volume import Volume


def oblique_cine(frames: int = 3, size: int = 40, slices: int = 6) -> Volume:
    rng = np.random.default_rng(1)
    angle = np.deg2rad(25)
    direction = np.array([[np.cos(angle), -np.sin(angle), 0], [np.sin(angle), np.cos(angle), 0], [0, 0, 1]])
    array = np.rint(rng.normal(100, 20, size=(frames, slices, size, size)))
    return Volume(array, (1.5, 1.25, 8.0), (-10.0, 25.0, 3.5), direction, np.int16, 0.04, 0.0, True)


def wait(job, seconds: float = 60.0) -> list:
    seen, deadline = [], time.monotonic() + seconds
    while not job.done():
        assert time.monotonic() < deadline, "the background run did not finish"
        seen.append(job.progress())
        time.sleep(0.05)
    return seen


def test_save_and_load_keep_the_volume_exactly(tmp_path):
    volume = oblique_cine()
    background.save_volume(tmp_path / "v.npz", volume)
    back = background.load_volume(tmp_path / "v.npz")
    np.testing.assert_array_equal(back.array, volume.array)
    assert back.spacing == volume.spacing and back.origin == volume.origin
    np.testing.assert_array_equal(back.direction, volume.direction)
    assert (back.pixel_type, back.time_spacing, back.time_origin, back.is_4d) == (np.dtype(np.int16), 0.04, 0.0, True)


def test_start_poll_and_result_match_the_pipeline():
    volume = oblique_cine()
    job = background.start(volume, ["linear", "bspline"], factor=2)
    assert not job.done() and job.folder.is_dir()
    seen = wait(job)
    results = job.result()
    assert not job.folder.exists()                      # nothing left behind
    assert set(results) == {"linear", "bspline"}
    for method, result in results.items():
        expected = super_resolve(volume, method, factor=2)
        np.testing.assert_array_equal(result.array, expected.array)
        assert result.spacing == expected.spacing and result.origin == expected.origin
        np.testing.assert_array_equal(result.direction, expected.direction)
    final = job.progress()
    assert final.fraction == 1.0 and final.method == "bspline" and final.frame == 3
    text = str(final)
    assert "B-spline (2 of 2)" in text and "frame 3 of 3" in text and "elapsed" in text
    assert all(0.0 <= p.fraction <= 1.0 for p in seen)
    assert job.confidences == {} and job.notes == []


def test_cancel_stops_the_process_and_leaves_no_file():
    volume = oblique_cine(frames=8, size=64, slices=8)
    job = background.start(volume, ["lanczos", "lanczos"], factor=4)
    deadline = time.monotonic() + 30
    while job.progress().method is None and time.monotonic() < deadline:  # let it get going
        time.sleep(0.05)
    assert not job.done(), "the run finished before it could be cancelled; make it longer"
    job.cancel()
    assert job.done() and job.process.poll() is not None
    assert not job.folder.exists()
    with pytest.raises(Cancelled):
        job.result()


def test_failure_is_one_readable_line_with_details_in_the_log(caplog):
    job = background.start(oblique_cine(), "linear", factor=0)
    with caplog.at_level(logging.ERROR, logger="LatentSRLib.background"):
        with pytest.raises(LatentSRError) as error:
            job.result(timeout=60)
    assert str(error.value) == "the factor must be an integer of at least 1, got 0"
    assert "Traceback" in caplog.text                     # the details went to the log
    assert not job.folder.exists()


def test_unknown_method_is_refused_before_starting():
    with pytest.raises(LatentSRError, match="unknown method 'nearest'"):
        background.start(oblique_cine(), ["linear", "nearest"], factor=2)


def test_progress_text():
    progress = background.Progress(0.25, "ae", 1, 2, 3, 10, 65.0, 195.0, ("GPU note",))
    assert str(progress) == "AE (1 of 2): frame 3 of 10, 1:05 elapsed, about 3:15 left"
    assert str(background.Progress(0.0, None, 0, 1, 0, 1, 2.0, None)) == "Starting... 0:02 elapsed"


# ---------------------------------------------------------------------------------------------
# Out of memory: retry on the CPU with smaller batches, and say so
# ---------------------------------------------------------------------------------------------

class OutOfMemoryError(RuntimeError):
    """Stands for torch.cuda.OutOfMemoryError (same name, a RuntimeError)."""


def test_is_out_of_memory():
    assert fallback.is_out_of_memory(OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB"))
    assert fallback.is_out_of_memory(RuntimeError("MPS backend out of memory"))
    assert fallback.is_out_of_memory(MemoryError())
    assert not fallback.is_out_of_memory(RuntimeError("shape mismatch"))
    assert not fallback.is_out_of_memory(LatentSRError("the factor must be an integer"))
    torch = pytest.importorskip("torch")
    assert fallback.is_out_of_memory(torch.cuda.OutOfMemoryError("CUDA out of memory"))


def test_gpu_out_of_memory_retries_on_the_cpu_with_smaller_batches(monkeypatch):
    calls = []

    def fake_super_resolve(volume, method, factor=None, spacing=None, *, axis=None, run=None):
        calls.append((run.device, run.batch_slices))
        if run.device != "cpu" or run.batch_slices > 4:
            raise OutOfMemoryError("CUDA out of memory")
        return super_resolve(volume, "linear", factor, spacing, axis=axis, run=run)
    monkeypatch.setattr(fallback, "super_resolve", fake_super_resolve)
    notes: list[str] = []
    volume = oblique_cine(frames=1)
    result, run = fallback.super_resolve_with_fallback(volume, "ae", 2, run=Run(device="cuda:0", batch_slices=16),
                                                       notify=notes.append)
    assert calls == [("cuda:0", 16), ("cpu", 4)]
    assert (run.device, run.batch_slices) == ("cpu", 4)
    assert notes == ["The GPU ran out of memory: retrying on the CPU instead of 'cuda:0' with batches of 4 slices"]
    np.testing.assert_array_equal(result.array, super_resolve(volume, "linear", 2).array)


def test_out_of_memory_even_with_one_slice_on_the_cpu_is_one_clear_error(monkeypatch):
    def always(volume, method, factor=None, spacing=None, *, axis=None, run=None):
        raise OutOfMemoryError("out of memory")
    monkeypatch.setattr(fallback, "super_resolve", always)
    notes: list[str] = []
    with pytest.raises(LatentSRError, match="crop the input"):
        fallback.super_resolve_with_fallback(oblique_cine(frames=1), "ae", 2, run=Run(device="cpu", batch_slices=8),
                                             notify=notes.append)
    assert notes == ["The CPU ran out of memory: retrying on the CPU with batches of 1 slice"]


def test_other_errors_are_not_retried(monkeypatch):
    calls = []

    def broken(volume, method, factor=None, spacing=None, *, axis=None, run=None):
        calls.append(run.device)
        raise ValueError("not memory")
    monkeypatch.setattr(fallback, "super_resolve", broken)
    with pytest.raises(ValueError):
        fallback.super_resolve_with_fallback(oblique_cine(frames=1), "ae", 2, run=Run(device="cuda"))
    assert calls == ["cuda"]


OOM_SHIM = """import runpy, sys
from LatentSRLib import fallback
real = fallback.super_resolve
def on_a_small_gpu(volume, method, factor=None, spacing=None, *, axis=None, run=None):
    if run.device != "cpu":
        raise RuntimeError("CUDA out of memory. Tried to allocate 20.00 GiB")
    return real(volume, method, factor, spacing, axis=axis, run=run)
fallback.super_resolve = on_a_small_gpu
sys.argv = sys.argv[2:]
runpy.run_module("LatentSRLib.background", run_name="__main__")
"""


def test_background_run_reports_the_cpu_fallback(tmp_path):
    (tmp_path / "shim.py").write_text(OOM_SHIM)
    script = tmp_path / "python-shim"
    script.write_text(f'#!/bin/sh\nexec "{sys.executable}" "{tmp_path / "shim.py"}" "$@"\n')
    script.chmod(script.stat().st_mode | stat.S_IEXEC)
    volume = oblique_cine(frames=1)
    job = background.start(volume, "bspline", factor=2, device="cuda", python=str(script))
    result = job.result(timeout=60)["bspline"]
    assert job.notes == ["The GPU ran out of memory: retrying on the CPU instead of 'cuda' with batches of 4 slices"]
    np.testing.assert_array_equal(result.array, super_resolve(volume, "bspline", 2).array)


def test_a_method_that_yields_confidence_returns_it(monkeypatch):
    """The confidence contract (pipeline.Run.confidence: a Volume on the output grid) survives the process."""
    if "flow" not in pipeline.METHODS:
        pytest.skip("no flow method in this installation")
    volume = oblique_cine(frames=2)
    job = background.start(volume, ["flow", "linear"], factor=2)
    results = job.result(timeout=120)
    assert set(job.confidences) == {"flow"}
    confidence = job.confidences["flow"]
    assert confidence.array.shape == results["flow"].array.shape
    assert confidence.spacing == results["flow"].spacing
    assert confidence.array.dtype == np.float32 and 0 <= confidence.array.min() <= confidence.array.max() <= 1


def test_the_resampling_check_reaches_the_background_run():
    """The panel's "Check for re-sampled stacks" switch: the cross-fade detector calls this flat
    synthetic disc re-sampled, so with the check flow falls back to linear interpolation (confidence
    0) and the job says so, and without it flow follows the disc's motion."""
    if "flow" not in pipeline.METHODS:
        pytest.skip("no flow method in this installation")
    yy, xx = np.mgrid[:48, :48].astype(np.float32)
    disc = np.stack([0.1 + 0.8 / (1 + np.exp((np.hypot(xx - 12 - 3 * z, yy - 24) - 8) / 0.8)) for z in range(7)])
    volume = Volume(disc[None].astype(np.float32), (1.4, 1.4, 10.0))
    results, notes = {}, {}
    for check in (True, False):
        job = background.start(volume, "flow", factor=2, resampling_check=check)
        results[check] = (job.result(timeout=120)["flow"].array[0], job.confidences["flow"].array[0])
        notes[check] = job.notes
    # the panel's status shows the job's notes: the user learns why and where the switch is
    assert len(notes[True]) == 1 and notes[True][0].startswith("flow: the cross-fade detector")
    assert "Check for re-sampled stacks" in notes[True][0] and notes[False] == []
    linear = 0.5 * (disc[:-1] + disc[1:])
    np.testing.assert_allclose(results[True][0][1::2], linear, atol=1e-5)
    assert results[True][1][1::2].max() == 0  # acquired slices are exact (1) either way
    assert np.abs(results[False][0][1::2] - linear).max() > 0.05 and results[False][1][1::2].max() > 0.5
