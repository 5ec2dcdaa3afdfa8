"""Reading image files whole: refuse a file that cannot be read completely or has no usable spacing.

SimpleITK reads every format we support, but it is lenient where a silent error costs a wrong result:
its NIfTI reader zero-fills a truncated file and turns NaN into 0, and its NIfTI and NRRD readers
replace a zero, NaN or missing voxel spacing by 1 mm (which then picks the wrong slice axis). So:

- NIfTI voxels are read with nibabel, which checks that the file holds every voxel its header
  promises and keeps NaN/Inf; the geometry (origin, direction, spacing, pixel type) still comes from
  SimpleITK's header reader, so it is exactly the one ITK and 3D Slicer use.
- NIfTI ``pixdim`` and the NRRD / MetaImage spacing fields are checked before ITK can replace them.

NRRD, MetaImage and DICOM voxels are read by SimpleITK, whose readers already refuse short files.
"""

from __future__ import annotations

import math
import re
from pathlib import Path

import numpy as np
import SimpleITK as sitk

from . import LatentSRError

NIFTI_SUFFIXES = (".nii", ".nii.gz")
#: How much of a NRRD / MetaImage file is searched for its text header.
HEADER_BYTES = 1 << 16


def is_nifti(path: str | Path) -> bool:
    return str(path).lower().endswith(NIFTI_SUFFIXES)


def numpy_type(pixel_id: int) -> np.dtype:
    """The numpy dtype SimpleITK uses for a (scalar) pixel ID."""
    return sitk.GetArrayViewFromImage(sitk.Image([1, 1], pixel_id)).dtype


def _spacing_problem(path: Path, values: list[float | None], field: str) -> None:
    """Raise when any spatial spacing is missing, zero, negative-zero, NaN or infinite."""
    shown = ", ".join("none" if v is None else f"{v:g}" for v in values)
    if any(v is None or not math.isfinite(v) or v == 0 for v in values):
        raise LatentSRError(f"{path} has no usable voxel spacing in its header ({field} {shown}): "
                            "refusing to guess 1 mm, which could pick the wrong slice axis")


def read_nifti(path: Path) -> tuple[np.ndarray, sitk.ImageFileReader]:
    """A NIfTI file's voxels (ITK array order and pixel type) and SimpleITK's reader of its header.

    Raises:
        LatentSRError: unreadable header, no usable pixdim, truncated or damaged voxel data.
        RuntimeError: from SimpleITK, for a file it cannot read at all (the caller words it).
    """
    try:
        import nibabel  # NIfTI only: checks the data size against the header and keeps NaN
    except ImportError:
        raise LatentSRError("reading NIfTI files needs nibabel: pip install nibabel") from None

    reader = sitk.ImageFileReader()
    reader.SetFileName(str(path))
    reader.ReadImageInformation()
    if reader.GetNumberOfComponents() != 1:
        raise LatentSRError(f"{path} has {reader.GetNumberOfComponents()} components per voxel; "
                            "a scalar (grey-level) image is needed")
    try:
        # nibabel logs header fixes to stderr; our one-line errors say what matters.
        with nibabel.imageglobals.LoggingOutputSuppressor():
            image = nibabel.load(str(path), mmap=False)  # no open map left on the file
        # The header as stored: nibabel's loaded header has a zero pixdim already "fixed" to 1.
        with nibabel.openers.ImageOpener(str(path)) as stream:
            header = type(image.header).from_fileobj(stream, check=False)
        dimensions = int(header["dim"][0])
        pixdim = [float(v) for v in header["pixdim"][1:1 + min(dimensions, 3)]]
    except Exception as error:  # nibabel raises many types for a damaged header; all mean the same
        raise LatentSRError(f"cannot read {path}: {_one_line(error)}") from None
    _spacing_problem(path, pixdim, "pixdim")
    try:
        data = np.asanyarray(image.dataobj)
    except Exception as error:  # EOFError, OSError ("Expected N bytes, got M"), zlib.error, ...
        raise LatentSRError(f"cannot read {path}: the file is truncated or damaged ({_one_line(error)})") from None
    size = reader.GetSize()
    if data.size != int(np.prod(size)):
        raise LatentSRError(f"cannot read {path}: {data.size} voxels where the header's size {size} needs "
                            f"{int(np.prod(size))}")
    # NIfTI stores x fastest, as ITK does: ITK's (.., z, y, x) numpy order is the transpose (a view).
    array = data.T.reshape(size[::-1]).astype(numpy_type(reader.GetPixelID()), copy=False)
    return array, reader


def check_header_spacing(path: Path) -> None:
    """For NRRD (.nrrd, .nhdr) and MetaImage (.mha, .mhd) files: refuse NaN, zero or 'none' spacing.

    Only the text header is parsed (hand-written: no well-kept library reads both headers without
    also reading the data, and SimpleITK hides these values behind its 1 mm default).
    """
    name = str(path).lower()
    if not name.endswith((".nrrd", ".nhdr", ".mha", ".mhd")):
        return
    with open(path, "rb") as handle:
        head = handle.read(HEADER_BYTES)
    if name.endswith((".nrrd", ".nhdr")):
        text = re.split(rb"\r?\n\r?\n", head, maxsplit=1)[0].decode("latin-1")
        fields = {}
        for line in text.splitlines()[1:]:
            if ":=" in line or line.startswith("#") or ":" not in line:
                continue
            key, value = line.split(":", 1)
            fields[key.strip().lower()] = value.strip()
        kinds = fields.get("kinds", "").split()
        spatial = [i for i, kind in enumerate(kinds) if kind.lower() in ("domain", "space")] if kinds else None
        if "space directions" in fields:
            vectors = re.findall(r"\(([^)]*)\)|(none)", fields["space directions"])
            values = [None if none else _norm(vector) for vector, none in vectors]
            field = "space directions"
        elif "spacings" in fields:
            values = [_number(v) for v in fields["spacings"].split()]
            field = "spacings"
        else:
            return  # no spacing recorded at all: the format's own default
        if spatial is not None:
            values = [values[i] for i in spatial if i < len(values)]
        _spacing_problem(path, values[:3], field)
    else:
        text = head.split(b"ElementDataFile", 1)[0].decode("latin-1")
        for line in text.splitlines():
            key, _, value = line.partition("=")
            if key.strip() in ("ElementSpacing", "ElementSize"):
                values = [_number(v) for v in value.split()][:3]
                _spacing_problem(path, values, key.strip())
                return


def _number(text: str) -> float | None:
    try:
        return float(text)
    except ValueError:
        return None


def _norm(vector: str) -> float | None:
    parts = [_number(v) for v in vector.split(",")]
    if any(p is None for p in parts):
        return None
    return math.sqrt(sum(p * p for p in parts))


def _one_line(error: BaseException) -> str:
    text = " ".join(str(error).split())
    text = re.sub(r" bytes from .*$", " bytes", text)  # nibabel: "... got M bytes from <file> - could the ..."
    return text or type(error).__name__
