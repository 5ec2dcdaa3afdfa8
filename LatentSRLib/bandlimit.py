"""The grid a stack was acquired on, when the scanner reconstructed it on a finer one.

Many scanners reconstruct cines on a finer pixel grid than they acquire by zero-filling k-space (Siemens
"interpolation", GE "ZIP", Philips' reconstruction matrix). Such a slice holds nothing above the acquired
resolution: its spectrum ends in a cliff at a fraction of the Nyquist frequency. Appearance models trained
on one site's grid (the cross-fade detector, :mod:`LatentSRLib.synthesize.crossfade`) take that smoothness
for something else, so they look at the stack on its acquired grid: :func:`band_limit` finds the cliff
along each in-plane axis and :func:`to_acquired_grid` crops the spectrum there, the exact inverse of the
zero-filling.

Written here because no imaging library estimates a reconstruction's zero-filling: the estimate is the
largest step down of the stack's mean power spectrum along each axis (a k-space edge), which a natural
image's smoothly falling spectrum does not have (measured on the ACDC training and validation stacks:
``benchmarks/bandlimit_validation.py``, Resources/Models/crossfade.md). Smooth enlargements (bilinear,
bicubic) leave no cliff and are not found.
"""

from __future__ import annotations

import numpy as np

from .opticalflow import BLANK_STD

#: Frequencies (cycles per pixel) at which the stack's spectrum is compared.
FREQUENCIES = np.linspace(0.0, 0.5, 81)
#: Width (cycles per pixel) of the bands just below and just above a candidate edge: narrow, so that
#: a cliff stands out and a steep but smooth fall (a bicubic enlargement's) does not.
BAND = 0.025
#: Highest candidate edge: an edge closer to the Nyquist frequency (a finer grid by less than 1.15x)
#: changes too little to matter and leaves too few frequencies above it to see.
HIGHEST_EDGE = 0.435
#: The candidate edges (cycles per pixel).
EDGES = FREQUENCIES[(FREQUENCIES >= 0.1) & (FREQUENCIES <= HIGHEST_EDGE)]
#: An edge is a fall of the mean log10 power by at least EDGE_DROP from the band below it to the band
#: above it, with no frequency above it coming back within RECOVERY of the band below. On the ACDC
#: validation stacks (every other slice): acquired ones fall at most 0.45 over such a step, bicubic and
#: bilinear enlargements up to 0.99, zero-filled ones (1.25x to 2.5x) at least 1.51
#: (``benchmarks/bandlimit_validation.py``).
EDGE_DROP, RECOVERY = 1.15, 0.8


def _axis_spectra(slices: np.ndarray) -> tuple[np.ndarray, np.ndarray] | None:
    """log10 of the mean power along Y and along X of the (Z, Y, X) stack's non-blank slices, each at
    :data:`FREQUENCIES` (None when no slice has content)."""
    power_y, power_x, used = np.zeros(FREQUENCIES.size), np.zeros(FREQUENCIES.size), 0
    for image in slices:
        image = np.asarray(image, np.float64)
        if image.std() < BLANK_STD or min(image.shape) < 16:
            continue
        window = np.hanning(image.shape[0])[:, None] * np.hanning(image.shape[1])[None, :]
        tapered = (image - image.mean()) * window
        along_y = (np.abs(np.fft.rfft(tapered, axis=0)) ** 2).mean(axis=1)
        along_x = (np.abs(np.fft.rfft(tapered, axis=1)) ** 2).mean(axis=0)
        power_y += np.interp(FREQUENCIES, np.fft.rfftfreq(image.shape[0]), along_y)
        power_x += np.interp(FREQUENCIES, np.fft.rfftfreq(image.shape[1]), along_x)
        used += 1
    if not used:
        return None
    tiny = np.finfo(np.float64).tiny
    return np.log10(power_y / used + tiny), np.log10(power_x / used + tiny)


def band_levels(log_power: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(below, above): for each candidate edge of :data:`EDGES`, the mean of ``log_power`` (at
    :data:`FREQUENCIES`) over the band just below it and over the band just above it."""
    below = np.array([log_power[(FREQUENCIES >= edge - BAND) & (FREQUENCIES < edge)].mean() for edge in EDGES])
    above = np.array([log_power[(FREQUENCIES > edge) & (FREQUENCIES <= edge + BAND)].mean() for edge in EDGES])
    return below, above


def _edge(log_power: np.ndarray) -> float:
    """The fraction of the Nyquist frequency at which ``log_power`` (at :data:`FREQUENCIES`) falls off a
    cliff, or 1.0 where it does not."""
    best, best_drop = 1.0, EDGE_DROP
    for edge, below, above in zip(EDGES, *band_levels(log_power)):
        drop = below - above
        if drop >= best_drop and log_power[FREQUENCIES > edge].max() <= below - RECOVERY:
            best, best_drop = _half_way_down(log_power, edge, below - np.log10(2.0)) / 0.5, drop
    return float(best)


def _half_way_down(log_power: np.ndarray, edge: float, middle: float) -> float:
    """The step's exact place near ``edge``: where ``log_power`` last crosses ``middle`` going down,
    between two of :data:`FREQUENCIES` (linearly), no higher than the Nyquist frequency."""
    near = np.flatnonzero((FREQUENCIES >= edge - BAND) & (FREQUENCIES <= edge + BAND))
    up = near[log_power[near] >= middle].max()
    if up + 1 >= FREQUENCIES.size:
        return 0.5
    fraction = (log_power[up] - middle) / max(log_power[up] - log_power[up + 1], 1e-12)
    return float(min(FREQUENCIES[up] + min(fraction, 1.0) * (FREQUENCIES[1] - FREQUENCIES[0]), 0.5))


def band_limit(slices: np.ndarray) -> tuple[float, float]:
    """(along Y, along X): the fraction of the Nyquist frequency that the normalised (Z, Y, X) stack
    holds content up to; 1.0 on an axis without a zero-filling edge (module docstring), e.g. (0.5, 0.5)
    for a stack reconstructed on a grid twice as fine as the one it was acquired on."""
    spectra = _axis_spectra(slices)
    if spectra is None:
        return 1.0, 1.0
    return _edge(spectra[0]), _edge(spectra[1])


def zero_fill(image: np.ndarray, factor: float) -> np.ndarray:
    """``image`` (Y, X), or a (Z, Y, X) stack slice by slice, enlarged ``factor`` times in-plane by
    zero-filling its spectrum, as a scanner reconstructs on a finer grid (magnitude, the mean intensity
    kept). :func:`to_acquired_grid` undoes it."""
    image = np.asarray(image, np.float64)
    rows, columns = image.shape[-2:]
    spectrum = np.fft.fftshift(np.fft.fft2(image), axes=(-2, -1))
    pad_y, pad_x = int(round(rows * factor)) - rows, int(round(columns * factor)) - columns
    padding = [(0, 0)] * (image.ndim - 2) + [(pad_y // 2, pad_y - pad_y // 2), (pad_x // 2, pad_x - pad_x // 2)]
    spectrum = np.pad(spectrum, padding)
    scale = (rows + pad_y) * (columns + pad_x) / (rows * columns)
    return (np.abs(np.fft.ifft2(np.fft.ifftshift(spectrum, axes=(-2, -1)))) * scale).astype(np.float32)


def to_acquired_grid(slices: np.ndarray, limits: tuple[float, float]) -> np.ndarray:
    """The (Z, Y, X) stack on the grid its band ``limits`` (:func:`band_limit`) say it was acquired on:
    its spectrum cropped to them, the inverse of zero-filling (the mean intensity kept). The stack itself
    where both limits are 1."""
    if limits == (1.0, 1.0):
        return slices
    rows, columns = slices.shape[1:]
    new_rows, new_columns = (max(2, int(round(size * limit))) for size, limit in zip((rows, columns), limits))
    spectrum = np.fft.fftshift(np.fft.fft2(np.asarray(slices, np.float64)), axes=(1, 2))
    top, left = rows // 2 - new_rows // 2, columns // 2 - new_columns // 2
    cropped = spectrum[:, top:top + new_rows, left:left + new_columns]
    scale = (new_rows * new_columns) / (rows * columns)
    image = np.fft.ifft2(np.fft.ifftshift(cropped, axes=(1, 2))).real * scale
    return image.astype(np.float32)
