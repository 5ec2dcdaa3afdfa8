"""Check on this scan, for a node: the frame on screen, run in the calling thread or the background."""

from __future__ import annotations

from typing import TYPE_CHECKING, Callable, Sequence

import slicer

from .. import background
from .jobs import PanelJob, python_executable
from .nodes import volume_from_node
from .roi import crop_to_roi
from .sequences import browsers_of, sequence_of_proxy

if TYPE_CHECKING:  # the check scores with scikit-image: imported when a check runs, after it is installed
    from ..check import CheckResult


def _input(node, roi):
    """(Volume, frame): a proxy is followed to its sequence, whose shown frame is the one checked."""
    sequence = node if node.IsA("vtkMRMLSequenceNode") else sequence_of_proxy(node)
    frame = 0
    if sequence is not None:
        browsers = browsers_of(sequence)
        frame = max(0, browsers[0].GetSelectedItemNumber()) if browsers else 0
        node = sequence
    volume = volume_from_node(node)
    if roi is not None:
        volume = crop_to_roi(volume, node, roi)
    return volume, min(frame, volume.n_frames - 1)


def check_node(node: "slicer.vtkMRMLNode", methods: Sequence[str] | None = None, max_seconds: float = 30.0,
               roi: "slicer.vtkMRMLMarkupsROINode | None" = None, device: str = "auto",
               progress: Callable[[float], None] | None = None,
               cancel: Callable[[], bool] | None = None) -> CheckResult:
    """:func:`LatentSRLib.check.check_scan` on a volume or cine node (the frame its browser shows)."""
    from ..check import check_scan

    volume, frame = _input(node, roi)
    return check_scan(volume, methods, max_seconds, frame=frame, device=device, progress=progress, cancel=cancel)


class CheckJob(PanelJob):
    """:func:`check_node` running in a background process; the same interface as :class:`.jobs.NodeJob`."""

    def __init__(self, job: background.Job):
        super().__init__(job)
        self.result: "CheckResult | None" = None

    def finish(self) -> "CheckResult":
        """Wait for the check; raises Cancelled or LatentSRError (one readable line)."""
        self.result = self.job.result()
        return self.result

    def summary(self) -> str:
        return self.result.table().splitlines()[-1] if self.result is not None else ""


def start_check_job(node: "slicer.vtkMRMLNode", methods: Sequence[str] | None = None, max_seconds: float = 30.0,
                    roi: "slicer.vtkMRMLMarkupsROINode | None" = None, device: str = "auto",
                    python: str | None = None) -> CheckJob:
    """:func:`check_node` in a background process (the panel's button); ``finish()`` gives the CheckResult."""
    volume, frame = _input(node, roi)
    return CheckJob(background.start_check(volume, methods, max_seconds, frame=frame, device=device,
                                           python=python or python_executable()))
