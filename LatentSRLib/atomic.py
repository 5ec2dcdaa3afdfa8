"""Exclusive, atomic outputs: a result appears whole under its final name, or not at all.

A writer fills a private staging folder ``.latentsr-<pid>-<random>`` beside the target (same file
system, so moving is a rename), then moves the files into place: data files first, the file readers
open (the ``.nhdr`` / ``.mhd`` header, or the only file) last. Without ``overwrite`` every file is
placed with ``os.link``, which fails if the name exists, so a file that appeared during the run (another
run writing the same output) is never replaced. Files get the permissions ``open()`` gives under the
user's umask (they are created by the writer inside the staging folder, not by ``mkstemp``).

The staging folder is removed on success, on error, on Ctrl-C and on SIGTERM (turned into
:class:`Terminated` while a write is under way). The slow part, the writer itself, runs in a worker
thread (SimpleITK releases the GIL), so a signal is handled at once instead of after the write.
Only SIGKILL (or a power cut) can leave a staging folder behind: every name starting with ``.latentsr-``
is ignored by folder inputs, and :func:`clean_stale` removes such entries once they are stale, that is,
unchanged for a minute AND their process is no longer running on this machine (entries without a
process id in their name, or on Windows where liveness is not checked: unchanged for an hour).
"""

from __future__ import annotations

import atexit
import contextlib
import errno
import os
import shutil
import signal
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any, Callable, Iterator

from . import LatentSRError

PREFIX = ".latentsr-"
#: An entry unchanged this long whose process is gone is stale (seconds).
STALE_AFTER_S = 60.0
#: An entry without a usable process id is stale after this long (seconds).
STALE_UNKNOWN_AFTER_S = 3600.0


class Terminated(SystemExit):
    """SIGTERM arrived during a write: the staging folder was removed; the process exits with 143."""

    def __init__(self) -> None:
        super().__init__(128 + signal.SIGTERM)


def is_temporary(path: str | os.PathLike, root: str | os.PathLike | None = None) -> bool:
    """True for a staging entry (or anything inside one): a name in the path starts with ``.latentsr-``."""
    path = Path(path)
    parts = path.relative_to(root).parts if root is not None else path.parts
    return any(part.startswith(PREFIX) for part in parts)


def _owner_alive(name: str) -> bool | None:
    """Whether the process named in a staging entry runs here: True, False, or None (cannot tell)."""
    pid_text = name[len(PREFIX):].split("-", 1)[0]
    if not pid_text.isdigit() or os.name == "nt":  # os.kill(pid, 0) would end the process on Windows
        return None
    pid = int(pid_text)
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:  # PermissionError: someone else's live process
        return True
    return True


def _last_change(path: Path) -> float:
    latest = path.lstat().st_mtime
    if path.is_dir() and not path.is_symlink():
        for entry in path.rglob("*"):
            with contextlib.suppress(OSError):
                latest = max(latest, entry.lstat().st_mtime)
    return latest


def clean_stale(folder: str | os.PathLike, now: float | None = None) -> list[Path]:
    """Remove stale ``.latentsr-*`` entries left in ``folder`` by killed runs; returns what went.

    Stale: unchanged for :data:`STALE_AFTER_S` and the owning process (the pid in the name) is not
    running on this machine; without a pid (or on Windows): unchanged for :data:`STALE_UNKNOWN_AFTER_S`.
    Errors are ignored: cleaning is a courtesy, never a reason to fail a run.
    """
    now = time.time() if now is None else now
    removed = []
    try:
        entries = [p for p in Path(folder).iterdir() if p.name.startswith(PREFIX)]
    except OSError:
        return removed
    for entry in entries:
        try:
            age = now - _last_change(entry)
            alive = _owner_alive(entry.name)
            stale = age > STALE_UNKNOWN_AFTER_S if alive is None else (not alive and age > STALE_AFTER_S)
            if not stale:
                continue
            if entry.is_dir() and not entry.is_symlink():
                shutil.rmtree(entry)
            else:
                entry.unlink()
            removed.append(entry)
        except OSError:
            continue
    return removed


@contextlib.contextmanager
def _sigterm_raises() -> Iterator[None]:
    """While inside, SIGTERM raises :class:`Terminated` (only in the main thread, only over the default)."""
    if threading.current_thread() is not threading.main_thread() or \
            signal.getsignal(signal.SIGTERM) is not signal.SIG_DFL:
        yield
        return

    def handler(signum: int, frame: Any) -> None:
        raise Terminated()
    signal.signal(signal.SIGTERM, handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, signal.SIG_DFL)


@contextlib.contextmanager
def staging(target: str | os.PathLike) -> Iterator[Path]:
    """A private staging folder beside ``target``, removed however the block ends.

    Stale entries from killed runs are cleaned from the target's folder first.
    """
    folder = Path(target).parent
    clean_stale(folder)
    with _sigterm_raises():
        try:
            staged = Path(tempfile.mkdtemp(prefix=f"{PREFIX}{os.getpid()}-", dir=folder))
        except OSError as error:
            raise LatentSRError(f"output folder is not writable: {folder} ({error.strerror})") from None
        try:
            yield staged
        finally:
            shutil.rmtree(staged, ignore_errors=True)


#: Writer threads left running after an interruption, with the exit code the interruption means.
_abandoned: list[tuple[threading.Thread, int]] = []


@atexit.register
def _exit_without_waiting() -> None:
    """After an interrupted write, exit with its code (130 for Ctrl-C, 143 for SIGTERM) at once,
    skipping the rest of the interpreter's and ITK's teardown, which aborts the process (SIGABRT,
    "exception not rethrown") after an abandoned ITK write: measured in 6 of 6 Ctrl-C and about half
    of the SIGTERM runs. (A program that caught the interruption and went on exits with that code too.)"""
    if _abandoned:
        for stream in (sys.stdout, sys.stderr):
            with contextlib.suppress(Exception):
                stream.flush()
        os._exit(_abandoned[-1][1])


def run_interruptibly(function: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
    """Run ``function`` in a worker thread; the calling thread waits, so signals are handled at once.

    An exception in the worker is re-raised here. If the wait is interrupted (Ctrl-C, SIGTERM), the
    worker is left to finish on its own (a daemon: it never keeps the process alive).
    """
    outcome: dict[str, Any] = {}

    def work() -> None:
        try:
            outcome["value"] = function(*args, **kwargs)
        except BaseException as error:  # re-raised in the caller's thread
            outcome["error"] = error

    worker = threading.Thread(target=work, name="latentsr-write", daemon=True)
    worker.start()
    try:
        while worker.is_alive():
            worker.join(0.05)
    except BaseException as error:  # Ctrl-C, SIGTERM: the caller cleans up; the worker is abandoned
        code = error.code if isinstance(error, SystemExit) and isinstance(error.code, int) else 130
        _abandoned.append((worker, code))
        raise
    if "error" in outcome:
        raise outcome["error"]
    return outcome.get("value")


def _place_exclusively(source: Path, target: Path) -> None:
    """Give ``source``'s file the name ``target``, failing if ``target`` exists (atomically)."""
    try:
        os.link(source, target)
    except FileExistsError:
        raise
    except OSError as error:
        if error.errno not in (errno.EPERM, errno.ENOTSUP, errno.EOPNOTSUPP, errno.EXDEV, errno.EMLINK,
                               errno.ENOSYS):
            raise
        # A file system without hard links: check, then rename (a window of microseconds, not a run).
        if os.path.lexists(target):
            raise FileExistsError(errno.EEXIST, "File exists", str(target)) from None
        os.rename(source, target)
        return
    os.unlink(source)


def publish(staged: Path, folder: Path, main: str, overwrite: bool) -> list[Path]:
    """Move every file of ``staged`` into ``folder``; ``main`` (the file readers open) goes last.

    Without ``overwrite`` no existing file is replaced: if one of the names exists, nothing is placed
    and :class:`LatentSRError` says so. With ``overwrite`` an old ``main`` is removed first when there
    are several files, so a header never points at data of another write.
    """
    names = sorted(p.name for p in staged.iterdir() if p.name != main) + [main]
    targets = [folder / name for name in names]
    if not overwrite:
        existing = [t for t in targets if os.path.lexists(t)]
        if existing:
            raise LatentSRError(f"{existing[-1]} appeared during the run (another run writing the same "
                                "output?); use --overwrite to replace it")
    elif len(names) > 1:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(folder / main)
    placed: list[Path] = []
    try:
        for name, target in zip(names, targets):
            if overwrite:
                os.replace(staged / name, target)
            else:
                _place_exclusively(staged / name, target)
            placed.append(target)
    except FileExistsError as error:
        _remove(placed)
        raise LatentSRError(f"{error.filename} appeared during the run (another run writing the same "
                            "output?); use --overwrite to replace it") from None
    except BaseException:
        if not overwrite:
            _remove(placed)
        raise
    return placed


def _remove(paths: list[Path]) -> None:
    for path in paths:
        with contextlib.suppress(OSError):
            os.unlink(path)
