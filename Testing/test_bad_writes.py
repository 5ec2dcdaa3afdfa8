"""Writing only where asked, and never publishing an unverified file (issue #29, the write side).

Real command lines run in-process (:func:`LatentSRLib.cli.main`), real subprocesses where a signal or
a full disk must hit a real writer. Each test names the defect of issue #29 it covers; each failed on
the code before the fix (checked by running this file against it).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import nibabel
import numpy as np
import pytest
import SimpleITK as sitk

from LatentSRLib import LatentSRError
from LatentSRLib.cli import main

SPACING = (1.5, 1.25, 8.0)
REPOSITORY = Path(__file__).resolve().parents[1]


def image(shape=(6, 20, 24), seed=0) -> sitk.Image:
    result = sitk.GetImageFromArray(np.random.default_rng(seed).normal(100, 20, shape).astype(np.float32))
    result.SetSpacing(SPACING)
    return result


def save(folder: Path, name: str, img: sitk.Image | None = None, compress: bool = True) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    sitk.WriteImage(img if img is not None else image(), str(folder / name), useCompression=compress)
    return folder / name


def one_line_error(capsys) -> str:
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "Traceback" not in err, err
    return err


def visible(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir())


def run(args: list[str]) -> int:
    return main(["super-resolve", *args, "--method", "linear", "--factor", "2", "--quiet"])


# --- 1: an output's data file never replaces an input's ---------------------------------------------

@pytest.mark.parametrize("source, output", [("scan.nhdr", "scan.mhd"), ("scan.mhd", "scan.nhdr")])
def test_an_outputs_data_file_never_replaces_the_inputs(tmp_path, capsys, source, output):
    """Defect 1: ``scan.nhdr -o scan.mhd --overwrite`` wrote its data to scan.raw, the input's."""
    header = save(tmp_path, source, compress=False)
    data = (tmp_path / "scan.raw").read_bytes()
    assert run([str(header), "-o", str(tmp_path / output), "--overwrite"]) == 2
    assert "a data file of the input" in one_line_error(capsys)
    assert (tmp_path / "scan.raw").read_bytes() == data
    assert visible(tmp_path) == sorted([source, "scan.raw"])
    assert np.array_equal(sitk.GetArrayFromImage(sitk.ReadImage(str(header))), sitk.GetArrayFromImage(image()))


def test_a_data_file_named_elsewhere_and_an_analyze_pair_are_protected(tmp_path, capsys):
    """A header may name its data file in another folder; a .hdr's data is the .img beside it."""
    from LatentSRLib import outputs
    save(tmp_path / "data", "vol.nhdr", compress=False)
    header = tmp_path / "scan.nhdr"
    text = (tmp_path / "data" / "vol.nhdr").read_text().replace("data file: vol.raw", "data file: data/vol.raw")
    header.write_text(text)
    (tmp_path / "data" / "vol.nhdr").unlink()
    data = (tmp_path / "data" / "vol.raw").read_bytes()
    assert run([str(header), "-o", str(tmp_path / "data" / "vol.mhd"), "--overwrite"]) == 2
    assert "data/vol.raw, a data file of the input" in one_line_error(capsys)
    assert (tmp_path / "data" / "vol.raw").read_bytes() == data
    assert outputs.input_files(tmp_path / "pair.hdr")[:2] == [tmp_path / "pair.hdr", tmp_path / "pair.img"]
    # a run whose output does not collide still works and leaves the input as it was
    assert run([str(header), "-o", str(tmp_path / "result.mhd")]) == 0
    assert (tmp_path / "data" / "vol.raw").read_bytes() == data and (tmp_path / "result.raw").is_file()


# --- 2: a full disk is an error, never a published truncated file ------------------------------------

def _with_file_size_limit(limit: int, args: list[str], cwd: Path) -> subprocess.CompletedProcess:
    """``latentsr`` in a subprocess whose files cannot grow past ``limit`` bytes (RLIMIT_FSIZE).

    What it stands in for: a full disk or an exhausted quota. Past the limit write(2) fails with EFBIG
    (SIGXFSZ ignored, as the test sets it) exactly where a full disk fails it with ENOSPC, part way
    through a file: ITK's NIfTI writer (nifti1_io.c, nifti_write_all_data) then prints
    ``** ERROR: NWAD: wrote only N of M bytes`` and reports success, as it does on a full disk.
    """
    code = textwrap.dedent(f"""
        import resource, signal, sys
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, ({limit}, {limit}))
        from LatentSRLib.cli import main
        sys.exit(main({args!r}))
    """)
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONDONTWRITEBYTECODE": "1",
           "PYTHONPATH": str(REPOSITORY)}
    return subprocess.run([sys.executable, "-c", code], cwd=cwd, env=env, capture_output=True, text=True,
                          timeout=180)


@pytest.mark.parametrize("suffix", [".nii.gz", ".nii"])
def test_a_full_disk_gives_an_error_and_no_file(tmp_path, suffix):
    """Defect 2: a NIfTI cut short by a full disk was published, with exit 0."""
    source = save(tmp_path / "in", "scan.nrrd", image((6, 64, 64)))
    out = tmp_path / "out"
    out.mkdir()
    done = _with_file_size_limit(60_000, ["super-resolve", str(source), "-o", str(out / f"r{suffix}"),
                                          "--method", "linear", "--factor", "4", "--quiet"], tmp_path)
    assert done.returncode == 2, done.stderr
    lines = [line for line in done.stderr.splitlines() if not line.startswith("** ERROR: NWAD")]
    assert len(lines) == 1 and "cannot write" in lines[0] and "Traceback" not in done.stderr, done.stderr
    assert visible(out) == []  # no truncated result, no staging entry


@pytest.mark.parametrize("limit, left", [(150, []), (60_000, ["manifest.csv"])])
def test_a_full_disk_in_a_folder_run_leaves_no_partial_output_and_does_not_crash(tmp_path, limit, left):
    """Defect 2: truncated and 0-byte outputs stayed visible, then the manifest write crashed with a
    traceback. With room for the manifest only, it records both studies as failed."""
    for name in ("a", "b"):
        save(tmp_path / "in", f"{name}.nrrd", image((6, 64, 64)))
    out = tmp_path / "out"
    done = _with_file_size_limit(limit, ["super-resolve", str(tmp_path / "in"), "-o", str(out) + "/",
                                         "--method", "linear", "--factor", "4", "--quiet"], tmp_path)
    assert done.returncode == 2 and "Traceback" not in done.stderr, done.stderr
    assert visible(out) == left
    if left:
        from LatentSRLib.manifest import read_manifest
        rows = read_manifest(out / "manifest.csv")
        assert [r["status"] for r in rows] == ["failed", "failed"] and "cannot write" in rows[0]["error"]
    else:
        assert "cannot write" in done.stderr.strip().splitlines()[-1]


# --- 5: nothing is written through a planted symlink -------------------------------------------------

def _plant(folder: Path, names: list[str], victim: Path) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    for name in names:
        os.symlink(victim, folder / name)


def test_evaluate_never_writes_through_symlinks_in_its_folder(tmp_path):
    """Defect 5: summary.md, metrics.csv and the figures were written through symlinks planted in --out."""
    victim = tmp_path / "victim.txt"
    victim.write_text("precious")
    out = tmp_path / "eval"
    names = ["summary.md", "metrics.csv", "boxplots.png", "comparison.png"]
    _plant(out, names, victim)
    source = save(tmp_path / "in", "scan.nii.gz", image((8, 48, 48)))
    assert main(["evaluate", str(source), "--methods", "linear", "--out", str(out), "--quiet"]) == 0
    assert victim.read_text() == "precious"
    for name in names:
        assert (out / name).is_file() and not (out / name).is_symlink(), name
    assert (out / "comparison.png").read_bytes()[:4] == b"\x89PNG"


def test_the_demo_refuses_a_default_folder_it_does_not_own_and_never_follows_symlinks(tmp_path, monkeypatch):
    """Defect 5: the demo reused a fixed folder in the shared temporary directory, symlinks and all."""
    from LatentSRLib.demo import run_demo
    monkeypatch.setattr("tempfile.tempdir", str(tmp_path))
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (tmp_path / "latentsr-demo").symlink_to(elsewhere, target_is_directory=True)
    with pytest.raises(LatentSRError, match="not a private folder"):
        run_demo(None, None, methods=["linear"], progress=False, phantom_frames=1)
    assert list(elsewhere.iterdir()) == []
    (tmp_path / "latentsr-demo").unlink()
    (tmp_path / "latentsr-demo").mkdir()
    os.chmod(tmp_path / "latentsr-demo", 0o777)  # anyone could plant files in it
    with pytest.raises(LatentSRError, match="not a private folder"):
        run_demo(None, None, methods=["linear"], progress=False, phantom_frames=1)
    # a folder the user names is used as it is, but what the demo writes replaces planted links
    victim = tmp_path / "victim.txt"
    victim.write_text("precious")
    out = tmp_path / "mine"
    names = ["summary.md", "metrics.csv", "comparison.png", "boxplots.png", "phantom_input.nii"]
    _plant(out, names, victim)
    run_demo(None, out, methods=["linear"], progress=False, phantom_frames=1)
    assert victim.read_text() == "precious"
    assert all((out / name).is_file() and not (out / name).is_symlink() for name in names)


def test_weights_and_checkpoints_never_go_through_a_fixed_temporary_name(tmp_path):
    """Defect 5: weights went through ``<out>.tmp``, so a symlink planted there received them."""
    import torch

    from LatentSRLib.models import registry
    from LatentSRLib.training import common
    victim = tmp_path / "victim.txt"
    victim.write_text("precious")
    os.symlink(victim, tmp_path / "w.pt.tmp")
    os.symlink(victim, tmp_path / "c.pt.ckpt.tmp")
    state = {"weight": torch.arange(4, dtype=torch.float32)}
    registry.save(tmp_path / "w.pt", "ae", {"width": 4}, state)
    common.save_checkpoint(tmp_path / "c.pt", {"epoch": 2, "model": state})
    assert victim.read_text() == "precious"
    loaded = torch.load(tmp_path / "w.pt", weights_only=True)
    assert torch.equal(loaded["state_dict"]["weight"].float(), state["weight"])
    assert common.load_checkpoint(tmp_path / "c.pt")["epoch"] == 2
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".latentsr-")]


# --- 8: two runs into one folder do not replace each other's results ---------------------------------

def test_a_concurrent_folder_run_does_not_replace_the_other_runs_result(tmp_path, capsys, monkeypatch):
    """Defect 8: a second folder run into the same folder replaced the first one's finished results
    without --overwrite. Here the other run finishes in the middle of this one's work (the interleaving
    of two real concurrent runs, made deterministic)."""
    from LatentSRLib import pipeline
    from LatentSRLib.manifest import read_manifest, read_sidecar
    for folder, seed in (("mine", 1), ("theirs", 2)):
        save(tmp_path / folder, "scan.nrrd", image(seed=seed))
    out = tmp_path / "out"
    original, started = pipeline.super_resolve, []

    def interleaved(*args, **kwargs):
        if not started:
            started.append(True)
            assert run([str(tmp_path / "theirs"), "-o", str(out) + "/"]) == 0  # the other run, to the end
        return original(*args, **kwargs)
    monkeypatch.setattr(pipeline, "super_resolve", interleaved)
    assert run([str(tmp_path / "mine"), "-o", str(out) + "/"]) == 2
    assert "scan_linear_x2.nii.gz exists (use --overwrite to replace it)" in capsys.readouterr().err
    result = out / "scan_linear_x2.nii.gz"
    theirs = sitk.GetArrayFromImage(sitk.ReadImage(str(tmp_path / "theirs" / "scan.nrrd")))
    assert np.array_equal(sitk.GetArrayFromImage(sitk.ReadImage(str(result)))[::2], theirs)
    assert read_sidecar(result)["input"] == str(tmp_path / "theirs" / "scan.nrrd")
    row = read_manifest(out / "manifest.csv")[0]
    assert row["status"] == "failed" and "use --overwrite" in row["error"]


# --- 9 and the sform: NIfTI keeps the input's geometry or refuses -----------------------------------

def _sheared(folder: Path) -> Path:
    img = image()
    direction = np.eye(3)
    direction[:, 2] = np.array([0.2, 0.0, 1.0]) / np.hypot(0.2, 1.0)  # the slice axis leans 11 degrees
    img.SetDirection(direction.flatten().tolist())
    return save(folder, "sheared.nrrd", img)


def test_a_sheared_grid_is_refused_for_nifti_and_kept_exactly_in_nrrd(tmp_path, capsys, monkeypatch):
    """Defect 9: a sheared NRRD written as NIfTI got another direction (ITK coerces it), silently."""
    from LatentSRLib import pipeline
    source = _sheared(tmp_path)
    out = tmp_path / "out"
    out.mkdir()
    original = pipeline.super_resolve
    monkeypatch.setattr(pipeline, "super_resolve", lambda *a, **k: pytest.fail("refuse before the work"))
    assert run([str(source), "-o", str(out / "r.nii.gz")]) == 2
    assert "sheared grid" in one_line_error(capsys)
    assert visible(out) == []
    monkeypatch.setattr(pipeline, "super_resolve", original)
    assert run([str(source), "-o", str(out / "r.nrrd")]) == 0
    np.testing.assert_allclose(sitk.ReadImage(str(out / "r.nrrd")).GetDirection(),  # as exact as float64 is
                               sitk.ReadImage(str(source)).GetDirection(), rtol=0, atol=1e-15)


def test_nifti_keeps_an_inputs_differing_sform_moved_with_the_grid(tmp_path):
    """Also seen: qform and sform 100 mm apart; the output's sform was replaced by its qform, so
    sform-preferring tools (nibabel, FSL) placed the output 100 mm from the input."""
    data = np.random.default_rng(0).normal(100, 20, (24, 20, 6)).astype(np.float32)
    qform = np.diag([1.5, 1.25, 8.0, 1.0])
    qform[:3, 3] = (-10, 20, 30)
    sform = qform.copy()
    sform[0, 3] += 100.0
    nifti = nibabel.Nifti1Image(data, qform)
    nifti.set_qform(qform, code=1)
    nifti.set_sform(sform, code=2)
    source = tmp_path / "scan.nii.gz"
    nibabel.save(nifti, str(source))
    for suffix in (".nii.gz", ".nii"):
        target = tmp_path / f"r{suffix}"
        assert run([str(source), "-o", str(target)]) == 0
        header = nibabel.load(str(target)).header
        got_sform, code = header.get_sform(coded=True)
        assert code == 2
        np.testing.assert_allclose(got_sform, sform @ np.diag([1, 1, 0.5, 1]), atol=1e-4)  # z: twice the slices
        np.testing.assert_allclose(header.get_qform(), qform @ np.diag([1, 1, 0.5, 1]), atol=1e-4)
        assert np.array_equal(np.asarray(nibabel.load(str(target)).dataobj)[..., ::2], data)


# --- 13: signals during a write, and a killed run's leftovers ----------------------------------------

def _start_long_write(tmp_path: Path, name: str = "result.nhdr") -> tuple[subprocess.Popen, Path]:
    """A latentsr process writing a ~150 MB output; returns once its staging folder exists."""
    source = tmp_path / "big.nrrd"
    big = sitk.GetImageFromArray(np.random.default_rng(0).normal(100, 20, (24, 256, 256)).astype(np.float32))
    big.SetSpacing(SPACING)
    sitk.WriteImage(big, str(source), useCompression=False)
    out = tmp_path / "out"
    out.mkdir(exist_ok=True)
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    process = subprocess.Popen([sys.executable, "-m", "LatentSRLib.cli", "super-resolve", str(source), "-o",
                                str(out / name), "--method", "linear", "--factor", "24", "--quiet"],
                               env=env, stderr=subprocess.PIPE, text=True, cwd=REPOSITORY,
                               # a test run from a background job may inherit signals ignored; a shell does not
                               preexec_fn=lambda: [signal.signal(s, signal.SIG_DFL)
                                                   for s in (signal.SIGHUP, signal.SIGQUIT, signal.SIGINT)])
    deadline = time.monotonic() + 60
    while not any(p.name.startswith(".latentsr-") for p in out.iterdir()):
        assert process.poll() is None, process.stderr.read()
        assert time.monotonic() < deadline, "the write never started"
        time.sleep(0.002)
    time.sleep(0.01)
    return process, out


@pytest.mark.parametrize("sig, code", [(signal.SIGHUP, 129), (signal.SIGQUIT, 131)])
def test_sighup_and_sigquit_during_a_write_remove_everything(tmp_path, sig, code):
    """Defect 13: SIGHUP (a closed terminal) and SIGQUIT left the staging folder with a partial file."""
    process, out = _start_long_write(tmp_path)
    process.send_signal(sig)
    assert process.wait(60) == code
    assert visible(out) in ([], ["result.nhdr", "result.raw"])  # nothing, unless it had finished


def test_a_later_run_cleans_a_killed_runs_staging_entry_at_once(tmp_path):
    """Defect 13: after SIGKILL, the next run into the folder left the dead run's staging entry (it
    waited for the entry to be a minute old)."""
    process, out = _start_long_write(tmp_path)
    process.send_signal(signal.SIGKILL)
    process.wait(30)
    assert [p for p in out.iterdir() if p.name.startswith(".latentsr-")]
    small = save(tmp_path / "in", "small.nrrd")
    assert run([str(small), "-o", str(out / "small.nii.gz")]) == 0
    assert not [p for p in out.iterdir() if p.name.startswith(".latentsr-")]


def test_a_live_runs_staging_entry_is_kept_and_a_reused_pid_is_not_taken_for_it(tmp_path):
    from LatentSRLib import atomic
    mine = tmp_path / (atomic.entry_prefix() + "live")
    mine.mkdir()
    parts = atomic.entry_prefix().split("-")  # .latentsr, pid, start, host, ''
    reused = tmp_path / f".latentsr-{os.getppid()}-1-{parts[3]}-old"  # a live pid, another start time
    reused.mkdir()
    assert atomic.clean_stale(tmp_path) == ([reused] if atomic._start_time(os.getppid()) else [])
    assert mine.exists()


# --- also seen: output names -------------------------------------------------------------------------

def test_an_upper_case_suffix_is_refused_before_the_work(tmp_path, capsys, monkeypatch):
    """Also seen: ``-o OUT.NII.GZ`` passed the check, then failed after all the work."""
    from LatentSRLib import pipeline
    source = save(tmp_path, "scan.nrrd")
    monkeypatch.setattr(pipeline, "super_resolve", lambda *a, **k: pytest.fail("refuse before the work"))
    assert run([str(source), "-o", str(tmp_path / "OUT.NII.GZ")]) == 2
    assert "lower case (.nii.gz)" in one_line_error(capsys)
    assert visible(tmp_path) == ["scan.nrrd"]


def test_an_empty_output_name_is_refused(tmp_path, capsys, monkeypatch):
    """Also seen: ``-o ''`` wrote into the current folder."""
    source = save(tmp_path / "in", "scan.nrrd")
    monkeypatch.chdir(tmp_path)
    assert run([str(source), "-o", ""]) == 2
    assert "-o is empty" in one_line_error(capsys)
    assert visible(tmp_path) == ["in"]


def test_the_confidence_output_cannot_share_the_results_data_file(tmp_path, capsys):
    """``-o r.nhdr --confidence-out r.mhd``: both data files are r.raw; the second replaced the first."""
    source = save(tmp_path, "scan.nrrd", image((6, 32, 32)))
    out = tmp_path / "out"
    out.mkdir()
    code = main(["super-resolve", str(source), "-o", str(out / "r.nhdr"), "--confidence-out", str(out / "r.mhd"),
                 "--method", "flow", "--factor", "2", "--quiet", "--overwrite"])
    assert code == 2
    assert "another data file" in one_line_error(capsys)
    assert visible(out) == []


def test_a_folder_runs_results_do_not_follow_a_symlinked_sub_folder(tmp_path, capsys):
    """Results mirror the input tree; a planted symlink at results/P001 carried them out of results/."""
    save(tmp_path / "studies" / "P001", "scan.nrrd")
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (tmp_path / "results").mkdir()
    (tmp_path / "results" / "P001").symlink_to(elsewhere, target_is_directory=True)
    assert run([str(tmp_path / "studies"), "-o", str(tmp_path / "results")]) == 2
    assert "is a symlink" in one_line_error(capsys)
    assert list(elsewhere.iterdir()) == []


@pytest.mark.parametrize("suffix", [".nii", ".nii.gz"])
def test_without_nibabel_a_short_nifti_is_still_caught(tmp_path, monkeypatch, suffix):
    """A stock Slicer has no nibabel (LatentSRLib/slicer/install.py offers it): the read-back then checks
    the bytes with gzip and the file size. ``sys.modules[name] = None`` makes ``import`` raise
    ImportError, as in an interpreter without the package."""
    from LatentSRLib import outputs
    monkeypatch.setitem(sys.modules, "nibabel", None)
    img = image()
    path = tmp_path / f"v{suffix}"
    outputs.write_image(img, path, suffix.endswith(".gz"))  # whole: passes
    path.write_bytes(path.read_bytes()[:-100])
    with pytest.raises((RuntimeError, EOFError)):
        outputs._nifti_samples(path, sitk.GetArrayViewFromImage(img).nbytes)
