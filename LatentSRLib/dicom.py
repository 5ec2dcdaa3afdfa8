"""Reading a DICOM folder into one 3D image or one 4D cine, with the geometry exactly right.

A cardiac cine leaves the scanner either as one series holding every slice position x every
cardiac phase (GE, Philips) or as one series per slice position holding its phases (Siemens).
GDCM alone reads the first as a 3D stack of Z*T slices with a meaningless slice spacing, and we
used to refuse the second. :func:`read_folder` reads the headers first, groups the images by
slice position and decides from what it finds:

- every position once: a 3D volume, read by ITK in GDCM's order (the geometry Slicer gives it);
- every position T > 1 times: a 4D cine, frame t holding the t-th phase of every position;
- anything else (an incomplete cine, a missing slice, mixed orientations, unrelated series) is
  refused with one line naming what was found, never read into a silently wrong volume.

It returns a SimpleITK image so that :mod:`.volume` stays the one place that makes a ``Volume``
(and this module imports nothing from it: no import circle).
"""

from __future__ import annotations

import dataclasses
import os
from collections import Counter
from pathlib import Path
from typing import Callable, Iterable, Sequence

import numpy as np
import SimpleITK as sitk

from . import LatentSRError

#: Images closer than this along the slice normal are one slice position (mm). The same position
#: is written with the same ImagePositionPatient in every phase (up to print rounding, ~1e-4 mm),
#: while distinct positions are at least ~0.5 mm apart even in thin-slice 3D acquisitions: 0.01 mm
#: is far from both, and independent of the in-plane pixel size, which says nothing about slices.
POSITION_TOLERANCE_MM = 0.01
#: Gaps between slice positions may differ from their mean by this fraction of it (or by
#: POSITION_TOLERANCE_MM, whichever is larger) before the slices count as unevenly spaced.
GAP_TOLERANCE = 0.01
#: Direction cosines (ImageOrientationPatient) this close are one orientation (0.006 degrees).
ORIENTATION_TOLERANCE = 1e-4

_POSITION, _ORIENTATION = "0020|0032", "0020|0037"
#: StudyInstanceUID, FrameOfReferenceUID: series in several folders are one cine only if these agree.
_UIDS = ("0020|000d", "0020|0052")
#: Tags that order the phases of one slice position, in order of preference.
_PHASE_KEYS = {"TriggerTime": "0018|1060", "TemporalPositionIdentifier": "0020|0100", "InstanceNumber": "0020|0013"}


@dataclasses.dataclass
class _Header:
    """What one file's header says about where and when its image was acquired."""

    file: str
    orientation: np.ndarray  # (6,) row and column direction cosines
    position: float  # ImagePositionPatient projected on the slice normal (mm)
    size: tuple[int, ...]
    phase: dict[str, float]  # the _PHASE_KEYS present in the header, as numbers
    study: str = ""  # StudyInstanceUID
    frame: str = ""  # FrameOfReferenceUID


def is_dicom_file(path: str | os.PathLike) -> bool:
    """Whether ``path`` is a DICOM image file: named ``.dcm``, or with "DICM" after the 128-byte preamble
    of a DICOM Part 10 file, and not a media export's ``DICOMDIR``. Scanners and PACS exports often name
    their files without an extension (``IM0001``, a UID), so the name alone misses most of them; reading
    132 bytes is cheap."""
    path = Path(path)
    if path.name.upper() == "DICOMDIR":  # a media export's index of the files, not an image
        return False
    if path.suffix.lower() == ".dcm":
        return True
    try:
        with open(path, "rb") as file:
            file.seek(128)
            return file.read(4) == b"DICM"
    except OSError:
        return False


def read_folder(path: str | os.PathLike) -> sitk.Image:
    """The DICOM series in the folder ``path`` as a 3D image or (a cine) a 4D image, time last.

    A folder without DICOM files of its own is read from the folders below it that hold them: the
    export of a cine with one series per slice position, each in a folder of its own (Siemens). Every
    DICOM file found must be read: a damaged one is refused, never left out of the stack.

    A cine's frames are ordered by TriggerTime (else TemporalPositionIdentifier, else
    InstanceNumber); its time spacing and origin are the median trigger-time step and the first
    frame's trigger time, in seconds (ITK's time unit, which NIfTI files declare), else 1 and 0.

    Raises:
        LatentSRError: no series; a DICOM file no series holds (damaged); several series that are
            not the slice positions of one cine (in sub-folders: also of one study and frame of
            reference); mixed orientations; unevenly spaced slice positions; an incomplete cine;
            phases that cannot be told apart; frames of different geometry.
        RuntimeError: ITK could not read a file (the caller words it).
    """
    folder = Path(path)
    places = [folder] if _dicom_files(folder) else dicom_folders(folder)
    series_reader = sitk.ImageSeriesReader()
    files: list[list[str]] = []
    for place in places:
        found = [list(series_reader.GetGDCMSeriesFileNames(str(place), uid))
                 for uid in series_reader.GetGDCMSeriesIDs(str(place))]
        _check_every_file_is_read(place, found)
        files.extend(found)
    if not files:
        raise LatentSRError(f"{path} is a folder without a DICOM series")
    if len(files) > 1:
        groups = _single_position_cines(files, one_study=len(places) > 1)
        if groups is None:  # silently taking the first would process the wrong scan
            counts = ", ".join(f"{len(names)} files" for names in files[:5])
            where = f" in {len(places)} folders, not one study's cine" if len(places) > 1 else ""
            raise LatentSRError(f"{path} holds {len(files)} DICOM series ({counts}{', ...' if len(files) > 5 else ''})"
                                f"{where}: put each in a folder of its own")
        return _read_cine(path, groups)
    headers = _read_headers(files[0])
    if headers is None:  # no usable geometry tags (or multi-frame files): read it as GDCM does
        return _read_files(files[0])
    orientations = _distinct(h.orientation for h in headers)
    if len(orientations) > 1:
        raise LatentSRError(f"{path}: the series mixes {len(orientations)} slice orientations "
                            "(ImageOrientationPatient): a stack of parallel slices is needed")
    groups = _group_by_position(headers)
    if all(len(group) == 1 for group in groups):
        _check_even_spacing(path, [group[0].position for group in groups])
        return _read_files(files[0])  # GDCM's order: exactly the geometry ITK and Slicer give it
    return _read_cine(path, groups)


def _dicom_files(folder: Path) -> list[Path]:
    """The DICOM files directly in ``folder`` (:func:`is_dicom_file`)."""
    return sorted(p for p in folder.iterdir() if p.is_file() and is_dicom_file(p))


def dicom_folders(root: str | os.PathLike, skip: Callable[[Path], bool] = lambda p: False) -> list[Path]:
    """The folders at or below ``root`` that hold DICOM files (but those ``skip`` names)."""
    return sorted({p.parent for p in Path(root).rglob("*") if p.is_file() and not skip(p) and is_dicom_file(p)})


def _check_every_file_is_read(folder: Path, series: list[list[str]]) -> None:
    """Refuse a DICOM file in ``folder`` that GDCM left out of every series: it drops a damaged file
    (truncated, zero bytes, a broken header) without a word, and a damaged first or last slice then
    goes unnoticed (the remaining positions are still evenly spaced)."""
    held = {os.path.basename(name) for names in series for name in names}
    left_out = [p for p in _dicom_files(folder) if p.name not in held]
    if left_out:
        more = f" (and {len(left_out) - 1} more)" if len(left_out) > 1 else ""
        raise LatentSRError(f"{left_out[0]}{more}: a DICOM file that cannot be read as an image of the series "
                            "(damaged or truncated?): refusing to leave a slice out; remove it if it does not belong")


def find_studies(root: str | os.PathLike, skip: Callable[[Path], bool] = lambda p: False) -> list[Path]:
    """The DICOM studies below ``root``, each as the folder to read (:func:`read_folder`).

    A folder of DICOM files is a study, except that the folders of one cine's slice positions (each
    one position's phases, all of one StudyInstanceUID, FrameOfReferenceUID, orientation and image
    size, at distinct positions) make one study together: the folder that holds just them. What the
    DICOM says makes a study, not how an export named its folders.
    """
    folders = dicom_folders(root, skip)
    by_key: dict[tuple, list[tuple[Path, float]]] = {}
    damaged = set()  # a folder with an unreadable header joins the study around it, whose reading names the file
    for folder in folders:
        try:
            one = _one_position(folder)
        except RuntimeError:
            damaged.add(folder)
            continue
        if one is not None:
            by_key.setdefault(one[0], []).append((folder, one[1]))
    study_of: dict[Path, Path] = {}
    for members in by_key.values():
        names = [folder for folder, _ in members]
        positions = sorted(position for _, position in members)
        if len(members) < 2 or np.diff(positions).min() <= POSITION_TOLERANCE_MM:
            continue  # one position, or two series at one position: not one cine's positions
        ancestor = Path(os.path.commonpath(names))
        if ancestor in names:
            continue  # its own files are read without the folders below it (read_folder)
        below = {f for f in folders if f == ancestor or ancestor in f.parents}
        if below - damaged == set(names):
            study_of.update((folder, ancestor) for folder in below)
    return sorted({study_of.get(folder, folder) for folder in folders})


def _one_position(folder: Path) -> tuple[tuple, float] | None:
    """(study, frame of reference, orientation, size) and the position of a folder holding one series
    of several images at one slice position (a cine's position), else None. The first and last file
    decide most folders (a 3D series differs there); only a candidate has every header read.

    Raises:
        RuntimeError: a file's header cannot be read.
    """
    files = [str(p) for p in _dicom_files(folder)]
    if len(files) < 2:
        return None
    for names in ([files[0], files[-1]], files):
        headers = _read_headers(names)  # RuntimeError for a damaged header: the caller decides
        if headers is None or len(_group_by_position(headers)) != 1 or len(_distinct(h.orientation for h in headers)) != 1:
            return None
        if len({(h.study, h.frame, h.size) for h in headers}) != 1:
            return None
    first = headers[0]
    key = (first.study, first.frame, tuple(np.round(first.orientation, 3)), first.size)
    return key, first.position


def _read_headers(files: Sequence[str]) -> list[_Header] | None:
    """Each file's header (no pixels are read), or None if a file lacks usable geometry tags or
    holds several frames (an enhanced multi-frame file): those are left to GDCM as before."""
    reader = sitk.ImageFileReader()
    reader.SetImageIO("GDCMImageIO")
    headers = []
    for file in files:
        reader.SetFileName(file)
        reader.ReadImageInformation()
        if not (reader.HasMetaDataKey(_POSITION) and reader.HasMetaDataKey(_ORIENTATION)):
            return None
        size = reader.GetSize()
        if len(size) > 2 and size[2] > 1:  # a multi-frame file: its positions are not in these tags
            return None
        try:
            position = np.array(reader.GetMetaData(_POSITION).split("\\"), dtype=float)
            orientation = np.array(reader.GetMetaData(_ORIENTATION).split("\\"), dtype=float)
        except ValueError:
            return None
        if position.shape != (3,) or orientation.shape != (6,):
            return None
        phase = {}
        for name, tag in _PHASE_KEYS.items():
            if reader.HasMetaDataKey(tag):
                try:
                    phase[name] = float(reader.GetMetaData(tag).strip())
                except ValueError:
                    pass  # an empty or odd value is as good as absent
        normal = np.cross(orientation[:3], orientation[3:])  # the slice axis ITK and GDCM use
        study, frame = (reader.GetMetaData(tag).strip() if reader.HasMetaDataKey(tag) else "" for tag in _UIDS)
        headers.append(_Header(file, orientation, float(position @ normal), tuple(size[:2]), phase, study, frame))
    return headers


def _distinct(orientations: Iterable[np.ndarray]) -> list[np.ndarray]:
    """The orientations that differ by more than ORIENTATION_TOLERANCE, first seen first."""
    found: list[np.ndarray] = []
    for orientation in orientations:
        if not any(np.allclose(orientation, seen, atol=ORIENTATION_TOLERANCE) for seen in found):
            found.append(orientation)
    return found


def _group_by_position(headers: list[_Header]) -> list[list[_Header]]:
    """Headers grouped by slice position, the groups in ascending position (GDCM's slice order)."""
    groups: list[list[_Header]] = []
    for header in sorted(headers, key=lambda h: h.position):
        if groups and header.position - groups[-1][0].position <= POSITION_TOLERANCE_MM:
            groups[-1].append(header)
        else:
            groups.append([header])
    return groups


def _single_position_cines(files: list[list[str]], one_study: bool = False) -> list[list[_Header]] | None:
    """All headers of several series grouped by slice position (:func:`_group_by_position`) if each
    series is one slice position's cine (Siemens), else None.

    The series must share orientation and image size (with ``one_study``, series gathered from
    several folders, also StudyInstanceUID and FrameOfReferenceUID), at distinct positions. Their numbers of
    phases may differ: :func:`_read_cine` then names the counts (an incomplete cine), which says
    more than "several series".
    """
    pooled = []
    for names in files:
        headers = _read_headers(names)
        if headers is None or len(headers) < 2 or len(_group_by_position(headers)) != 1:
            return None
        pooled.extend(headers)
    if len(_distinct(h.orientation for h in pooled)) > 1 or len({h.size for h in pooled}) > 1:
        return None
    if one_study and len({(h.study, h.frame) for h in pooled}) > 1:
        return None
    groups = _group_by_position(pooled)
    if len(groups) != len(files):  # two series at one position: not one cine
        return None
    return groups


def _read_cine(path: str | os.PathLike, groups: list[list[_Header]]) -> sitk.Image:
    """Slice positions x phases (``groups``: :func:`_group_by_position`) as a 4D image: frame t holds
    the t-th phase of every position."""
    counts = [len(group) for group in groups]
    if len(groups) == 1:  # e.g. one of a Siemens cine's series, each in a folder of its own
        raise LatentSRError(f"{path}: one slice position ({counts[0]} phases): through-plane super-resolution "
                            "needs the cine's other positions; put the series of all its slice positions in one folder, "
                            "or give the folder that holds their folders")
    if min(counts) == 1:  # mostly single images: a 3D series with repeated slices, not a cine
        repeated = sum(count > 1 for count in counts)
        raise LatentSRError(f"{path}: {repeated} of {len(counts)} slice positions hold more than one image: "
                            "a repeated slice? a volume needs one image per position (or a cine, every "
                            "position with the same number of phases)")
    if len(set(counts)) > 1:
        listed = ", ".join(map(str, counts[:-1])) + f" and {counts[-1]}"
        raise LatentSRError(f"{path}: an incomplete cine: slice positions hold {listed} images")
    _check_even_spacing(path, [group[0].position for group in groups])
    key = next((name for name in _PHASE_KEYS
                if all(name in h.phase for group in groups for h in group)
                and all(len({h.phase[name] for h in group}) == len(group) for group in groups)), None)
    if key is None:
        raise LatentSRError(f"{path}: cannot tell the cardiac phases of a slice position apart: no "
                            f"{', '.join(_PHASE_KEYS)} differs between its {counts[0]} images")
    phases = [sorted(group, key=lambda h: h.phase[key]) for group in groups]
    frames = [_read_files([group[t].file for group in phases]) for t in range(counts[0])]
    for t, frame in enumerate(frames[1:], start=2):
        if not _same_geometry(frame, frames[0]):
            raise LatentSRError(f"{path}: cardiac phase {t} has another geometry (origin, spacing or direction) "
                                "than phase 1")
    time_origin, time_spacing = 0.0, 1.0
    if key == "TriggerTime":  # in ms in DICOM; ITK's (and NIfTI's) time unit is the second
        times = np.array([[h.phase[key] for h in group] for group in phases])  # (Z, T)
        time_origin = float(np.median(times[:, 0])) / 1000
        time_spacing = float(np.median(np.diff(times, axis=1))) / 1000
    return sitk.JoinSeries(frames, time_origin, time_spacing)


def _check_even_spacing(path: str | os.PathLike, positions: Sequence[float]) -> None:
    """Refuse slice positions that no single slice spacing describes (e.g. a missing slice)."""
    if len(positions) < 3:
        return
    gaps = np.diff(positions)
    spacing = (positions[-1] - positions[0]) / (len(positions) - 1)  # the spacing ITK will use
    if np.abs(gaps - spacing).max() <= max(POSITION_TOLERANCE_MM, GAP_TOLERANCE * spacing):
        return
    found = ", ".join(f"{gap} mm x{n}" for gap, n in Counter(f"{g:.3g}" for g in gaps).items())
    raise LatentSRError(f"{path}: slice positions are not evenly spaced (gaps of {found}): "
                        "a missing or extra slice? a volume needs one slice spacing")


def _read_files(files: Sequence[str]) -> sitk.Image:
    """The files as one stack; a file whose pixels cannot be decoded is named."""
    reader = sitk.ImageSeriesReader()
    reader.SetFileNames(list(files))
    try:
        return reader.Execute()
    except RuntimeError:
        single = sitk.ImageFileReader()
        for file in files:  # ITK's message may not say which slice failed
            single.SetFileName(file)
            try:
                single.Execute()
            except RuntimeError:
                raise LatentSRError(f"{file}: its image cannot be decoded (damaged or truncated?): "
                                    "refusing to leave a slice out") from None
        raise


def _same_geometry(a: sitk.Image, b: sitk.Image) -> bool:
    return (a.GetSize() == b.GetSize() and a.GetPixelID() == b.GetPixelID()
            and np.allclose(a.GetSpacing(), b.GetSpacing(), atol=POSITION_TOLERANCE_MM)
            and np.allclose(a.GetOrigin(), b.GetOrigin(), atol=POSITION_TOLERANCE_MM)
            and np.allclose(a.GetDirection(), b.GetDirection(), atol=ORIENTATION_TOLERANCE))
