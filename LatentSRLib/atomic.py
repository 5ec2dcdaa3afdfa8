"""Exclusive, atomic outputs: a result appears whole under its final name, or not at all.

A writer fills a private staging folder beside the target (same file system, so moving is a rename;
``mkdtemp`` makes it mode 0700, so no one else can plant a symlink in it), then moves the files into
place: data files first, the file readers open (the ``.nhdr`` / ``.mhd`` header, or the only file)
last. Before that every staged file is flushed to disk (``fsync``: a full disk or a quota shows up
here, not later). Without ``overwrite`` every file is placed with ``os.link``, which fails if the name
exists (a symlink included), so a file that appeared during the run (another run writing the same
output) is never replaced; with ``overwrite`` ``os.replace`` swaps the directory entry, so a symlink
planted under the target's name is replaced, never followed. Files get the permissions ``open()``
gives under the user's umask. Small files (reports, figures, weights) go the same way
(:func:`write_file`, :func:`write_text`).

The staging entry is named ``.latentsr-<pid>-<process start>-<host>-<random>``: the process id, its
start time (Linux ``/proc``; 0 elsewhere) and a tag of this host and PID namespace. It is removed on
success, on error, on Ctrl-C and on SIGTERM, SIGHUP and SIGQUIT (turned into :class:`Terminated`
while a write is under way, where their handler is the default). The slow part, the writer itself,
runs in a worker thread (SimpleITK releases the GIL), so a signal is handled at once. Only SIGKILL (or
a power cut) can leave a staging entry behind: every name starting with ``.latentsr-`` is ignored by
folder inputs, and :func:`clean_stale`, run before every write into a folder, removes the entries
whose process is gone (no such pid on this host, or the pid now belongs to a process started at
another time). Entries of another host or PID namespace, or without these fields (older versions),
go when unchanged for an hour (a minute for an older entry whose pid is gone here).
"""

from __future__ import annotations

import atexit
import contextlib
import errno
import hashlib
import os
import shutil
import signal
import socket
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator

from . import LatentSRError

PREFIX = ".latentsr-"
#: An entry unchanged this long whose process is gone is stale (seconds).
STALE_AFTER_S = 60.0
#: An entry without a usable process id is stale after this long (seconds).
STALE_UNKNOWN_AFTER_S = 3600.0


#: Signals that end a run cleanly during a write (where the platform has them).
SIGNALS = tuple(getattr(signal, name) for name in ("SIGTERM", "SIGHUP", "SIGQUIT") if hasattr(signal, name))


class Terminated(SystemExit):
    """SIGTERM, SIGHUP or SIGQUIT arrived during a write: the staging folder was removed; the process
    exits with 128 + the signal's number (143, 129, 131)."""

    def __init__(self, signum: int = signal.SIGTERM) -> None:
        super().__init__(128 + int(signum))


def is_temporary(path: str | os.PathLike, root: str | os.PathLike | None = None) -> bool:
    """True for a staging entry (or anything inside one): a name in the path starts with ``.latentsr-``."""
    path = Path(path)
    parts = path.relative_to(root).parts if root is not None else path.parts
    return any(part.startswith(PREFIX) for part in parts)


def _start_time(pid: int) -> int | None:
    """When process ``pid`` started (clock ticks after boot, Linux ``/proc``), or None."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
        return int(stat[stat.rindex(")") + 2:].split()[19])  # field 22; the name may hold spaces
    except (OSError, ValueError, IndexError):
        return None


def _host_tag() -> str:
    """8 hex digits naming this host and PID namespace: a pid means something only within both."""
    namespace = ""
    with contextlib.suppress(OSError):
        namespace = os.readlink("/proc/self/ns/pid")
    return hashlib.sha256(f"{socket.gethostname()}|{namespace}".encode()).hexdigest()[:8]


def entry_prefix() -> str:
    """The start of this process's staging names: ``.latentsr-<pid>-<start>-<host>-``."""
    return f"{PREFIX}{os.getpid()}-{_start_time(os.getpid()) or 0}-{_host_tag()}-"


def _owner(name: str) -> tuple[str, bool | None]:
    """Whether the process that made a staging entry runs: ("full", alive) for names from
    :func:`entry_prefix` on this host, ("pid", alive) for older names holding only a pid,
    ("none", None) when it cannot be told (another host, no pid, Windows)."""
    parts = name[len(PREFIX):].split("-")
    if not parts[0].isdigit() or os.name == "nt":  # os.kill(pid, 0) would end the process on Windows
        return "none", None
    full = len(parts) >= 4 and parts[1].isdigit() and len(parts[2]) == 8
    if full and parts[2] != _host_tag():
        return "none", None
    pid = int(parts[0])
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return ("full" if full else "pid"), False
    except OSError:  # PermissionError: someone's live process
        pass
    if full and int(parts[1]) and _start_time(pid) not in (None, int(parts[1])):
        return "full", False  # the pid was reused by a later process
    return ("full" if full else "pid"), True


def _last_change(path: Path) -> float:
    latest = path.lstat().st_mtime
    if path.is_dir() and not path.is_symlink():
        for entry in path.rglob("*"):
            with contextlib.suppress(OSError):
                latest = max(latest, entry.lstat().st_mtime)
    return latest


def clean_stale(folder: str | os.PathLike, now: float | None = None) -> list[Path]:
    """Remove stale ``.latentsr-*`` entries left in ``folder`` by killed runs; returns what went.

    Stale: its process (named in the entry, :func:`entry_prefix`) is gone from this host, at once;
    an older entry naming only a dead pid: unchanged for :data:`STALE_AFTER_S`; an entry whose owner
    cannot be told (another host, no pid, Windows): unchanged for :data:`STALE_UNKNOWN_AFTER_S`.
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
            kind, alive = _owner(entry.name)
            if alive:
                continue
            age = now - _last_change(entry)
            stale = {"full": True, "pid": age > STALE_AFTER_S, "none": age > STALE_UNKNOWN_AFTER_S}[kind]
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
def _signals_raise() -> Iterator[None]:
    """While inside, SIGTERM, SIGHUP and SIGQUIT raise :class:`Terminated` (only in the main thread, only
    over the default handler: a program that set its own keeps it)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def handler(signum: int, frame: Any) -> None:
        raise Terminated(signum)
    taken = [s for s in SIGNALS if signal.getsignal(s) is signal.SIG_DFL]
    for signum in taken:
        signal.signal(signum, handler)
    try:
        yield
    finally:
        for signum in taken:
            signal.signal(signum, signal.SIG_DFL)


@contextlib.contextmanager
def staging(target: str | os.PathLike) -> Iterator[Path]:
    """A private staging folder beside ``target``, removed however the block ends.

    Stale entries from killed runs are cleaned from the target's folder first.
    """
    folder = Path(target).parent
    clean_stale(folder)
    with _signals_raise():
        try:
            staged = Path(tempfile.mkdtemp(prefix=entry_prefix(), dir=folder))
        except OSError as error:
            raise LatentSRError(f"output folder is not writable: {folder} ({error.strerror})") from None
        try:
            yield staged
        except (KeyboardInterrupt, Terminated) as error:  # wherever in the write it came: exit at once
            _abandoned.append((None, error.code if isinstance(error, Terminated) else 130))
            raise
        finally:
            shutil.rmtree(staged, ignore_errors=True)


#: Writer threads left running after an interruption (None: a write interrupted elsewhere), with the
#: exit code the interruption means.
_abandoned: list[tuple[threading.Thread | None, int]] = []


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


def _same_file(a: Path, b: Path) -> bool:
    try:
        return os.path.samefile(a, b)
    except OSError:
        return os.path.abspath(a) == os.path.abspath(b)


def sync(paths: Iterable[Path]) -> None:
    """Flush files to disk: a full disk, a quota or a lost network share is an error here, before any
    file is published (some file systems, NFS among them, report such errors only on fsync or close)."""
    for path in paths:
        descriptor = os.open(path, os.O_RDONLY)
        try:
            os.fsync(descriptor)
        finally:
            os.close(descriptor)


def publish(staged: Path, folder: Path, main: str, overwrite: bool, protect: Iterable[Path] = ()) -> list[Path]:
    """Move every file of ``staged`` into ``folder``; ``main`` (the file readers open) goes last.

    Every file is flushed to disk first (:func:`sync`). Without ``overwrite`` no existing file is
    replaced: if one of the names exists, nothing is placed and :class:`LatentSRError` says so. With
    ``overwrite`` an old ``main`` is removed first when there are several files, so a header never
    points at data of another write. A name that is one of the ``protect`` files (an input, or an
    input's data file) is refused in either case.
    """
    names = sorted(p.name for p in staged.iterdir() if p.name != main) + [main]
    targets = [folder / name for name in names]
    for target in targets:
        for kept in protect:
            if os.path.lexists(target) and _same_file(target, Path(kept)):
                raise LatentSRError(f"refusing to overwrite {target}, a file of the input: choose another output name")
    sync(staged / name for name in names)
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


def write_file(target: str | os.PathLike, fill: Callable[[Path], Any], overwrite: bool = True) -> Path:
    """Write one file through a private staging folder: ``fill(path)`` writes it (``savefig``,
    ``torch.save``, ...) under the target's name inside that folder; then it is flushed and placed
    (:func:`publish`): never through a symlink planted at the target, never partial.

    Raises:
        LatentSRError: the folder is not writable, the disk is full, or (without ``overwrite``) the
            target exists.
    """
    target = Path(target)
    with staging(target) as staged:
        try:
            fill(staged / target.name)
            publish(staged, target.parent, target.name, overwrite)
        except OSError as error:
            raise LatentSRError(f"cannot write {target}: {error.strerror or error}") from None
    return target


def write_text(target: str | os.PathLike, text: str, overwrite: bool = True) -> Path:
    """:func:`write_file` for text (UTF-8, newlines as given)."""
    def fill(path: Path) -> None:
        with open(path, "w", encoding="utf-8", newline="") as stream:
            stream.write(text)
    return write_file(target, fill, overwrite)


def _remove(paths: list[Path]) -> None:
    for path in paths:
        with contextlib.suppress(OSError):
            os.unlink(path)
