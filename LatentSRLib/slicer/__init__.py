"""3D Slicer's scene <-> the library: everything below the LatentSR panel, without Qt.

This package is the only part of the library that imports Slicer (its MRML and logic classes, all
of which also work headless with ``slicer-core`` from PyPI). The Slicer module ``LatentSR.py`` is
a thin shell: each of its buttons calls one function here. One concern per module:

==============  ==================================================================================
``nodes``       volume nodes <-> :class:`~LatentSRLib.volume.Volume` (exact geometry, LPS <-> RAS)
``sequences``   cines: sequence nodes, browsers, proxy volumes
``roi``         cropping to a markups ROI in the input's index space (no resampling)
``outputs``     output nodes: names, marks, display, placement, removal (all or nothing)
``batch``       super-resolving nodes, several methods, the whole scene (in the calling thread)
``files``       loading and saving files with Slicer's readers; folders of files
``options``     what the panel offers: methods, models, devices, the output's size
``install``     Python packages the methods need: versions checked, installing them inside Slicer
``layout``      the linked through-plane comparison views
``jobs``        the panel's runs in a background process (start, poll, cancel, finish)
``overlay``     the confidence overlay (colour table, legend, opacity)
``checking``    "Check on this scan" on a node
``panel``       the panel's run lifecycle (start, poll, cancel, finish) without Qt
==============  ==================================================================================

Every name below is imported from its module on first use (PEP 562), not when the package is:
Slicer runs the module file, and with it this import, at every start-up, for every user
(``Base/QTGUI/qSlicerScriptedLoadableModuleFactory.cxx``), and a stock Slicer has neither the
packages the methods need nor a reason to pay for loading them before the user acts.
``Testing/test_slicer_load.py`` checks what the start-up imports and how long it takes.
"""

from __future__ import annotations

import importlib

#: Public name -> the module of this package (or the library) that defines it.
_WHERE = {
    "Cancelled": "..pipeline",
    **dict.fromkeys(("super_resolve_and_compare", "super_resolve_node", "super_resolve_scene", "scene_inputs",
                     "is_result"), ".batch"),
    **dict.fromkeys(("CheckJob", "check_node", "start_check_job"), ".checking"),
    **dict.fromkeys(("load_file", "process_folder", "save_node"), ".files"),
    **dict.fromkeys(("REQUIREMENT_REASONS", "ensure_requirements", "missing_requirements", "outdated_requirements"),
                    ".install"),
    **dict.fromkeys(("NodeJob", "start_job"), ".jobs"),
    **dict.fromkeys(("COMPARISON_LAYOUT_ID", "COMPARISON_VIEW_GROUP", "COMPARISON_VIEW_PREFIX", "Comparison",
                     "show_comparison", "through_plane_orientation", "fit_comparison_views"), ".layout"),
    **dict.fromkeys(("LPS_TO_RAS", "ijk_to_ras", "node_from_volume", "node_ijk_to_ras", "volume_from_node"), ".nodes"),
    **dict.fromkeys(("OTHER_FILE", "SIZE_MODES", "ModelChoice", "ModelMenu", "OutputDescription", "describe_output",
                     "devices", "DeviceProbe", "methods", "model_choices", "model_menu"), ".options"),
    **dict.fromkeys(("ATTRIBUTE_CONFIDENCE", "ATTRIBUTE_FACTOR", "ATTRIBUTE_METHOD", "ATTRIBUTE_SOURCE", "add_result",
                     "output_name", "remove_output", "result_mark"), ".outputs"),
    **dict.fromkeys(("confidence_node", "show_confidence"), ".overlay"),
    **dict.fromkeys(("PanelRunner", "Update"), ".panel"),
    **dict.fromkeys(("crop_to_roi", "crop_volume", "roi_box", "roi_corners_ras"), ".roi"),
    **dict.fromkeys(("browsers_of", "proxy_volume", "sequence_from_volume", "sequence_of_proxy",
                     "set_primary_sequence"), ".sequences"),
}

__all__ = sorted(_WHERE)


def __getattr__(name: str):
    if name not in _WHERE:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(_WHERE[name], __name__), name)
    globals()[name] = value  # the next lookup is a plain attribute
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_WHERE))
