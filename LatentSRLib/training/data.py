"""Training data: anisotropic volumes in model space, and random patches drawn from them."""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np
from tqdm import tqdm

from .. import LatentSRError
from ..intensity import normalise
from ..volume import Volume, find_images, read, resample_inplane

#: In-plane pixel size the models work at (Sander et al. 2020).
MODEL_PIXEL_SIZE = 1.4


@dataclasses.dataclass
class TrainingVolume:
    """One frame of an anisotropic scan in model space: (Z, Y, X), intensities scaled to ~[0, 1]."""

    name: str
    slices: np.ndarray
    slice_spacing: float


def load_volumes(paths: Sequence[str | os.PathLike], pixel_size: float = MODEL_PIXEL_SIZE,
                 exclude: Sequence[str] = (), max_frames: int | None = None,
                 progress: bool = True) -> list[TrainingVolume]:
    """Read image files or folders into normalised, in-plane resampled frames.

    Args:
        paths: files or folders (searched recursively; segmentation masks skipped).
        pixel_size: in-plane pixel size in mm the model is trained at.
        exclude: drop files whose path contains any of these strings.
        max_frames: for cines, keep at most this many frames per file (evenly spaced).
    """
    files = training_files(paths, exclude)
    if not files:
        raise LatentSRError(f"no training images found under {', '.join(map(str, paths))}")
    volumes: list[TrainingVolume] = []
    for file in tqdm(files, desc="loading", unit="file", disable=not progress):
        volume = read(file)
        if max_frames is not None and volume.n_frames > max_frames:
            keep = np.linspace(0, volume.n_frames - 1, max_frames).round().astype(int)
            volume = volume.with_array(volume.array[keep])
        if volume.array.shape[1] < 3:
            continue
        scaled = in_model_space(volume, pixel_size)
        for t in range(volume.n_frames):
            name = Path(file).name + (f"[t={t}]" if volume.n_frames > 1 else "")
            volumes.append(TrainingVolume(name, scaled[t], volume.spacing[2]))
    return volumes


def training_files(paths: Sequence[str | os.PathLike], exclude: Sequence[str] = ()) -> list[str]:
    """Image files under ``paths``, without those whose path contains any of ``exclude`` (e.g. the
    test patients of a published evaluation: the scripts that train the bundled weights pass them;
    a user's data is used as given)."""
    return [f for f in find_images(paths) if not any(pattern in str(f) for pattern in exclude)]


def in_model_space(volume: Volume, pixel_size: float) -> np.ndarray:
    """(T, Z, Y, X) resampled in-plane to ``pixel_size`` and percentile-scaled to [0, 1] (clipped)."""
    scaled, _ = normalise(resample_inplane(volume, pixel_size).array, clip=True)
    return scaled


def load_time_stacks(paths: Sequence[str | os.PathLike], pixel_size: float = MODEL_PIXEL_SIZE,
                     strides: Sequence[int] = (1, 2, 3), exclude: Sequence[str] = (),
                     progress: bool = True) -> list[TrainingVolume]:
    """Each slice of each cine as a stack over time: (T', Y, X) with every ``stride``-th frame.

    Adjacent entries of these stacks are the same slice a few frames apart, so triplets drawn from
    them show edges moving by a small amount. They give the interpolation loss examples of small
    changes, which the 10-20 mm gaps between acquired slices of the training scans cannot.
    Only files with at least 3 frames contribute (4D cines); still acquired data only.
    """
    stacks: list[TrainingVolume] = []
    for file in tqdm(training_files(paths, exclude), desc="loading cines", unit="file", disable=not progress):
        volume = read(file)
        if volume.n_frames < 3:
            continue
        scaled = in_model_space(volume, pixel_size)
        for stride in strides:
            frames = scaled[::stride]
            if frames.shape[0] < 3:
                continue
            for z in range(frames.shape[1]):
                stacks.append(TrainingVolume(f"{Path(file).name}[z={z},stride={stride}]",
                                             np.ascontiguousarray(frames[:, z]), float("nan")))
    return stacks


def load_reformat_stacks(paths: Sequence[str | os.PathLike], pixel_size: float = MODEL_PIXEL_SIZE,
                         strides: Sequence[int] = (1, 2, 3), exclude: Sequence[str] = (),
                         max_frames: int | None = 1, progress: bool = True) -> list[TrainingVolume]:
    """Through-plane reformats of each scan as stacks along the in-plane axes.

    The scan (Z, Y, X) is linearly interpolated along the slice axis to about ``pixel_size``, then
    cut into planes perpendicular to x (stacked along x) and to y (stacked along y), taking every
    ``stride``-th plane from every start. Neighbouring planes of these stacks are 1-3 in-plane
    pixels apart: the anatomy of a static scan moving by a small amount, which its acquired slices
    (one slice spacing or more apart) never show. They are to a static 3D scan what time triplets
    are to a cine. Blur along the former slice axis is the price; the autoencoder's random
    90-degree rotations put it in either image direction. Acquired data only.
    """
    from ..interpolate import through_plane_planes

    stacks: list[TrainingVolume] = []
    for file in tqdm(training_files(paths, exclude), desc="loading reformats", unit="file", disable=not progress):
        volume = read(file)
        if volume.array.shape[1] < 2:
            continue
        factor = max(1, int(round(volume.spacing[2] / pixel_size)))
        frames = range(volume.n_frames) if max_frames is None else \
            np.linspace(0, volume.n_frames - 1, min(max_frames, volume.n_frames)).round().astype(int)
        scaled = in_model_space(volume.with_array(volume.array[list(frames)]), pixel_size)
        for t in range(scaled.shape[0]):
            # Z' spacing ~ pixel_size
            for axis_name, planes in through_plane_planes(scaled[t], factor).items():
                for stride in strides:
                    for start in range(stride):
                        stack = planes[start::stride]
                        if stack.shape[0] >= 3:
                            stacks.append(TrainingVolume(
                                f"{Path(file).name}[t={t},along={axis_name},stride={stride},start={start}]",
                                np.ascontiguousarray(stack), float("nan")))
    return stacks


def patient_of(volume: TrainingVolume) -> str:
    """The patient a training volume or time stack comes from (ACDC patientNNN, CMRxMotion PNNN-K)."""
    return volume.name.split("_frame")[0].split("_4d")[0].split("-E")[0].split("[")[0]


def split_by_patient(volumes: Sequence[TrainingVolume], n_validation: int, seed: int = 0
                     ) -> tuple[list[TrainingVolume], list[TrainingVolume]]:
    """Hold out whole patients (all their frames) for validation."""
    patients = sorted({patient_of(v) for v in volumes})
    rng = np.random.default_rng(seed)
    held = set(rng.choice(patients, size=min(n_validation, len(patients) - 1), replace=False)) if n_validation else set()
    return ([v for v in volumes if patient_of(v) not in held], [v for v in volumes if patient_of(v) in held])


def random_crop_box(shape: tuple[int, int], size: int, rng: np.random.Generator) -> tuple[slice, slice]:
    y = rng.integers(0, max(shape[0] - size, 0) + 1)
    x = rng.integers(0, max(shape[1] - size, 0) + 1)
    return slice(y, y + size), slice(x, x + size)


def pad_to(patch: np.ndarray, size: int) -> np.ndarray:
    """Zero-pad the last two axes to at least ``size`` (small cropped scans)."""
    pad_y, pad_x = max(size - patch.shape[-2], 0), max(size - patch.shape[-1], 0)
    if pad_y or pad_x:
        widths = [(0, 0)] * (patch.ndim - 2) + [(pad_y // 2, pad_y - pad_y // 2), (pad_x // 2, pad_x - pad_x // 2)]
        patch = np.pad(patch, widths)
    return patch


def augment(patch: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """The paper's augmentation: a random multiple of 90 degrees and a random intensity change.

    The intensity change is a gamma in [0.7, 1.4] and a gain in [0.8, 1.2], the same for every
    slice of a stack so that neighbouring slices stay consistent.
    """
    patch = np.rot90(patch, k=int(rng.integers(4)), axes=(-2, -1))
    gamma = float(np.exp(rng.uniform(np.log(0.7), np.log(1.4))))
    gain = float(rng.uniform(0.8, 1.2))
    return (np.clip(patch, 0, None) ** gamma * gain).astype(np.float32)


def sample_stacks(volumes: Sequence[TrainingVolume], count: int, size: int, neighbours: int,
                  rng: np.random.Generator, augment_patches: bool = True) -> np.ndarray:
    """``count`` random stacks of ``neighbours`` adjacent slices, cropped to ``size`` x ``size``.

    Returns (count, neighbours, size, size) float32. With neighbours=1 these are the paper's single
    slices; with 3 the triplets (x_{n-1}, x_n, x_{n+1}) of the journal follow-up's interpolation loss.
    """
    candidates = [v for v in volumes if v.slices.shape[0] >= neighbours]
    out = np.empty((count, neighbours, size, size), np.float32)
    for i in range(count):
        volume = candidates[rng.integers(len(candidates))]
        first = rng.integers(0, volume.slices.shape[0] - neighbours + 1)
        stack = volume.slices[first:first + neighbours]
        rows, cols = random_crop_box(stack.shape[1:], size, rng)
        patch = pad_to(stack[:, rows, cols], size)
        out[i] = augment(patch, rng) if augment_patches else patch
    return out


def fixed_validation_stacks(volumes: Iterable[TrainingVolume], count: int, size: int, seed: int = 1234
                            ) -> np.ndarray:
    """A fixed set of triplets (no augmentation) so validation losses are comparable across epochs."""
    return sample_stacks(list(volumes), count, size, 3, np.random.default_rng(seed), augment_patches=False)
