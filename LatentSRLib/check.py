"""Check on this scan: which method re-creates *this* scan's own slices best, within seconds.

The papers' drop-slice protocol (:mod:`LatentSRLib.evaluate`) run on the user's scan alone: hide
every other acquired slice, re-create each hidden slice from its neighbours with each method, and
score it against the hidden original (SSIM, PSNR; :func:`LatentSRLib.evaluate.protocol_case` and
its scoring, unchanged). To answer within ``max_seconds`` on a CPU it uses one frame, a slab of
``2 * max_scored + 1`` slices around the middle (as many as a fixed voxel budget allows) (starting on an even slice, so the slices it scores
are ones the full protocol scores too), and the centre ``crop`` pixels in-plane (the protocol
scores the centre 128 x 128 crop anyway). A method still running at the deadline is stopped and
reported as such; the conventional methods run first, so there is always an answer.
"""

from __future__ import annotations

import dataclasses
import math
import time
from typing import Callable, Sequence

import numpy as np

from . import LatentSRError, evaluate, pipeline
from .metrics import centre_crop, psnr, ssim
from .pipeline import Cancelled, Run
from .volume import Volume, slice_axis

#: In-plane size kept around the centre (the protocol scores the centre 128 x 128).
CROP = 128
#: Voxels of kept slices the check processes by default (three 128 x 128 slices: two are scored),
#: so a learned method's time is bounded whatever the scan; smaller images get more slices.
KEPT_VOXELS = 3 * 128 * 128
#: Methods left out by default: Lanczos (10 s per frame and never ahead of linear on the protocol)
#: and ae-latent (the paper's variant of ae, for comparisons).
NOT_BY_DEFAULT = ("lanczos", "ae-latent")


@dataclasses.dataclass(frozen=True)
class CheckRow:
    """One method's mean scores over the scored slices (NaN when it did not finish)."""

    method: str
    label: str
    ssim: float
    psnr: float
    n: int
    seconds: float
    note: str = ""


@dataclasses.dataclass(frozen=True)
class CheckResult:
    """Rows best first (by SSIM, then PSNR; unfinished methods last), and the winner."""

    rows: tuple[CheckRow, ...]
    winner: str | None
    frame: int
    slices: tuple[int, ...]   # scored slices, as indices into the whole scan
    seconds: float

    def cells(self) -> list[list[str]]:
        """The panel's table: method, SSIM, PSNR, n (or a note for a method that did not finish)."""
        return [[row.label, f"{row.ssim:.3f}", f"{row.psnr:.2f}", str(row.n)] if row.n
                else [row.label, "-", "-", row.note] for row in self.rows]

    def table(self) -> str:
        """The result as a plain-text table, with the winner named under it."""
        lines = [f"{'method':<22} {'SSIM':>7} {'PSNR':>7} {'n':>3} {'time':>7}"]
        for row in self.rows:
            scores = f"{row.ssim:7.3f} {row.psnr:7.2f}" if row.n else f"{'-':>7} {'-':>7}"
            lines.append(f"{row.label:<22} {scores} {row.n:>3} {row.seconds:6.1f}s" + (f"  {row.note}" if row.note else ""))
        scored = ", ".join(str(s) for s in self.slices)
        lines.append(f"frame {self.frame}, slices {scored} re-created from their neighbours; "
                     f"{self.seconds:.1f} s in all")
        lines.append(f"winner on this scan: {pipeline.LABELS.get(self.winner, self.winner)}" if self.winner
                     else "no method finished in time")
        return "\n".join(lines)


def default_methods() -> list[str]:
    """Every registered method except :data:`NOT_BY_DEFAULT` (so new methods are checked too)."""
    return [m for m in pipeline.METHODS if m not in NOT_BY_DEFAULT]


def _available(methods: Sequence[str] | None, weights: dict[str, str] | None) -> tuple[list[str], list[CheckRow]]:
    """Methods to run (conventional first) and rows for default methods that cannot run here."""
    if methods is not None:
        return sorted(evaluate.check_methods(methods, weights), key=lambda m: m not in pipeline.CONVENTIONAL), []
    chosen, missing = [], []
    for method in default_methods():
        try:
            evaluate.check_methods([method], weights)
            chosen.append(method)
        except LatentSRError as error:
            missing.append(CheckRow(method, pipeline.LABELS.get(method, method), math.nan, math.nan, 0, 0.0,
                                    f"not available: {error}"))
    return sorted(chosen, key=lambda m: m not in pipeline.CONVENTIONAL), missing


def slab(volume: Volume, frame: int = 0, max_scored: int | None = None, crop: int | None = CROP) -> tuple[Volume, int]:
    """The part of one frame that is checked, and the index of its first slice in the scan.

    ``max_scored`` None: as many as :data:`KEPT_VOXELS` allows (at least one)."""
    if not 0 <= frame < volume.n_frames:
        raise LatentSRError(f"frame {frame} does not exist (the scan has {volume.n_frames})")
    axis = slice_axis(volume)
    n = volume.array.shape[1 + axis]
    if n < 3:
        raise LatentSRError(f"the scan has {n} slices: at least 3 are needed to hide one and re-create it")
    if max_scored is None:
        area = np.prod([min(volume.array.shape[1 + a], crop or 10**9) for a in range(3) if a != axis])
        max_scored = max(1, int(KEPT_VOXELS // area) - 1)
    size = min(n if n % 2 else n - 1, 2 * max_scored + 1)
    start = (n - size) // 2
    start -= start % 2
    index: list = [slice(frame, frame + 1), slice(None), slice(None), slice(None)]
    index[1 + axis] = slice(start, start + size)
    for a in range(3):
        extent = volume.array.shape[1 + a]
        if a != axis and crop is not None and extent > crop:
            low = (extent - crop) // 2
            index[1 + a] = slice(low, low + crop)
    # The origin moves to the first kept voxel, so the part keeps its place in the world.
    first = np.array([index[3].start or 0, index[2].start or 0, index[1].start or 0], dtype=float)
    origin = np.asarray(volume.origin) + volume.direction @ (np.asarray(volume.spacing) * first)
    part = dataclasses.replace(volume.with_array(np.ascontiguousarray(volume.array[tuple(index)])),
                               origin=tuple(origin), is_4d=False)
    return part, start


def _score(case: "evaluate.ProtocolCase", recreated: np.ndarray) -> list[tuple[float, float]]:
    """(SSIM, PSNR) per scored slice, as :meth:`evaluate.ProtocolCase.score` computes them, without
    VIF: the check does not report it, it is the slowest metric, and it needs 41 x 41 pixels."""
    recreated = np.moveaxis(recreated[0], case.axis, 0)
    cap = getattr(evaluate, "PSNR_CAP", math.inf)
    return [(ssim(centre_crop(case.truth[j], evaluate.CROP), centre_crop(recreated[j], evaluate.CROP)),
             min(psnr(centre_crop(case.truth[j], evaluate.CROP), centre_crop(recreated[j], evaluate.CROP)), cap))
            for j in case.scored]


def check_scan(volume: Volume, methods: Sequence[str] | None = None, max_seconds: float = 30.0, *,
               frame: int = 0, max_scored: int | None = None, crop: int | None = CROP, device: str = "auto",
               weights: dict[str, str] | None = None, progress: Callable[[float], None] | None = None,
               cancel: Callable[[], bool] | None = None) -> CheckResult:
    """Run the drop-slice protocol on (part of) one frame of ``volume`` with each method.

    Args:
        methods: names from :data:`LatentSRLib.pipeline.METHODS` (default :func:`default_methods`,
            leaving out those not available here, e.g. without their weights).
        max_seconds: a method still running then is stopped ("stopped at the time limit").
        frame: which frame of a cine; max_scored: at most this many hidden slices are scored (None:
            as :data:`KEPT_VOXELS` allows); crop: in-plane size kept around the centre (None: all).
        device, weights: as for :func:`LatentSRLib.evaluate.evaluate`.
        progress: fraction done in [0, 1]; cancel: polled, True stops with :class:`Cancelled`.

    Raises:
        LatentSRError: fewer than 3 slices, no such frame, unknown or unavailable methods given.
    """
    if not float(max_seconds) >= 0:  # NaN compares false with every deadline: it never stopped anything
        raise LatentSRError(f"the time limit must be a number of seconds, 0 or more, got {max_seconds}")
    started = time.monotonic()
    deadline = started + max_seconds
    to_run, rows = _available(methods, weights)
    part, start = slab(volume, frame, max_scored, crop)
    case = evaluate.protocol_case("scan", part)
    user_cancel = cancel or (lambda: False)
    for number, method in enumerate(to_run):
        if user_cancel():
            raise Cancelled("cancelled by the user")
        label = pipeline.LABELS.get(method, method)
        began = time.monotonic()
        if began >= deadline:
            rows.append(CheckRow(method, label, math.nan, math.nan, 0, 0.0, "not started: time limit"))
            continue
        run = Run(device=device, weights=evaluate.weights_for(method, weights),
                  cancel=lambda: user_cancel() or time.monotonic() > deadline,
                  progress=None if progress is None else
                  (lambda f, number=number: progress((number + f) / len(to_run))))
        try:
            result = pipeline.super_resolve(case.kept_volume, method, factor=case.keep_every, axis=case.axis, run=run)
        except Cancelled:
            if user_cancel():
                raise
            rows.append(CheckRow(method, label, math.nan, math.nan, 0, time.monotonic() - began,
                                 "stopped at the time limit"))
            continue
        scored = _score(case, result.array)
        rows.append(CheckRow(method, label, float(np.nanmean([s for s, _ in scored])),
                             float(np.nanmean([p for _, p in scored])), len(scored), time.monotonic() - began))
    rows.sort(key=lambda r: (r.n == 0, -np.nan_to_num(r.ssim, nan=-9), -np.nan_to_num(r.psnr, nan=-999)))
    winner = rows[0].method if rows and rows[0].n else None
    if progress is not None:
        progress(1.0)
    return CheckResult(tuple(rows), winner, frame, tuple(start + j for j in case.scored), time.monotonic() - started)


def to_dict(result: CheckResult) -> dict:
    """A JSON-ready form (NaN as None), read back by :func:`from_dict`."""
    data = dataclasses.asdict(result)
    for row in data["rows"]:
        for key in ("ssim", "psnr"):
            row[key] = None if math.isnan(row[key]) else row[key]
    return data


def from_dict(data: dict) -> CheckResult:
    rows = tuple(CheckRow(**{**row, "ssim": math.nan if row["ssim"] is None else row["ssim"],
                             "psnr": math.nan if row["psnr"] is None else row["psnr"]}) for row in data["rows"])
    return CheckResult(rows, data["winner"], data["frame"], tuple(data["slices"]), data["seconds"])
