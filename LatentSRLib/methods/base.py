"""What every method shares: the :class:`Run` options it receives and the :class:`Method` contract.

Every method, conventional or learned, implements

    upsample(array, factor, spacing_zyx, run) -> array with (Z - 1) * factor + 1 slices

where ``array`` is (T, Z, Y, X) float32 with Z the slice axis (percentile-normalised to [0, 1] when
``method.normalised``, else in the input's own units) and ``run`` a :class:`Run` carrying device,
weights, progress and cancel. A method that can tell where it is trustworthy stores a (T, Z', Y, X)
array in [0, 1] in ``run.confidence`` (1: its own estimate, 0: it fell back to linear).
"""

from __future__ import annotations

import dataclasses
import warnings
from typing import Callable

import numpy as np

from .. import LatentSRError


class Cancelled(LatentSRError):
    """The user cancelled; nothing was produced."""


@dataclasses.dataclass
class Run:
    """Options and callbacks of one super-resolution run.

    Attributes:
        device: "auto", "cpu", "cuda", "cuda:N" or "mps" (learned methods only).
        weights: a bundled model name or a weights file (learned methods; None: the default).
        progress: called with the fraction done in [0, 1].
        cancel: polled between units of work; when it returns True, :class:`Cancelled` is raised.
        keep_original: keep acquired slices bit-for-bit (else learned methods may replace them with
            their reconstruction).
        batch_slices: most slices a learned method feeds the network at once (bounds memory).
        mode: autoencoder inference mode, "latent" or "corrected" (None: what the weights record).
        correction_sigma_mm: Gaussian smoothing (sigma, mm, in-plane) of a learned method's
            correction to linear interpolation (ae in corrected mode, contrastive); 0 none (None:
            what the weights record, else 0).
        correction_gain: factor applied to that (smoothed) correction; 1 keeps it, 0 gives linear
            interpolation (None: what the weights record, else 1).
        clip: clip the result to the input's value range (None: on for learned methods, whose
            residuals can overshoot, e.g. below 0 in an unsigned image; off for the conventional
            ones, which reproduce SimpleITK).
        resampling_check: let ``flow`` and ``motion`` fall back to linear interpolation on a stack the
            bundled cross-fade detector (trained on cardiac cines) calls re-sampled along its slice
            axis (Resources/Models/crossfade.md). Switch it off for anatomy it does not know (it
            calls the Colin27 brain's acquired slices cross-fades) or for stacks known to be acquired.
        confidence: set by the run, not by the caller: None, or where the method trusts itself,
            (T, Z', Y, X) in [0, 1] on the output grid (the pipeline turns it into a Volume).
        notes: set by the run: what the user should know about the result, one line each, without
            repeats (e.g. :data:`LatentSRLib.synthesize.gates.RESAMPLED_NOTE`); the command line prints
            them, the Slicer panel's status shows them.
    """

    device: str = "auto"
    weights: str | None = None
    progress: Callable[[float], None] | None = None
    cancel: Callable[[], bool] | None = None
    keep_original: bool = True
    batch_slices: int = 16
    mode: str | None = None
    correction_sigma_mm: float | None = None
    correction_gain: float | None = None
    clip: bool | None = None
    resampling_check: bool = True
    confidence: object = None
    notes: list = dataclasses.field(default_factory=list)
    # Deprecated (one release): the autoencoder-only names of the correction options.
    ae_correction_sigma_mm: dataclasses.InitVar[float | None] = None
    ae_correction_gain: dataclasses.InitVar[float | None] = None

    def __post_init__(self, ae_correction_sigma_mm: float | None, ae_correction_gain: float | None) -> None:
        for old, new, value in (("ae_correction_sigma_mm", "correction_sigma_mm", ae_correction_sigma_mm),
                                ("ae_correction_gain", "correction_gain", ae_correction_gain)):
            if value is not None:
                warnings.warn(f"Run({old}=...) is deprecated: use {new}", DeprecationWarning, stacklevel=3)
                if getattr(self, new) is None:
                    setattr(self, new, value)

    def check(self) -> None:
        if self.cancel is not None and self.cancel():
            raise Cancelled("cancelled by the user")

    def note(self, line: str) -> None:
        """Tell the user ``line`` once, however many frames or stacks give it."""
        if line not in self.notes:
            self.notes.append(line)

    def report(self, fraction: float) -> None:
        if self.progress is not None:
            self.progress(min(max(float(fraction), 0.0), 1.0))


class Method:
    """A through-plane upsampling method: subclasses set the attributes and implement ``upsample``.

    Attributes:
        name: the command-line name (lower case).
        label: the readable name for tables, figures and Slicer node names.
        kind: "conventional" (no training) or "learned".
        weights_kind: the models-registry kind of weights it loads (None: none).
        normalised: whether it works on percentile-normalised intensities (else the input's units).
        description: one line for help texts.
        gives_confidence: whether ``upsample`` sets ``run.confidence``.
        asks_crossfade_detector: whether it falls back to linear on stacks the bundled cross-fade detector
            calls re-sampled (``run.resampling_check``), so its results depend on that file too.
        requirements: (pip requirement, importable module) pairs it needs beyond the library's own
            (installed on first use in Slicer).
    """

    name: str = ""
    label: str = ""
    kind: str = "conventional"
    weights_kind: str | None = None
    normalised: bool = False
    description: str = ""
    gives_confidence: bool = False
    asks_crossfade_detector: bool = False
    requirements: tuple[tuple[str, str], ...] = ()

    @property
    def learned(self) -> bool:
        return self.kind == "learned"

    def upsample(self, array: np.ndarray, factor: int, spacing_zyx: tuple[float, float, float],
                 run: Run) -> np.ndarray:
        """(T, Z, Y, X) float32 -> (T, (Z - 1) * factor + 1, Y, X) float32."""
        raise NotImplementedError

    def __repr__(self) -> str:
        return f"<method {self.name}: {self.label}, {self.kind}>"
