"""Cohorts (LatentSRLib.cohort): one task per study on a local Dask cluster, resumable, nothing lost.

Integration tests run real studies from ../shared/data (symlinked into tmp_path, never copied into
the repository) plus a corrupt file and a 2D image through a 2-worker local cluster and compare every
output with the serial run's, bit for bit.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk

from LatentSRLib import LatentSRError
from LatentSRLib.cli import main
from LatentSRLib.manifest import COLUMNS, read_manifest
from LatentSRLib.volume import Volume, read, write

REAL = {"P001-1-ED.nii.gz": "cmrxmotion/P001-1/P001-1-ED.nii.gz",                 # 3D, 8 mm, float
        "patient001_frame01.nii.gz": "acdc/patient001/patient001_frame01.nii.gz",  # 3D, 10 mm, int16
        "patient011_4d.nii.gz": "acdc_cine/patient011_4d.nii.gz"}                  # 4D cine


def run_cli(*args) -> int:
    return main([str(a) for a in args])


def bad_files(folder: Path, data_dir: Path) -> None:
    """A real study cut after 100 bytes (its header is unreadable) and a 2D image."""
    (folder / "corrupt.nii.gz").write_bytes((data_dir / REAL["patient001_frame01.nii.gz"]).read_bytes()[:100])
    sitk.WriteImage(sitk.Image(16, 16, sitk.sitkFloat32), str(folder / "flat.nii.gz"))


def outputs(folder: Path) -> dict[str, Path]:
    """The published outputs (not what an interrupted write left in a hidden staging folder)."""
    return {p.name: p for p in folder.rglob("*.nii.gz")
            if not any(part.startswith(".") for part in p.relative_to(folder).parts)}


def manifest(folder: Path) -> dict[str, dict[str, str]]:
    return {Path(row["input"]).name: row for row in read_manifest(folder / "manifest.csv")}


@pytest.fixture(scope="module")
def cluster():
    """The 2-worker local cluster the --scheduler runs use (one process per worker, one thread each)."""
    distributed = pytest.importorskip("dask.distributed")
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=":0",
                                  silence_logs=40) as local:
        yield local


@pytest.fixture
def studies(tmp_path, data_dir) -> Path:
    folder = tmp_path / "studies"
    folder.mkdir()
    for name, source in REAL.items():
        (folder / name).symlink_to(data_dir / source)
    bad_files(folder, data_dir)
    return folder


@pytest.mark.integration
def test_cluster_equals_serial_records_failures_and_resumes(tmp_path, studies, cluster, capsys):
    serial, parallel = tmp_path / "serial", tmp_path / "parallel"
    assert run_cli("super-resolve", studies, "-o", serial, "--method", "linear", "--quiet") == 1
    assert run_cli("super-resolve", studies, "-o", parallel, "--method", "linear", "--workers", 2, "--quiet") == 1
    assert "Dask dashboard: http" in capsys.readouterr().out
    good = outputs(serial)
    assert sorted(good) == ["P001-1-ED_linear_x6.nii.gz", "patient001_frame01_linear_x6.nii.gz",
                            "patient011_4d_linear_x7.nii.gz"]
    assert sorted(outputs(parallel)) == sorted(good)
    for name, path in good.items():
        assert (parallel / name).read_bytes() == path.read_bytes(), name  # bit for bit, headers included
    frames = read(studies / "patient011_4d.nii.gz").n_frames
    assert read(parallel / "patient011_4d_linear_x7.nii.gz").array.shape == (frames, 43, 95, 100)

    rows = manifest(parallel)
    assert list(read_manifest(parallel / "manifest.csv")[0]) == list(COLUMNS)
    assert {name: row["status"] for name, row in rows.items()} == {
        "P001-1-ED.nii.gz": "done", "patient001_frame01.nii.gz": "done", "patient011_4d.nii.gz": "done",
        "corrupt.nii.gz": "failed", "flat.nii.gz": "failed"}
    assert "cannot read" in rows["corrupt.nii.gz"]["error"] and "2D image" in rows["flat.nii.gz"]["error"]
    assert all("\n" not in row["error"] and row["method"] == "linear" for row in rows.values())
    assert rows["patient011_4d.nii.gz"]["factor"] == "7" and float(rows["patient011_4d.nii.gz"]["seconds"]) > 0

    # Re-run on the (already started) cluster: the finished studies are skipped, not recomputed: their
    # files are untouched (same inode and mtime), and their recorded time is reading + hashing only.
    before = {name: os.stat(path) for name, path in outputs(parallel).items()}
    assert run_cli("super-resolve", studies, "-o", parallel, "--method", "linear",
                   "--scheduler", cluster.scheduler_address, "--quiet") == 1
    rows = manifest(parallel)
    assert [r["status"] for n, r in sorted(rows.items()) if n in REAL] == ["skipped"] * 3
    after = {name: os.stat(path) for name, path in outputs(parallel).items()}
    assert {n: (s.st_ino, s.st_mtime_ns) for n, s in after.items()} == \
        {n: (s.st_ino, s.st_mtime_ns) for n, s in before.items()}
    assert float(rows["patient011_4d.nii.gz"]["seconds"]) < 1.0


@pytest.mark.integration
def test_learned_method_on_cluster_equals_serial(tmp_path, data_dir, cluster):
    folder = tmp_path / "one"
    folder.mkdir()
    (folder / "P001-1-ED.nii.gz").symlink_to(data_dir / REAL["P001-1-ED.nii.gz"])
    serial, parallel = tmp_path / "serial", tmp_path / "parallel"
    common = ("--method", "ae", "--factor", "2", "--quiet")
    assert run_cli("super-resolve", folder, "-o", serial, *common) == 0
    assert run_cli("super-resolve", folder, "-o", parallel, *common, "--scheduler", cluster.scheduler_address) == 0
    name = "P001-1-ED_ae_x2.nii.gz"
    assert (parallel / name).read_bytes() == (serial / name).read_bytes()
    row = manifest(parallel)["P001-1-ED.nii.gz"]
    assert row["status"] == "done" and len(row["weights_sha256"]) == 64


@pytest.mark.integration
def test_sigkill_leaves_no_partial_output_and_the_next_run_completes(tmp_path, data_dir):
    folder, out = tmp_path / "studies", tmp_path / "results"
    folder.mkdir()
    for i in range(6):
        (folder / f"cine{i}.nii.gz").symlink_to(data_dir / REAL["patient011_4d.nii.gz"])
    command = [sys.executable, "-m", "LatentSRLib.cli", "super-resolve", str(folder), "-o", str(out),
               "--method", "linear", "--quiet"]
    process = subprocess.Popen(command, start_new_session=True, stdout=subprocess.DEVNULL,
                               stderr=subprocess.DEVNULL, env={**os.environ, "OMP_NUM_THREADS": "1"})
    deadline = time.time() + 30
    while not list(out.glob("*.json")) and time.time() < deadline and process.poll() is None:
        time.sleep(0.02)  # until the first study is finished and recorded
    os.killpg(process.pid, signal.SIGKILL)  # the command and anything it started
    process.wait()
    finished = outputs(out)
    recorded = [name for name in finished if (out / (name + ".json")).exists()]  # sidecar written too
    assert 1 <= len(finished) < 6, "the run should be killed half-way"
    # manifest.csv listed every study before the work started (issue #29, item 7: nothing skipped unseen)
    # and was rewritten as each finished: all six are in it, none done without its sidecar.
    killed = manifest(out)
    assert sorted(killed) == [f"cine{i}.nii.gz" for i in range(6)]
    assert {row["status"] for row in killed.values()} <= {"done", "not-run"}
    assert {Path(row["output"]).name for row in killed.values() if row["status"] == "done"} <= set(recorded)
    reference = (out / sorted(finished)[0]).read_bytes()
    assert read(out / sorted(finished)[0]).array.shape == (read(folder / "cine0.nii.gz").n_frames, 43, 95, 100)
    for path in finished.values():  # every output present is complete
        assert path.read_bytes() == reference

    assert run_cli("super-resolve", folder, "-o", out, "--method", "linear", "--quiet") == 0
    rows = manifest(out)
    statuses = [row["status"] for row in rows.values()]
    # Finished and recorded before the kill: skipped; the rest (and an output the kill caught before
    # its sidecar was written) done now.
    assert statuses.count("skipped") == len(recorded) >= 1
    assert statuses.count("skipped") + statuses.count("done") == 6
    assert sorted(outputs(out)) == [f"cine{i}_linear_x7.nii.gz" for i in range(6)]
    assert all(path.read_bytes() == reference for path in outputs(out).values())


@pytest.mark.integration
def test_evaluate_on_cluster_gives_the_serial_rows(tmp_path, data_dir, cluster):
    folder = tmp_path / "eval"
    folder.mkdir()
    for name in ("P001-1-ED.nii.gz", "patient001_frame01.nii.gz"):
        (folder / name).symlink_to(data_dir / REAL[name])
    common = ("evaluate", folder, "--methods", "linear,bspline", "--quiet")
    assert run_cli(*common, "--out", tmp_path / "serial") == 0
    assert run_cli(*common, "--out", tmp_path / "parallel", "--scheduler", cluster.scheduler_address) == 0
    serial = (tmp_path / "serial" / "metrics.csv").read_text()
    assert serial.count("\n") > 10
    assert (tmp_path / "parallel" / "metrics.csv").read_text() == serial
    assert (tmp_path / "parallel" / "summary.md").read_text() == (tmp_path / "serial" / "summary.md").read_text()


# Small synthetic volumes, serial: the resume rules.

@pytest.fixture
def small_studies(tmp_path, oblique_volume) -> Path:
    folder = tmp_path / "in"
    for sub in ("p1", "p2"):
        (folder / sub).mkdir(parents=True)
        write(oblique_volume, folder / sub / "cine.nrrd")  # the same name in two sub-folders
    return folder


def test_outputs_mirror_subfolders_and_resume_rules(tmp_path, small_studies, capsys):
    out = tmp_path / "out"
    args = ("super-resolve", small_studies, "-o", out, "--method", "linear", "--factor", 2, "--quiet")
    assert run_cli(*args) == 0
    first, second = out / "p1" / "cine_linear_x2.nii.gz", out / "p2" / "cine_linear_x2.nii.gz"
    assert first.is_file() and second.is_file()
    # An output without its sidecar was never recorded as finished: redone.
    Path(str(second) + ".json").unlink()
    stamp = first.stat().st_mtime_ns
    assert run_cli(*args) == 0
    assert [r["status"] for r in read_manifest(out / "manifest.csv")] == ["skipped", "done"]
    assert first.stat().st_mtime_ns == stamp
    # A changed input is not silently reused, nor silently replaced: --overwrite redoes it.
    changed = read(small_studies / "p1" / "cine.nrrd")
    changed.array = changed.array + 1
    write(changed, small_studies / "p1" / "cine.nrrd", overwrite=True)
    assert run_cli(*args) == 1
    row = read_manifest(out / "manifest.csv")[0]
    assert row["status"] == "failed" and "--overwrite" in row["error"]
    assert run_cli(*args, "--overwrite") == 0
    assert [r["status"] for r in read_manifest(out / "manifest.csv")] == ["done", "done"]
    np.testing.assert_array_equal(read(first).array[:, ::2], np.rint(changed.array))


def test_all_failed_exits_2_and_options_are_checked_before_work(tmp_path, capsys):
    folder = tmp_path / "flat"
    folder.mkdir()
    for name in ("a", "b"):
        sitk.WriteImage(sitk.Image(8, 8, sitk.sitkFloat32), str(folder / f"{name}.nii.gz"))
    assert run_cli("super-resolve", folder, "-o", tmp_path / "out", "--method", "linear", "--quiet") == 2
    assert [r["status"] for r in read_manifest(tmp_path / "out" / "manifest.csv")] == ["failed", "failed"]
    assert run_cli("super-resolve", folder, "-o", tmp_path / "o2", "--method", "linear", "--factor", 0) == 2
    assert "factor must be an integer" in capsys.readouterr().err and not (tmp_path / "o2").exists()
    from LatentSRLib.cohort import plan
    write(Volume(np.zeros((1, 4, 8, 8)), (1, 1, 5)), folder / "a.nrrd")
    with pytest.raises(LatentSRError, match="would write the same output"):
        plan([folder / "a.nrrd", folder / "a.nii.gz"], tmp_path / "out", "linear")


def test_cli_imports_neither_torch_nor_dask():
    code = ("import sys, LatentSRLib.cli, LatentSRLib.cohort; "
            "print([m for m in ('torch', 'dask', 'distributed') if m in sys.modules])")
    assert subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          check=True).stdout.strip() == "[]"


@pytest.mark.integration
def test_a_cohort_records_and_prints_which_studies_the_detector_sent_to_linear(data_dir, tmp_path, capsys):
    """A validation patient (never a test one) as acquired and re-sampled along z: with flow, the manifest's
    notes column and a note: line name the re-sampled study only, and a resumed run keeps its note."""
    from LatentSRLib.intensity import normalise
    from LatentSRLib.interpolate import resample_along_slices
    from LatentSRLib.synthesize.gates import RESAMPLED_NOTE
    volume = read(data_dir / "acdc_fullfov" / "patient001" / "patient001_frame01.nii.gz")
    stack = normalise(volume.array[0], clip=True)[0]
    x, y, z = volume.spacing
    folder = tmp_path / "studies"
    folder.mkdir()
    write(volume.with_array(stack[None, ::2], (x, y, 2 * z)), folder / "acquired.nii.gz")
    write(volume.with_array(resample_along_slices(stack, 0.7)[None, ::2], (x, y, 1.4 * z)), folder / "blended.nii.gz")
    args = ("super-resolve", folder, "-o", tmp_path / "out", "--method", "flow", "--factor", 2, "--quiet")
    for status in ("done", "skipped"):
        assert run_cli(*args) == 0
        rows = manifest(tmp_path / "out")
        assert [rows[name]["status"] for name in ("acquired.nii.gz", "blended.nii.gz")] == [status, status]
        assert rows["blended.nii.gz"]["notes"] == RESAMPLED_NOTE and rows["acquired.nii.gz"]["notes"] == ""
    printed = capsys.readouterr().out
    assert f"blended.nii.gz: {RESAMPLED_NOTE}" in printed and "acquired.nii.gz:" not in printed
