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
from .sequences import browsers_of, sequence_from_volume, set_primary_sequence


def _header(path: Path) -> "sitk.ImageFileReader":
    import SimpleITK as sitk
    reader = sitk.ImageFileReader()
    reader.SetFileName(str(path))
    try:
        reader.ReadImageInformation()
    except RuntimeError:
        raise LatentSRError(f"cannot read {path}") from None
    return reader


# Where Slicer's volume sequence storage node can read a 4D file, and where not (verified against
# slicer-core 5.11.0.2 and 5.12.4.0/5.13 by Testing/test_slicer_files.py):
# - Slicer 5.4-5.8: Modules/Loadable/Sequences/MRML/vtkMRMLVolumeSequenceStorageNode.cxx,
#   ReadDataInternal reads with vtkTeemNRRDReader only ("Check if this is a NRRD file that we can
#   read", return 0 otherwise); its read types are .seq.nrrd/.seq.nhdr/.nrrd/.nhdr.
# - Slicer 5.10 (the class moved to Libs/MRML/Core/vtkMRMLVolumeSequenceStorageNode.cxx):
#   ReadDataInternal reads through vtkITKImageSequenceReader (Libs/vtkITK/vtkITKImageSequenceReader.cxx),
#   still NRRD only ("Cannot read the NRRD file") and only with a "list" or "time" kind axis ("Could
#   not find list kind axis in image file"): a 4D NRRD written by SimpleITK (all axes "domain", as
#   the command line writes them) fails too. Same in slicer-core 5.11.0.2.
# - 4D NIfTI as a volume sequence came with Slicer pull request #9399 ("Add storage of volume and
#   transform sequences in Nifti format", 2026): read types gain .nii/.nii.gz (slicer-core 5.12.4.0).
# So the storage node is used only for the extensions it lists as readable, its result is checked
# against the file's header, and anything else is read by the library (SimpleITK) frame by frame.
def slicer_reads_sequence(path: str | os.PathLike) -> bool:
    """Whether this Slicer's ``vtkMRMLVolumeSequenceStorageNode`` lists ``path``'s extension as readable."""
    storage = slicer.vtkMRMLVolumeSequenceStorageNode()
    types = storage.GetSupportedReadFileTypes()  # e.g. "Volume Sequence (.seq.nrrd)"
    name = str(path).lower()
    for i in range(types.GetNumberOfValues()):
        extension = types.GetValue(i).rsplit("(", 1)[-1].rstrip(")").strip().lower()
        if extension.startswith(".") and name.endswith(extension):
            return True
    return False


def _frames(header) -> tuple[int, tuple[int, ...]]:
    """Number of frames and the (x, y, z) size of each in a cine file, from its header: a 4D image, or
    a NRRD whose frame axis is a "list" (Slicer's .seq.nrrd), which ITK reads as voxel components."""
    size = tuple(header.GetSize())
    if header.GetDimension() == 4:
        return size[3], size[:3]
    return header.GetNumberOfComponents(), size[:3]


def _is_cine(path: Path, header) -> bool:
    return header.GetDimension() == 4 or (header.GetDimension() == 3 and header.GetNumberOfComponents() > 1
                                          and slicer_reads_sequence(path))


def _read_sequence_with_slicer(path: Path, name: str, header, scene) -> "slicer.vtkMRMLSequenceNode | None":
    """The 4D file as Slicer's storage node reads it, or None where it cannot or its result does not
    match the file's header (frame count, frame size): then the library reads it instead."""
    if not slicer_reads_sequence(path):
        return None
    node = scene.AddNewNodeByClass("vtkMRMLSequenceNode", name)
    storage = scene.AddNewNodeByClass("vtkMRMLVolumeSequenceStorageNode")
    storage.SetFileName(str(path))
    node.SetAndObserveStorageNodeID(storage.GetID())
    frames, frame_size = _frames(header)
    ok = bool(storage.ReadData(node)) and node.GetNumberOfDataNodes() == frames
    for t in range(node.GetNumberOfDataNodes() if ok else 0):
        frame = node.GetNthDataNode(t)
        image = frame.GetImageData() if frame is not None and frame.IsA("vtkMRMLScalarVolumeNode") else None
        ok = ok and image is not None and tuple(image.GetDimensions()) == frame_size
    if not ok:
        _remove_nodes(scene, [node])
        return None
    return node


def _read_sequence_with_library(path: Path, name: str, scene) -> "slicer.vtkMRMLSequenceNode":
    """The 4D file read by the library (as the command line reads it) into a sequence, one volume node
    per frame with the file's exact geometry; index values from the time origin and spacing."""
    from ..volume import from_sitk, read
    try:
        import nibabel  # noqa: F401  (the library's NIfTI reader: refuses a truncated file)
    except ImportError:
        nibabel = None
    if nibabel is None and str(path).lower().endswith((".nii", ".nii.gz")):
        # A stock Slicer has no nibabel until the first-use installer adds it: read with SimpleITK,
        # which is what Slicer's own readers (ITK) do with the file.
        import SimpleITK as sitk
        try:
            volume = from_sitk(sitk.ReadImage(str(path)), source=str(path))
        except RuntimeError:
            raise LatentSRError(f"cannot read {path}") from None
    else:
        volume = read(path)
    sequence = sequence_from_volume(volume, name, scene)
    sequence.SetIndexName("time")  # what Slicer's NIfTI sequence reader sets from the time unit
    sequence.SetIndexUnit("s")
    return sequence


def load_file(path: str | os.PathLike, scene: "slicer.vtkMRMLScene | None" = None,
              name: str | None = None) -> "slicer.vtkMRMLNode":
    """Load an image file into the scene, as Slicer's "Add data" does where it can.

    A 3D file becomes a scalar volume node (Slicer's volume reader); a 4D file (cine) a sequence node
    with a browser. Slicer's sequence reader is used where this Slicer version reads the format
    (.seq.nrrd everywhere, 4D NIfTI from Slicer 5.12 on); otherwise, e.g. a 4D NIfTI in Slicer
    5.4-5.10, the library reads it, so every supported Slicer version loads the same files.
    """
    scene = scene or slicer.mrmlScene
    path = Path(path)
    if not path.is_file():
        raise LatentSRError(f"no such file: {path} (DICOM folders: load them with the DICOM module)")
    name = name or volume_name(path)
    header = _header(path)
    if _is_cine(path, header):
        # The library reads 4D scalar files only: a list-axis NRRD Slicer cannot read raises there.
        node = _read_sequence_with_slicer(path, name, header, scene) or _read_sequence_with_library(path, name, scene)
        browser = scene.AddNewNodeByClass("vtkMRMLSequenceBrowserNode", f"{name} browser")
        set_primary_sequence(browser, node)
        return node
    node = scene.AddNewNodeByClass("vtkMRMLScalarVolumeNode", name)
    storage = scene.AddNewNodeByClass("vtkMRMLVolumeArchetypeStorageNode")
    storage.SetFileName(str(path))
    node.SetAndObserveStorageNodeID(storage.GetID())
    if not storage.ReadData(node):
        _remove_nodes(scene, [node])
        raise LatentSRError(f"Slicer cannot read {path}")
    node.CreateDefaultDisplayNodes()
    return node


def save_node(node: "slicer.vtkMRMLNode", path: str | os.PathLike, overwrite: bool = True,
              protect: Sequence[str | os.PathLike] = (), tag: str | None = None) -> Path:
    """Write a volume or cine node to a file (3D, or 4D with time last), as the command line writes
    (SimpleITK, so a cine can be saved as 4D NIfTI in every Slicer version, also where Slicer's own
    sequence storage node writes NRRD only);
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
