"""Volumes in memory and on disk.

A :class:`Volume` is an array shaped (T, Z, Y, X) (float32, or float64 for pixel types float32 cannot
hold exactly: :func:`carrier_dtype`) plus the 3D geometry of one frame in ITK conventions (LPS,
spacing/origin in mm, direction columns = axis directions). 3D images have T=1.
Files are read and written with SimpleITK: NIfTI, NRRD, MHA/MHD, and read from DICOM folders (a 3D
series or a cine, :mod:`.dicom`); 4D files keep time as their last axis. Reading refuses what cannot
be read whole or only what was given (:mod:`.readers`: truncated files, NaN/Inf samples, zero or NaN
spacing, data files outside their header's folder, damaged DICOM slices); writing is
exclusive and atomic (:mod:`.atomic`).
"""

from __future__ import annotations

import dataclasses
import math
import os
from pathlib import Path
from typing import Sequence

import numpy as np
import SimpleITK as sitk

from . import LatentSRError, __version__, atomic, dicom, outputs, readers
from .intensity import label_values

#: File name endings we can write (and read, along with DICOM folders).
WRITABLE_SUFFIXES = (".nii.gz", ".nii", ".nrrd", ".nhdr", ".mha", ".mhd")
#: Image files a folder input takes: those, and NIfTI pairs by their header (``scan.hdr`` + ``scan.img``).
READABLE_SUFFIXES = WRITABLE_SUFFIXES + (".hdr",)
#: Names of label maps that sit beside images in ACDC / CMRxMotion folders: not images to process.
MASK_MARKERS = ("_gt.", "-label.", "_seg.", "_label.")
#: NIfTI-1 stores sizes as 16-bit integers (and ITK writes NIfTI-1).
NIFTI_MAX_SIZE = 32767

# ACDC's NIfTI files carry an sform whose scales disagree with pixdim; ITK prints a warning for each
# read. The geometry it uses (qform/pixdim) is the right one, so the warning is noise for our users.
sitk.ProcessObject.SetGlobalWarningDisplay(False)


@dataclasses.dataclass
class Volume:
    """An image as (T, Z, Y, X) samples with its geometry.

    Attributes:
        array: samples, shape (T, Z, Y, X), in :func:`carrier_dtype` of ``pixel_type`` (float32, or
            float64 where float32 would change a value). T=1 for a 3D image.
        spacing: (x, y, z) voxel size in mm (ITK order, i.e. reversed array axes).
        origin: (x, y, z) position of the first voxel centre in LPS mm.
        direction: 3x3 matrix whose columns are the x, y, z axis directions (LPS).
        pixel_type: numpy dtype of the source samples; outputs are written back in it.
        time_spacing: spacing of the time axis for 4D images (seconds or frame units).
        time_origin: origin of the time axis for 4D images.
        is_4d: whether the source had a time axis (a 4D file with one frame stays 4D).
    """

    array: np.ndarray
    spacing: tuple[float, float, float]
    origin: tuple[float, float, float] = (0.0, 0.0, 0.0)
    direction: np.ndarray = dataclasses.field(default_factory=lambda: np.eye(3))
    pixel_type: np.dtype = dataclasses.field(default_factory=lambda: np.dtype(np.float32))
    time_spacing: float = 1.0
    time_origin: float = 0.0
    is_4d: bool = False

    def __post_init__(self) -> None:
        self.pixel_type = np.dtype(self.pixel_type)
        self.array = np.asarray(self.array, dtype=carrier_dtype(self.pixel_type))
        if self.array.ndim == 3:
            self.array = self.array[None]
        if self.array.ndim != 4:
            raise LatentSRError(f"a volume needs 3 or 4 dimensions, got an array of shape {self.array.shape}")
        self.spacing = tuple(float(s) for s in self.spacing)
        self.origin = tuple(float(o) for o in self.origin)
        self.direction = np.asarray(self.direction, dtype=np.float64).reshape(3, 3)

    @property
    def n_frames(self) -> int:
        return self.array.shape[0]

    @property
    def n_slices(self) -> int:
        return self.array.shape[1]

    def with_array(self, array: np.ndarray, spacing: Sequence[float] | None = None) -> "Volume":
        """A new volume with other samples (and optionally spacing), the same origin and direction."""
        return dataclasses.replace(self, array=array, spacing=tuple(spacing or self.spacing),
                                   direction=self.direction.copy())

    def frame_image(self, t: int = 0) -> sitk.Image:
        """Frame ``t`` as a 3D SimpleITK image with this volume's geometry (in the array's dtype)."""
        image = sitk.GetImageFromArray(self.array[t])
        image.SetSpacing(self.spacing)
        image.SetOrigin(self.origin)
        image.SetDirection(self.direction.flatten().tolist())
        return image


def carrier_dtype(pixel_type: np.dtype) -> np.dtype:
    """The dtype a :class:`Volume` holds samples of ``pixel_type`` in: float32 where it holds every value
    exactly (8- and 16-bit integers, float16, float32), else float64 (int32, float64, int64 up to 2**53),
    so that validity checks see the input's own values and acquired slices go back bit for bit."""
    return np.dtype(np.float32 if np.can_cast(np.dtype(pixel_type), np.float32, "safe") else np.float64)


def slice_axis(volume: Volume) -> int:
    """The through-plane axis as an index into (Z, Y, X): the one with the largest spacing.

    Ties go to Z, the file's own slice axis.
    """
    spacing_zyx = volume.spacing[::-1]
    return int(np.argmax(spacing_zyx))  # argmax returns the first maximum: Z on ties


def validate(volume: Volume, what: str = "input") -> None:
    """Raise :class:`LatentSRError` for inputs no method can super-resolve."""
    shape_zyx = volume.array.shape[1:]
    if sum(s > 1 for s in shape_zyx) < 2:
        raise LatentSRError(f"{what} is not an image volume: (Z,Y,X) shape {shape_zyx}")
    # Any axis of size 1, not only the slice axis: a single image's slice spacing (DICOM's default 1 mm)
    # can be the smallest, which would make an in-plane axis the slice axis.
    if min(shape_zyx) < 2:
        raise LatentSRError(f"{what} has a single slice (Z,Y,X shape {shape_zyx}): "
                            "through-plane super-resolution needs at least 2 slices")
    if not all(math.isfinite(s) and s > 0 for s in volume.spacing):
        raise LatentSRError(f"{what} has an unusable voxel spacing {volume.spacing}: "
                            "every spacing must be a positive, finite number of mm")
    if volume.is_4d and not (math.isfinite(volume.time_spacing) and volume.time_spacing > 0):
        # no image format stores it (ITK refuses negative spacing): refused now, not after the work
        raise LatentSRError(f"{what} has an unusable time spacing {volume.time_spacing:g} between frames: "
                            "it must be a positive, finite number")
    finite = np.isfinite(volume.array)
    if not finite.all():
        raise LatentSRError(f"{what} contains {int((~finite).sum())} NaN or infinite values")
    labels = label_values(volume.array, volume.pixel_type)
    if labels is not None:
        shown = ", ".join(f"{v:g}" for v in labels)
        raise LatentSRError(f"{what} looks like a label map (integer samples, only the values {shown}): "
                            "super-resolution is for images, and interpolating labels invents new ones at "
                            "borders; give the image, not its segmentation")


def is_mask_file(path: str | os.PathLike) -> bool:
    """True for segmentation files stored beside images (``*_gt.nii.gz``, ``*-label.nii.gz``)."""
    name = Path(path).name
    return any(marker in name for marker in MASK_MARKERS)


def read(path: str | os.PathLike, allow_external_data: bool = False) -> Volume:
    """Read a 3D or 4D image file, or a DICOM series from a folder, whole.

    ``allow_external_data``: read a header's data file that lies outside the header's folder
    (refused by default: :func:`.readers.check_data_files`).

    Raises:
        LatentSRError: the path is missing, unreadable, truncated, not 3D/4D, multi-component, has
            NaN/Inf samples, or a zero, NaN or infinite voxel spacing; a data file outside its header's
            folder; a DICOM folder with a damaged file or that is not one evenly spaced stack or one
            complete cine (see :func:`.dicom.read_folder`).
    """
    path = Path(path)
    if not path.exists():
        raise LatentSRError(f"no such file or folder: {path}")
    try:
        if path.is_dir():  # a 3D series or a cine, one series or one per slice position
            volume = from_sitk(dicom.read_folder(path), source=str(path))
        elif readers.is_nifti(path):
            array, header = readers.read_nifti(path, allow_external_data)
            volume = _from_parts(array, header.GetDimension(), header.GetSpacing(), header.GetOrigin(),
                                 header.GetDirection(), str(path))
        else:
            readers.check_header(path, allow_external_data)
            volume = from_sitk(sitk.ReadImage(str(path)), source=str(path))
    except RuntimeError as error:
        first = str(error).strip().splitlines()[-1] if str(error).strip() else "unknown error"
        if first.startswith("Reason:"):  # MetaIO's short-file message: the useful part went to stderr
            first = f"truncated or damaged ({first})"
        raise LatentSRError(f"cannot read {path}: {first}") from None
    except (OSError, ValueError) as error:
        raise LatentSRError(f"cannot read {path}: {error}") from None
    if not all(math.isfinite(s) and s > 0 for s in volume.spacing):
        raise LatentSRError(f"{path} has an unusable voxel spacing {volume.spacing}")
    bad = int(volume.array.size - np.count_nonzero(np.isfinite(volume.array)))
    if bad:
        raise LatentSRError(f"{path} contains {bad} NaN or infinite values")
    return volume


def from_sitk(image: sitk.Image, source: str = "image") -> Volume:
    """Convert a 3D or 4D SimpleITK image into a :class:`Volume`."""
    if image.GetNumberOfComponentsPerPixel() != 1:
        raise LatentSRError(f"{source} has {image.GetNumberOfComponentsPerPixel()} components per voxel; "
                            "a scalar (grey-level) image is needed")
    return _from_parts(sitk.GetArrayViewFromImage(image), image.GetDimension(), image.GetSpacing(),
                       image.GetOrigin(), image.GetDirection(), source, image.GetSize())


def _from_parts(array: np.ndarray, dim: int, spacing: Sequence[float], origin: Sequence[float],
                direction: Sequence[float], source: str, size: Sequence[int] | None = None) -> Volume:
    """A :class:`Volume` from samples in ITK's numpy order (..., z, y, x) and ITK geometry."""
    pixel_type = array.dtype
    if pixel_type.kind in "iu" and pixel_type.itemsize == 8 and array.size and (
            array.max() > 2**53 or array.min() < -2**53):  # float64 (the carrier) holds integers up to 2**53
        raise LatentSRError(f"{source} holds 64-bit integers beyond 2**53, which cannot be processed exactly")
    carrier = carrier_dtype(pixel_type)
    if dim == 2:
        raise LatentSRError(f"{source} is a 2D image ({tuple(size or array.shape[::-1])}): "
                            "a 3D volume or 4D cine is needed")
    if dim == 3:
        return Volume(array[None].astype(carrier), spacing, origin, np.array(direction).reshape(3, 3),
                      pixel_type)
    if dim == 4:
        direction4 = np.array(direction).reshape(4, 4)
        return Volume(array.astype(carrier), spacing[:3], origin[:3], direction4[:3, :3], pixel_type,
                      time_spacing=spacing[3], time_origin=origin[3], is_4d=True)
    raise LatentSRError(f"{source} has {dim} dimensions; 3D or 4D are supported")


def to_sitk(volume: Volume, cast: bool = True) -> sitk.Image:
    """The volume as a SimpleITK image (4D when it has several frames or came from a 4D file).

    With ``cast``, samples are rounded and clipped into the source pixel type.
    """
    array = to_pixel_type(volume.array, volume.pixel_type) if cast else volume.array
    frames = []
    for t in range(array.shape[0]):
        image = sitk.GetImageFromArray(array[t])
        image.SetSpacing(volume.spacing)
        image.SetOrigin(volume.origin)
        image.SetDirection(volume.direction.flatten().tolist())
        frames.append(image)
    if not volume.is_4d and len(frames) == 1:
        return frames[0]
    joined = sitk.JoinSeries(frames, volume.time_origin, volume.time_spacing)
    direction = np.eye(4)
    direction[:3, :3] = volume.direction
    joined.SetDirection(direction.flatten().tolist())
    joined.SetOrigin((*volume.origin, volume.time_origin))
    return joined


def to_pixel_type(array: np.ndarray, pixel_type: np.dtype) -> np.ndarray:
    """Round and clip float samples into an integer type; floats pass through."""
    pixel_type = np.dtype(pixel_type)
    if np.issubdtype(pixel_type, np.integer):
        info = np.iinfo(pixel_type)
        return np.clip(np.rint(array), info.min, info.max).astype(pixel_type)
    return array.astype(pixel_type)


def output_suffix(path: str | os.PathLike) -> str:
    name = str(path).lower()
    for suffix in WRITABLE_SUFFIXES:
        if name.endswith(suffix):
            return suffix
    raise LatentSRError(f"cannot tell the file format of {path}: use one of {', '.join(WRITABLE_SUFFIXES)}")


def check_output(path: str | os.PathLike, overwrite: bool = True,
                 protect: Sequence[str | os.PathLike] = (), shape: Sequence[int] | None = None,
                 direction: np.ndarray | None = None) -> Path:
    """Check before any work that ``path`` can be written: a known format written in lower case, none
    of its files (a ``.nhdr``/``.mhd`` output's ``.raw`` too) an input's file, writable folder, and
    (given the output's (T, Z, Y, X) ``shape`` and ``direction``) what the format can hold: NIfTI
    takes at most 32767 voxels along an axis and no sheared grid.

    Raises:
        LatentSRError: naming the problem.
    """
    path = Path(path)
    suffix = output_suffix(path)
    if not path.name.endswith(suffix):  # SimpleITK writes and reads only lower-case suffixes
        raise LatentSRError(f"write the suffix of {path} in lower case ({suffix}): SimpleITK and Slicer "
                            "neither write nor read it otherwise")
    if shape is not None and suffix in (".nii", ".nii.gz") and max(shape) > NIFTI_MAX_SIZE:
        raise LatentSRError(f"a {'x'.join(map(str, shape[:0:-1]))} output is too large for NIfTI, which holds "
                            f"at most {NIFTI_MAX_SIZE} voxels along an axis: use a smaller factor or write .nrrd")
    outputs.check_files(path, suffix, protect, overwrite, direction)
    folder = path.parent if str(path.parent) else Path(".")
    if not folder.is_dir():
        raise LatentSRError(f"output folder does not exist: {folder}")
    if not os.access(folder, os.W_OK):
        raise LatentSRError(f"output folder is not writable: {folder}")
    return path


def write(volume: Volume, path: str | os.PathLike, overwrite: bool = True,
          protect: Sequence[str | os.PathLike] = (), tag: str | None = None,
          like: str | os.PathLike | None = None) -> Path:
    """Write a volume exclusively and atomically (see :mod:`.atomic`), and only once it reads back whole.

    Header and data are written into a staging folder ``.latentsr-*`` beside the target, read back and
    compared with the volume (:func:`.outputs.write_image`: a full disk is an error, not a truncated
    file), then renamed into place (the ``.nhdr`` / ``.mhd`` header last), so a reader never sees a
    partial file; an interruption (error, Ctrl-C, SIGTERM, SIGHUP, SIGQUIT) leaves nothing behind.
    Files get the permissions ``open()`` would give them under the user's umask.

    Args:
        overwrite: replace an existing output file. Without it, a file that appears under the
            target's name during the write (e.g. another run's) is never replaced: an error instead.
        protect: input paths none of whose files (:func:`.outputs.input_files`) may be replaced.
        tag: mark the file as a LatentSR output (e.g. "ae x4"; NIfTI ``descrip``, a NRRD / MetaImage
            header key): folder inputs (:func:`find_images`) skip tagged files.
        like: the input this volume was made from: a NIfTI output keeps its sform where it differs
            from the geometry SimpleITK reads (:func:`.outputs.input_sform`).

    Raises:
        LatentSRError: unknown format, the path is (a file of) an input or exists (without
            ``overwrite``), the folder is not writable, the geometry does not fit the format, or the
            writer failed.
    """
    path = check_output(path, overwrite, protect, direction=volume.direction)
    suffix = output_suffix(path)
    image = to_sitk(volume)
    if tag is not None:
        text = f"{outputs.OUTPUT_TAG} {__version__}: {tag}"
        image.SetMetaData("ITK_FileNotes" if suffix in (".nii", ".nii.gz") else outputs.OUTPUT_TAG, text[:79])
    sform = outputs.input_sform(like) if like is not None and suffix in outputs.NIFTI else None
    kept = [part for other in protect for part in outputs.input_files(other)]
    outputs.import_reader(suffix)  # here, not in the writer thread: an interrupted import would linger
    with atomic.staging(path) as staged:
        try:
            atomic.run_interruptibly(outputs.write_image, image, staged / path.name,
                                     suffix in (".nii.gz", ".nrrd", ".mha"), sform)
        except (RuntimeError, OSError) as error:
            raise LatentSRError(f"cannot write {path}: {str(error).strip().splitlines()[-1]}") from None
        try:
            atomic.publish(staged, path.parent, path.name, overwrite, protect=kept)
        except OSError as error:
            raise LatentSRError(f"cannot write {path}: {error.strerror or error}") from None
    return path


def find_images(paths: Sequence[str | os.PathLike]) -> list[Path]:
    """Expand files and folders (recursively) into image files, skipping segmentation masks.

    In folders, LatentSR's own outputs (files :func:`write` tagged) and staging entries of
    interrupted writes (``.latentsr-*``) are skipped too. A folder holding DICOM files (``.dcm`` or
    extensionless, :func:`.dicom.is_dicom_file`) counts as one study, also in a tree that holds image
    files elsewhere, and so does a folder holding just the per-position series folders of one cine
    (:func:`.dicom.find_studies`).
    """
    found: list[Path] = []
    for entry in map(Path, paths):
        if not entry.exists():
            raise LatentSRError(f"no such file or folder: {entry}")
        if entry.is_file():
            found.append(entry)
            continue
        images = sorted(p for p in entry.rglob("*") if p.is_file() and not is_mask_file(p)
                        and not atomic.is_temporary(p, entry)
                        and any(p.name.lower().endswith(s) for s in READABLE_SUFFIXES))
        found.extend(p for p in images if not outputs.is_output_file(p))
        # DICOM studies as the DICOM says (.dicom.find_studies), also beside image files (a mixed tree lost them)
        found.extend(dicom.find_studies(entry, skip=lambda p: atomic.is_temporary(p, entry)
                                        or p.name.lower().endswith(READABLE_SUFFIXES)))
    return found


def volume_name(path: str | os.PathLike) -> str:
    """A file's name without its image suffix (``patient001_frame01``; ``cine.seq.nrrd``: "cine", as in Slicer)."""
    name = Path(path).name
    for suffix in (".seq.nrrd", ".seq.nhdr") + READABLE_SUFFIXES + (".dcm",):
        if name.lower().endswith(suffix):
            return name[: -len(suffix)]
    return name


def resample_inplane(volume: Volume, pixel_size: float | tuple[float, float],
                     reference: Volume | None = None) -> Volume:
    """Resample every slice in-plane (x, y) to ``pixel_size`` mm, keeping the slice positions.

    With ``reference``, resample onto the reference's exact grid instead (used to go back to the
    input grid after a model ran at its training pixel size). Linear interpolation, via SimpleITK.
    """
    if reference is not None:
        size_xy = reference.array.shape[:1:-1]
        spacing_xy = reference.spacing[:2]
        origin = reference.origin
    else:
        spacing_xy = (pixel_size, pixel_size) if isinstance(pixel_size, (int, float)) else tuple(pixel_size)
        extent = [n * s for n, s in zip(volume.array.shape[:1:-1], volume.spacing[:2])]
        size_xy = [max(1, int(round(e / s))) for e, s in zip(extent, spacing_xy)]
        # Keep the field of view centred: shift the first voxel centre by half the change in pixel size.
        shift = [(s_new - s_old) / 2 for s_new, s_old in zip(spacing_xy, volume.spacing[:2])]
        origin = tuple(np.asarray(volume.origin) + volume.direction[:, :2] @ np.asarray(shift))
    spacing = (float(spacing_xy[0]), float(spacing_xy[1]), volume.spacing[2])
    size = [int(size_xy[0]), int(size_xy[1]), volume.array.shape[1]]
    out = np.empty((volume.n_frames, size[2], size[1], size[0]), np.float32)
    for t in range(volume.n_frames):
        image = sitk.Resample(volume.frame_image(t), size, sitk.Transform(), sitk.sitkLinear, origin,
                              spacing, volume.direction.flatten().tolist(), 0.0, sitk.sitkFloat32)
        out[t] = sitk.GetArrayViewFromImage(image)
    result = volume.with_array(out, spacing)
    result.origin = tuple(float(o) for o in origin)
    return result
