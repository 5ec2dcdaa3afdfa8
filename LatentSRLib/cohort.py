"""Cohorts: one task per study, in-process or on a Dask cluster; resumable, nothing lost.

``latentsr super-resolve studies/ -o results/`` (and ``evaluate`` over folders) run here. Engines:

* ``workers <= 1`` and no scheduler: serial, in this process (no Dask import, torch keeps its threads).
* ``workers = N >= 2``: a local ``dask.distributed.LocalCluster`` of N worker *processes* with one
  thread each (torch and ITK are not shared between threads of one process, and a process keeps its
  own model cache: the learned methods cache loaded weights per process with functools.lru_cache, so
  each worker loads the model once). Each worker limits torch and ITK to cpu_count // N threads so N
  workers do not oversubscribe the cores. With GPUs, worker i uses cuda:(i mod GPUs): give one worker
  per GPU (``--workers <GPUs>``).
* ``scheduler = ADDRESS``: an existing ``dask.distributed`` scheduler (``dask scheduler`` +
  ``dask worker ADDRESS --nthreads 1`` on each node, or dask-jobqueue on SLURM). Inputs and outputs
  must be on a file system every worker sees; workers keep their own thread settings (for GPUs start
  one worker per GPU with CUDA_VISIBLE_DEVICES set, e.g. dask-cuda's ``dask cuda worker``).

Per study (:func:`process_study`): sha256 of the input -> read -> factor -> skip if the output's
sidecar records the same input checksum and options and the output is still the file it recorded
(:mod:`LatentSRLib.manifest`) -> super-resolve -> atomic write (:func:`LatentSRLib.volume.write`) ->
sidecar. A failing study (unreadable or 2D file, out of memory, a worker that died) is recorded and
the others go on. ``manifest.csv`` lists every study found before the work starts (a folder that is
a symbolic link as failed, not followed) and is rewritten as each finishes. Bad options, an
unreachable scheduler or an unwritable output folder stop the run before anything is created.
"""

from __future__ import annotations

import dataclasses
import os
import sys
import time
from pathlib import Path
from typing import Any, Callable, Sequence

from . import LatentSRError, __version__, atomic
from .engine import Engine
from .folders import check_folder, linked_folders
from .manifest import (DONE, FAILED, SKIPPED, Record, input_sha256, made_from, one_line,
                       output_fingerprint, output_intact, read_sidecar, sidecar_path, write_manifest, write_sidecar)
from .memory import output_shape
from .volume import check_output, find_images, read, slice_axis, volume_name, write

MANIFEST_NAME = "manifest.csv"


@dataclasses.dataclass(frozen=True)
class Options:
    """The super-resolution options of a cohort run (the CLI's flags)."""

    method: str
    factor: int | None = None
    spacing: float | None = None
    axis: int | None = None
    weights: str | None = None
    device: str = "auto"
    keep_original: bool = True
    mode: str | None = None
    correction_sigma_mm: float | None = None
    correction_gain: float | None = None
    batch_slices: int = 16
    overwrite: bool = False
    clip: bool | None = None
    resampling_check: bool = True
    allow_external_data: bool = False  # read a header's data file outside its folder (not a sample option)

    def identity(self, weights_sha256: str, factor: int) -> dict[str, Any]:
        """What must match for a finished output to be reused: everything that changes its samples,
        with the factor as resolved (--factor 6 and --spacing 1.33 may make the same output). Not the
        device, the batch size or the LatentSR version: they do not change what was asked for."""
        return {"method": self.method, "factor": factor, "axis": self.axis,
                "weights_sha256": weights_sha256, "keep_original": self.keep_original, "mode": self.mode,
                "correction_sigma_mm": self.correction_sigma_mm, "correction_gain": self.correction_gain,
                "clip": self.clip, "resampling_check": self.resampling_check}


@dataclasses.dataclass(frozen=True)
class Study:
    """One input and where its output goes: ``folder / f"{stem}_x{factor}.nii.gz"``; ``refused``: why
    it is recorded as failed without being read (a symbolic link to a folder)."""

    input: str
    folder: str
    stem: str
    refused: str = ""

    def output(self, factor: int) -> Path:
        return Path(self.folder) / f"{self.stem}_x{factor}.nii.gz"


def plan(paths: Sequence[str | os.PathLike], out: str | os.PathLike, method: str) -> list[Study]:
    """The studies under ``paths``; outputs mirror each input's sub-folder below the folder given, so
    studies/P001/cine.nii.gz and studies/P002/cine.nii.gz do not collide. A linked folder below a folder
    given is a refused study: not followed (it can lead out of what was given, or in a circle), not lost.

    Raises:
        LatentSRError: no images, or two inputs that would write the same output.
    """
    studies, seen = [], {}
    for entry in map(Path, paths):
        for link in linked_folders(entry, skip=atomic.PREFIX):
            studies.append(Study(str(link), str(out), "", refused=f"{link} is a symbolic link to a folder: not "
                                 "followed (give the folder it points to as an input instead)"))
        for source in find_images([entry]):
            relative = source.parent.relative_to(entry) if entry.is_dir() and source != entry else Path()
            _refuse_symlinked_folders(Path(out), relative)
            study = Study(str(source), str(Path(out) / relative), f"{volume_name(source)}_{method}")
            key = (study.folder, study.stem)
            if key in seen:
                raise LatentSRError(f"{seen[key]} and {source} would write the same output "
                                    f"{Path(study.folder) / study.stem}_x*.nii.gz: rename one")
            seen[key] = source
            studies.append(study)
    if not studies:
        raise LatentSRError(f"no images found in {', '.join(map(str, paths))}")
    return studies


def _refuse_symlinked_folders(out: Path, relative: Path) -> None:
    """Results go into real folders below ``out``: a sub-folder there that is a symlink (planted, or
    left by someone) would carry them out of the folder the user named."""
    for depth in range(1, len(relative.parts) + 1):
        folder = out.joinpath(*relative.parts[:depth])
        if folder.is_symlink():
            raise LatentSRError(f"{folder} is a symlink: results go only into real folders below {out}")


def check_options(options: Options) -> str:
    """Check the options before any work; returns the sha256 of a learned method's weights file
    ('' for conventional methods)."""
    from . import pipeline
    from .devices import check_device_name
    check_device_name(options.device)
    if options.correction_sigma_mm is not None or options.correction_gain is not None:
        from .synthesize.correction import correction_options  # numpy and scipy only
        correction_options({}, options.correction_sigma_mm, options.correction_gain)
    if options.method not in pipeline.METHODS:
        raise LatentSRError(f"unknown method '{options.method}' (choose from {', '.join(pipeline.METHODS)})")
    if options.factor is not None and (int(options.factor) != options.factor or options.factor < 1):
        raise LatentSRError(f"the factor must be an integer of at least 1, got {options.factor}")
    if options.spacing is not None and not options.spacing > 0:
        raise LatentSRError(f"the target spacing must be positive, got {options.spacing}")
    if options.method not in pipeline.WEIGHTS_KIND:
        return ""
    from .models import registry  # imports torch: only for learned methods, which need it anyway
    path, _ = registry.resolve(options.weights, pipeline.WEIGHTS_KIND[options.method])
    if not Path(path).is_file():
        raise LatentSRError(f"weights file is missing: {path}")
    return registry.sha256(path)


def _limit_threads(threads: int | None, learned: bool) -> None:
    """Cap torch's and ITK's thread pools in a worker (N workers x all cores would oversubscribe)."""
    if not threads:
        return
    import SimpleITK as sitk
    sitk.ProcessObject.SetGlobalDefaultNumberOfThreads(threads)
    if learned or "torch" in sys.modules:
        import torch
        torch.set_num_threads(threads)


def _worker_device(device: str, learned: bool, gpu_per_worker: bool) -> str:
    """On a local cluster with GPUs, worker i takes cuda:(i mod GPUs) (one worker per GPU)."""
    if not (gpu_per_worker and learned and device in ("auto", "cuda")):
        return device
    import torch
    count = torch.cuda.device_count()
    if count == 0:
        return device
    from distributed import get_worker
    name = get_worker().name
    index = int(name) if str(name).isdigit() else abs(hash(name))
    return f"cuda:{index % count}"


def process_study(study: Study, options: Options, weights_sha256: str = "", threads: int | None = None,
                  gpu_per_worker: bool = False) -> Record:
    """Super-resolve one study (or skip it when already done); never raises: failures are recorded."""
    from . import pipeline
    started = time.perf_counter()
    record = Record(study.input, method=options.method, weights_sha256=weights_sha256)
    learned = options.method in pipeline.WEIGHTS_KIND
    try:
        if study.refused:
            raise LatentSRError(study.refused)
        _limit_threads(threads, learned)
        digest = input_sha256(study.input)
        volume = read(study.input, allow_external_data=options.allow_external_data)
        try:
            record.factor = pipeline.choose_factor(volume, options.factor, options.spacing, options.axis,
                                                   allow_copy=False)
        except pipeline.NothingToDo as nothing:  # not a failure, and no copy of the input: said in the manifest
            record.status, record.notes = SKIPPED, [str(nothing)]
            record.seconds = time.perf_counter() - started
            return record
        output = study.output(record.factor)
        record.output = str(output)
        identity = options.identity(weights_sha256, record.factor)
        recorded = None if options.overwrite else read_sidecar(output)
        if made_from(recorded, digest, identity) and output_intact(output, recorded):
            record.status = SKIPPED
            record.notes = list(recorded.get("notes", []))
            record.seconds = time.perf_counter() - started
            return record
        if recorded is not None and output.exists() and not made_from(recorded, digest, identity):
            raise LatentSRError(f"{output} was made from another input or with other options "
                                "(use --overwrite to redo it)")
        # A recorded output that is gone, truncated or replaced is made again (and said so)
        redone = [f"{output.name} was missing or not the file its run recorded: made again"] if recorded else []
        output.parent.mkdir(parents=True, exist_ok=True)
        axis = slice_axis(volume) if options.axis is None else options.axis
        check_output(output, True, protect=[study.input],  # format limits, before the work
                     shape=output_shape(volume.array.shape, record.factor, axis), direction=volume.direction)
        # Replace only an output seen now (to be redone: --overwrite, or no record vouches for it); one
        # that appears during the work is another run's result: published exclusively, it stays.
        replace = options.overwrite or os.path.lexists(output)
        sidecar_path(output).unlink(missing_ok=True)  # the old record must not vouch for the new output
        run = pipeline.Run(device=_worker_device(options.device, learned, gpu_per_worker),
                           weights=options.weights, keep_original=options.keep_original, mode=options.mode,
                           batch_slices=options.batch_slices,
                           correction_sigma_mm=options.correction_sigma_mm,
                           correction_gain=options.correction_gain, clip=options.clip,
                           resampling_check=options.resampling_check)
        result = pipeline.super_resolve(volume, options.method, factor=record.factor, axis=options.axis, run=run)
        record.notes = redone + list(run.notes)
        write(result, output, overwrite=replace, protect=[study.input], tag=f"{options.method} x{record.factor}",
              like=study.input)
        record.seconds = time.perf_counter() - started
        write_sidecar(output, {"input": study.input, "input_sha256": digest, "options": identity,
                               "factor": record.factor, "seconds": round(record.seconds, 3),
                               "latentsr": __version__, "device": run.device, "notes": run.notes,
                               **output_fingerprint(output)})
        record.status = DONE
    except Exception as error:  # noqa: BLE001 -- one study's failure must not end the cohort
        record.status, record.error = FAILED, one_line(error)
        if "out of memory" in record.error.lower() and "torch" in sys.modules:
            import torch
            if torch.cuda.is_available():
                torch.cuda.empty_cache()
    record.seconds = time.perf_counter() - started
    return record


def run_super_resolve(paths: Sequence[str | os.PathLike], out: str | os.PathLike, options: Options,
                      workers: int = 1, scheduler: str | None = None, progress: bool = True,
                      echo: Callable[[str], None] = print) -> list[Record]:
    """Super-resolve every study under ``paths`` into ``out``; writes ``out``/manifest.csv.

    Returns one :class:`Record` per study (status done, skipped, failed or not-run).

    Raises:
        LatentSRError: before any work: no images, colliding outputs, unknown method, missing weights.
    """
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise LatentSRError(f"with several inputs, -o must be a folder: {out}")
    check_folder(out, "-o")
    studies = plan(paths, out, options.method)
    digest = check_options(options)
    records = [Record(s.input, method=options.method, weights_sha256=digest) for s in studies]
    from tqdm import tqdm
    counts = {DONE: 0, SKIPPED: 0, FAILED: 0}
    with Engine(workers, scheduler, echo) as engine:  # connected (or refused) before anything is made
        out.mkdir(parents=True, exist_ok=True)
        write_manifest(records, out / MANIFEST_NAME)  # every study, not-run, before any work
        bar = tqdm(total=len(studies), desc=f"{options.method} cohort", unit="study", disable=not progress)
        try:
            kwargs = {"options": options, "weights_sha256": digest, "gpu_per_worker": engine.cluster is not None}
            for i, record, error in engine.map(process_study, studies, **kwargs):
                if error is not None:
                    record = Record(studies[i].input, method=options.method, weights_sha256=digest,
                                    status=FAILED, error=f"worker died (out of memory?): {one_line(error)}")
                records[i] = record
                write_manifest(records, out / MANIFEST_NAME)  # each outcome as it comes
                counts[record.status] += 1
                if record.status == FAILED:
                    where = "" if record.input in record.error else f"{record.input}: "
                    bar.write(f"failed: {where}{record.error}", file=sys.stderr)
                for note in record.notes:
                    bar.write(f"note: {record.input}: {note}")
                bar.update()
                bar.set_postfix(counts)
        finally:
            bar.close()
            write_manifest(records, out / MANIFEST_NAME)
    return records


def _evaluate_file(item: tuple[str, str | None], threads: int | None = None, **kwargs):
    """:func:`LatentSRLib.evaluate.evaluate_file` on (path, figure) in a worker (threads capped as for
    super-resolution)."""
    from . import evaluate as ev, pipeline
    _limit_threads(threads, any(m in pipeline.WEIGHTS_KIND for m in kwargs["methods"]))
    return ev.evaluate_file(item[0], figure=item[1], **kwargs)


def run_evaluate(paths: Sequence[str | os.PathLike], methods: Sequence[str], out_dir: str | os.PathLike,
                 keep_every: int = 2, device: str = "auto", weights: dict[str, str] | None = None,
                 correction_sigma_mm: float | None = None, correction_gain: float | None = None,
                 workers: int = 1, scheduler: str | None = None, progress: bool = True,
                 echo: Callable[[str], None] = print, resampling_check: bool = True):
    """:func:`LatentSRLib.evaluate.evaluate` with one task per volume file: the same checks, per-file
    work (:func:`LatentSRLib.evaluate.evaluate_file`), merge in file order and summary, so the rows and
    summary.md equal a serial run's. comparison.png comes from the first file (serially: the first file
    with a volume that has enough slices). A file that fails ends the run with its error, as serially."""
    from . import evaluate as ev
    if isinstance(keep_every, bool) or int(keep_every) != keep_every or keep_every < 2:
        raise LatentSRError(f"keep_every must be an integer of at least 2, got {keep_every!r}")
    keep_every = int(keep_every)
    methods = ev.check_methods(methods, weights)
    files = [str(f) for f in find_images(paths)]
    if not files:
        raise LatentSRError(f"no images found in {', '.join(map(str, paths))}")
    out = check_folder(out_dir, "--out")  # made by the summary, once every file is scored
    dataset = ev.dataset_name(paths)
    common = dict(methods=methods, keep_every=keep_every, device=device, weights=weights,
                  correction_sigma_mm=correction_sigma_mm, correction_gain=correction_gain,
                  dataset=dataset, resampling_check=resampling_check)
    from tqdm import tqdm
    parts: list = [None] * len(files)
    with Engine(workers, scheduler, echo) as engine, \
            tqdm(total=len(files), desc="evaluate", unit="file", disable=not progress) as bar:
        items = [(path, str(out / "comparison.png") if i == 0 else None) for i, path in enumerate(files)]
        for i, part, error in engine.map(_evaluate_file, items, **common):
            if error is not None:
                raise error if isinstance(error, LatentSRError) else LatentSRError(f"{files[i]}: {one_line(error)}")
            parts[i] = part
            bar.update()
    return ev.summarise_files(parts, methods, out, keep_every, dataset, weights, resampling_check)
