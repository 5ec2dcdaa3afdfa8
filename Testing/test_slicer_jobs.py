"""LatentSRLib.slicer's panel-facing calls on a real MRML scene (slicer-core): background jobs,
the confidence overlay, the model and method choices, Check on this scan, the run lifecycle."""

from __future__ import annotations

import types

import numpy as np
import pytest

slicer = pytest.importorskip("slicer", reason="slicer-core is not installed")

import LatentSRLib.slicer as lsr  # noqa: E402
from LatentSRLib import LatentSRError, pipeline  # noqa: E402
from LatentSRLib.pipeline import Cancelled  # noqa: E402
from LatentSRLib.slicer import outputs as outputs_module  # noqa: E402
from LatentSRLib.volume import Volume  # noqa: E402
from mrml_fixtures import cine_sequence, mrml_scene, node_ids, oblique  # noqa: E402,F401

pytestmark = pytest.mark.mrml


def frames(count: int = 3, size: int = 24) -> list[Volume]:
    rng = np.random.default_rng(2)
    return [Volume(np.rint(rng.normal(100, 20, (1, 5, size, size + 4))), (1.5, 1.5, 6.0), (3.0, -2.0, 1.0),
                   np.eye(3), np.int16) for _ in range(count)]


def test_background_job_makes_the_nodes_the_scene_call_makes(mrml_scene):
    sequence = cine_sequence(mrml_scene.scene, frames(), name="cine")
    job = lsr.start_job(sequence, ["linear", "bspline"], factor=2, prefix="case")
    assert node_ids(mrml_scene.scene) >= {sequence.GetID()}
    made = job.finish(show=True)
    assert [n.GetName() for n in made] == ["case Linear x2", "case B-spline x2"]
    assert "Created \"case Linear x2\", \"case B-spline x2\" in" in job.summary()
    expected = lsr.super_resolve_node(sequence, "bspline", factor=2, name="direct")
    for t in range(3):
        np.testing.assert_array_equal(slicer.util.arrayFromVolume(made[1].GetNthDataNode(t)),
                                      slicer.util.arrayFromVolume(expected.GetNthDataNode(t)))
    assert mrml_scene.scene.GetFirstNodeByClass("vtkMRMLLayoutNode").GetViewArrangement() == lsr.COMPARISON_LAYOUT_ID


def test_cancelled_or_orphaned_job_leaves_no_node_and_no_file(mrml_scene, oblique):
    node = lsr.node_from_volume(oblique, "p", mrml_scene.scene)
    before = node_ids(mrml_scene.scene)
    job = lsr.start_job(node, ["lanczos"], factor=3)
    job.cancel()
    job.cancel()                         # the scene closing after Cancel: a second cancel does nothing
    with pytest.raises(Cancelled):
        job.finish()
    assert node_ids(mrml_scene.scene) == before
    assert job.job.process.poll() is not None and not job.job.folder.exists() and job.log_path is None
    # The input leaves the scene (scene closed) while the job runs: nothing is added.
    job = lsr.start_job(node, ["linear"], factor=2)
    mrml_scene.scene.RemoveNode(node)
    before = node_ids(mrml_scene.scene)
    with pytest.raises(Cancelled):
        job.finish()
    assert node_ids(mrml_scene.scene) == before and not job.job.folder.exists()


def test_a_failed_job_keeps_its_log_for_the_panel(mrml_scene, oblique, tmp_path, monkeypatch):
    """What a "Show log" button opens. ``slicer.app.temporaryPath`` stands in for
    qSlicerCoreApplication's property (Base/QTCore/qSlicerCoreApplication.h: Q_PROPERTY(QString
    temporaryPath READ temporaryPath WRITE setTemporaryPath)); slicer-core has no application."""
    monkeypatch.setattr(slicer, "app", types.SimpleNamespace(temporaryPath=str(tmp_path / "SlicerTemp")), raising=False)
    node = lsr.node_from_volume(oblique, "p", mrml_scene.scene)
    before = node_ids(mrml_scene.scene)
    not_weights = tmp_path / "model.pt"
    not_weights.write_bytes(b"\x80\x04 not a pickle")
    job = lsr.start_job(node, ["ae"], factor=2, weights=str(not_weights))
    with pytest.raises(LatentSRError, match="is not a readable weights file") as error:
        job.finish()
    assert node_ids(mrml_scene.scene) == before and not job.job.folder.exists()
    assert job.log_path == error.value.log_path and job.log_path.parent == tmp_path / "SlicerTemp" / "LatentSR-logs"
    assert "Traceback" in job.log_path.read_text() and "LatentSRError" in job.log_tail()
    assert job.log_tail(1) == job.log_path.read_text().splitlines()[-1]
    assert error.value.log_tail == job.log_tail()


def confidence_for(result: Volume) -> Volume:
    """A confidence volume on the output grid, as pipeline.Run.confidence holds it."""
    values = np.linspace(0, 1, result.array.size, dtype=np.float32).reshape(result.array.shape)
    return result.with_array(values)


def test_confidence_node_and_overlay_for_a_volume(mrml_scene, oblique, monkeypatch):
    node = lsr.node_from_volume(oblique, "p", mrml_scene.scene)
    real = outputs_module.add_result

    # A method that sets run.confidence, as flow and motion do.
    def with_confidence(source, result, method, factor, name, confidence=None):
        return real(source, result, method, factor, name, confidence_for(result))
    monkeypatch.setattr("LatentSRLib.slicer.batch.add_result", with_confidence)
    output = lsr.super_resolve_node(node, "linear", factor=2)
    conf = lsr.confidence_node(output)
    assert conf is not None and conf.GetName() == "p Linear x2 confidence"
    values = slicer.util.arrayFromVolume(conf)
    assert values.dtype == np.float32 and values.min() == 0.0 and values.max() == 1.0
    np.testing.assert_allclose(lsr.node_ijk_to_ras(conf), lsr.node_ijk_to_ras(output))
    assert conf not in lsr.scene_inputs(mrml_scene.scene)

    comparison = lsr.show_comparison([node, output])
    changed = lsr.show_confidence(output, True, 0.4)
    assert changed == [comparison.composite_nodes[1]]
    assert changed[0].GetForegroundVolumeID() == conf.GetID() and changed[0].GetForegroundOpacity() == pytest.approx(0.4)
    display = conf.GetDisplayNode()
    assert display.GetColorNode().GetName() == "LatentSR confidence"
    assert (display.GetWindowLevelMin(), display.GetWindowLevelMax()) == (0.0, 1.0)
    legend = [conf.GetNthDisplayNode(i) for i in range(conf.GetNumberOfDisplayNodes())
              if conf.GetNthDisplayNode(i).IsA("vtkMRMLColorLegendDisplayNode")]
    assert len(legend) == 1 and legend[0].GetVisibility() and legend[0].GetTitleText() == "Confidence"
    lsr.show_confidence(output, False)
    assert changed[0].GetForegroundVolumeID() is None and not legend[0].GetVisibility()
    assert comparison.composite_nodes[0].GetForegroundVolumeID() is None      # the input's view untouched
    with pytest.raises(LatentSRError, match="no confidence"):
        lsr.show_confidence(node)
    lsr.remove_output(output)


def test_confidence_of_a_cine_from_a_background_job(mrml_scene):
    if "flow" not in pipeline.METHODS:
        pytest.skip("no flow method in this installation")
    sequence = cine_sequence(mrml_scene.scene, frames(count=2, size=32), name="cine")
    (output,) = lsr.start_job(sequence, ["flow"], factor=2).finish()
    conf = lsr.confidence_node(output)
    assert conf is not None and conf.IsA("vtkMRMLSequenceNode") and conf.GetNumberOfDataNodes() == 2
    values = slicer.util.arrayFromVolume(conf.GetNthDataNode(1))
    assert values.dtype == np.float32 and 0 <= values.min() <= values.max() <= 1
    (browser,) = lsr.browsers_of(sequence)
    assert browser.IsSynchronizedSequenceNodeID(conf.GetID())
    assert lsr.confidence_node(browser.GetProxyNode(output)) is conf      # from the proxy shown in a view
    changed = lsr.show_confidence(browser.GetProxyNode(output), True, 0.5)
    assert changed and changed[0].GetForegroundVolumeID() == browser.GetProxyNode(conf).GetID()


def test_methods_and_models_for_the_selectors(monkeypatch):
    names = [name for name, _ in lsr.methods()]
    assert names == list(pipeline.METHODS)
    assert dict(lsr.methods())["bspline"] == pipeline.LABELS["bspline"]
    monkeypatch.setitem(pipeline.METHODS, "new", pipeline.METHODS["linear"])
    assert "new" in [name for name, _ in lsr.methods()]       # new methods appear without touching the panel

    ae = lsr.model_choices("ae")
    assert [c.value for c in ae] == ["ae-acdc", "ae-colin27", lsr.OTHER_FILE]
    assert ae[0].label == "ae-acdc (default)" and ae[-1].label == "Other file..."
    assert ae[0].description.startswith("Latent-interpolation autoencoder")
    assert lsr.model_choices("linear") == []
    menu = lsr.model_menu("contrastive", "/data/mine/adapted.pt")
    assert [c.label for c in menu.choices][-2:] == ["adapted.pt", "Other file..."]
    assert menu.choices[menu.current].value == "/data/mine/adapted.pt"
    default = lsr.model_menu("contrastive")
    assert default.current == 0 and default.choices[0].value == "contrastive-acdc-fast"
    assert lsr.model_menu("bspline").choices == [] and lsr.model_menu("bspline").description == ""


def test_check_on_the_frame_the_browser_shows(mrml_scene):
    volumes = [Volume(np.full((1, 7, 48, 48), 10.0 * t, np.float32) + np.arange(7)[:, None, None],
                      (1.4, 1.4, 8.0)) for t in range(3)]
    sequence = cine_sequence(mrml_scene.scene, volumes, name="cine")
    (browser,) = lsr.browsers_of(sequence)
    browser.SetSelectedItemNumber(2)
    before = node_ids(mrml_scene.scene)
    result = lsr.check_node(browser.GetProxyNode(sequence), ["bspline", "linear"])
    assert result.frame == 2 and result.winner == "linear" and result.rows[0].psnr > 40
    assert node_ids(mrml_scene.scene) == before                        # a check adds nothing to the scene
    job = lsr.start_check_job(sequence, ["linear"])
    assert job.finish().frame == 2 and "Linear" in job.summary()


def test_panel_runner_lifecycle(mrml_scene, oblique):
    node = lsr.node_from_volume(oblique, "p", mrml_scene.scene)
    runner = lsr.PanelRunner()
    update = runner.start(["linear"], lambda: lsr.start_check_job(node, ["linear", "bspline"]))
    assert update.running and runner.running and update.error is None
    while update.running:
        update = runner.poll()
    assert update.check is not None and update.check.winner in ("linear", "bspline") and update.percent == 100
    update = runner.start(["linear"], lambda: lsr.start_job(node, ["lanczos"], factor=4))
    update = runner.cancel()
    assert not update.running and update.status.startswith("Cancelled") and not runner.running
    update = runner.start(["linear"], lambda: lsr.start_job(node, ["linear"], factor=0))
    assert update.error == "the factor must be an integer of at least 1, got 0" and not update.running
    update = runner.start(["linear"], lambda: 1 / 0)
    assert update.error.startswith("LatentSR failed: ZeroDivisionError") and "details in the log" in update.error


def test_deprecated_mrml_name_still_works():
    from LatentSRLib import mrml
    assert mrml.super_resolve_node is lsr.super_resolve_node and mrml.show_comparison is lsr.show_comparison
    assert set(lsr.__all__) <= set(dir(mrml))
