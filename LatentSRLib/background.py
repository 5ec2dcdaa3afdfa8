"""Super-resolution in a background process: start, poll progress, cancel, result. No Qt, no Slicer.

    job = background.start(volume, ["ae", "bspline"], factor=4)
    while not job.done():
        print(job.progress())          # "AE (1 of 2): frame 7 of 30, 0:12 elapsed, about 0:40 left"
    results = job.result()             # {"ae": Volume, "bspline": Volume}; job.cancel() instead stops it

Why a process rather than a worker thread (the choice SlicerTotalSegmentator, MONAIAuto3DSeg and
SlicerNNUnet made too):
- Cancel is immediate and complete: the process is terminated even in the middle of one long
  convolution or SimpleITK filter, which a thread cannot be (Python cannot stop a thread, and a
  thread only sees a cancel flag between units of work).
- The GUI never competes for the GIL with numpy/scipy/SimpleITK code that holds it, so Slicer
  stays responsive; and a crash or an out-of-memory kill of the worker cannot take Slicer down.
- Nothing is left behind: inputs and outputs live in one temporary folder (under Slicer's
  temporary path inside Slicer), removed on cancel, on failure and after the result is read. The
  cost, starting Python and passing the volume through a file (a few seconds, small next to a
  learned method's run), is paid once per run.

Cancel stops every process of the job, also through Slicer's ``PythonSlicer`` launcher, which
forwards no signal to the interpreter it starts (:mod:`LatentSRLib.processes`: a process group on
Linux/macOS, a Job Object on Windows, no console window); the worker also exits by itself when the
launcher or the owner (Slicer) is gone, and an ``atexit`` hook cancels jobs still running when
Python exits. :meth:`Job.cancel` is idempotent and takes well under a second.

On failure the worker's whole output is kept at :attr:`Job.log_path` (``LatentSR-logs/<job>.log``
in the temporary path) and the error raised (:class:`WorkerError`) carries its last lines.

Files in the job folder: ``job.json`` (options, the owner's pid), ``input.npz`` (the Volume, exact
geometry), ``progress.json`` (rewritten atomically by the worker), ``result_<i>.npz`` and
``confidence_<i>.npz`` per method, ``done.json`` (notes) or ``error.json`` (message, traceback),
``worker.log`` (the output of the launcher and the worker).
"""

from __future__ import annotations

import atexit
import dataclasses
import json
import logging
import os
import subprocess
import sys
import tempfile
import time
import weakref
from pathlib import Path
from typing import Sequence

import numpy as np

from . import LatentSRError, processes
from .pipeline import Cancelled, Run
from .volume import Volume

log = logging.getLogger(__name__)
_LIBRARY_PARENT = str(Path(__file__).resolve().parent.parent)
_RUNNING: "weakref.WeakSet[Job]" = weakref.WeakSet()


class WorkerError(LatentSRError):
    """A background run failed. ``str()`` starts with one readable line; for an unexpected failure
    (a crash, a bug) the last lines of the worker's log follow. ``log_tail`` holds those lines either
    way, ``log_path`` the whole log (kept after the job's folder is gone), or None."""

    def __init__(self, message: str, log_tail: str = "", log_path: Path | None = None, expected: bool = False):
        self.message, self.log_tail, self.log_path = message, log_tail, log_path
        text = message
        if not expected and log_tail:
            text += f"\n\nLast lines of the worker's log ({log_path or 'not kept'}):\n{log_tail}"
        super().__init__(text)


def save_volume(path: str | os.PathLike, volume: Volume) -> None:
    """Write a Volume with its exact geometry (no rounding, no pixel-type cast) to an ``.npz`` file."""
    np.savez(path, array=volume.array, spacing=volume.spacing, origin=volume.origin, direction=volume.direction,
             pixel_type=str(np.dtype(volume.pixel_type)), time=(volume.time_spacing, volume.time_origin),
             is_4d=volume.is_4d)


def load_volume(path: str | os.PathLike) -> Volume:
    with np.load(path) as data:
        return Volume(data["array"], tuple(data["spacing"]), tuple(data["origin"]), data["direction"],
                      np.dtype(str(data["pixel_type"])), float(data["time"][0]), float(data["time"][1]),
                      bool(data["is_4d"]))


def _clock(seconds: float) -> str:
    seconds = int(round(seconds))
    return f"{seconds // 3600}:{seconds // 60 % 60:02d}:{seconds % 60:02d}" if seconds >= 3600 \
        else f"{seconds // 60}:{seconds % 60:02d}"


@dataclasses.dataclass(frozen=True)
class Progress:
    """Where a job stands: overall fraction, the method running (k of m), frame i of n, times."""

    fraction: float
    method: str | None
    method_number: int
    methods: int
    frame: int
    frames: int
    elapsed: float
    remaining: float | None
    notes: tuple[str, ...] = ()

    def __str__(self) -> str:
        from .pipeline import LABELS
        if self.method is None:
            return f"Starting... {_clock(self.elapsed)} elapsed"
        text = "Checking the methods" if self.method == "check" else LABELS.get(self.method, self.method)
        if self.methods > 1:
            text += f" ({self.method_number} of {self.methods})"
        if self.frames > 1:
            text += f": frame {self.frame} of {self.frames}"
        text += f", {_clock(self.elapsed)} elapsed"
        if self.remaining is not None:
            text += f", about {_clock(self.remaining)} left"
        return text


class Job:
    """One background run; see :func:`start`. Not thread-safe: poll it from one thread."""

    def __init__(self, tree: processes.ProcessTree, folder: Path, methods: list[str], frames: int,
                 kind: str = "super-resolve"):
        self.tree, self.folder, self.methods, self.frames, self.kind = tree, folder, methods, frames, kind
        self.process = tree.process                 # the first process: the launcher, or the interpreter
        self.started = time.monotonic()
        self.cancelled = False
        self.notes: list[str] = []                  # e.g. a GPU out of memory, retried on the CPU
        self.confidences: dict[str, Volume] = {}    # per method that yields a confidence volume
        self._results: dict[str, Volume] | None = None
        self._state: dict | None = None
        self._finished = False                      # result read or failure raised: nothing left to stop
        self._kept_log: Path | None = None
        self._error: WorkerError | None = None       # raised again by a second result()
        _RUNNING.add(self)

    def done(self) -> bool:
        """Whether the worker has exited (successfully or not) or the job was cancelled."""
        return self.cancelled or self._finished or self.process.poll() is not None

    def progress(self) -> Progress:
        elapsed = time.monotonic() - self.started
        state = (_read_json(self.folder / "progress.json") if not self.cancelled else None) or self._state
        self._state = state  # kept: the folder goes once the result is read
        if not state:
            return Progress(0.0, None, 0, len(self.methods), 0, self.frames, elapsed, None)
        fraction = float(state["fraction"])
        # A straight-line estimate over the whole job (the first seconds include Python's start-up).
        remaining = elapsed * (1 - fraction) / fraction if fraction > 0.02 else None
        return Progress(fraction, state["method"], state["number"], len(self.methods), state["frame"],
                        self.frames, elapsed, remaining, tuple(state.get("notes", ())))

    @property
    def log_path(self) -> Path | None:
        """The worker's log: in the job folder while it runs, at a kept copy after a failure
        (``<temporary path>/LatentSR-logs/<job>.log``), None after success or cancel."""
        if self._kept_log is not None:
            return self._kept_log
        running = self.folder / "worker.log"
        return running if not self._finished and not self.cancelled and running.exists() else None

    def log_tail(self, lines: int = 20) -> str:
        """The last ``lines`` lines of :attr:`log_path` ("" if there is none)."""
        path = self.log_path
        return "\n".join(_read_text(path).splitlines()[-lines:]) if path is not None else ""

    def cancel(self) -> None:
        """Stop every process of the job and remove its folder; :meth:`result` then raises Cancelled.
        Idempotent, quick (SIGTERM, SIGKILL after half a second), and a no-op once the job finished."""
        if self._finished or self.cancelled:
            return
        self.cancelled = True
        try:
            self.tree.stop()
        finally:
            self._cleanup()

    def result(self, timeout: float | None = None):
        """Wait for the worker and return {method: Volume} (confidences are in :attr:`confidences`),
        or for :func:`start_check` the :class:`~LatentSRLib.check.CheckResult`.

        Raises:
            Cancelled: the job was cancelled. WorkerError (a LatentSRError): the worker failed; one
                readable line first, the log's last lines and where the whole log is kept with it.
        """
        if self._results is not None:
            return self._results
        if self._error is not None:
            raise self._error
        if self.cancelled:
            raise Cancelled("cancelled by the user")
        try:
            self.process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.cancel()
            raise LatentSRError(f"the background run did not finish within {timeout:g} s") from None
        self.tree.stop()  # whatever the launcher left running (e.g. python-real after the launcher was killed)
        self.progress()  # the last report, before the folder goes
        try:
            error = _read_json(self.folder / "error.json")
            if error is not None or self.process.returncode != 0:
                self._kept_log = processes.keep_log(self.folder / "worker.log", self.folder.name)
                tail = self.log_tail()
                log.error("LatentSR background run failed; its log: %s\n%s", self._kept_log, tail)
                if error is None:
                    self._error = WorkerError(f"the background run stopped unexpectedly (exit code "
                                              f"{self.process.returncode})", tail, self._kept_log)
                else:
                    self._error = WorkerError(error["message"], tail, self._kept_log, bool(error.get("expected")))
                raise self._error
            done = _read_json(self.folder / "done.json") or {}
            self.notes = list(done.get("notes", []))
            if self.kind == "check":
                from .check import from_dict
                self._results = from_dict(done["check"])
                return self._results
            self.confidences = {m: load_volume(self.folder / f"confidence_{i}.npz")
                                for i, m in enumerate(self.methods) if (self.folder / f"confidence_{i}.npz").exists()}
            self._results = {m: load_volume(self.folder / f"result_{i}.npz") for i, m in enumerate(self.methods)}
        finally:
            self._finished = True
            self._cleanup()
        return self._results

    def _cleanup(self) -> None:
        processes.remove_folder(self.folder)
        _RUNNING.discard(self)

    def __del__(self):  # a job dropped while running must not leave a process or files behind
        try:
            self.cancel()
        except Exception:  # noqa: BLE001 - interpreter shutdown
            pass


@atexit.register
def _cancel_running() -> None:
    """Python is exiting (Slicer closing, a script ending): stop every job still running."""
    for job in list(_RUNNING):
        try:
            job.cancel()
        except Exception:  # noqa: BLE001 - the others still get stopped
            pass


def _read_json(path: Path):
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def _read_text(path: Path) -> str:
    try:
        return path.read_text(errors="replace")[-20000:]
    except OSError:
        return ""


def start(volume: Volume, methods: str | Sequence[str], factor: int | None = None, spacing: float | None = None,
          *, axis: int | None = None, device: str = "auto", weights: str | dict[str, str] | None = None,
          keep_original: bool = True, batch_slices: int = 16, resampling_check: bool = True,
          python: str | None = None) -> Job:
    """Start super-resolving ``volume`` with each method in a new Python process; returns at once.

    Args:
        methods: a method name or several (run in turn, in one process).
        weights: for learned methods: one bundled name or file for all, or {method: weights}.
        python: the interpreter to run (default this one; Slicer passes its PythonSlicer).
        Others as :func:`LatentSRLib.pipeline.super_resolve`.
    """
    methods = [methods] if isinstance(methods, str) else list(methods)
    if not methods:
        raise LatentSRError("choose at least one method")
    from .pipeline import METHODS
    unknown = [m for m in methods if m not in METHODS]
    if unknown:
        raise LatentSRError(f"unknown method '{unknown[0]}' (choose from {', '.join(METHODS)})")
    options = {"kind": "super-resolve", "methods": methods, "factor": factor, "spacing": spacing, "axis": axis,
               "device": device, "weights": weights, "keep_original": keep_original, "batch_slices": batch_slices,
               "resampling_check": resampling_check}
    return _launch(volume, options, methods, volume.n_frames, python)


def start_check(volume: Volume, methods: Sequence[str] | None = None, max_seconds: float = 30.0, *,
                frame: int = 0, device: str = "auto", weights: dict[str, str] | None = None,
                python: str | None = None) -> Job:
    """Start :func:`LatentSRLib.check.check_scan` on ``volume`` in a new process; :meth:`Job.result`
    returns its :class:`~LatentSRLib.check.CheckResult`. Only ``frame`` is sent to the worker."""
    if not 0 <= frame < volume.n_frames:
        raise LatentSRError(f"frame {frame} does not exist (the scan has {volume.n_frames})")
    single = volume.with_array(volume.array[frame:frame + 1])
    options = {"kind": "check", "methods": None if methods is None else list(methods), "max_seconds": max_seconds,
               "frame": frame, "device": device, "weights": weights}
    return _launch(single, options, ["check"], 1, python)


def _launch(volume: Volume, options: dict, methods: list[str], frames: int, python: str | None) -> Job:
    folder = Path(tempfile.mkdtemp(prefix="latentsr-job-", dir=processes.temporary_root()))
    try:
        save_volume(folder / "input.npz", volume)
        # The owner's pid (Slicer's): the worker watches it, since its own parent may be a launcher.
        options = {**options, "owner": os.getpid(), "owner_identity": processes.process_identity(os.getpid())}
        (folder / "job.json").write_text(json.dumps(options))
        env = dict(os.environ, PYTHONUNBUFFERED="1")  # the log is current when a failure shows it
        env["PYTHONPATH"] = os.pathsep.join([_LIBRARY_PARENT, *filter(None, [env.get("PYTHONPATH")])])
        with open(folder / "worker.log", "wb") as output:
            tree = processes.ProcessTree([python or sys.executable, "-m", "LatentSRLib.background", str(folder)],
                                         stdout=output, env=env)
    except BaseException:
        processes.remove_folder(folder)
        raise
    return Job(tree, folder, methods, frames, options["kind"])


def _worker(folder: Path) -> int:
    """The background process: run each method, write results, progress and notes to ``folder``."""
    from .fallback import super_resolve_with_fallback
    options = json.loads((folder / "job.json").read_text())
    processes.watch_owner(options["owner"], options.get("owner_identity"), lambda why: _orphaned(folder, why),
                          folder)
    methods, notes = options["methods"] or ["check"], []
    print(f"LatentSR worker {os.getpid()} ({sys.executable}, parent {os.getppid()}, owner {options['owner']}): "
          f"{options['kind']} {', '.join(methods)}", file=sys.stderr)
    volume = load_volume(folder / "input.npz")
    last = [0.0]

    def report(number: int, fraction: float, force: bool = False) -> None:
        if not force and time.monotonic() - last[0] < 0.2:
            return
        last[0] = time.monotonic()
        frame = min(volume.n_frames, int(fraction * volume.n_frames) + 1)
        state = {"fraction": (number + fraction) / len(methods), "method": methods[number], "number": number + 1,
                 "frame": frame, "notes": notes}
        temporary = folder / "progress.json.tmp"
        temporary.write_text(json.dumps(state))
        os.replace(temporary, folder / "progress.json")

    try:
        if options["kind"] == "check":
            from .check import check_scan, to_dict
            result = check_scan(volume, options["methods"], options["max_seconds"], device=options["device"],
                                weights=options["weights"], progress=lambda fraction: report(0, fraction))
            data = {**to_dict(result), "frame": options["frame"]}  # the worker got that frame alone
            (folder / "done.json").write_text(json.dumps({"notes": notes, "check": data}))
            return 0
        for number, method in enumerate(methods):
            weights = options["weights"]
            if isinstance(weights, dict):
                weights = weights.get(method)
            from .pipeline import LEARNED
            run = Run(device=options["device"], weights=weights if method in LEARNED else None,
                      keep_original=options["keep_original"], batch_slices=options["batch_slices"],
                      resampling_check=options["resampling_check"],
                      progress=lambda fraction, number=number: report(number, fraction))
            print(f"{method} ({number + 1} of {len(methods)}) on {volume.array.shape} {volume.pixel_type}",
                  file=sys.stderr)
            report(number, 0.0, force=True)
            result, run = super_resolve_with_fallback(volume, method, options["factor"], options["spacing"],
                                                      axis=options["axis"], run=run, notify=notes.append)
            save_volume(folder / f"result_{number}.npz", result)
            for line in getattr(run, "notes", ()):  # e.g. the cross-fade detector sent a stack to linear
                if f"{method}: {line}" not in notes:
                    notes.append(f"{method}: {line}")
            confidence = getattr(run, "confidence", None)
            if confidence is not None:
                save_volume(folder / f"confidence_{number}.npz", confidence)
            report(number, 1.0, force=True)
    except Exception as error:  # noqa: BLE001 - everything becomes one readable line for the user
        import traceback
        expected = isinstance(error, LatentSRError)  # a readable reason (bad input, weights), not a bug
        message = str(error) if expected else f"{type(error).__name__}: {error}"
        traceback.print_exc()  # into worker.log, which the user can open
        (folder / "error.json").write_text(json.dumps({"message": message, "expected": expected,
                                                       "traceback": traceback.format_exc()}))
        return 1
    (folder / "done.json").write_text(json.dumps({"notes": notes}))
    return 0


def _orphaned(folder: Path, why: str) -> None:
    """The owner (Slicer) or the launcher ended, or the folder was removed: stop now. Without an
    owner nobody else will remove the folder, so the worker does (its own open log aside)."""
    print(f"LatentSR worker {os.getpid()}: the {why} is gone; stopping", file=sys.stderr, flush=True)
    if why == "owner":
        processes.remove_folder(folder, seconds=1.0)
    os._exit(3)


if __name__ == "__main__":
    sys.exit(_worker(Path(sys.argv[1])))
