"""Knowledge distillation of the contrastive SR network into a smaller, faster one (issue #15).

The teacher (the bundled ``contrastive-acdc``, encoder of 5 residual blocks at width 32) runs at
inference on every XZ and YZ reformat of a frame, linearly interpolated along Z by the internal factor
m: about 2 TFLOP a frame, ~1 min on two CPU cores. The student is the same
:class:`~LatentSRLib.models.contrastive.ContrastiveSR` at a smaller width and depth (so loading and
inference stay one code path), trained to reproduce the teacher's correction ``teacher(x) - x`` on
such reformats of training scans. Nothing else is learned: no truth, no adversarial or contrastive
term; the student's LR decoder, degrader and projection head stay at their initial values and are
unused at inference.

Data (:func:`teacher_samples`): per frame and internal factor m (drawn from ``factors``), reformat
planes of the linearly interpolated frame (XZ or YZ, full height: their top and bottom rows are the
first and last slices, as at inference), cut to a window of ``crop + 2 * context`` columns. The
teacher runs on exactly that window; the loss is scored on its central ``crop`` columns only, where
the window's cut edges do not reach (the teacher's receptive field is 29 pixels, the student's less).
Planes of one height form a bucket; a batch is drawn from one bucket.

    python -m LatentSRLib.training.distill --data ../shared/data/acdc_fullfov --out runs/student.pt \
        --exclude patient035 ... --validation patient001 ... --width 8 --encoder-blocks 2
"""

from __future__ import annotations

import argparse
import dataclasses
import math
import time
from pathlib import Path
from typing import Sequence

import numpy as np
import torch
from torch.nn import functional as F

from ..models import registry
from ..models.contrastive import ContrastiveSR
from . import common
from .contrastive import linear_along_z
from .data import MODEL_PIXEL_SIZE, TrainingVolume, load_volumes, patient_of

Buckets = dict[int, tuple[np.ndarray, np.ndarray]]  # plane height -> (inputs (N, H, W), teacher corrections)


@dataclasses.dataclass
class DistillConfig:
    """Everything a distillation run needs (recorded in the exported file's metadata)."""

    data: Sequence[str]
    out: str
    teacher: str = "contrastive-acdc"
    exclude: Sequence[str] = ()        # files whose path contains any of these: never read
    validation: Sequence[str] = ()     # patients (e.g. "patient001") held out for the fidelity check
    width: int = 8
    encoder_blocks: int = 2
    decoder_blocks: int = 1
    factors: Sequence[int] = (5, 6, 8, 8, 8, 8, 10, 12, 14)  # internal factors m drawn per frame
    planes_per_frame: int = 32
    validation_planes_per_frame: int = 8
    crop: int = 64
    context: int = 16
    steps: int = 4000
    batch_size: int = 16
    learning_rate: float = 2e-3
    eval_every: int = 250
    seed: int = 0
    cache: str | None = None           # .npz of the teacher's targets (made once, then reused as it is)
    max_frames: int = 2
    max_minutes: float | None = None
    resume: bool = False
    progress: bool = True


def reformat_windows(volume: TrainingVolume, m: int, count: int, width: int, rng: np.random.Generator
                     ) -> list[np.ndarray]:
    """``count`` reformat planes (Zm, width) of ``volume`` linearly interpolated along Z by ``m``: a
    random XZ or YZ plane (from the central 80 % of rows or columns), a random window of ``width``
    columns (the whole plane when narrower)."""
    lin = linear_along_z(volume.slices.astype(np.float32), m)  # (Zm, Y, X)
    out = []
    for _ in range(count):
        xz = rng.random() < 0.5
        n = lin.shape[1] if xz else lin.shape[2]
        index = int(rng.integers(int(0.1 * n), max(int(0.9 * n), int(0.1 * n) + 1)))
        plane = lin[:, index, :] if xz else lin[:, :, index]
        left = int(rng.integers(0, max(plane.shape[1] - width, 0) + 1))
        out.append(np.ascontiguousarray(plane[:, left:left + width]))
    return out


def run_teacher(teacher: torch.nn.Module, planes: list[np.ndarray], batch: int = 8) -> Buckets:
    """The teacher's correction on each plane, grouped by plane shape: {height: (inputs, corrections)}
    as float16 (N, H, W) arrays. Planes narrower than the common width are dropped."""
    width = max(p.shape[1] for p in planes)
    groups: dict[int, list[np.ndarray]] = {}
    for plane in planes:
        if plane.shape[1] == width:
            groups.setdefault(plane.shape[0], []).append(plane)
    buckets: Buckets = {}
    with torch.inference_mode():
        for height, items in groups.items():
            x = np.stack(items)
            corrections = []
            for start in range(0, len(x), batch):
                images = torch.from_numpy(x[start:start + batch])[:, None].contiguous(memory_format=torch.channels_last)
                corrections.append((teacher(images) - images)[:, 0].numpy())
            buckets[height] = (x.astype(np.float16), np.concatenate(corrections).astype(np.float16))
    return buckets


def teacher_samples(volumes: Sequence[TrainingVolume], teacher: torch.nn.Module, factors: Sequence[int],
                    planes_per_frame: int, width: int, rng: np.random.Generator, progress: bool = False
                    ) -> Buckets:
    """Reformat windows of every volume (one factor m per volume, drawn from ``factors``) and the
    teacher's corrections on them, as buckets by height."""
    planes = []
    for i, volume in enumerate(volumes):
        m = int(rng.choice(list(factors)))
        planes += reformat_windows(volume, m, planes_per_frame, width, rng)
        if progress and (i + 1) % 20 == 0:
            print(f"  reformats of {i + 1}/{len(volumes)} volumes", flush=True)
    return run_teacher(teacher, planes)


def merge(a: Buckets, b: Buckets) -> Buckets:
    out = dict(a)
    for h, (x, t) in b.items():
        out[h] = (np.concatenate([out[h][0], x]), np.concatenate([out[h][1], t])) if h in out else (x, t)
    return out


def save_buckets(path: str | Path, train: Buckets, validation: Buckets, meta: dict) -> None:
    arrays = {f"{kind}_{part}_{h}": pair[i] for kind, buckets in (("train", train), ("val", validation))
              for h, pair in buckets.items() for i, part in enumerate(("x", "t"))}
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    np.savez(path, meta=np.array(repr(meta)), **arrays)


def load_buckets(path: str | Path) -> tuple[Buckets, Buckets, str]:
    data = np.load(path)
    out: dict[str, Buckets] = {"train": {}, "val": {}}
    for key in data.files:
        if key == "meta" or not key.endswith(tuple("0123456789")) or "_x_" not in key:
            continue
        kind, _, h = key.split("_")
        out[kind][int(h)] = (data[key], data[f"{kind}_t_{h}"])
    return out["train"], out["val"], str(data["meta"])


def distill_loss(student: torch.nn.Module, x: torch.Tensor, target: torch.Tensor, context: int) -> torch.Tensor:
    """L1 between the student's and the teacher's corrections on the central columns.

    x, target: (B, H, W) inputs and teacher corrections; columns within ``context`` of the window's
    cut edges are not scored."""
    correction = student(x[:, None])[:, 0] - x
    inner = slice(context, x.shape[-1] - context) if context else slice(None)
    return F.l1_loss(correction[..., inner], target[..., inner])


def sample_batch(buckets: Buckets, batch: int, rng: np.random.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """A batch from one bucket, chosen with probability proportional to its size."""
    heights = sorted(buckets)
    sizes = np.array([len(buckets[h][0]) for h in heights], float)
    h = heights[int(rng.choice(len(heights), p=sizes / sizes.sum()))]
    x, t = buckets[h]
    index = rng.choice(len(x), size=batch, replace=len(x) < batch)
    return torch.from_numpy(x[index].astype(np.float32)), torch.from_numpy(t[index].astype(np.float32))


def fidelity(student: torch.nn.Module, buckets: Buckets, context: int, batch: int = 16) -> dict[str, float]:
    """Student vs teacher on held-out planes: L1 of the corrections, and the share of the teacher's
    correction energy the student leaves unexplained (MSE(student - teacher) / MSE(teacher))."""
    l1 = err = energy = count = 0.0
    student.eval()
    with torch.inference_mode():
        for x_all, t_all in buckets.values():
            for start in range(0, len(x_all), batch):
                x = torch.from_numpy(x_all[start:start + batch].astype(np.float32))
                t = torch.from_numpy(t_all[start:start + batch].astype(np.float32))[..., context:x.shape[-1] - context]
                c = (student(x[:, None])[:, 0] - x)[..., context:x.shape[-1] - context]
                l1 += float((c - t).abs().sum())
                err += float(((c - t) ** 2).sum())
                energy += float((t ** 2).sum())
                count += t.numel()
    student.train()
    return {"l1": l1 / max(count, 1), "unexplained": err / max(energy, 1e-12),
            "teacher_rms": math.sqrt(energy / max(count, 1))}


def prepare(config: DistillConfig, teacher: torch.nn.Module, rng: np.random.Generator) -> tuple[Buckets, Buckets]:
    """The teacher's targets on training and validation planes (from ``config.cache`` when it exists)."""
    if config.cache and Path(config.cache).exists():
        train, validation, _ = load_buckets(config.cache)
        return train, validation
    volumes = load_volumes(config.data, MODEL_PIXEL_SIZE, exclude=config.exclude, max_frames=config.max_frames,
                           progress=config.progress)
    held = [v for v in volumes if patient_of(v) in set(config.validation)]
    used = [v for v in volumes if patient_of(v) not in set(config.validation)]
    if config.progress:
        print(f"training volumes {len(used)}, validation volumes {len(held)}", flush=True)
    width = config.crop + 2 * config.context
    started = time.time()
    train = teacher_samples(used, teacher, config.factors, config.planes_per_frame, width, rng, config.progress)
    # Validation at the test protocol's internal factor (10 mm gaps at 1.4 mm, factor 2: m = 8).
    validation = teacher_samples(held, teacher, (8,), config.validation_planes_per_frame, width, rng) if held else {}
    if config.progress:
        print(f"teacher targets: {sum(len(x) for x, _ in train.values())} training and "
              f"{sum(len(x) for x, _ in validation.values())} validation planes, {time.time() - started:.0f} s",
              flush=True)
    if config.cache:
        save_buckets(config.cache, train, validation, {"teacher": config.teacher, "exclude": list(config.exclude),
                                                        "validation": list(config.validation)})
    return train, validation


def train(config: DistillConfig) -> Path:
    """Distil; checkpoints at every evaluation (resumable), exports the student with the lowest
    validation L1 (or the last, without validation) as float16 weights to ``config.out``."""
    rng = common.seed_everything(config.seed)
    content = registry.load(config.teacher, "contrastive")
    teacher = ContrastiveSR(**content["config"])
    teacher.load_state_dict(content["state_dict"])
    teacher = teacher.eval().to(memory_format=torch.channels_last)
    train_set, validation = prepare(config, teacher, rng)
    student = ContrastiveSR(config.width, config.encoder_blocks, config.decoder_blocks)
    optimiser = torch.optim.Adam(student.parameters(), lr=config.learning_rate)
    schedule = torch.optim.lr_scheduler.LambdaLR(
        optimiser, lambda s: 0.5 * (1 + math.cos(math.pi * min(s, config.steps) / config.steps)))
    step, history, best, seconds_before = 0, [], math.inf, 0.0
    if config.resume:
        state = common.load_checkpoint(config.out)
        student.load_state_dict(state["model"])
        optimiser.load_state_dict(state["optimiser"])
        schedule.load_state_dict(state["schedule"])
        step, history, best, seconds_before = state["step"], state["history"], state["best"], state["seconds"]
        rng = np.random.default_rng(state["seed_sequence"])
    started = time.time()
    running = 0.0
    while step < config.steps:
        x, t = sample_batch(train_set, config.batch_size, rng)
        loss = distill_loss(student, x, t, config.context)
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()
        schedule.step()
        step += 1
        running += loss.item()
        out_of_time = config.max_minutes is not None and (time.time() - started) / 60 > config.max_minutes
        if step % config.eval_every == 0 or step == config.steps or out_of_time:
            scores = fidelity(student, validation, config.context) if validation else {}
            seconds = seconds_before + time.time() - started
            record = {"step": step, "seconds": round(seconds, 1),
                      "train_l1": running / (step - (history[-1]["step"] if history else 0)),
                      **{f"val_{k}": v for k, v in scores.items()}}
            history.append(record)
            running = 0.0
            if config.progress:
                print(" ".join(f"{k}={v:.5g}" if isinstance(v, float) else f"{k}={v}" for k, v in record.items()),
                      flush=True)
            score = scores.get("l1", -step)
            if score < best:
                best = score
                export(student, config, content, history)
            common.save_checkpoint(config.out, {
                "model": student.state_dict(), "optimiser": optimiser.state_dict(), "schedule": schedule.state_dict(),
                "step": step, "history": history, "best": best, "seconds": seconds,
                "seed_sequence": int(rng.integers(1 << 31))})
            if out_of_time:
                break
    return Path(config.out)


def export(student: ContrastiveSR, config: DistillConfig, teacher_content: dict, history: list[dict]) -> Path:
    meta = {key: teacher_content["meta"][key] for key in ("pixel_size", "intensity", "orientation")
            if key in teacher_content.get("meta", {})}
    meta.update({"method": "knowledge distillation of the contrastive SR network (teacher: "
                           f"{config.teacher}): the student reproduces the teacher's correction on reformats",
                 "teacher": {"name": config.teacher, "sha256": registry.sha256(teacher_content["path"]),
                             "config": teacher_content["config"]},
                 "distillation": common.recorded_config(config), "history": history,
                 "device": "cpu", "torch": torch.__version__})
    return registry.save(config.out, "contrastive", student.config, student.state_dict(), meta)


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    defaults = DistillConfig(data=(), out="")
    parser.add_argument("--data", nargs="+", required=True)
    parser.add_argument("--out", required=True)
    parser.add_argument("--cache")
    parser.add_argument("--exclude", nargs="*", default=[])
    parser.add_argument("--validation", nargs="*", default=[])
    for name in ("teacher", "width", "encoder_blocks", "decoder_blocks", "planes_per_frame", "steps", "batch_size",
                 "learning_rate", "eval_every", "seed", "max_frames", "max_minutes"):
        value = getattr(defaults, name)
        parser.add_argument("--" + name.replace("_", "-"), type=type(value) if value is not None else float,
                            default=value)
    parser.add_argument("--resume", action="store_true")
    args = parser.parse_args(argv)
    train(DistillConfig(**vars(args)))


if __name__ == "__main__":
    main()
