"""Start a worker process tree and stop all of it, whatever launcher sits in between. Standard library only.

Why a tree and not one process: inside Slicer the interpreter for background work is ``PythonSlicer``,
a CTKAppLauncher (Slicer ``SuperBuild/python_configure_python_launcher.cmake``, lines 136-152:
``ctkAppLauncherConfigureForExecutable(APPLICATION_NAME SlicerPython ...
APPLICATION_INSTALL_EXECUTABLE_NAME python-real``). The launcher starts the real interpreter as a child
with ``QProcess::start`` and waits for it (commontk/AppLauncher ``Base/ctkAppLauncher.cpp``,
``ctkAppLauncherInternal::runProcess`` and ``applicationFinished``, commit 05c8846); it installs no
signal handler and forwards nothing, so ``Popen.terminate()`` reaches the launcher only. Hence:

- POSIX: the launcher starts a new session (``setsid``), so the launcher, ``python-real`` and whatever
  they start share one process group; :meth:`ProcessTree.stop` signals the group (SIGTERM, then SIGKILL
  after a short grace) and waits until no member is left.
- Windows: ``CREATE_NO_WINDOW`` (PythonSlicer.exe is a console program; without it every run opens a
  console window, and closing that window kills the run) plus a hidden ``STARTUPINFO`` as Slicer's own
  ``slicer.util.launchConsoleProcess`` does (``Base/Python/slicer/util.py`` lines 2347-2392 at commit
  524979a), and ``CREATE_NEW_PROCESS_GROUP``. The launcher goes into a Job Object that kills its
  processes when its last handle closes (``JOB_OBJECT_LIMIT_KILL_ON_JOB_CLOSE``): stopping is
  ``TerminateJobObject``, and if Slicer itself dies Windows closes the handle and ends the tree.
  ``taskkill /T /F`` is the fallback where a Job Object cannot be had.
- Both: the worker watches its owner (Slicer's pid, passed explicitly: with a launcher in between the
  worker's parent is the launcher) and its parent, and exits by itself when either is gone
  (:func:`watch_owner`), so a killed Slicer or launcher leaves nothing running.
"""

from __future__ import annotations

import ctypes
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Callable

# Windows constants (winbase.h / winnt.h), spelled out so argument construction is testable anywhere.
CREATE_NEW_PROCESS_GROUP = 0x00000200
CREATE_NO_WINDOW = 0x08000000
STARTF_USESHOWWINDOW = 0x00000001
SW_HIDE = 0
JOB_OBJECT_LIMIT_KILL_ON_JOB_CLOSE = 0x00002000
JOB_OBJECT_EXTENDED_LIMIT_INFORMATION_CLASS = 9
SYNCHRONIZE = 0x00100000
LOG_FOLDER = "LatentSR-logs"  # in the temporary root: logs of failed runs, kept for the user to open
KEPT_LOGS = 20                # the newest logs kept there


def popen_options(platform: str = os.name) -> dict:
    """The ``subprocess.Popen`` keywords that put a new process tree apart: its own session (POSIX),
    or no console window and its own process group (``platform == "nt"``)."""
    if platform != "nt":
        return {"start_new_session": True}
    options: dict = {"creationflags": CREATE_NO_WINDOW | CREATE_NEW_PROCESS_GROUP}
    if hasattr(subprocess, "STARTUPINFO"):  # Windows only
        info = subprocess.STARTUPINFO()
        info.dwFlags |= STARTF_USESHOWWINDOW
        info.wShowWindow = SW_HIDE
        options["startupinfo"] = info
    return options


def taskkill_command(pid: int) -> list[str]:
    """Windows' way to end a process and every process it started (/T), without asking (/F)."""
    return ["taskkill", "/T", "/F", "/PID", str(pid)]


class IO_COUNTERS(ctypes.Structure):  # noqa: N801 - winnt.h names
    _fields_ = [(name, ctypes.c_uint64) for name in ("ReadOperationCount", "WriteOperationCount",
                                                     "OtherOperationCount", "ReadTransferCount",
                                                     "WriteTransferCount", "OtherTransferCount")]


class JOBOBJECT_BASIC_LIMIT_INFORMATION(ctypes.Structure):  # noqa: N801
    _fields_ = [("PerProcessUserTimeLimit", ctypes.c_int64), ("PerJobUserTimeLimit", ctypes.c_int64),
                ("LimitFlags", ctypes.c_uint32), ("MinimumWorkingSetSize", ctypes.c_size_t),
                ("MaximumWorkingSetSize", ctypes.c_size_t), ("ActiveProcessLimit", ctypes.c_uint32),
                ("Affinity", ctypes.c_size_t), ("PriorityClass", ctypes.c_uint32),
                ("SchedulingClass", ctypes.c_uint32)]


class JOBOBJECT_EXTENDED_LIMIT_INFORMATION(ctypes.Structure):  # noqa: N801
    _fields_ = [("BasicLimitInformation", JOBOBJECT_BASIC_LIMIT_INFORMATION), ("IoInfo", IO_COUNTERS),
                ("ProcessMemoryLimit", ctypes.c_size_t), ("JobMemoryLimit", ctypes.c_size_t),
                ("PeakProcessMemoryUsed", ctypes.c_size_t), ("PeakJobMemoryUsed", ctypes.c_size_t)]


def _kill_on_close_job(process_handle: int):
    """A Windows Job Object holding the process, killing it and its children when closed; None if refused."""
    kernel32 = _kernel32()
    kernel32.CreateJobObjectW.restype = ctypes.c_void_p
    job = kernel32.CreateJobObjectW(None, None)
    if not job:
        return None
    limits = JOBOBJECT_EXTENDED_LIMIT_INFORMATION()
    limits.BasicLimitInformation.LimitFlags = JOB_OBJECT_LIMIT_KILL_ON_JOB_CLOSE
    if not (kernel32.SetInformationJobObject(ctypes.c_void_p(job), JOB_OBJECT_EXTENDED_LIMIT_INFORMATION_CLASS,
                                             ctypes.byref(limits), ctypes.sizeof(limits))
            and kernel32.AssignProcessToJobObject(ctypes.c_void_p(job), ctypes.c_void_p(process_handle))):
        kernel32.CloseHandle(ctypes.c_void_p(job))
        return None
    return job


class ProcessTree:
    """A process started apart from its owner (see the module docstring), stopped with all it started.

    ``process`` is the ``Popen`` of the program named first in ``args`` (a launcher, or the interpreter).
    """

    def __init__(self, args: list[str], *, stdout, env: dict | None = None):
        self.process = subprocess.Popen(args, stdout=stdout, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                        env=env, **popen_options())
        self.pid = self.process.pid
        self._job = None
        if os.name == "nt":
            # The launcher needs far longer to load Qt than this takes, so its python-real starts inside the job.
            self._job = _kill_on_close_job(int(self.process._handle))  # type: ignore[attr-defined]

    def poll(self) -> int | None:
        """The first process's exit code, or None while it runs."""
        return self.process.poll()

    def stop(self, grace: float = 0.5, timeout: float = 5.0) -> None:
        """Stop every process of the tree and wait for them; safe to call again, and after they ended."""
        if os.name == "nt":
            self._stop_windows()
        elif self.process.returncode is not None and not self.members():
            return  # ended and reaped, nothing left: its group id may already belong to someone else
        else:
            # Members keep the group id from being reused (POSIX: a process group ID is not reused
            # while the group exists), so this reaches this tree only.
            self._signal_group(signal.SIGTERM)
            if not _wait_until(lambda: not self.members(), grace):
                self._signal_group(signal.SIGKILL)
                _wait_until(lambda: not self.members(), timeout)
        try:
            self.process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()

    def members(self) -> list[int]:
        """The live (not zombie) processes of the tree's group (POSIX), e.g. [launcher, python-real]."""
        if os.name == "nt":
            return [] if self.process.poll() is not None else [self.pid]
        return group_members(self.pid)

    def _signal_group(self, number: int) -> None:
        try:
            os.killpg(self.pid, number)
        except (ProcessLookupError, PermissionError):
            pass  # nothing left in the group

    def _stop_windows(self) -> None:
        if self._job is not None:
            kernel32 = _kernel32()
            kernel32.TerminateJobObject(ctypes.c_void_p(self._job), 1)
            kernel32.CloseHandle(ctypes.c_void_p(self._job))
            self._job = None
        elif self.process.poll() is None:
            subprocess.run(taskkill_command(self.pid), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                           creationflags=CREATE_NO_WINDOW, check=False)


def group_members(group: int) -> list[int]:
    """Live processes whose process group is ``group``: from /proc on Linux, else 'some' or none."""
    proc = Path("/proc")
    if proc.is_dir() and (proc / "self" / "stat").exists():
        found = []
        for entry in proc.iterdir():
            if entry.name.isdigit():
                fields = _stat_fields(int(entry.name))
                if fields and fields[0] != "Z" and int(fields[2]) == group:
                    found.append(int(entry.name))
        return found
    try:
        os.killpg(group, 0)
        return [group]  # at least one member; which ones is not knowable portably
    except (ProcessLookupError, PermissionError):
        return []


def _stat_fields(pid: int) -> list[str] | None:
    """Fields of /proc/<pid>/stat after the command name: state, ppid, pgrp, ... (None if unreadable)."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return text[text.rindex(")") + 2:].split()


def process_identity(pid: int) -> str | None:
    """What tells this process apart from a later one with the same pid: its start time on Linux."""
    fields = _stat_fields(pid)
    return fields[19] if fields else None


def is_alive(pid: int, identity: str | None = None) -> bool:
    """Whether process ``pid`` runs (a zombie does not), and is the one ``identity`` was read from (POSIX)."""
    if os.name == "nt":
        handle = _open_process(pid)
        if handle is None:
            return ctypes.get_last_error() == 5  # ERROR_ACCESS_DENIED: it exists
        try:
            return _running(handle)
        finally:
            _kernel32().CloseHandle(ctypes.c_void_p(handle))
    fields = _stat_fields(pid)
    if fields is not None:
        return fields[0] != "Z" and (identity is None or fields[19] == identity)
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def watch_owner(owner: int, identity: str | None, on_gone: Callable[[str], None], folder: Path | None = None,
                interval: float = 0.2) -> threading.Thread:
    """In the worker: call ``on_gone(why)`` from a daemon thread once the owner (Slicer, or whoever
    started the job: ``why == "owner"``), this process's parent (the launcher: ``"parent"``) or the job
    folder (``"folder"``) is gone. ``on_gone`` should end the process (``os._exit``)."""
    parent = os.getppid()
    if os.name == "nt":  # a handle held from now on pins the process: no pid reuse can fool the check
        handles = [_open_process(owner), _open_process(parent)]

        def gone() -> str | None:
            for why, handle in zip(("owner", "parent"), handles):
                if handle is not None and not _running(handle):
                    return why
            return None
    else:
        parent_identity = process_identity(parent)

        def gone() -> str | None:
            if not is_alive(owner, identity):
                return "owner"
            # POSIX re-parents an orphan at once, so getppid() changes the moment the launcher dies.
            if os.getppid() != parent or not is_alive(parent, parent_identity):
                return "parent"
            return None

    def watch() -> None:
        while True:
            time.sleep(interval)
            why = gone() or ("folder" if folder is not None and not folder.is_dir() else None)
            if why:
                on_gone(why)
                return
    thread = threading.Thread(target=watch, name="latentsr-owner-watch", daemon=True)
    thread.start()
    return thread


def _kernel32():
    return ctypes.WinDLL("kernel32", use_last_error=True)  # type: ignore[attr-defined]


def _open_process(pid: int) -> int | None:
    kernel32 = _kernel32()
    kernel32.OpenProcess.restype = ctypes.c_void_p
    return kernel32.OpenProcess(SYNCHRONIZE, False, pid) or None


def _running(handle: int) -> bool:
    return _kernel32().WaitForSingleObject(ctypes.c_void_p(handle), 0) != 0  # 0 (WAIT_OBJECT_0): it ended


def temporary_root() -> Path:
    """Where job folders and kept logs go: Slicer's temporary path inside Slicer (Application
    settings; ``qSlicerCoreApplication``'s ``temporaryPath`` property), else the system's."""
    app = getattr(sys.modules.get("slicer"), "app", None)  # only if Slicer already imported it
    path = getattr(app, "temporaryPath", None)
    root = Path(path) if path else Path(tempfile.gettempdir())
    root.mkdir(parents=True, exist_ok=True)
    return root


def keep_log(log_file: Path, name: str) -> Path | None:
    """Copy ``log_file`` to ``<temporary root>/LatentSR-logs/<name>.log``, out of the folder about to be
    removed, keeping the newest :data:`KEPT_LOGS` there; the copy's path, or None if it could not be made."""
    try:
        target = temporary_root() / LOG_FOLDER
        target.mkdir(exist_ok=True)
        kept = target / f"{name}.log"
        shutil.copyfile(log_file, kept)
        for old in sorted(target.glob("*.log"), key=lambda p: p.stat().st_mtime)[:-KEPT_LOGS]:
            old.unlink()
        return kept
    except OSError:
        return None


def remove_folder(folder: Path, seconds: float = 2.0) -> bool:
    """Remove ``folder`` and its files, retrying briefly (Windows refuses while a file is still open)."""
    deadline = time.monotonic() + seconds
    while True:
        shutil.rmtree(folder, ignore_errors=True)
        if not os.path.lexists(folder) or time.monotonic() > deadline:
            return not os.path.lexists(folder)
        time.sleep(0.05)


def _wait_until(condition: Callable[[], bool], seconds: float) -> bool:
    deadline = time.monotonic() + seconds
    while not condition():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.02)
    return True


__all__ = ["ProcessTree", "popen_options", "taskkill_command", "group_members", "is_alive", "process_identity",
           "watch_owner", "remove_folder", "temporary_root", "keep_log"]
