"""Background runs in a plain process (no Slicer, no Qt), and the out-of-memory fallback."""

from __future__ import annotations

import ctypes
import json
import logging
import os
import signal
import stat
import subprocess
import sys
import time
import types
from pathlib import Path

import numpy as np
import pytest

from LatentSRLib import LatentSRError, background, fallback, pipeline, processes
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


# ---------------------------------------------------------------------------------------------
# Stopping what we start, through a launcher that forwards no signal (Slicer's PythonSlicer)
# ---------------------------------------------------------------------------------------------

LAUNCHER = Path(__file__).resolve().parent / "launcher_standin.py"
on_linux = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads processes from /proc")


def running(pid: int) -> bool:
    """Whether ``pid`` is a live process (a zombie, dead but not yet reaped, is not), read from /proc."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return text[text.rindex(")") + 2] != "Z"


def descendants(pid: int) -> list[int]:
    """``pid`` and every live process below it, from the parent pids in /proc."""
    parents = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                text = (entry / "stat").read_text()
            except OSError:
                continue
            parents[int(entry.name)] = int(text[text.rindex(")") + 2:].split()[1])
    found, frontier = [pid], [pid]
    while frontier:
        children = [child for child, parent in parents.items() if parent in frontier and running(child)]
        found += children
        frontier = children
    return found


@pytest.fixture
def python_slicer(tmp_path) -> str:
    """An executable that behaves like PythonSlicer: the launcher stand-in in front of this interpreter."""
    script = tmp_path / "PythonSlicer"
    script.write_text(f'#!/bin/sh\nexec "{sys.executable}" "{LAUNCHER}" "$@"\n')
    script.chmod(script.stat().st_mode | stat.S_IEXEC)
    return str(script)


def long_cine() -> Volume:
    """Flow on 30 frames: over a minute of work, so every test below stops it mid-run."""
    return oblique_cine(frames=30, size=96, slices=8)


def start_working(python: str) -> tuple:
    job = background.start(long_cine(), ["flow", "lanczos"], factor=4, python=python)
    deadline = time.monotonic() + 60
    while job.progress().method is None:  # the worker has imported everything and is at work
        assert time.monotonic() < deadline and not job.done(), job.log_tail()
        time.sleep(0.05)
    pids = descendants(job.process.pid)
    assert len(pids) == 2, pids  # the launcher and the interpreter it started
    return job, pids


def assert_gone_within(pids: list[int], folder: Path, since: float, seconds: float = 1.0) -> None:
    time.sleep(max(0.0, since + seconds - time.monotonic()))
    assert [pid for pid in pids if running(pid)] == []
    assert not folder.exists()


@on_linux
def test_cancel_stops_the_interpreter_behind_a_launcher(python_slicer):
    job, pids = start_working(python_slicer)
    began = time.monotonic()
    job.cancel()
    assert time.monotonic() - began < 1.0                    # the panel's Cancel does not freeze Slicer
    assert_gone_within(pids, job.folder, began)
    job.cancel()                                             # again: nothing happens, nothing raises
    with pytest.raises(Cancelled):
        job.result()
    assert job.log_path is None


@on_linux
def test_a_killed_launcher_takes_the_worker_with_it(python_slicer):
    job, (launcher, worker) = start_working(python_slicer)
    os.kill(launcher, signal.SIGKILL)
    began = time.monotonic()
    time.sleep(1.0)                      # the owner does nothing meanwhile: the worker notices by itself
    assert not running(worker)
    assert job.done()
    with pytest.raises(background.WorkerError, match=r"stopped unexpectedly \(exit code -9\)") as error:
        job.result()
    assert_gone_within([launcher, worker], job.folder, began, 1.5)
    assert "the parent is gone; stopping" in error.value.log_tail and error.value.log_path.is_file()


OWNER = """import json, sys, time
from LatentSRLib import background
from test_background import long_cine
job = background.start(long_cine(), ["flow"], factor=4, python=sys.argv[1])
while job.progress().method is None:
    time.sleep(0.05)
print(json.dumps({"folder": str(job.folder), "launcher": job.process.pid}), flush=True)
if sys.argv[2] == "wait":
    time.sleep(120)
"""


def run_owner(python_slicer: str, then: str) -> tuple[subprocess.Popen, dict]:
    """A Python process standing in for Slicer: it starts a job through the launcher and says where.
    It copies what matters here: inside Slicer the panel's Python runs in the application process
    itself (SlicerApp-real embeds the interpreter), so ``os.getpid()`` in ``background.start`` is
    Slicer's pid, and PythonSlicer is a child of Slicer's process, the worker a grandchild."""
    owner = subprocess.Popen([sys.executable, "-c", OWNER, python_slicer, then], stdout=subprocess.PIPE, text=True,
                             cwd=Path(__file__).parent)
    return owner, json.loads(owner.stdout.readline())


@on_linux
def test_the_worker_exits_when_slicer_is_killed(python_slicer):
    """Slicer killed (a crash, the task manager): no atexit, no cancel; the worker sees its owner go."""
    owner, job = run_owner(python_slicer, "wait")
    pids = descendants(job["launcher"])
    assert len(pids) == 2
    owner.kill()
    owner.wait()
    assert_gone_within(pids, Path(job["folder"]), time.monotonic())


@on_linux
def test_python_exiting_cancels_running_jobs(python_slicer):
    """Slicer closing ends its Python: the atexit hook cancels what still runs."""
    owner, job = run_owner(python_slicer, "exit")
    pids = descendants(job["launcher"])
    began = time.monotonic()
    assert owner.wait(timeout=10) == 0
    assert time.monotonic() - began < 1.0
    assert [pid for pid in pids if running(pid)] == [] and not Path(job["folder"]).exists()


def test_windows_processes_get_no_console_and_their_own_group():
    """Where Windows cannot be run, the arguments it would get: no console window (PythonSlicer.exe is a
    console program; Slicer's slicer.util.launchConsoleProcess hides it, Base/Python/slicer/util.py
    lines 2347-2392 at 524979a), a new process group, the tree killed by taskkill /T where no Job Object."""
    options = processes.popen_options("nt")
    assert options["creationflags"] == 0x08000000 | 0x00000200          # CREATE_NO_WINDOW | NEW_PROCESS_GROUP
    assert "start_new_session" not in options
    if sys.platform == "win32":
        assert options["startupinfo"].wShowWindow == 0                    # SW_HIDE, as Slicer does
    assert processes.popen_options("posix") == {"start_new_session": True}
    assert processes.taskkill_command(4242) == ["taskkill", "/T", "/F", "/PID", "4242"]
    # JOBOBJECT_EXTENDED_LIMIT_INFORMATION is 144 bytes on 64-bit Windows and 112 on 32-bit (winnt.h);
    # a field of the wrong width would make SetInformationJobObject refuse it.
    size = ctypes.sizeof(processes.JOBOBJECT_EXTENDED_LIMIT_INFORMATION)
    assert size == (144 if ctypes.sizeof(ctypes.c_void_p) == 8 else 112)


# ---------------------------------------------------------------------------------------------
# The worker's log: kept after a failure, its last lines in the error
# ---------------------------------------------------------------------------------------------

def test_a_failed_run_keeps_its_log_where_slicer_keeps_temporary_files(tmp_path, monkeypatch):
    """Inside Slicer, job folders and kept logs go to slicer.app.temporaryPath (stands in for
    qSlicerCoreApplication's property, Base/QTCore/qSlicerCoreApplication.h:
    Q_PROPERTY(QString temporaryPath READ temporaryPath WRITE setTemporaryPath))."""
    slicer_temporary = tmp_path / "SlicerTemp"
    monkeypatch.setitem(sys.modules, "slicer", types.SimpleNamespace(app=types.SimpleNamespace(
        temporaryPath=str(slicer_temporary))))
    not_weights = tmp_path / "model.pt"
    not_weights.write_text("these are not weights")
    job = background.start(oblique_cine(frames=1), "ae", factor=2, weights=str(not_weights))
    assert job.folder.parent == slicer_temporary
    with pytest.raises(background.WorkerError) as error:
        job.result(timeout=120)
    reason = f"{not_weights} is not a readable weights file ("     # then the unpickler's complaint
    assert str(error.value).startswith(reason) and "\n" not in str(error.value)  # one readable line
    assert not job.folder.exists()
    kept = job.log_path
    assert kept == error.value.log_path == slicer_temporary / "LatentSR-logs" / f"{job.folder.name}.log"
    text = kept.read_text()
    assert "LatentSR worker" in text and "Traceback" in text and reason in text
    assert job.log_tail(3) == "\n".join(text.splitlines()[-3:])
    assert error.value.log_tail == job.log_tail(20) and reason in error.value.log_tail
    with pytest.raises(background.WorkerError) as again:   # asked again (the panel, then the console)
        job.result()
    assert again.value is error.value and job.log_path == kept


@on_linux
def test_a_crashed_worker_raises_with_the_last_lines_of_its_log(python_slicer):
    """The interpreter killed under the launcher (as the out-of-memory killer does): no error.json;
    the error says so and shows the log's end, with the launcher's own report of the crash."""
    job, (launcher, worker) = start_working(python_slicer)
    os.kill(worker, signal.SIGKILL)
    with pytest.raises(background.WorkerError) as error:
        job.result(timeout=30)
    message = str(error.value)
    assert message.splitlines()[0] == "the background run stopped unexpectedly (exit code 1)"
    assert "Last lines of the worker's log" in message and "exit abnormally" in message
    assert "flow (1 of 2)" in message                        # what the worker was doing
    assert job.log_path.is_file() and not job.folder.exists()
    assert not running(launcher)
