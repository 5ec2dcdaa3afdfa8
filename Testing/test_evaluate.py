"""The drop-slice protocol: output files, scored slices, alignment, statistics, errors, real data."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest
from scipy import ndimage

from LatentSRLib import LatentSRError
from LatentSRLib.evaluate import CSV_COLUMNS, evaluate, evaluate_volume, summarise
from LatentSRLib.intensity import PercentileScaling
from LatentSRLib.metrics import centre_crop, psnr, ssim, vif
from LatentSRLib.volume import Volume, write

DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"
CONVENTIONAL = ["linear", "bspline", "lanczos"]


def smooth(shape, seed) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return (ndimage.gaussian_filter(rng.random(shape), (0,) * (len(shape) - 3) + (0.7, 2, 2)) * 800 + 50).astype(np.float32)


@pytest.fixture
def tiny_folder(tmp_path) -> Path:
    """A 3D scan with 7 slices, a 4D cine of 2 frames x 6 slices, a mask to skip, in nested folders."""
    folder = tmp_path / "data"
    (folder / "a").mkdir(parents=True)
    (folder / "b").mkdir()
    write(Volume(smooth((7, 48, 50), 0), (1.5, 1.5, 5.0)), folder / "a" / "scan.nii.gz")
    write(Volume((smooth((7, 48, 50), 1) > 400).astype(np.float32), (1.5, 1.5, 5.0), pixel_type=np.uint8),
          folder / "a" / "scan_gt.nii.gz")
    write(Volume(smooth((2, 6, 48, 50), 2), (1.5, 1.5, 5.0), is_4d=True), folder / "b" / "cine.nii.gz")
    return folder


def read_csv(path: Path) -> tuple[list[str], list[dict[str, str]]]:
    with open(path, newline="") as handle:
        reader = csv.DictReader(handle)
        return list(reader.fieldnames or []), list(reader)


def test_writes_three_files_with_the_right_rows(tiny_folder, tmp_path):
    out = tmp_path / "out"
    summary = evaluate([tiny_folder], CONVENTIONAL, out, progress=False)
    columns, rows = read_csv(out / "metrics.csv")
    assert columns == ["volume", "slice", "method", "ssim", "psnr", "vif"] == list(CSV_COLUMNS)
    # 7 slices keep 0,2,4,6 and score 1,3,5; 6 slices keep 0,2,4 and score 1,3 (5 lies after the
    # last kept slice); the cine's two frames are volumes of their own; the mask is skipped.
    expected = {"scan": [1, 3, 5], "cine_t00": [1, 3], "cine_t01": [1, 3]}
    assert len(rows) == sum(map(len, expected.values())) * len(CONVENTIONAL) == len(summary.rows)
    for method in CONVENTIONAL:
        scored = {}
        for row in rows:
            if row["method"] == method:
                scored.setdefault(row["volume"], []).append(int(row["slice"]))
        assert scored == expected
    assert all(np.isfinite(float(row[m])) for row in rows for m in ("ssim", "psnr", "vif"))
    assert summary.volumes == ["scan", "cine_t00", "cine_t01"]

    text = (out / "summary.md").read_text()
    assert text == summary.markdown
    for label in ("Linear", "B-spline", "Lanczos", "Wilcoxon"):
        assert label in text
    # No learned method: linear is tested against the other baselines so the table is not empty.
    assert {(c.method, c.baseline) for c in summary.comparisons} == {("linear", "bspline"), ("linear", "lanczos")}
    assert len(summary.comparisons) == 6
    assert (out / "boxplots.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_rows_score_the_dropped_slice_against_the_normalised_original():
    """Alignment check by hand: linear at K=2 re-creates slice j as the mean of slices j-1 and j+1."""
    array = smooth((9, 60, 70), 3)
    rows = evaluate_volume("v", Volume(array, (1.4, 1.4, 5.0)), ["linear"], keep_every=2)
    truth = PercentileScaling.fit(array).forward(array, clip=True)
    assert [r.slice for r in rows] == [1, 3, 5, 7]
    for row in rows:
        ref = centre_crop(truth[row.slice])
        test = centre_crop((truth[row.slice - 1] + truth[row.slice + 1]) / 2)
        assert row.ssim == pytest.approx(ssim(ref, test), abs=1e-5)
        assert row.psnr == pytest.approx(psnr(ref, test), abs=1e-3)
        assert row.vif == pytest.approx(vif(ref, test), abs=1e-5)


def test_keep_every_three():
    array = smooth((8, 48, 48), 4)
    rows = evaluate_volume("v", Volume(array, (1.4, 1.4, 3.0)), ["lanczos"], keep_every=3)
    # kept 0, 3, 6: scored 1, 2, 4, 5; slice 7 lies after the last kept slice
    assert [r.slice for r in rows] == [1, 2, 4, 5]


def test_summarise_statistics_and_wilcoxon(tmp_path):
    from scipy.stats import wilcoxon
    from LatentSRLib.evaluate import Row
    rng = np.random.default_rng(5)
    rows = []
    for j in range(12):
        base = rng.random(3)
        rows.append(Row("v", j, "linear", *(base + 0.1)))
        rows.append(Row("v", j, "bspline", *(base + rng.normal(0, 0.02, 3))))
    summary = summarise(rows, ["linear", "bspline"], tmp_path)
    linear_ssim = np.array([r.ssim for r in rows if r.method == "linear"])
    stats = summary.stats["linear"]["ssim"]
    assert (stats.n, stats.mean, stats.sd, stats.median) == pytest.approx(
        (12, linear_ssim.mean(), linear_ssim.std(ddof=1), np.median(linear_ssim)))
    test = next(c for c in summary.comparisons if c.metric == "ssim")
    expected = wilcoxon(linear_ssim, [r.ssim for r in rows if r.method == "bspline"], alternative="greater")
    assert (test.n, test.p) == pytest.approx((12, expected.pvalue))
    assert test.p < 0.01


def test_unknown_method_fails_before_any_work(tiny_folder, tmp_path):
    out = tmp_path / "out"
    with pytest.raises(LatentSRError, match="unknown method 'cubic'"):
        evaluate([tiny_folder], ["linear", "cubic"], out, progress=False)
    assert not out.exists()


def test_learned_method_without_weights_fails_before_any_work(tiny_folder, tmp_path):
    out = tmp_path / "out"
    with pytest.raises(LatentSRError, match="ae"):
        evaluate([tiny_folder], ["linear", "ae"], out, weights={"ae": str(tmp_path / "missing.pt")},
                 progress=False)
    assert not out.exists()


def test_bad_keep_every_and_empty_inputs(tiny_folder, tmp_path):
    with pytest.raises(LatentSRError, match="keep_every"):
        evaluate([tiny_folder], ["linear"], tmp_path / "o", keep_every=1, progress=False)
    (tmp_path / "empty").mkdir()
    with pytest.raises(LatentSRError, match="no images"):
        evaluate([tmp_path / "empty"], ["linear"], tmp_path / "o", progress=False)
    with pytest.raises(LatentSRError, match="slices"):
        evaluate([tiny_folder / "a" / "scan.nii.gz"], ["linear"], tmp_path / "o", keep_every=7, progress=False)


@pytest.mark.integration
def test_acdc_5mm_baselines_ordering(tmp_path):
    """The protocol on two of the six 5 mm ACDC test patients: linear > B-spline > Lanczos in SSIM."""
    folder = DATA / "acdc_fullfov"
    if not folder.is_dir():
        pytest.skip(f"real data not found at {DATA}")
    patients = [folder / "patient082", folder / "patient084"]
    summary = evaluate(patients, CONVENTIONAL, tmp_path, progress=False)
    assert len(summary.volumes) == 4  # ED and ES of each patient
    mean = {m: summary.stats[m]["ssim"].mean for m in CONVENTIONAL}
    assert mean["linear"] > mean["bspline"] > mean["lanczos"]
    assert 0.4 < mean["linear"] < 0.6
    assert 15 < summary.stats["linear"]["psnr"].mean < 25


def test_learned_methods_are_also_compared_with_each_other(tmp_path):
    from LatentSRLib.evaluate import Row
    rng = np.random.default_rng(6)
    rows = []
    for j in range(10):
        base = rng.random(3)
        for method, shift in (("linear", 0.0), ("ae", 0.05), ("contrastive", 0.1)):
            rows.append(Row("v", j, method, *(base + shift + rng.normal(0, 0.01, 3))))
    summary = summarise(rows, ["linear", "ae", "contrastive"], tmp_path)
    pairs = [(c.method, c.baseline) for c in summary.comparisons if c.metric == "ssim"]
    assert pairs == [("ae", "linear"), ("contrastive", "linear"), ("contrastive", "ae")]
    later = next(c for c in summary.comparisons if (c.method, c.baseline, c.metric) == ("contrastive", "ae", "psnr"))
    assert later.median_difference > 0 and later.p < 0.01
    assert "Contrastive > AE" in (tmp_path / "summary.md").read_text()


def test_empty_slices_are_excluded_and_every_metric_has_the_same_n(tmp_path):
    """An all-zero hidden slice (SSIM 1, PSNR inf for any method) is excluded by the content rule and
    counted; an exactly re-created slice has its PSNR capped; every metric then has the same n, and
    no mean is infinite or above 60 dB."""
    from LatentSRLib.evaluate import MIN_FOREGROUND, PSNR_CAP
    array = smooth((9, 48, 50), 7)
    array[4:7] = 0.0          # slices 4-6 empty: hidden slice 5 has no content (nor do its neighbours)
    array[1] = array[2] = array[0]  # hidden slice 1 equals its neighbours: linear re-creates it exactly
    folder = tmp_path / "data"
    folder.mkdir()
    write(Volume(array, (1.5, 1.5, 5.0)), folder / "empty.nii.gz")
    summary = evaluate([folder], ["linear", "lanczos"], tmp_path / "out", progress=False)
    assert summary.excluded == 1
    assert sorted({r.slice for r in summary.rows}) == [1, 3, 7]
    for method in ("linear", "lanczos"):
        ns = {metric: summary.stats[method][metric].n for metric in ("ssim", "psnr", "vif")}
        assert set(ns.values()) == {3}, ns
        assert np.isfinite(summary.stats[method]["psnr"].mean) and summary.stats[method]["psnr"].mean <= PSNR_CAP
    exact = next(r for r in summary.rows if (r.method, r.slice) == ("linear", 1))
    assert exact.psnr == PSNR_CAP
    text = (tmp_path / "out" / "summary.md").read_text()
    assert "Excluded: 1 hidden slices" in text and f"{MIN_FOREGROUND:.0%}" in text
    assert "Volumes (1): empty." in text


def test_a_volume_with_only_empty_hidden_slices_says_so(tmp_path):
    array = np.zeros((5, 48, 48), np.float32)
    array[::2] = smooth((3, 48, 48), 8)
    write(Volume(array, (1.5, 1.5, 5.0)), tmp_path / "gaps.nii.gz")
    with pytest.raises(LatentSRError, match="content rule"):
        evaluate([tmp_path / "gaps.nii.gz"], ["linear"], tmp_path / "out", progress=False)


def test_evaluate_draws_the_comparison_of_the_first_volume(tiny_folder, tmp_path):
    from LatentSRLib import figures
    calls = []
    original = figures.comparison_figure

    def spy(truth, outputs, spacing, path, **options):
        calls.append((truth.shape, {k: v.shape for k, v in outputs.items()}, options["scores"], spacing))
        return original(truth, outputs, spacing, path, **options)

    figures.comparison_figure = spy
    try:
        summary = evaluate([tiny_folder], ["linear", "bspline"], tmp_path, progress=False)
    finally:
        figures.comparison_figure = original
    assert len(calls) == 1  # the first volume only
    shape, outputs, scores, spacing = calls[0]
    assert shape == (7, 48, 50) and outputs == {"Linear": shape, "B-spline": shape}
    assert spacing == (5.0, 1.5, 1.5)
    first = [r for r in summary.rows if r.volume == "scan" and r.method == "linear"]
    assert scores["Linear"] == f"SSIM {np.mean([r.ssim for r in first]):.3f}, PSNR {np.mean([r.psnr for r in first]):.1f} dB"
    assert summary.figure_path == tmp_path / "comparison.png" and summary.figure_path.stat().st_size > 10_000


def test_summary_names_the_weights_with_their_sha256(tmp_path):
    pytest.importorskip("torch")
    from LatentSRLib.evaluate import Row
    from LatentSRLib.models import registry
    bundled = {e["kind"]: (name, e) for name, e in registry.manifest().items() if e.get("default")}
    if "ae" not in bundled:
        pytest.skip("no bundled autoencoder")
    rows = [Row("v", j, m, 0.5 + 0.01 * j + (m == "ae") * 0.01, 20.0 + j, 0.2) for j in range(6) for m in ("linear", "ae")]
    text = summarise(rows, ["linear", "ae"], tmp_path, volumes=["v"]).markdown
    name, entry = bundled["ae"]
    assert f"| AE | {name} (`{entry['file']}`) | `{entry['sha256']}` |" in text


def test_a_segmentation_named_explicitly_is_skipped_and_said_so(tiny_folder, tmp_path):
    """A mask listed beside its scan (a shell glob lists both) is not scored, and the summary says why;
    with nothing else to score the run stops with one line naming it."""
    scan, mask = tiny_folder / "a" / "scan.nii.gz", tiny_folder / "a" / "scan_gt.nii.gz"
    summary = evaluate([scan, mask], CONVENTIONAL, tmp_path / "out", progress=False)
    assert summary.volumes == ["scan"] and summary.skipped == ["scan_gt (a label map)"]
    assert "Skipped: scan_gt (a label map)." in (tmp_path / "out" / "summary.md").read_text()
    with pytest.raises(LatentSRError, match=r"nothing to score: skipped scan_gt \(a label map\)"):
        evaluate([mask], CONVENTIONAL, tmp_path / "out2", progress=False)


def test_the_summary_names_the_crossfade_detector_that_flow_and_motion_asked(tmp_path):
    """flow's and motion's results depend on the bundled cross-fade detector too: summary.md names it with
    its sha256 when the check was on, and not when it was off (nor for methods that do not ask it)."""
    from LatentSRLib.evaluate import Row
    from LatentSRLib.models import registry
    rng = np.random.default_rng(2)
    rows = [Row("v", j, method, *rng.random(3)) for j in range(6) for method in ("linear", "flow")]
    path, _ = registry.resolve(registry.default_weights("crossfade"), "crossfade")
    text = summarise(rows, ["linear", "flow"], tmp_path / "on").markdown
    assert f"| Flow | re-sampling check: crossfade-acdc (`crossfade.pt`) | `{registry.sha256(path)}` |" in text
    text = summarise(rows, ["linear", "flow"], tmp_path / "off", resampling_check=False).markdown
    assert "crossfade" not in text
    assert "crossfade" not in summarise(rows[::2], ["linear"], tmp_path / "linear").markdown
