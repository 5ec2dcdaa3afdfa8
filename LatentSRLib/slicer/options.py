"""What the panel offers and shows before running: methods, models, devices, the output's size."""

from __future__ import annotations

import dataclasses
import importlib.util

import slicer

from .. import pipeline
from ..pipeline import choose_factor, output_geometry
from ..volume import slice_axis
from .nodes import _geometry_volume
from .roi import crop_to_roi

#: The value of the Model selector's entry that asks the user for a weights file.
OTHER_FILE = "<other file>"
#: How the number of new slices is chosen: (value, label).
SIZE_MODES = (("isotropic", "Near-isotropic voxels"), ("factor", "Upsampling factor"),
              ("spacing", "Target slice spacing"))


@dataclasses.dataclass(frozen=True)
class OutputDescription:
    """What super-resolving an input will produce (for the panel's resolution label)."""

    factor: int
    axis: int                              # slice axis as an index into (Z, Y, X)
    spacing_in: tuple[float, float, float]  # (x, y, z) mm
    spacing_out: tuple[float, float, float]
    slices_in: int
    slices_out: int
    frames: int

    def __str__(self) -> str:
        sizes = " x ".join(f"{s:.2f}" for s in self.spacing_out)
        text = (f"x{self.factor}: {self.slices_in} -> {self.slices_out} slices, "
                f"{self.spacing_in[2 - self.axis]:.2f} -> {self.spacing_out[2 - self.axis]:.2f} mm apart "
                f"(voxels {sizes} mm)")
        return text + (f", {self.frames} frames" if self.frames > 1 else "")


def describe_output(node: "slicer.vtkMRMLNode", factor: int | None = None, spacing: float | None = None,
                    roi: "slicer.vtkMRMLMarkupsROINode | None" = None, axis: int | None = None) -> OutputDescription:
    """The factor, spacing and slice count an input would get, without processing (or copying) it."""
    volume = _geometry_volume(node)
    if roi is not None:
        volume = crop_to_roi(volume, node, roi)
    axis = slice_axis(volume) if axis is None else axis
    factor = choose_factor(volume, factor, spacing, axis)
    slices = volume.array.shape[1 + axis]
    return OutputDescription(factor, axis, volume.spacing, output_geometry(volume, factor, axis), slices,
                             (slices - 1) * factor + 1, volume.n_frames)


#: Lists the GPUs torch sees, as JSON [[value, label], ...]; run in a fresh process by :class:`DeviceProbe`.
_PROBE = """
import json, torch
found = [[f"cuda:{i}", f"GPU {i}: {torch.cuda.get_device_name(i)}"]
         for i in range(torch.cuda.device_count() if torch.cuda.is_available() else 0)]
if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
    found.append(["mps", "GPU: Apple MPS"])
print(json.dumps(found))
"""


def devices(gpus: "list[tuple[str, str]] | None" = None) -> list[tuple[str, str]]:
    """Compute devices to offer as (value, label): "auto", "cpu", and ``gpus`` (a :class:`DeviceProbe`'s)."""
    found = [("cpu", "CPU"), *(gpus or [])]
    best = found[1][1] if len(found) > 1 else "CPU"
    return [("auto", f"Automatic ({best})"), *found]


class DeviceProbe:
    """The GPUs torch sees, asked in a separate process, so torch is never imported into Slicer by
    opening the panel (it costs seconds and memory), and a GPU or a torch installed meanwhile shows
    up the next time the panel asks, without restarting Slicer (a torch already imported keeps the
    CUDA state it started with). :meth:`poll` from a timer; ``None`` while it runs."""

    def __init__(self, python: "str | None" = None, timeout: float = 60.0) -> None:
        import subprocess
        import time

        self.gpus: "list[tuple[str, str]] | None" = None
        self._process = None
        self._deadline = time.monotonic() + timeout
        if importlib.util.find_spec("torch") is None:  # finds the package without importing it
            self.gpus = []
            return
        from ..processes import popen_options
        from .jobs import python_executable
        self._process = subprocess.Popen([python or python_executable(), "-c", _PROBE], stdout=subprocess.PIPE,
                                         stderr=subprocess.DEVNULL, text=True, **popen_options())  # no console window

    def close(self) -> None:
        """Stop the probe if it still runs (the panel is closing)."""
        if self._process is not None and self._process.poll() is None:
            self._process.kill()
            self._process.communicate()

    def poll(self) -> "list[tuple[str, str]] | None":
        """The GPUs found once the probe has ended (none if it failed or timed out), else None."""
        import json
        import time

        if self.gpus is not None:
            return self.gpus
        if self._process.poll() is None:
            if time.monotonic() < self._deadline:
                return None
            self._process.kill()
        output = self._process.communicate()[0] if self._process.returncode == 0 else ""
        try:
            self.gpus = [(str(value), str(label)) for value, label in json.loads(output or "[]")]
        except (ValueError, TypeError):
            self.gpus = []
        return self.gpus


def methods() -> list[tuple[str, str]]:
    """Every method as (name, label), read from :mod:`LatentSRLib.pipeline` at run time, so a
    method added there appears in the panel without touching it."""
    labels = getattr(pipeline, "LABELS", {})
    return [(name, labels.get(name, name)) for name in pipeline.METHODS]


@dataclasses.dataclass(frozen=True)
class ModelChoice:
    """An entry of the Model selector: its value (a bundled name, or :data:`OTHER_FILE`), label
    and one-line description (from the model's card, via the manifest)."""

    value: str
    label: str
    description: str


def _manifest() -> dict:
    """The bundled models' manifest (the registry reads it without importing torch)."""
    from ..models import registry
    return registry.manifest()


def model_choices(method: str) -> list[ModelChoice]:
    """The Model selector's entries for ``method``: its bundled weights (the default first), then
    "Other file..."; empty for methods without weights (conventional interpolation)."""
    kind = getattr(pipeline, "WEIGHTS_KIND", {}).get(method)
    if kind is None:
        return []
    entries = [(name, entry) for name, entry in _manifest().items() if entry.get("kind") == kind]
    entries.sort(key=lambda item: not item[1].get("default", False))
    choices = [ModelChoice(name, name + (" (default)" if entry.get("default") else ""),
                           str(entry.get("description", "")).split(". ")[0])
               for name, entry in entries]
    return choices + [ModelChoice(OTHER_FILE, "Other file...", "a weights file you trained or adapted")]


@dataclasses.dataclass(frozen=True)
class ModelMenu:
    """The Model selector for a method and the current choice: entries, the index to select, and
    the description to show under it."""

    choices: list[ModelChoice]
    current: int
    description: str


def model_menu(method: str, model: str = "") -> ModelMenu:
    """The Model selector's state: ``model`` is a bundled name, a weights file, or "" (the default).
    A file not bundled gets its own entry (its file name) before "Other file..."."""
    import os
    choices = model_choices(method)
    values = [choice.value for choice in choices]
    if model and model not in values and choices:
        choices.insert(len(choices) - 1, ModelChoice(model, os.path.basename(model), f"weights file {model}"))
        values.insert(len(values) - 1, model)
    current = values.index(model) if model in values else 0
    return ModelMenu(choices, current, choices[current].description if choices else "")
