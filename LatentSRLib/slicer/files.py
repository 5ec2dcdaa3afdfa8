"""Files <-> the scene with Slicer's own readers, and folders of files processed one by one."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Sequence

import slicer

from .. import LatentSRError
from ..volume import find_images, volume_name, write
from .batch import CancelCallback, ProgressCallback, super_resolve_node
from .nodes import _remove_nodes, volume_from_node
from .outputs import ATTRIBUTE_FACTOR, remove_output
from .sequences import browsers_of, set_primary_sequence


def _dimension(path: Path) -> int:
    import SimpleITK as sitk
    reader = sitk.ImageFileReader()
    reader.SetFileName(str(path))
    try:
        reader.ReadImageInformation()
    except RuntimeError:
        raise LatentSRError(f"cannot read {path}") from None
    return reader.GetDimension()


def load_file(path: str | os.PathLike, scene: "slicer.vtkMRMLScene | None" = None,
              name: str | None = None) -> "slicer.vtkMRMLNode":
    """Load an image file into the scene with Slicer's readers.

    A 3D file becomes a scalar volume node; a 4D file (cine) a sequence node with a browser, as
    Slicer's "Add data" does for a volume sequence.
    """
    scene = scene or slicer.mrmlScene
    path = Path(path)
    if not path.is_file():
        raise LatentSRError(f"no such file: {path} (DICOM folders: load them with the DICOM module)")
    name = name or volume_name(path)
    if _dimension(path) == 4:
        node = scene.AddNewNodeByClass("vtkMRMLSequenceNode", name)
        storage = scene.AddNewNodeByClass("vtkMRMLVolumeSequenceStorageNode")
    else:
        node = scene.AddNewNodeByClass("vtkMRMLScalarVolumeNode", name)
        storage = scene.AddNewNodeByClass("vtkMRMLVolumeArchetypeStorageNode")
    storage.SetFileName(str(path))
    node.SetAndObserveStorageNodeID(storage.GetID())
    if not storage.ReadData(node):
        _remove_nodes(scene, [node])
        raise LatentSRError(f"Slicer cannot read {path}")
    if node.IsA("vtkMRMLSequenceNode"):
        browser = scene.AddNewNodeByClass("vtkMRMLSequenceBrowserNode", f"{name} browser")
        set_primary_sequence(browser, node)
    else:
        node.CreateDefaultDisplayNodes()
    return node


def save_node(node: "slicer.vtkMRMLNode", path: str | os.PathLike, overwrite: bool = True,
              protect: Sequence[str | os.PathLike] = (), tag: str | None = None) -> Path:
    """Write a volume or cine node to a file (3D, or 4D with time last), as the command line writes;
    ``tag`` marks it as a LatentSR output (e.g. "flow x2"; see :func:`LatentSRLib.volume.write`), so
    that a later folder run does not take it for an input."""
    return write(volume_from_node(node), path, overwrite=overwrite, protect=protect, tag=tag)


def process_folder(paths: Sequence[str | os.PathLike] | str | os.PathLike, out_dir: str | os.PathLike,
                   method: str, factor: int | None = None, spacing: float | None = None, device: str = "auto",
                   weights: str | None = None, suffix: str = ".nii.gz", overwrite: bool = False,
                   keep: bool = False, scene: "slicer.vtkMRMLScene | None" = None,
                   progress: ProgressCallback | None = None,
                   cancel: CancelCallback | None = None) -> list[Path]:
    """Load each image file (folders are searched; masks skipped), super-resolve it, save the result.

    Output files are ``<out_dir>/<name>_<method>_x<factor><suffix>``. Inputs and outputs are removed
    from the scene after each file unless ``keep``. Returns the written paths.
    """
    scene = scene or slicer.mrmlScene
    if isinstance(paths, (str, os.PathLike)):
        paths = [paths]
    files = [f for f in find_images(paths) if f.is_file()]
    if not files:
        raise LatentSRError(f"no image files in {', '.join(map(str, paths))}")
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    written: list[Path] = []
    for number, path in enumerate(files):
        def part(fraction: float, number: int = number) -> None:
            if progress is not None:
                progress((number + fraction) / len(files))
        node = load_file(path, scene)
        output = None
        try:
            output = super_resolve_node(node, method, factor, spacing, device=device, weights=weights,
                                        progress=part, cancel=cancel)
            chosen = int(output.GetAttribute(ATTRIBUTE_FACTOR))
            target = out_dir / f"{volume_name(path)}_{method}_x{chosen}{suffix}"
            written.append(save_node(output, target, overwrite=overwrite, protect=files,
                                     tag=f"{method} x{chosen}"))
        finally:
            if not keep:
                if output is not None:
                    remove_output(output)
                _remove_loaded(node)
    return written


def _remove_loaded(node: "slicer.vtkMRMLNode") -> None:
    scene = node.GetScene()
    if scene is None:
        return
    extra = []
    if node.IsA("vtkMRMLSequenceNode"):
        for browser in browsers_of(node):
            proxy = browser.GetProxyNode(node)
            extra.extend([browser] + ([proxy] if proxy is not None else []))
    _remove_nodes(scene, [*extra, node])
