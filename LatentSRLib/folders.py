"""Folders a run reads and writes: checks made before any work, so a bad one stops with one line.

A folder run, ``evaluate --out`` and ``demo --out`` create their folder and many files in it; an
output name the file system cannot hold, a folder that is a file or on a read-only file system used
to surface as a traceback after the work (or after the folder and a manifest were made). These
checks create nothing; :func:`check_name` serves single-file outputs too. :func:`linked_folders`
finds the symbolic links to folders a folder input holds, which a run reports rather than follows.
"""

from __future__ import annotations

import os
from pathlib import Path

from . import LatentSRError

#: Room kept under the file system's name limit for the names LatentSR derives from an output's:
#: a detached header's data file (``.raw.gz`` for ``.nhdr``) and a cohort output's sidecar (``.json``).
NAME_ROOM = 16


def _name_max(folder: Path) -> int:
    try:
        return int(os.pathconf(folder, "PC_NAME_MAX"))
    except (AttributeError, OSError, ValueError):  # Windows, or a file system that does not say
        return 255


def _nearest_existing(path: Path) -> Path:
    path = Path(os.path.abspath(path))
    while not os.path.lexists(path) and path != path.parent:
        path = path.parent
    return path


def linked_folders(folder: str | os.PathLike, skip: str = "") -> list[Path]:
    """Folders under ``folder`` that are symbolic links (os.walk lists them without following them);
    folders whose name starts with ``skip`` are not searched."""
    found: list[Path] = []
    for root, names, _ in os.walk(folder) if Path(folder).is_dir() else ():
        names[:] = [name for name in names if not (skip and name.startswith(skip))]
        found += [Path(root) / name for name in names if os.path.islink(os.path.join(root, name))]
    return sorted(found)


def check_name(path: str | os.PathLike, what: str = "output") -> Path:
    """Refuse an output path with a name longer than its file system holds (ENAMETOOLONG, after the
    work, was a traceback), leaving :data:`NAME_ROOM` for the names derived from it."""
    path = Path(path)
    existing = _nearest_existing(path)
    limit = _name_max(existing if existing.is_dir() else existing.parent) - NAME_ROOM
    for name in Path(os.path.abspath(path)).relative_to(existing).parts:
        if len(os.fsencode(name)) > limit:
            raise LatentSRError(f"{what} name '{name[:40]}...' is {len(os.fsencode(name))} bytes long; this file "
                                f"system holds names of at most {limit + NAME_ROOM} (and LatentSR adds up to "
                                f"{NAME_ROOM} to them): choose a shorter name")
    return path


def check_folder(path: str | os.PathLike, what: str = "output folder") -> Path:
    """Check that ``path`` is, or can be made as, a folder this process can write in; creates nothing.

    Raises:
        LatentSRError: ``path`` (or a folder above it) is a file, the nearest existing folder is not
            writable (permissions or a read-only file system), or a name is too long.
    """
    path = Path(path)
    if os.path.lexists(path) and not path.is_dir():
        raise LatentSRError(f"{what} {path} exists and is not a folder")
    check_name(path, what)
    existing = _nearest_existing(path)
    if not existing.is_dir():
        raise LatentSRError(f"{what} {path} cannot be made: {existing} is a file")
    if not os.access(existing, os.W_OK | os.X_OK):  # EACCES, and EROFS on a read-only file system
        where = "" if existing == Path(os.path.abspath(path)) else f" ({existing}, where it would be made)"
        raise LatentSRError(f"{what} {path} is not writable{where}")
    return path
