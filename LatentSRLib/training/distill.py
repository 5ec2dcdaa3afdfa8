"""Knowledge distillation of the contrastive SR network into the fast in-between student (issue #15).

The teacher (the bundled ``contrastive-acdc``, 14 convolutions at width 32) runs at inference on
every XZ and YZ reformat of a frame, linearly interpolated along Z by the internal factor m: about 2
TFLOP a frame, about a minute on two CPU cores. Its input is a function of the acquired rows alone,
and only its output on the rows at j/factor of each gap is used, so the student
(:class:`~LatentSRLib.models.contrastive_student.InBetweenStudent`) maps the Z acquired rows of a
plane (and m) to the teacher's correction at any fraction t of the way between them. Nothing else is
learned: no truth, no adversarial or contrastive term.

Data (:func:`teacher_samples`): per frame one internal factor m (drawn from ``factors``),
reformat planes of the linearly interpolated frame (XZ or YZ, full height: the top and bottom rows
are the first and last slices, as at inference), cut to a window of ``crop + 2 * context`` columns.
The teacher runs on exactly that window; the loss is scored on its central ``crop`` columns only,
where the window's cut edges do not reach (the teacher's receptive field is 29 pixels, the
student's 27). Planes with the same number of acquired rows and m form a bucket; a batch comes from one.

A first student (the teacher's own class at width 8, on all (Z-1)*m+1 rows; the model card's
"Distilled student, first try") was 5.7x faster but kept only 78 % of the teacher's SSIM gain: the
work per frame, not the width, was what had to shrink.

    python -m LatentSRLib.training.distill --data ../shared/data/acdc_fullfov --out runs/student.pt \
        --exclude patient035 ... --validation patient001 ...
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

from .. import LatentSRError
from ..models import registry
from ..models.contrastive import ContrastiveSR
from ..models.contrastive_student import InBetweenStudent
from . import common
from .contrastive import linear_along_z
from .data import MODEL_PIXEL_SIZE, TrainingVolume, load_volumes, patient_of

# (acquired rows Z, internal factor m) -> (acquired rows (N, Z, W), the teacher's corrections on the rows
# between them (N, m-1, Z-1, W): [i, k] is the row at fraction i/m from acquired row k to k+1), float16
Buckets = dict[tuple[int, int], tuple[np.ndarray, np.ndarray]]


@dataclasses.dataclass
class DistillConfig:
    """Everything a distillation run needs (recorded in the exported file's metadata)."""

    data: Sequence[str]
    out: str
    teacher: str = "contrastive-acdc"
    exclude: Sequence[str] = ()        # files whose path contains any of these: never read
    validation: Sequence[str] = ()     # patients (e.g. "patient001") held out for the fidelity check
    width: int = 32
    blocks: int = 3
    dilation: int = 2
    head_width: int = 16
    # Internal factors m drawn per frame. m = k * round(spacing / (k * 1.4 mm)) at factor k: at factor 2,
    # 4 for 5-7 mm slices, 6 for 8 mm, 8 for 10 mm (the test protocol), 14 for 20 mm; near-isotropic
    # factors give m = k (7 for 10 mm slices at 1.4 mm).
    factors: Sequence[int] = (3, 4, 5, 6, 7, 8, 8, 8, 9, 10, 12, 14)
    midpoint_share: float = 0.5  # share of training examples at t = 1/2 (factor 2) when m is even
    planes_per_frame: int = 48
    validation_planes_per_frame: int = 8
    crop: int = 64
    context: int = 16
    steps: int = 24000
    batch_size: int = 32
    learning_rate: float = 2e-3
    eval_every: int = 1000
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


def run_teacher(teacher: torch.nn.Module, planes: list[np.ndarray], m: int, batch: int = 8
                ) -> tuple[np.ndarray, np.ndarray]:
    """The student's view of planes interpolated by ``m`` (all of one shape): their acquired rows
    (N, Z, W) and the teacher's corrections on the rows between them (N, m-1, Z-1, W), float16."""
    x = np.stack(planes)
    z = (x.shape[1] - 1) // m + 1
    corrections = []
    with torch.inference_mode():
        for start in range(0, len(x), batch):
            images = torch.from_numpy(x[start:start + batch])[:, None].contiguous(memory_format=torch.channels_last)
            c = (teacher(images) - images)[:, 0, :-1].reshape(-1, z - 1, m, x.shape[2])  # row k*m + i -> [k, i]
            corrections.append(c[:, :, 1:].permute(0, 2, 1, 3).numpy())
    return x[:, ::m].astype(np.float16), np.concatenate(corrections).astype(np.float16)


def teacher_samples(volumes: Sequence[TrainingVolume], teacher: torch.nn.Module, factors: Sequence[int],
                    planes_per_frame: int, width: int, rng: np.random.Generator, progress: bool = False
                    ) -> Buckets:
    """Reformat windows of every volume (one factor m per volume, drawn from ``factors``) and the
    teacher's corrections between acquired rows, as buckets by (acquired rows, m)."""
    parts: dict[tuple[int, int], list[tuple[np.ndarray, np.ndarray]]] = {}
    for i, volume in enumerate(volumes):
        m = int(rng.choice(list(factors)))
        planes = [p for p in reformat_windows(volume, m, planes_per_frame, width, rng) if p.shape[1] == width]
        if planes:
            rows, target = run_teacher(teacher, planes, m)
            parts.setdefault((rows.shape[1], m), []).append((rows, target))
        if progress and (i + 1) % 20 == 0:
            print(f"  teacher on reformats of {i + 1}/{len(volumes)} volumes", flush=True)
    return {key: tuple(np.concatenate(arrays) for arrays in zip(*items)) for key, items in parts.items()}


def save_buckets(path: str | Path, train: Buckets, validation: Buckets, meta: dict) -> None:
    arrays = {f"{kind}_{part}_{z}_{m}": pair[i] for kind, buckets in (("train", train), ("val", validation))
              for (z, m), pair in buckets.items() for i, part in enumerate(("x", "t"))}
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    np.savez(path, meta=np.array(repr(meta)), **arrays)


def load_buckets(path: str | Path) -> tuple[Buckets, Buckets, str]:
    data = np.load(path)
    out: dict[str, Buckets] = {"train": {}, "val": {}}
    for key in data.files:
        if key.count("_") == 3 and key.split("_")[1] == "x":
            kind, _, z, m = key.split("_")
            out[kind][int(z), int(m)] = (data[key], data[f"{kind}_t_{z}_{m}"])
    return out["train"], out["val"], str(data["meta"])


def student_correction(student: InBetweenStudent, x: torch.Tensor, m: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    """x (B, Z, W) acquired rows, m (B,), t (B,) -> (B, Z-1, W) the student's corrections at t."""
    return student(x[:, None], m, t[:, None])[:, 0]


def distill_loss(student: InBetweenStudent, x: torch.Tensor, target: torch.Tensor, m: torch.Tensor,
                 t: torch.Tensor, context: int) -> torch.Tensor:
    """L1 between the student's and the teacher's corrections at t on the central columns.

    x (B, Z, W) acquired rows, target (B, Z-1, W), m and t (B,); columns within ``context`` of the
    window's cut edges are not scored."""
    inner = slice(context, x.shape[-1] - context) if context else slice(None)
    return F.l1_loss(student_correction(student, x, m, t)[..., inner], target[..., inner])


def sample_batch(buckets: Buckets, batch: int, rng: np.random.Generator, midpoint_share: float = 0.5
                 ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """(rows, targets, m, t) of a batch from one bucket, chosen with probability proportional to its
    size; each example at a random position i/m (with probability ``midpoint_share`` at 1/2 when m is even)."""
    keys = sorted(buckets)
    sizes = np.array([len(buckets[key][0]) for key in keys], float)
    key = keys[int(rng.choice(len(keys), p=sizes / sizes.sum()))]
    (_, m), (x, target) = key, buckets[key]
    index = rng.choice(len(x), size=batch, replace=len(x) < batch)
    rows = rng.integers(1, m, size=batch)
    if m % 2 == 0:
        rows = np.where(rng.random(batch) < midpoint_share, m // 2, rows)
    return (torch.from_numpy(x[index].astype(np.float32)),
            torch.from_numpy(target[index, rows - 1].astype(np.float32)),
            torch.full((batch,), float(m)), torch.from_numpy((rows / m).astype(np.float32)))


def fidelity(student: InBetweenStudent, buckets: Buckets, context: int, batch: int = 64, midpoint_only: bool = True
             ) -> dict[str, float]:
    """Student vs teacher on held-out planes (at t = 1/2, or at every position): L1 of the corrections,
    and the share of the teacher's correction energy the student leaves unexplained
    (MSE(student - teacher) / MSE(teacher))."""
    l1 = err = energy = count = 0.0
    student.eval()
    with torch.inference_mode():
        for (_, m), (x_all, t_all) in buckets.items():
            positions = [m // 2] if midpoint_only and m % 2 == 0 else range(1, m)
            for start in range(0, len(x_all), batch):
                x = torch.from_numpy(x_all[start:start + batch].astype(np.float32))
                inner = slice(context, x.shape[-1] - context)
                t = torch.tensor([i / m for i in positions], dtype=torch.float32)
                c = student(x[:, None], float(m), t)[..., inner]  # (B, P, Z-1, W)
                target = torch.from_numpy(t_all[start:start + batch][:, [i - 1 for i in positions]].astype(np.float32))
                target = target[..., inner]
                l1 += float((c - target).abs().sum())
                err += float(((c - target) ** 2).sum())
                energy += float((target ** 2).sum())
                count += target.numel()
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
    if not train:
        raise LatentSRError(f"no training reformat is {width} pixels wide at {MODEL_PIXEL_SIZE} mm: the scans must "
                            f"span at least {width * MODEL_PIXEL_SIZE:.0f} mm in-plane (crop + 2 x context)")
    # Validation at the test protocol's internal factor (10 mm gaps at 1.4 mm, factor 2: m = 8).
    validation = teacher_samples(held, teacher, (8,), config.validation_planes_per_frame, width, rng) if held else {}
    if config.progress:
        print(f"teacher targets: {sum(len(b[0]) for b in train.values())} training and "
              f"{sum(len(b[0]) for b in validation.values())} validation planes, {time.time() - started:.0f} s",
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
    if "architecture" in content["config"]:
        raise LatentSRError(f"the teacher {config.teacher} is itself a fast student: distil the contrastive model")
    teacher = ContrastiveSR(**content["config"])
    teacher.load_state_dict(content["state_dict"])
    teacher = teacher.eval().to(memory_format=torch.channels_last)
    train_set, validation = prepare(config, teacher, rng)
    student = InBetweenStudent(config.width, config.blocks, config.dilation, config.head_width)
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
        x, target, m, t = sample_batch(train_set, config.batch_size, rng, config.midpoint_share)
        loss = distill_loss(student, x, target, m, t, config.context)
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


def export(student: InBetweenStudent, config: DistillConfig, teacher_content: dict, history: list[dict]) -> Path:
    meta = {key: teacher_content["meta"][key] for key in ("pixel_size", "intensity", "orientation")
            if key in teacher_content.get("meta", {})}
    # A bundled teacher keeps its name (inference falls back to it beyond the student's range); a file
    # is recorded by its name only (no trainer's folders in a shared file).
    teacher = Path(config.teacher).name if Path(config.teacher).is_absolute() else config.teacher
    meta.update({"method": "knowledge distillation of the contrastive SR network (teacher: "
                           f"{teacher}): the student maps a reformat's acquired rows to the teacher's "
                           "correction between them",
                 "teacher": {"name": teacher, "sha256": registry.sha256(teacher_content["path"]),
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
    parser.add_argument("--factors", nargs="+", type=int, default=list(defaults.factors))
    for name in ("teacher", "width", "blocks", "dilation", "head_width", "midpoint_share", "planes_per_frame", "steps", "batch_size",
                 "learning_rate", "eval_every", "seed", "max_frames", "max_minutes"):
        value = getattr(defaults, name)
        parser.add_argument("--" + name.replace("_", "-"), type=type(value) if value is not None else float,
                            default=value)
    parser.add_argument("--resume", action="store_true")
    args = parser.parse_args(argv)
    train(DistillConfig(**vars(args)))


if __name__ == "__main__":
    main()
