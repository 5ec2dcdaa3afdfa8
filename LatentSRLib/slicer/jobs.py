"""The panel's runs in a background process: start on a node, poll, cancel, make the nodes at the end.

The work itself runs in :mod:`LatentSRLib.background` (a separate Python process on temporary
files; why a process and not a thread is explained there). The panel polls :meth:`NodeJob.progress`
from a Qt timer, so Slicer stays usable; nodes are made only in :meth:`NodeJob.finish`, after every
method has succeeded, so a cancelled or failed run leaves the scene and the disk as they were.

Cancel (:meth:`PanelJob.cancel`) stops the launcher and the interpreter behind it, removes the folder, and
may be called any number of times (closing the scene, quitting Slicer); a failed run's whole log
stays at :attr:`PanelJob.log_path` for a "Show log" button, and its last lines in the error raised.
"""

from __future__ import annotations

import shutil
import sys

import slicer

from .. import LatentSRError, background
from ..pipeline import Cancelled, choose_factor
from ..volume import slice_axis
from .layout import show_comparison
from .nodes import volume_from_node
from .outputs import add_result, output_name, remove_output
from .roi import crop_to_roi
from .sequences import sequence_of_proxy


def python_executable() -> str:
    """The interpreter for background runs: Slicer's PythonSlicer inside Slicer, else this one."""
    inside_slicer = getattr(slicer, "app", None) is not None
    return (shutil.which("PythonSlicer") if inside_slicer else None) or sys.executable


class PanelJob:
    """What the panel polls: a :class:`LatentSRLib.background.Job` seen through progress, done and
    cancel; subclasses add ``finish`` (what to make of the result)."""

    def __init__(self, job: background.Job):
        self.job = job

    def progress(self) -> background.Progress:
        return self.job.progress()

    def done(self) -> bool:
        return self.job.done()

    def cancel(self) -> None:
        """Stop the run and every process it started; nothing is added to the scene and its
        temporary files are removed. Idempotent and quick (under a second), so safe on scene close."""
        self.job.cancel()

    @property
    def log_path(self):
        """The worker's whole log (a ``Path``): kept after a failure, for the panel to open; else None."""
        return self.job.log_path

    def log_tail(self, lines: int = 20) -> str:
        """The last lines of the worker's log ("" if there is none)."""
        return self.job.log_tail(lines)


class NodeJob(PanelJob):
    """A background run of several methods on one node; see :func:`start_job`."""

    def __init__(self, node, methods: list[str], factor: int, names: list[str], job: background.Job):
        super().__init__(job)
        self.node, self.methods, self.factor, self.names = node, methods, factor, names
        self.outputs: list = []

    @property
    def notes(self) -> list[str]:
        """What the user should know, e.g. a GPU that ran out of memory and the CPU that took over."""
        return list(self.job.notes) or list(self.job.progress().notes)

    def summary(self) -> str:
        """The status line after :meth:`finish`: what was made, how long it took, and any notes."""
        names = ", ".join(f'"{node.GetName()}"' for node in self.outputs)
        return "\n".join([f"Created {names} in {self.job.progress().elapsed:.1f} s.", *self.notes])

    def finish(self, show: bool = True) -> list:
        """Wait for the run, then make one output node per method (all or nothing) and show them.

        Raises:
            Cancelled: the job was cancelled, or its input left the scene (scene closed) meanwhile.
            LatentSRError: the run failed: a :class:`~LatentSRLib.background.WorkerError`, one readable
                line first, with ``log_tail`` and ``log_path`` (see :attr:`log_path`).
        """
        results = self.job.result()
        scene = self.node.GetScene()
        if scene is None:
            raise Cancelled("the input was removed from the scene")
        made: list = []
        try:
            for method, name in zip(self.methods, self.names):
                made.append(add_result(self.node, results[method], method, self.factor, name,
                                       self.job.confidences.get(method)))
            if show:
                show_comparison([self.node, *made])
        except BaseException:
            for output in reversed(made):
                remove_output(output)
            raise
        self.outputs = made
        return made


def start_job(node: "slicer.vtkMRMLNode", methods: list[str], factor: int | None = None,
              spacing: float | None = None, device: str = "auto", weights: str | None = None,
              roi: "slicer.vtkMRMLMarkupsROINode | None" = None, prefix: str | None = None,
              whole_sequence: bool = True, axis: int | None = None, python: str | None = None,
              resampling_check: bool = True) -> NodeJob:
    """The panel's Super-resolve button, in the background: returns at once with a :class:`NodeJob`.

    Arguments as :func:`.batch.super_resolve_and_compare` (``weights`` applies to the learned
    methods; ``resampling_check`` as :class:`LatentSRLib.pipeline.Run`'s); the input (cropped to ``roi``) is copied now, so later edits of the node do not reach
    the run.
    """
    if not methods:
        raise LatentSRError("choose at least one method")
    if node is None or node.GetScene() is None:
        raise LatentSRError("the input node must be in a scene")
    if whole_sequence and not node.IsA("vtkMRMLSequenceNode"):
        node = sequence_of_proxy(node) or node
    volume = volume_from_node(node)
    if roi is not None:
        volume = crop_to_roi(volume, node, roi)
    axis = slice_axis(volume) if axis is None else axis
    factor = choose_factor(volume, factor, spacing, axis)
    names = [output_name(prefix or node.GetName(), method, factor) for method in methods]
    job = background.start(volume, methods, factor, axis=axis, device=device, weights=weights,
                           resampling_check=resampling_check, python=python or python_executable())
    return NodeJob(node, list(methods), factor, names, job)
