"""What an image file is made of on disk, and a writer that proves it wrote the whole image.

:func:`write_image` is the one image writer: SimpleITK writes the file, then the file is read back
and compared, samples and geometry, with what was meant to be written. SimpleITK's NIfTI writer does
not fail on a short write (a full disk, a quota): ITK's ``nifti1_io.c`` only prints ``** ERROR: NWAD:
wrote only N of M bytes`` and the write "succeeds" with a truncated file that ITK later reads with
zeros where the data is missing. The read-back uses nibabel for NIfTI (it raises on a short file).

:func:`input_files` lists the files an input consists of (a ``.nhdr``/``.mhd`` header and the data
file it names, a ``.hdr``/``.img`` pair, a DICOM folder's files) and :func:`output_files` the files an
output will have, so an output can never replace a part of an input (``scan.nhdr -o scan.mhd``
would write its data to ``scan.raw``, the input's data file).

NIfTI holds a grid's geometry twice (qform and sform). SimpleITK reads one and writes that one twice;
:func:`input_sform` and :func:`keep_sform` carry an input's differing sform over to the output,
moved with the grid, so a tool that prefers the sform places the output where it places the input.
A sheared grid (axes not perpendicular) cannot be stored in NIfTI's qform: :func:`shear_degrees`
lets the caller refuse it before any work.
"""

from __future__ import annotations

import gzip
import io
import os
from pathlib import Path
from typing import Sequence

import numpy as np
import SimpleITK as sitk

from . import LatentSRError, readers

NIFTI = (".nii", ".nii.gz")
#: Suffixes whose data SimpleITK writes to a separate ``<name>.raw`` file.
DETACHED = (".nhdr", ".mhd")
#: Largest change a write may make to the geometry: direction cosines, relative spacing, origin (mm).
DIRECTION_TOLERANCE, SPACING_TOLERANCE, ORIGIN_TOLERANCE_MM = 1e-4, 1e-5, 1e-3
#: Largest deviation from right angles (degrees) NIfTI outputs accept: float32 headers round to ~1e-5.
SHEAR_TOLERANCE_DEGREES = 1e-3


def _suffix(path: Path) -> str:
    name = path.name.lower()
    return next((s for s in (".nii.gz", ".nii", ".nhdr", ".nrrd", ".mhd", ".mha", ".hdr", ".img")
                 if name.endswith(s)), "")


def output_files(path: str | Path) -> list[Path]:
    """The files :func:`write_image` makes for ``path``: the file itself, and for ``.nhdr`` / ``.mhd``
    the data file SimpleITK names ``<name>.raw`` beside it."""
    path = Path(path)
    suffix = _suffix(path)
    if suffix in DETACHED:
        return [path, path.with_name(path.name[: -len(suffix)] + ".raw")]
    return [path]


def input_files(path: str | Path) -> list[Path]:
    """The files an input consists of: itself, the data files its NRRD / MetaImage header names, the
    other half of an Analyze/NIfTI pair, or every file of a folder (a DICOM series)."""
    path = Path(path)
    if path.is_dir():
        return [p for p in path.rglob("*") if p.is_file()]
    suffix, files = _suffix(path), [path]
    if suffix in (".nhdr", ".nrrd", ".mhd", ".mha"):
        files += _named_data_files(path)
    elif suffix == ".hdr":
        stem = path.name[:-4]
        files += [path.with_name(stem + ".img"), path.with_name(stem + ".img.gz")]
    elif suffix == ".img":
        files.append(path.with_name(path.name[:-4] + ".hdr"))
    return files


def _named_data_files(header: Path) -> list[Path]:
    """Data files named in a header (:func:`.readers.data_files`); none where it cannot be read (the
    reader reports that file)."""
    try:
        return readers.data_files(header)
    except (OSError, LatentSRError):
        return []


def check_files(path: Path, suffix: str, protect: Sequence[str | Path], overwrite: bool,
                direction: np.ndarray | None = None) -> None:
    """Refuse an output (``suffix``: its format) that would replace a file of an input in ``protect``,
    that exists (without ``overwrite``), or that NIfTI cannot hold (a sheared ``direction``).

    Raises:
        LatentSRError: naming the file.
    """
    if direction is not None and suffix in NIFTI:
        shear = shear_degrees(direction)
        if shear > SHEAR_TOLERANCE_DEGREES:
            raise LatentSRError(f"the image's axes are {shear:.3g} degrees from perpendicular (a sheared grid), "
                                f"which NIfTI cannot hold (its voxels would move): write {path.name[:-len(suffix)]}"
                                ".nrrd or .nhdr, which keep it exactly")
    produced = output_files(path)
    for other in map(Path, protect):
        for part in input_files(other):
            for file in produced:
                if os.path.lexists(file) and part.exists() and os.path.samefile(file, part):
                    what = f"the input {file}" if part == other else f"{file}, a data file of the input {other}"
                    raise LatentSRError(f"refusing to overwrite {what}: choose another output name")
    for file in produced:
        if os.path.lexists(file) and not overwrite:
            raise LatentSRError(f"{file} exists (use --overwrite to replace it)")


def shear_degrees(direction: np.ndarray) -> float:
    """How far a direction matrix's axes are from perpendicular, in degrees (0 for a rotation)."""
    columns = np.asarray(direction, float).reshape(3, 3)
    columns = columns / np.linalg.norm(columns, axis=0)
    cosines = np.abs(columns.T @ columns)[np.triu_indices(3, 1)]
    return float(np.degrees(np.max(np.arcsin(np.clip(cosines, 0.0, 1.0)))))


def ras_affine(spacing: Sequence[float], origin: Sequence[float], direction: np.ndarray) -> np.ndarray:
    """The 4x4 voxel-to-RAS matrix of an ITK (LPS) geometry, as NIfTI stores it."""
    affine = np.eye(4)
    affine[:3, :3] = np.asarray(direction, float).reshape(3, 3) @ np.diag(spacing[:3])
    affine[:3, 3] = origin[:3]
    return np.diag([-1.0, -1.0, 1.0, 1.0]) @ affine


def _itk_geometry(path: Path) -> tuple[tuple, tuple, np.ndarray, sitk.ImageFileReader]:
    reader = sitk.ImageFileReader()
    reader.SetFileName(str(path))
    reader.ReadImageInformation()
    dim = reader.GetDimension()
    direction = np.array(reader.GetDirection()).reshape(dim, dim)[:3, :3]
    return reader.GetSpacing(), reader.GetOrigin(), direction, reader


def input_sform(path: str | Path) -> tuple[np.ndarray, int] | None:
    """For a NIfTI input whose sform places the grid elsewhere than the geometry SimpleITK reads:
    (the world-to-world matrix from that geometry to the sform, the sform code); else None."""
    path = Path(path)
    if _suffix(path) not in NIFTI or not path.is_file():
        return None
    try:
        import nibabel
        sform, code = nibabel.load(str(path)).header.get_sform(coded=True)
        spacing, origin, direction, _ = _itk_geometry(path)
    except Exception:  # noqa: BLE001 -- an unreadable header is the reader's to report
        return None
    if not code or sform is None:
        return None
    itk = ras_affine(spacing, origin, direction)
    if np.allclose(sform, itk, rtol=0, atol=ORIGIN_TOLERANCE_MM):
        return None
    return sform @ np.linalg.inv(itk), int(code)


def keep_sform(path: Path, relation: np.ndarray, code: int, image: sitk.Image) -> None:
    """Rewrite the sform of the NIfTI file SimpleITK wrote at ``path``: ``relation`` (from
    :func:`input_sform`) applied to the file's own geometry, so the sform moves with the grid."""
    import nibabel
    dim = image.GetDimension()
    direction = np.array(image.GetDirection()).reshape(dim, dim)[:3, :3]
    affine = relation @ ras_affine(image.GetSpacing(), image.GetOrigin(), direction)
    compressed = path.name.lower().endswith(".gz")
    data = gzip.decompress(path.read_bytes()) if compressed else path.read_bytes()
    header = nibabel.Nifti1Header.from_fileobj(io.BytesIO(data[:348]), check=False)
    header.set_sform(affine, code)
    data = header.binaryblock + data[348:]
    if compressed:
        # No time or name in the gzip header, as ITK writes it: the same image gives the same bytes.
        with open(path, "wb") as raw, gzip.GzipFile("", "wb", 6, raw, mtime=0) as stream:
            stream.write(data)
    else:
        path.write_bytes(data)


def import_reader(suffix: str) -> None:
    """Import nibabel (if there) for the read-back of a NIfTI output, before the write starts."""
    if suffix in NIFTI:
        try:
            import nibabel  # noqa: F401
        except ImportError:
            pass


def _nifti_samples(path: Path, nbytes: int) -> np.ndarray:
    """A NIfTI file's samples in ITK's array order, read so that a short file is an error: with
    nibabel; without it (a stock Slicer), gzip (which checks the stream's length and CRC) and the
    file's size, then SimpleITK."""
    try:
        import nibabel
    except ImportError:
        raw = gzip.open(path).read() if path.name.lower().endswith(".gz") else path.read_bytes()
        if len(raw) < 352 + nbytes:  # ITK writes the samples after the 348-byte header and 4 bytes
            raise RuntimeError(f"{len(raw)} bytes, {352 + nbytes} expected") from None
        return sitk.GetArrayFromImage(sitk.ReadImage(str(path)))
    return np.asarray(nibabel.load(str(path), mmap=False).dataobj.get_unscaled()).T


def write_image(image: sitk.Image, path: Path, compress: bool, sform: tuple[np.ndarray, int] | None = None) -> None:
    """Write ``image`` to ``path`` with SimpleITK (keeping an input's ``sform``, NIfTI only), then read
    the file back and compare every sample and the geometry.

    Raises:
        RuntimeError: the writer failed, or the file does not hold what was written (a short write).
    """
    sitk.WriteImage(image, str(path), useCompression=compress)
    nifti = _suffix(path) in NIFTI
    if sform is not None and nifti:
        keep_sform(path, sform[0], sform[1], image)
    expected = sitk.GetArrayViewFromImage(image)
    try:
        samples = _nifti_samples(path, expected.nbytes) if nifti else sitk.GetArrayFromImage(sitk.ReadImage(str(path)))
        spacing, origin, direction, _ = _itk_geometry(path)
    except Exception as error:  # noqa: BLE001 -- any failure to read it back means it is not whole
        text = str(error).strip().splitlines()
        raise RuntimeError(f"the written file does not read back whole (disk full?): "
                           f"{text[0] if text else type(error).__name__}") from None
    def squeezed(shape: tuple) -> tuple:  # a 4D image of one frame may come back 3D
        return tuple(shape[next((i for i, n in enumerate(shape) if n != 1), len(shape)):])
    if squeezed(samples.shape) != squeezed(expected.shape) or not np.array_equal(
            samples.reshape(expected.shape), expected, equal_nan=bool(np.issubdtype(expected.dtype, np.floating))):
        raise RuntimeError("the written file does not hold the samples that were written (disk full?)")
    dim = image.GetDimension()
    want_direction = np.array(image.GetDirection()).reshape(dim, dim)[:3, :3]
    n = min(len(spacing), dim)
    if not (np.allclose(spacing[:n], image.GetSpacing()[:n], rtol=SPACING_TOLERANCE, atol=0)
            and np.allclose(origin[:n], image.GetOrigin()[:n], rtol=0, atol=ORIGIN_TOLERANCE_MM)
            and np.allclose(direction, want_direction, rtol=0, atol=DIRECTION_TOLERANCE)):
        raise RuntimeError(f"the written file's geometry differs from the image's (spacing {spacing}, "
                           f"origin {origin}): the format cannot hold it")


#: The header mark of a LatentSR output (NIfTI ``descrip``, or a NRRD / MetaImage key of this name).
OUTPUT_TAG = "LatentSR"


def is_output_file(path: str | os.PathLike) -> bool:
    """True for a file :func:`.volume.write` tagged as a LatentSR output (its header says so)."""
    reader = sitk.ImageFileReader()
    reader.SetFileName(str(path))
    try:
        reader.ReadImageInformation()
    except RuntimeError:
        return False  # unreadable: let the reader report it
    if reader.HasMetaDataKey(OUTPUT_TAG):
        return True
    for key in ("descrip", "ITK_FileNotes"):
        if reader.HasMetaDataKey(key) and reader.GetMetaData(key).startswith(OUTPUT_TAG + " "):
            return True
    return False
