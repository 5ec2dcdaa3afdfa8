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
``install``     missing Python packages and installing them inside Slicer
``layout``      the linked through-plane comparison views
``jobs``        the panel's runs in a background process (start, poll, cancel, finish)
``overlay``     the confidence overlay (colour table, legend, opacity)
``checking``    "Check on this scan" on a node
``panel``       the panel's run lifecycle (start, poll, cancel, finish) without Qt
==============  ==================================================================================
"""

from __future__ import annotations

from ..pipeline import Cancelled
from .batch import super_resolve_and_compare, super_resolve_node, super_resolve_scene, scene_inputs
from .checking import CheckJob, check_node, start_check_job
from .files import load_file, process_folder, save_node
from .install import REQUIREMENT_REASONS, ensure_requirements, missing_requirements
from .jobs import NodeJob, start_job
from .layout import (COMPARISON_LAYOUT_ID, COMPARISON_VIEW_GROUP, COMPARISON_VIEW_PREFIX, Comparison,
                     show_comparison, through_plane_orientation)
from .nodes import LPS_TO_RAS, ijk_to_ras, node_from_volume, node_ijk_to_ras, volume_from_node
from .options import (OTHER_FILE, SIZE_MODES, ModelChoice, ModelMenu, OutputDescription, describe_output, devices,
                      methods, model_choices, model_menu)
from .outputs import (ATTRIBUTE_CONFIDENCE, ATTRIBUTE_FACTOR, ATTRIBUTE_METHOD, ATTRIBUTE_SOURCE, add_result,
                      output_name, remove_output)
from .overlay import confidence_node, show_confidence
from .panel import PanelRunner, Update
from .roi import crop_to_roi, crop_volume, roi_box, roi_corners_ras
from .sequences import browsers_of, proxy_volume, sequence_from_volume, sequence_of_proxy, set_primary_sequence

__all__ = [
    "CheckJob", "ModelMenu", "PanelRunner", "SIZE_MODES", "Update", "model_menu", "ATTRIBUTE_CONFIDENCE", "ATTRIBUTE_FACTOR", "ATTRIBUTE_METHOD", "ATTRIBUTE_SOURCE", "COMPARISON_LAYOUT_ID",
    "COMPARISON_VIEW_GROUP", "COMPARISON_VIEW_PREFIX", "Cancelled", "Comparison", "LPS_TO_RAS", "ModelChoice",
    "NodeJob", "OTHER_FILE", "OutputDescription", "REQUIREMENT_REASONS", "add_result", "browsers_of",
    "check_node", "confidence_node", "start_check_job", "crop_to_roi", "crop_volume", "describe_output", "devices",
    "ensure_requirements", "ijk_to_ras", "load_file", "methods", "missing_requirements", "model_choices",
    "node_from_volume", "node_ijk_to_ras", "output_name", "process_folder", "proxy_volume", "remove_output",
    "roi_box", "roi_corners_ras", "save_node", "scene_inputs", "sequence_from_volume", "sequence_of_proxy",
    "set_primary_sequence", "show_comparison", "show_confidence", "start_job", "super_resolve_and_compare",
    "super_resolve_node", "super_resolve_scene", "through_plane_orientation", "volume_from_node",
]
