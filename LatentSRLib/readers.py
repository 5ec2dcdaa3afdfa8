"""Reading image files whole and only what was given: the one gate every file format passes.

SimpleITK reads every format we support, but it is lenient where a silent error costs a wrong result:
its NIfTI reader zero-fills a truncated file and turns NaN into 0, its NIfTI and NRRD readers replace
a zero, NaN or missing voxel spacing by 1 mm (which then picks the wrong slice axis), and its NRRD
and MetaImage readers follow a header's detached data file wherever it points. So:

- NIfTI voxels, single files (.nii, .nii.gz) and pairs (.hdr + .img) alike, are read with nibabel,
  which checks that the file holds every voxel its header promises and keeps NaN/Inf; the geometry
  (origin, direction, spacing, pixel type) still comes from SimpleITK's header reader, so it is
  exactly the one ITK and 3D Slicer use.
- NIfTI ``pixdim`` and the NRRD / MetaImage spacing fields are checked before ITK can replace them;
  NRRD and MetaImage text headers are read whole, however long.
- A detached data file (NRRD ``data file``, MetaImage ``ElementDataFile``, a pair's ``.img``) must lie
  beside or below its header once symbolic links are resolved, unless the caller allows it.

NRRD, MetaImage and DICOM voxels are read by SimpleITK, whose readers already refuse short files.
"""

from __future__ import annotations

import math
import os
import re
from pathlib import Path

import numpy as np
import SimpleITK as sitk

from . import LatentSRError

NIFTI_SUFFIXES = (".nii", ".nii.gz", ".hdr", ".img")
#: The most of a NRRD / MetaImage text header we read: real ones are a few KB (a LIST of thousands of
#: slice files well under 1 MB); a "header" larger than this is not one.
MAX_HEADER_BYTES = 16 << 20
#: The most files a detached data file pattern (``slice%03d.raw 1 200 1``) may name.
MAX_DATA_FILES = 100_000
#: How the refusal of an outside data file tells the user the way out (the CLI's flag).
ALLOW_FLAG = "--allow-external-data"


def is_nifti(path: str | os.PathLike) -> bool:
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


def read_nifti(path: Path, allow_external_data: bool = False) -> tuple[np.ndarray, sitk.ImageFileReader]:
    """A NIfTI file's (or pair's) voxels (ITK array order and pixel type) and SimpleITK's reader of its header.

    Raises:
        LatentSRError: unreadable header, no usable pixdim, truncated or damaged voxel data, a pair's
            image file outside its header's folder.
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
        header_file = image.file_map.get("header", image.file_map["image"]).filename  # a pair's .hdr, or the file
        # The header as stored: nibabel's loaded header has a zero pixdim already "fixed" to 1.
        with nibabel.openers.ImageOpener(header_file) as stream:
            header = type(image.header).from_fileobj(stream, check=False)
        dimensions = int(header["dim"][0])
        pixdim = [float(v) for v in header["pixdim"][1:1 + min(dimensions, 3)]]
    except Exception as error:  # nibabel raises many types for a damaged header; all mean the same
        raise LatentSRError(f"cannot read {path}: {_one_line(error)}") from None
    _spacing_problem(path, pixdim, "pixdim")
    data_file = image.file_map["image"].filename
    if data_file != header_file:  # a pair: the .img is beside the .hdr by name, but may be a link out
        check_data_files(Path(header_file), [Path(data_file).name], allow_external_data)
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


def check_header(path: Path, allow_external_data: bool = False) -> None:
    """For NRRD (.nrrd, .nhdr) and MetaImage (.mha, .mhd) files: refuse NaN, zero or 'none' spacing,
    and detached data files outside the header's folder (unless ``allow_external_data``).

    The whole text header is parsed (hand-written: no well-kept library reads both headers without
    also reading the data, and SimpleITK hides these values behind its 1 mm default).
    """
    name = str(path).lower()
    if name.endswith((".nrrd", ".nhdr")):
        fields, data_files = _nrrd_header(path)
        kinds = fields.get("kinds", "").split()
        spatial = [i for i, kind in enumerate(kinds) if kind.lower() in ("domain", "space")] if kinds else None
        values = None
        if "space directions" in fields:
            vectors = re.findall(r"\(([^)]*)\)|(none)", fields["space directions"])
            values = [None if none else _norm(vector) for vector, none in vectors]
            field = "space directions"
        elif "spacings" in fields:
            values = [_number(v) for v in fields["spacings"].split()]
            field = "spacings"
        if values is not None:  # else no spacing recorded at all: the format's own default
            if spatial is not None:
                values = [values[i] for i in spatial if i < len(values)]
            _spacing_problem(path, values[:3], field)
    elif name.endswith((".mha", ".mhd")):
        fields, data_files = _meta_header(path)
        for key in ("ElementSpacing", "ElementSize"):
            if key.lower() in fields:
                _spacing_problem(path, [_number(v) for v in fields[key.lower()].split()][:3], key)
                break
    else:
        return
    check_data_files(path, data_files, allow_external_data)


def data_files(header: str | os.PathLike) -> list[Path]:
    """The detached data files a NRRD (.nhdr, .nrrd) or MetaImage (.mhd, .mha) header names, as paths
    beside the header (none for other files and for attached data).

    Raises:
        LatentSRError: a header without an end in its first 16 MB, or a pattern naming too many files.
        OSError: the header cannot be read.
    """
    header = Path(header)
    name = header.name.lower()
    if name.endswith((".nrrd", ".nhdr")):
        names = _nrrd_header(header)[1]
    elif name.endswith((".mha", ".mhd")):
        names = _meta_header(header)[1]
    else:
        return []
    return [header.parent / name for name in names]


def check_data_files(header: Path, names: list[str], allow_external_data: bool = False) -> None:
    """Refuse data files a header names that are not beside or below it (absolute paths elsewhere,
    ``../``, or a symbolic link pointing out): a crafted header must not make us read, and copy
    into an output, a file the user never gave."""
    if allow_external_data:
        return
    folder = os.path.realpath(header.parent)
    for name in names:
        real = os.path.realpath(os.path.join(header.parent, name))  # an absolute name stays itself
        try:
            inside = os.path.commonpath([real, folder]) == folder
        except ValueError:  # another drive (Windows)
            inside = False
        if not inside:
            raise LatentSRError(f"{header} reads its voxels from {name}, outside the header's folder "
                                f"(at {real}): refusing to read a file that was not given ({ALLOW_FLAG} "
                                "reads it anyway)")


def _read_header_bytes(path: Path, end: "re.Pattern[bytes]") -> bytes:
    """The text header: everything up to ``end`` (inclusive) or the end of the file, read in blocks,
    at most :data:`MAX_HEADER_BYTES`."""
    with open(path, "rb") as handle:
        text = b""
        while True:
            block = handle.read(1 << 16)
            start = max(0, len(text) - 256)  # the end marker may straddle two blocks
            text += block
            found = end.search(text, start)
            if found:
                return text[:found.end()]
            if not block:
                return text  # no end marker: ITK will say what is wrong with the file
            if len(text) > MAX_HEADER_BYTES:
                raise LatentSRError(f"{path}: no end of the header in its first {MAX_HEADER_BYTES >> 20} MB")


def _nrrd_header(path: Path) -> tuple[dict[str, str], list[str]]:
    """NRRD header fields (keys in lower case) and the data files it names."""
    head = _read_header_bytes(path, re.compile(rb"\r?\n\r?\n"))
    fields, data_files, listing = {}, [], False
    for line in head.decode("latin-1").splitlines()[1:]:
        if not line.strip():  # the end of the header, as for ITK's reader (teem)
            break
        if listing:  # after "data file: LIST" every line up to the end of the header names a data file
            data_files.append(line.strip())
            continue
        if ":=" in line or line.startswith("#") or ":" not in line:
            continue
        key, value = line.split(":", 1)
        key, value = key.strip().lower(), value.strip()
        fields[key] = value
        if key in ("data file", "datafile"):
            listing = value.split()[:1] == ["LIST"]
            data_files = [] if listing else _data_file_names(path, value)
    return fields, data_files


def _meta_header(path: Path) -> tuple[dict[str, str], list[str]]:
    """MetaImage header fields (keys in lower case) and the data files its ElementDataFile names."""
    end = re.compile(rb"(?im)^[ \t]*ElementDataFile[ \t]*=[^\n]*\n")
    head = _read_header_bytes(path, end)
    lines = head.decode("latin-1").splitlines()
    fields: dict[str, str] = {}
    for line in lines:
        key, _, value = line.partition("=")
        key, value = key.strip().lower(), value.strip()
        fields[key] = value
        if key == "elementdatafile":
            if value.upper() == "LOCAL":
                return fields, []
            if value.split()[:1] == ["LIST"]:  # the file names follow, one a line
                return fields, [name.strip() for name in _rest_of_file(path, len(head)) if name.strip()]
            return fields, _data_file_names(path, value)
    return fields, []


def _rest_of_file(path: Path, offset: int) -> list[str]:
    with open(path, "rb") as handle:
        handle.seek(offset)
        return handle.read(MAX_HEADER_BYTES).decode("latin-1").splitlines()


def _data_file_names(path: Path, value: str) -> list[str]:
    """The file names of a data file field: one name, or a pattern ``format min max step [dim]``."""
    parts = value.split()
    if len(parts) >= 4 and "%" in parts[0] and all(_number(p) is not None for p in parts[1:4]):
        first, last, step = (int(float(p)) for p in parts[1:4])
        if step == 0 or (last - first) // step + 1 > MAX_DATA_FILES:
            raise LatentSRError(f"{path}: its data file pattern '{value}' names no or too many files")
        try:
            return [parts[0] % i for i in range(first, last + (1 if step > 0 else -1), step)]
        except (TypeError, ValueError):
            raise LatentSRError(f"{path}: cannot read its data file pattern '{value}'") from None
    return [value]


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
