"""The contrastive network's fast midpoint student: its distillation (training/distill.py), its
inference path (synthesize/contrastive.py) and the bundled student against its teacher."""

from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from LatentSRLib.models import registry  # noqa: E402
from LatentSRLib.models.contrastive import ContrastiveSR  # noqa: E402
from LatentSRLib.models.contrastive_student import InBetweenStudent  # noqa: E402
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


def test_teacher_targets_are_the_acquired_rows_and_the_corrections_between_them():
    rng = np.random.default_rng(0)
    volume = volumes(1)[0]
    planes = distill.reformat_windows(volume, 4, 6, 24, rng)
    assert all(p.shape == (17, 24) for p in planes)  # (5 - 1) * 4 + 1 rows, 24 columns
    # Rows 0, 4, 8, ... are the acquired slices; the others are linear blends of them.
    assert np.allclose(planes[0][2], 0.5 * (planes[0][0] + planes[0][4]), atol=1e-6)
    teacher = teacher_model()
    rows, target = distill.run_teacher(teacher, planes, 4)
    assert rows.shape == (6, 5, 24) and target.shape == (6, 3, 4, 24) and rows.dtype == np.float16
    np.testing.assert_allclose(rows[0], planes[0][::4], atol=1e-3)
    with torch.no_grad():
        x = torch.from_numpy(planes[0])[None, None]
        correction = (teacher(x) - x)[0, 0].numpy()
    for i in (1, 2, 3):  # target[:, i - 1, k] is the row at i/4 of gap k: rows 4k + i
        np.testing.assert_allclose(target[0, i - 1], correction[i::4], atol=2e-3)
    assert np.abs(target).max() > 1e-3  # the teacher corrects
    buckets = distill.teacher_samples(volumes(2), teacher, (2, 3), 3, 24, rng)
    assert set(buckets) <= {(5, 2), (5, 3)}  # both volumes have 5 slices
    assert all(t.shape[1:] == (m - 1, 4, 24) for (_, m), (_, t) in buckets.items())


def test_distillation_steps_reduce_the_student_teacher_loss():
    rng = np.random.default_rng(1)
    teacher = teacher_model(3)
    buckets = distill.teacher_samples(volumes(3), teacher, (4,), 8, 32, rng)
    torch.manual_seed(0)
    student = InBetweenStudent(width=8, blocks=1, head_width=8)
    before = distill.fidelity(student, buckets, context=4)
    optimiser = torch.optim.Adam(student.parameters(), lr=3e-3)
    losses = []
    for _ in range(80):
        x, target, m, t = distill.sample_batch(buckets, 8, rng)
        assert set(t.tolist()) <= {0.25, 0.5, 0.75} and set(m.tolist()) == {4.0}
        loss = distill.distill_loss(student, x, target, m, t, context=4)
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()
        losses.append(loss.item())
    after = distill.fidelity(student, buckets, context=4)
    assert np.mean(losses[-10:]) < 0.7 * np.mean(losses[:10])
    assert after["l1"] < 0.7 * before["l1"] and after["unexplained"] < 0.6
    every = distill.fidelity(student, buckets, context=4, midpoint_only=False)
    assert every["unexplained"] < 0.8 and every["teacher_rms"] != after["teacher_rms"]


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
                                   validation=["patient002"], width=4, blocks=1, head_width=4, factors=(4,),
                                   planes_per_frame=4, validation_planes_per_frame=4, crop=16, context=4,
                                   steps=6, batch_size=4, eval_every=3, cache=str(tmp_path / "cache.npz"),
                                   progress=False)
    out = distill.train(config)
    content = registry.load(out, "contrastive")
    assert content["config"] == {"width": 4, "blocks": 1, "dilation": 2, "head_width": 4, "architecture": "in-between"}
    assert content["meta"]["pixel_size"] == 1.4 and content["meta"]["distillation"]["factors"] == [4]
    # The teacher is named without the trainer's folders, and identified by its digest.
    assert content["meta"]["teacher"] == {"name": "teacher.pt", "sha256": registry.sha256(teacher_file),
                                          "config": teacher.config}
    assert str(tmp_path) not in repr(content["meta"])
    assert [h["step"] for h in content["meta"]["history"]][-1] in (3, 6)
    train, validation, _ = distill.load_buckets(config.cache)
    assert sum(len(b[0]) for b in train.values()) == 8 and sum(len(b[0]) for b in validation.values()) == 4
    assert {m for _, m in train} == {4}
    # Resuming continues the step count from the checkpoint, with the cached targets.
    distill.train(distill.DistillConfig(**{**vars(config), "steps": 9, "resume": True}))
    state = torch.load(str(out) + ".ckpt", weights_only=True)
    assert state["step"] == 9 and [h["step"] for h in state["history"]] == [3, 6, 9]


def random_student(tmp_path, seed: int = 0, factors=(4, 6, 8)):
    """A student file with random weights (a non-zero correction) and the metadata inference reads."""
    torch.manual_seed(seed)
    student = InBetweenStudent(width=4, blocks=1, head_width=4)
    with torch.no_grad():
        student.out[-1].weight.normal_(0, 0.3)
    path = registry.save(tmp_path / f"student{seed}.pt", "contrastive", student.config, student.state_dict(),
                         {"pixel_size": 1.4, "teacher": {"name": "contrastive-acdc"},
                          "distillation": {"factors": list(factors)}})
    return student.eval(), path


@pytest.mark.parametrize("factor", [2, 3])
def test_student_inference_adds_the_mean_of_both_orientations_to_linear(tmp_path, factor):
    """The pipeline's student path, recomputed by hand: XZ planes are (Z, X) images, YZ planes (Z, Y);
    the correction at row j of each gap is their mean at t = j / factor, added to linear interpolation."""
    from LatentSRLib import phantom
    from LatentSRLib.intensity import normalise
    student, path = random_student(tmp_path)
    volume = phantom.cine(frames=1, slices=5, size=24, pixel_size=1.4, factor=1, seed=0).acquired
    out = super_resolve(volume, "contrastive", factor=factor, device="cpu", weights=str(path), clip=False)
    linear = super_resolve(volume, "linear", factor=factor).array
    norm, transform = normalise(volume.array[0])
    m = factor * max(1, round(volume.spacing[2] / (factor * 1.4)))  # 8 at factor 2, 6 at factor 3 (10 mm)
    frame = torch.from_numpy(norm.astype(np.float32))
    t = torch.arange(1, factor) / factor
    with torch.no_grad():
        xz = student(frame.permute(1, 0, 2)[:, None], float(m), t).permute(1, 2, 0, 3)  # (P, Z-1, Y, X)
        yz = student(frame.permute(2, 0, 1)[:, None], float(m), t).permute(1, 2, 3, 0)
    expected = 0.5 * (xz + yz).numpy()
    got = transform.forward(out.array[0]) - transform.forward(linear[0])
    for j in range(1, factor):
        np.testing.assert_allclose(got[j::factor], expected[j - 1], atol=2e-4)
    assert np.abs(expected).max() > 1e-2
    np.testing.assert_array_equal(out.array[0, ::factor], volume.array[0])  # acquired slices bit for bit


def test_student_outside_its_range_runs_its_teacher_with_a_warning(tmp_path):
    from LatentSRLib import phantom
    _, path = random_student(tmp_path, factors=(4,))
    volume = phantom.cine(frames=1, slices=4, size=24, pixel_size=1.4, factor=1, seed=1).acquired
    if "contrastive-acdc" not in registry.manifest():
        pytest.skip("no bundled teacher")
    with pytest.warns(UserWarning, match="running its teacher contrastive-acdc"):
        out = super_resolve(volume, "contrastive", factor=2, device="cpu", weights=str(path)).array  # m = 8
    teacher = super_resolve(volume, "contrastive", factor=2, device="cpu", weights="contrastive-acdc").array
    np.testing.assert_array_equal(out, teacher)


@pytest.mark.parametrize("factor", [2, 7])
def test_bundled_fast_student_matches_its_teacher_on_a_phantom(factor):
    """contrastive-acdc-fast reproduces most of contrastive-acdc's correction to linear interpolation, at
    the protocol's factor 2 and at the near-isotropic factor of 10 mm slices with 1.4 mm pixels (7)."""
    manifest = registry.manifest()
    if "contrastive-acdc-fast" not in manifest or "contrastive-acdc" not in manifest:
        pytest.skip("the distilled contrastive weights are not bundled")
    content = registry.load("contrastive-acdc-fast", "contrastive")
    assert content["config"]["architecture"] == "in-between"
    assert content["meta"]["teacher"]["sha256"] == manifest["contrastive-acdc"]["sha256"]
    from LatentSRLib import phantom
    volume = phantom.cine(frames=1, slices=6, size=64, pixel_size=1.4, factor=1, seed=0).acquired
    out = {name: super_resolve(volume, "contrastive", factor=factor, device="cpu", weights=name).array
           for name in ("contrastive-acdc", "contrastive-acdc-fast")}
    linear = super_resolve(volume, "linear", factor=factor).array
    new = np.ones(out["contrastive-acdc"].shape[1], bool)
    new[::factor] = False
    teacher_correction = (out["contrastive-acdc"] - linear)[:, new]
    error = (out["contrastive-acdc-fast"] - out["contrastive-acdc"])[:, new]
    assert np.abs(teacher_correction).mean() > 0
    assert np.sqrt(np.mean(error ** 2)) < 0.5 * np.sqrt(np.mean(teacher_correction ** 2))
