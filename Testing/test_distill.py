"""Unit tests of the contrastive network's distillation (training/distill.py) and its bundled student."""

from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from LatentSRLib.models import registry  # noqa: E402
from LatentSRLib.models.contrastive import ContrastiveSR  # noqa: E402
from LatentSRLib.pipeline import super_resolve  # noqa: E402
from LatentSRLib.training import distill  # noqa: E402
from LatentSRLib.training.data import TrainingVolume  # noqa: E402


def teacher_model(seed: int = 0) -> ContrastiveSR:
    """A small non-identity 'teacher' (its SR tail is random, so its correction is not zero)."""
    torch.manual_seed(seed)
    model = ContrastiveSR(width=8, encoder_blocks=1, decoder_blocks=1, projection_dim=8)
    with torch.no_grad():
        model.sr_decoder.tail.weight.normal_(0, 0.05)
    return model.eval()


def volumes(count: int = 2, seed: int = 0) -> list[TrainingVolume]:
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:40, :48]
    out = []
    for i in range(count):
        z = np.arange(5)[:, None, None]
        blob = np.exp(-((yy - 20 - 3 * z) ** 2 + (xx - 24 + 2 * z) ** 2) / (60.0 + 10 * i))
        out.append(TrainingVolume(f"patient{i:03d}_frame01.nii.gz",
                                  (blob + 0.05 * rng.random((5, 40, 48))).astype(np.float32), 10.0))
    return out


def test_reformat_windows_and_teacher_buckets():
    rng = np.random.default_rng(0)
    planes = distill.reformat_windows(volumes(1)[0], 4, 6, 24, rng)
    assert all(p.shape == (17, 24) for p in planes)  # (5 - 1) * 4 + 1 rows, 24 columns
    # Rows 0, 4, 8, ... are the acquired slices; the others are linear blends of them.
    assert np.allclose(planes[0][2], 0.5 * (planes[0][0] + planes[0][4]), atol=1e-6)
    buckets = distill.run_teacher(teacher_model(), planes + distill.reformat_windows(volumes(1)[0], 2, 3, 24, rng))
    assert sorted(buckets) == [9, 17] and buckets[17][0].shape == (6, 17, 24) and buckets[9][1].shape == (3, 9, 24)
    assert buckets[17][0].dtype == np.float16 and np.abs(buckets[17][1]).max() > 1e-3  # the teacher corrects


def test_distillation_steps_reduce_the_student_teacher_loss():
    rng = np.random.default_rng(1)
    planes = []
    for volume in volumes(3):
        planes += distill.reformat_windows(volume, 4, 8, 32, rng)
    buckets = distill.run_teacher(teacher_model(3), planes)
    torch.manual_seed(0)
    student = ContrastiveSR(width=4, encoder_blocks=1, decoder_blocks=1, projection_dim=4)
    before = distill.fidelity(student, buckets, context=4)
    # An untrained student is the identity: it leaves all of the teacher's correction unexplained.
    assert before["unexplained"] == pytest.approx(1.0, abs=1e-6)
    optimiser = torch.optim.Adam(student.parameters(), lr=3e-3)
    losses = []
    for _ in range(60):
        x, t = distill.sample_batch(buckets, 8, rng)
        loss = distill.distill_loss(student, x, t, context=4)
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()
        losses.append(loss.item())
    after = distill.fidelity(student, buckets, context=4)
    assert np.mean(losses[-10:]) < 0.7 * np.mean(losses[:10])
    assert after["l1"] < 0.7 * before["l1"] and after["unexplained"] < 0.6


def test_train_exports_caches_and_resumes(tmp_path):
    from LatentSRLib.volume import Volume, write
    teacher = teacher_model(4)
    teacher_file = registry.save(tmp_path / "teacher.pt", "contrastive", teacher.config, teacher.state_dict(),
                                 {"pixel_size": 1.4})
    folder = tmp_path / "data"
    for volume in volumes(3):
        (folder / volume.name.split("_")[0]).mkdir(parents=True)
        write(Volume(volume.slices[None], (1.4, 1.4, 10.0)), folder / volume.name.split("_")[0] / volume.name)
    config = distill.DistillConfig(data=[str(folder)], out=str(tmp_path / "student.pt"), teacher=str(teacher_file),
                                   validation=["patient002"], width=4, encoder_blocks=1, factors=(4,),
                                   planes_per_frame=4, validation_planes_per_frame=4, crop=16, context=4,
                                   steps=6, batch_size=4, eval_every=3, cache=str(tmp_path / "cache.npz"),
                                   progress=False)
    out = distill.train(config)
    content = registry.load(out, "contrastive")
    assert content["config"]["width"] == 4 and content["meta"]["pixel_size"] == 1.4
    assert content["meta"]["teacher"]["sha256"] == registry.sha256(teacher_file)
    assert [h["step"] for h in content["meta"]["history"]][-1] in (3, 6)
    train, validation, _ = distill.load_buckets(config.cache)
    assert sum(len(x) for x, _ in train.values()) == 8 and sum(len(x) for x, _ in validation.values()) == 4
    # Resuming continues the step count from the checkpoint, with the cached targets.
    distill.train(distill.DistillConfig(**{**vars(config), "steps": 9, "resume": True}))
    state = torch.load(str(out) + ".ckpt", weights_only=True)
    assert state["step"] == 9 and [h["step"] for h in state["history"]] == [3, 6, 9]


def test_bundled_fast_student_matches_its_teacher_on_a_phantom():
    """contrastive-acdc-fast reproduces most of contrastive-acdc's correction to linear interpolation."""
    manifest = registry.manifest()
    if "contrastive-acdc-fast" not in manifest or "contrastive-acdc" not in manifest:
        pytest.skip("the distilled contrastive weights are not bundled")
    content = registry.load("contrastive-acdc-fast", "contrastive")
    assert content["meta"]["teacher"]["sha256"] == manifest["contrastive-acdc"]["sha256"]
    from LatentSRLib import phantom
    volume = phantom.cine(frames=1, slices=5, size=64, pixel_size=1.4, factor=1, seed=0).acquired
    out = {name: super_resolve(volume, "contrastive", factor=2, device="cpu", weights=name).array
           for name in ("contrastive-acdc", "contrastive-acdc-fast")}
    linear = super_resolve(volume, "linear", factor=2).array
    teacher_correction = out["contrastive-acdc"] - linear
    error = out["contrastive-acdc-fast"] - out["contrastive-acdc"]
    assert np.abs(teacher_correction).mean() > 0
    assert np.sqrt(np.mean(error ** 2)) < 0.5 * np.sqrt(np.mean(teacher_correction ** 2))
