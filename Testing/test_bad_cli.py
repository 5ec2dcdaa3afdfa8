"""The command line's refusals and folder runs, where a row of test_bad_inputs.CASES cannot say it
(issue #29: items 7, 12 and 14, and the "also seen" ones).

- :data:`COMMANDS`: other subcommands than super-resolve (evaluate, demo, check, adapt, models) and
  folder runs into folders that cannot be written: one line, exit code 2, nothing created.
- Folder runs report every study: a study folder that is a symbolic link is recorded as failed, not
  followed or skipped; a DICOM study beside NIfTI files is done; ``manifest.csv`` lists every study
  before the first one starts; an output truncated or deleted after its run is made again.
- ``evaluate`` leaves no ``comparison.png`` when a later file fails; options that do nothing are said.
- ``--workers 2`` shuts its Dask cluster down without a traceback (real subprocesses, several runs).
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk

from LatentSRLib.cli import main
from LatentSRLib.manifest import read_manifest
from LatentSRLib.volume import Volume, read
from test_bad_inputs import image, save, studies
from test_volume import write_dicom_series

LINEAR = ["--method", "linear", "--quiet"]


def _writable(folder: Path) -> bool:
    try:
        (folder / "probe").touch()
    except OSError:
        return False
    (folder / "probe").unlink()
    return True


@pytest.fixture
def read_only(tmp_path):
    """A folder no file can be created in: mode 0555 for a user; as root, who ignores permissions,
    a read-only tmpfs mounted on it (EROFS, as on a read-only file system), or the test is skipped."""
    folder = tmp_path / "read-only"
    folder.mkdir()
    folder.chmod(0o555)
    if not _writable(folder):
        yield folder
        folder.chmod(0o755)
        return
    folder.chmod(0o755)
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "ro,size=1m", "tmpfs", str(folder)],
                             capture_output=True).returncode == 0
    if not mounted or _writable(folder):
        pytest.skip("cannot make a read-only folder here (root without mount)")
    try:
        yield folder
    finally:
        subprocess.run(["umount", str(folder)], check=True)


def broken_models(folder: Path, text: str) -> Path:
    models = folder / "models"
    models.mkdir()
    (models / "models.json").write_text(text)
    return models


# (id, builder(inputs, out) -> (argv, environment), message fragment); ``out`` must stay as it was
COMMANDS = [
    ("evaluate-out-is-a-file", lambda d, o: (["evaluate", studies(d, 2), "--methods", "linear", "--out",
                                              save(o, "taken.nii.gz")], {}), "is not a folder"),
    ("demo-out-is-a-file", lambda d, o: (["demo", "--methods", "linear", "--out", save(o, "taken.nii.gz")], {}),
     "is not a folder"),
    ("check-max-seconds-nan", lambda d, o: (["check", save(d, "a.nii.gz"), "--methods", "linear",
                                             "--max-seconds", "nan"], {}), "time limit"),
    # (an isotropic scan: without the check, adapt refuses it as such rather than training forever)
    ("adapt-max-minutes-nan", lambda d, o: (["adapt", save(d, "a.nii.gz", image(spacing=(1.0, 1.0, 1.0))), "--out",
                                             str(o / "a.pt"), "--max-minutes", "nan"], {}), "training time"),
    ("evaluate-workers-negative", lambda d, o: (["evaluate", studies(d, 2), "--methods", "linear", "--out",
                                                 str(o / "ev"), "--workers", "-3"], {}), "--workers"),
    ("evaluate-scheduler-scheme", lambda d, o: (["evaluate", studies(d, 2), "--methods", "linear", "--out",
                                                 str(o / "ev"), "--scheduler", "foo://x"], {}), "--scheduler"),
    ("evaluate-device-meta", lambda d, o: (["evaluate", studies(d, 2), "--methods", "linear", "--out",
                                            str(o / "ev"), "--device", "meta"], {}), "unknown device"),
    ("models-json-broken", lambda d, o: (["models"], {"LATENTSR_MODELS": str(broken_models(d, '{"ae": '))}),
     "models.json cannot be read"),
    ("models-json-not-entries", lambda d, o: (["super-resolve", save(d, "a.nii.gz"), "-o", str(o / "r.nii.gz"),
                                               "--method", "ae"],
                                              {"LATENTSR_MODELS": str(broken_models(d, '{"ae": "ae.pt"}'))}),
     "lacks a file"),
]


@pytest.mark.parametrize("builder, fragment", [pytest.param(b, f, id=name) for name, b, f in COMMANDS])
def test_bad_command_is_one_line_exit_2_and_creates_nothing(tmp_path, capsys, monkeypatch, builder, fragment):
    inputs, out = tmp_path / "in", tmp_path / "out"
    inputs.mkdir()
    out.mkdir()
    argv, environment = builder(inputs, out)
    for name, value in environment.items():
        monkeypatch.setenv(name, value)
    before = {p: p.stat().st_mtime_ns for p in sorted(out.rglob("*"))}
    code = main([*argv, "--quiet"] if argv[0] in ("evaluate", "demo", "adapt") else argv)
    err = capsys.readouterr().err.strip()
    assert code == 2, err
    assert fragment in err and len(err.splitlines()) == 1 and "Traceback" not in err, err
    assert {p: p.stat().st_mtime_ns for p in sorted(out.rglob("*"))} == before


@pytest.mark.parametrize("command", ["super-resolve-folder", "super-resolve-subfolder", "evaluate", "demo"])
def test_a_read_only_folder_is_refused_before_any_work(tmp_path, read_only, capsys, command):
    folder = studies(tmp_path, 2)
    argv = {"super-resolve-folder": ["super-resolve", folder, "-o", str(read_only), *LINEAR],
            "super-resolve-subfolder": ["super-resolve", folder, "-o", str(read_only / "results") + "/", *LINEAR],
            "evaluate": ["evaluate", folder, "--methods", "linear", "--out", str(read_only / "ev"), "--quiet"],
            "demo": ["demo", "--methods", "linear", "--out", str(read_only / "demo"), "--quiet"]}[command]
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert "is not writable" in err and len(err.splitlines()) == 1, err
    assert list(read_only.iterdir()) == []


def test_a_symlinked_study_folder_is_reported_as_failed_not_followed(tmp_path, capsys):
    """Item 7: os.walk/rglob do not enter a linked folder, so its study vanished (exit 0, not in the
    manifest). It is refused, not followed: a link can lead out of the folder given, or in a circle."""
    tree, elsewhere = tmp_path / "studies", tmp_path / "elsewhere"
    for folder in (tree / "P1", elsewhere / "P2"):
        folder.mkdir(parents=True)
        save(folder, "cine.nii.gz", image(dtype=np.int16))
    (tree / "P2").symlink_to(elsewhere / "P2", target_is_directory=True)
    out = tmp_path / "out"
    assert main(["super-resolve", str(tree), "-o", str(out), "--factor", "2", *LINEAR]) == 1
    assert "symbolic link" in capsys.readouterr().err
    rows = {Path(r["input"]).relative_to(tree).as_posix(): r for r in read_manifest(out / "manifest.csv")}
    assert {name: row["status"] for name, row in rows.items()} == {"P1/cine.nii.gz": "done", "P2": "failed"}
    assert "symbolic link" in rows["P2"]["error"] and rows["P2"]["output"] == ""
    assert sorted(p.relative_to(out).as_posix() for p in out.rglob("*.nii.gz")) == ["P1/cine_linear_x2.nii.gz"]


def test_a_dicom_study_beside_nifti_files_is_done_too(tmp_path, oblique_volume):
    """Item 7: a tree with any image file lost its DICOM study folders (exit 0, absent from the manifest)."""
    tree = tmp_path / "studies"
    (tree / "P1").mkdir(parents=True)
    (tree / "P2").mkdir()
    save(tree / "P1", "cine.nii.gz", image(dtype=np.int16))
    dicom = Volume(np.rint(oblique_volume.array), oblique_volume.spacing, oblique_volume.origin,
                   oblique_volume.direction, np.int16)
    write_dicom_series(tree / "P2", dicom)
    out = tmp_path / "out"
    assert main(["super-resolve", str(tree), "-o", str(out), "--factor", "2", *LINEAR]) == 0
    rows = {Path(r["input"]).relative_to(tree).as_posix(): r["status"] for r in read_manifest(out / "manifest.csv")}
    assert rows == {"P1/cine.nii.gz": "done", "P2": "done"}
    result = read(out / "P2_linear_x2.nii.gz")
    np.testing.assert_array_equal(result.array[:, ::2], dicom.array)


def test_the_manifest_lists_every_study_before_the_first_starts(tmp_path, monkeypatch):
    """Nothing can be skipped unseen: when the first study starts, manifest.csv already names all of
    them (not-run), so a run killed at any point leaves every study in it."""
    from LatentSRLib import cohort
    folder, out = studies(tmp_path, 3), tmp_path / "out"
    seen = []
    original = cohort.process_study

    def watched(study, **kwargs):
        seen.append([(Path(r["input"]).name, r["status"]) for r in read_manifest(out / "manifest.csv")])
        return original(study, **kwargs)
    monkeypatch.setattr(cohort, "process_study", watched)
    assert main(["super-resolve", folder, "-o", str(out), "--factor", "2", *LINEAR]) == 0
    names = ["scan0.nii.gz", "scan1.nii.gz", "scan2.nii.gz"]
    assert seen[0] == [(n, "not-run") for n in names]
    assert seen[2] == [(names[0], "done"), (names[1], "done"), (names[2], "not-run")]  # rewritten as each ends


def test_an_output_truncated_or_deleted_after_its_run_is_made_again(tmp_path, capsys):
    """A sidecar vouched for whatever file had the output's name: a truncated output was skipped on
    every re-run, a deleted one failed as 'made from another input'. The sidecar records the output's
    size and sha256 now, and a re-run makes a missing or changed output again."""
    folder, out = studies(tmp_path, 2), tmp_path / "out"
    args = ["super-resolve", folder, "-o", str(out), "--factor", "2", *LINEAR]
    assert main(args) == 0
    first, second = out / "scan0_linear_x2.nii.gz", out / "scan1_linear_x2.nii.gz"
    whole = first.read_bytes()
    first.write_bytes(whole[: len(whole) // 2])
    second.unlink()
    capsys.readouterr()
    assert main(args) == 0
    rows = read_manifest(out / "manifest.csv")
    assert [r["status"] for r in rows] == ["done", "done"], rows
    assert all("made again" in r["notes"] for r in rows)
    assert first.read_bytes() == whole and read(second).array.shape == (1, 11, 20, 24)
    assert main(args) == 0  # and now they are skipped again, untouched
    assert [r["status"] for r in read_manifest(out / "manifest.csv")] == ["skipped", "skipped"]


def test_evaluate_leaves_no_figure_when_a_later_file_fails(tmp_path, capsys):
    """Item 14: comparison.png of the first file was written before the second failed."""
    folder = tmp_path / "scans"
    folder.mkdir()
    save(folder, "scan0.nii.gz", image((6, 64, 64)))  # VIF wants 41 x 41 pixels at least
    (folder / "scan9.nii.gz").write_bytes(b"not an image")  # sorted after scan0
    out = tmp_path / "ev"
    assert main(["evaluate", str(folder), "--methods", "linear", "--out", str(out), "--quiet"]) == 2
    assert "cannot read" in capsys.readouterr().err
    assert not out.exists()


def test_options_that_do_nothing_are_said_once(tmp_path, capsys):
    """--workers / --scheduler with one input to one file and --device with conventional methods did
    nothing silently; each gets one 'note:' line now and the run goes on (README, Reliability)."""
    source = save(tmp_path, "a.nii.gz")
    assert main(["super-resolve", source, "-o", str(tmp_path / "r.nii.gz"), "--workers", "3",
                 "--device", "cuda", *LINEAR]) == 0
    notes = [line for line in capsys.readouterr().err.splitlines() if line.startswith("latentsr: note:")]
    assert len(notes) == 2 and "--workers 3 is not used" in notes[0] and "--device cuda is not used" in notes[1]
    assert sitk.ReadImage(str(tmp_path / "r.nii.gz")).GetSize()[2] == 31


SLOW_HEARTBEAT = """
import asyncio


def dask_setup(scheduler):  # a Dask scheduler preload: it answers each worker heartbeat 0.4 s late
    answer = scheduler.handlers["heartbeat_worker"]

    async def late(*args, **kwargs):
        await asyncio.sleep(0.4)
        return answer(*args, **kwargs)
    scheduler.handlers["heartbeat_worker"] = late
"""


@pytest.mark.parametrize("slow_heartbeat", [False, True], ids=["as-is", "heartbeats-held-in-flight"])
def test_a_local_cluster_shuts_down_without_a_traceback(tmp_path, slow_heartbeat):
    """About one --workers 2 run in five to ten printed "Failed to communicate with scheduler during
    heartbeat" with a traceback from a worker as the cluster closed: a heartbeat in flight meets its
    closed connection (distributed/worker.py, Worker.heartbeat: ``except OSError: logger.exception``).
    Real processes, several runs each: as they come, and with every heartbeat kept in flight 0.4 s of
    its 0.5 s interval (a scheduler preload, dask's documented hook), which makes the race near certain:
    that variant printed the traceback in every run before the fix."""
    pytest.importorskip("dask.distributed")
    folder = studies(tmp_path, 2)
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    if slow_heartbeat:
        (tmp_path / "slow_heartbeat.py").write_text(SLOW_HEARTBEAT)
        env["DASK_DISTRIBUTED__SCHEDULER__PRELOAD"] = f'["{tmp_path / "slow_heartbeat.py"}"]'
    for attempt in range(3):
        out = tmp_path / f"out{attempt}"
        run = subprocess.run([sys.executable, "-m", "LatentSRLib.cli", "super-resolve", folder, "-o", str(out),
                              "--factor", "2", "--workers", "2", *LINEAR], capture_output=True, text=True,
                             env=env, timeout=300)
        assert run.returncode == 0, run.stderr
        assert "Traceback" not in run.stderr and "ERROR" not in run.stderr, run.stderr
