"""What a cohort run records: per-study sidecar JSON files, input checksums, and manifest.csv.

A cohort run (:mod:`LatentSRLib.cohort`) writes, next to every finished output ``X.nii.gz``, a small
sidecar ``X.nii.gz.json`` holding the input's sha256 and the options that shaped the output. The
sidecar, not the manifest, is what a re-run trusts to skip a study, because it is written (atomically)
the moment that study finishes: a run killed half-way (SIGKILL, node lost, walltime hit) never gets to
write ``manifest.csv``, yet every study it finished is still recognised. The order is output first,
sidecar second, so a sidecar never vouches for a missing or partial output; an output without a
sidecar is treated as unfinished and redone. The sidecar also records the output's size and sha256
(:func:`output_fingerprint`): an output truncated, replaced or deleted after its run no longer
matches, and is redone instead of being skipped forever.

``manifest.csv`` lists every study found before any work starts (status ``not-run``) and is
rewritten as each one finishes, so a study can never be missing from it, even after SIGKILL.

``manifest.csv`` is the human- and script-readable summary (written atomically): one row per input,
columns :data:`COLUMNS`.
"""

from __future__ import annotations

import csv
import dataclasses
import hashlib
import io
import json
import os
from pathlib import Path
from typing import Any, Iterable

from . import atomic

#: manifest.csv columns, in order.
COLUMNS = ("input", "output", "method", "factor", "weights_sha256", "seconds", "status", "error", "notes")
#: Study outcomes: written now, skipped (a matching sidecar says it is done), failed, or not run
#: (the run was interrupted before the study finished).
DONE, SKIPPED, FAILED, NOT_RUN = "done", "skipped", "failed", "not-run"
SIDECAR_SUFFIX = ".json"


@dataclasses.dataclass
class Record:
    """The outcome of one study; one manifest row."""

    input: str
    output: str = ""
    method: str = ""
    factor: int | None = None
    weights_sha256: str = ""
    seconds: float = 0.0
    status: str = NOT_RUN
    error: str = ""
    #: What the method told the user about this study (:attr:`LatentSRLib.methods.base.Run.notes`,
    #: e.g. that the cross-fade detector sent it to linear interpolation); one cell, joined by " | ".
    notes: list[str] = dataclasses.field(default_factory=list)

    def row(self) -> list[str]:
        return [self.input, self.output, self.method, "" if self.factor is None else str(self.factor),
                self.weights_sha256, f"{self.seconds:.3f}", self.status, self.error, " | ".join(self.notes)]


def input_sha256(path: str | os.PathLike) -> str:
    """sha256 of an input file, or of a DICOM folder (its files' relative names and bytes, sorted)."""
    path = Path(path)
    digest = hashlib.sha256()
    files = [path] if path.is_file() else sorted(p for p in path.rglob("*") if p.is_file())
    for file in files:
        if path.is_dir():
            digest.update(str(file.relative_to(path)).encode() + b"\0")
        with open(file, "rb") as handle:
            for block in iter(lambda: handle.read(1 << 20), b""):
                digest.update(block)
    return digest.hexdigest()


def sidecar_path(output: str | os.PathLike) -> Path:
    output = Path(output)
    return output.with_name(output.name + SIDECAR_SUFFIX)


def write_sidecar(output: str | os.PathLike, content: dict[str, Any]) -> Path:
    path = sidecar_path(output)
    atomic.write_text(path, json.dumps(content, indent=1, sort_keys=True) + "\n")  # never partial, never through a symlink
    return path


def read_sidecar(output: str | os.PathLike) -> dict[str, Any] | None:
    """The sidecar of ``output``, or None when it is missing or unreadable (treated as not done)."""
    try:
        return json.loads(sidecar_path(output).read_text())
    except (OSError, ValueError):
        return None


def output_fingerprint(output: str | os.PathLike) -> dict[str, Any]:
    """What a sidecar records of its output's bytes: size and sha256."""
    return {"output_bytes": os.stat(output).st_size, "output_sha256": input_sha256(output)}


def output_intact(output: str | os.PathLike, record: dict[str, Any] | None) -> bool:
    """True when ``output`` is a file with the size and sha256 its sidecar ``record`` recorded (a
    sidecar without them, from before they were recorded, cannot vouch for its output)."""
    output = Path(output)
    if record is None or not output.is_file() or "output_sha256" not in record:
        return False
    if output.stat().st_size != record.get("output_bytes"):
        return False  # truncated or replaced: no need to hash it
    return input_sha256(output) == record["output_sha256"]


def made_from(record: dict[str, Any] | None, sha256: str, options: dict[str, Any]) -> bool:
    """True when a sidecar ``record`` names this input checksum and these options."""
    return record is not None and record.get("input_sha256") == sha256 and record.get("options") == options


def is_finished(output: str | os.PathLike, sha256: str, options: dict[str, Any]) -> bool:
    """True when ``output`` is whole (as its sidecar recorded it) and its sidecar records this input
    checksum and these options."""
    record = read_sidecar(output)
    return made_from(record, sha256, options) and output_intact(output, record)


def write_manifest(records: Iterable[Record], path: str | os.PathLike) -> Path:
    """manifest.csv, atomically (a reader sees the previous manifest or the new one, never half)."""
    path = Path(path)
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(COLUMNS)
    for record in records:
        writer.writerow(record.row())
    atomic.write_text(path, buffer.getvalue())
    return path


def read_manifest(path: str | os.PathLike) -> list[dict[str, str]]:
    with open(path, newline="") as handle:
        return list(csv.DictReader(handle))


def one_line(error: BaseException) -> str:
    """An exception as one line: LatentSR's own messages as they are, others with their type."""
    from . import LatentSRError
    lines = [line.strip() for line in str(error).strip().splitlines() if line.strip()]
    text = lines[0] if lines else ""
    if isinstance(error, LatentSRError):
        return text or type(error).__name__
    return f"{type(error).__name__}: {text}" if text else type(error).__name__
