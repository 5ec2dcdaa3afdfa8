"""When a GPU runs out of memory: retry on the CPU with smaller batches, and say so.

A learned method that fills a GPU raises torch's ``OutOfMemoryError`` (CUDA), or a RuntimeError
whose message says "out of memory" (MPS, older torch). Nothing is lost by retrying: the pipeline
never modifies its input. The retry runs on the CPU (which has the host's memory) with a quarter
of the batch, then with one slice at a time; each step is reported through ``notify`` so the user
learns why the run got slower. This module never imports torch itself.
"""

from __future__ import annotations

import dataclasses
import sys
from typing import Callable

from . import LatentSRError
from .pipeline import Run, super_resolve
from .volume import Volume


def is_out_of_memory(error: BaseException) -> bool:
    """Whether ``error`` means a device ran out of memory (CUDA, MPS or the CPU allocator)."""
    torch = sys.modules.get("torch")  # only when a learned method already imported it
    oom_type = getattr(getattr(torch, "cuda", None), "OutOfMemoryError", None) if torch is not None else None
    if oom_type is not None and isinstance(error, oom_type):
        return True
    if type(error).__name__ == "OutOfMemoryError":
        return True
    return isinstance(error, (RuntimeError, MemoryError)) and (
        "out of memory" in str(error).lower() or isinstance(error, MemoryError))


def _free_device_memory() -> None:
    torch = sys.modules.get("torch")
    if torch is not None and torch.cuda.is_available():
        torch.cuda.empty_cache()


def super_resolve_with_fallback(volume: Volume, method: str, factor: int | None = None,
                                spacing: float | None = None, *, axis: int | None = None, run: Run | None = None,
                                notify: Callable[[str], None] | None = None) -> tuple[Volume, Run]:
    """:func:`LatentSRLib.pipeline.super_resolve`, retried on the CPU with smaller batches when the
    device runs out of memory.

    Returns:
        (result, the run that produced it): its ``device`` and ``batch_slices`` say where it ran,
        and its ``confidence`` is the method's confidence volume, if any.

    Raises:
        LatentSRError: still out of memory on the CPU with one slice at a time (crop to an ROI);
            other errors of the pipeline, unchanged.
    """
    run = run or Run()
    notify = notify or (lambda text: None)
    while True:
        try:
            return super_resolve(volume, method, factor, spacing, axis=axis, run=run), run
        except Exception as error:  # noqa: BLE001 - only out-of-memory errors are retried
            if not is_out_of_memory(error):
                raise
            _free_device_memory()
            on_cpu = run.device == "cpu"
            if on_cpu and run.batch_slices <= 1:
                raise LatentSRError("out of memory even on the CPU with one slice at a time: crop the input "
                                    "to a region of interest (ROI) and try again") from error
            batch = max(1, run.batch_slices // 4) if not on_cpu else 1
            where = "the CPU" if on_cpu else f"the CPU instead of '{run.device}'"
            who = "The CPU" if on_cpu else ("The device" if run.device == "auto" else "The GPU")
            notify(f"{who} ran out of memory: retrying on {where} "
                   f"with batches of {batch} slice{'s' if batch > 1 else ''}")
            run = dataclasses.replace(run, device="cpu", batch_slices=batch)
