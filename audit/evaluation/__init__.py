"""The evaluator: data and model loading, the streaming evaluation loop, metrics and results assembly.

A peer of :mod:`policies` and :mod:`reports` (none of the three imports
another); it uses :mod:`stressors` and the contract (:mod:`audit.contract`)
below it.

Callers outside the evaluator import the names below from here, never from a
submodule (an import-linter contract in pyproject.toml). Each name is loaded
from its submodule on first use (PEP 562), so ``from audit.evaluation import
compare_to_baseline`` does not import torch, and a DataLoader worker
unpickling an :class:`AuditDataset` imports only what it decodes.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from audit.evaluation.adversarial_checks import CHECKS as ADVERSARIAL_CHECKS
    from audit.evaluation.allocator import allocator_setting, apply_allocator
    from audit.evaluation.breaking_points import (
        BREAKING_POINTS_CSV,
        RefineContext,
        check_refinement,
        compute_breaking_points,
        run_breaking_points,
    )
    from audit.evaluation.conditions import Condition, build_conditions, check_classification_conditions
    from audit.evaluation.corruption_benchmark import check_benchmark, imagenet_c_summary, suite_condition_ids
    from audit.evaluation.data import AuditDataset, SampleTable, check_label_range, read_samples, sample_keys_of
    from audit.evaluation.detection.attack_pass import attacks_section, check_attacks, check_classifier_attacks
    from audit.evaluation.detection.coco_metrics import ImageDetections
    from audit.evaluation.detection.evaluate import check_box_support, evaluate_detector, read_detection_data
    from audit.evaluation.detection.model import load_detector
    from audit.evaluation.detection.objects import read_objects
    from audit.evaluation.detection.operating_point import match_images
    from audit.evaluation.detection.results import DetectionRunInfo, detection_examples, detection_results
    from audit.evaluation.detection.summary import DETECTIONS_CSV, DETECTIONS_JSON, OBJECTS_CSV, summarize_detection
    from audit.evaluation.early_stop import StopMonitor, stratified_order
    from audit.evaluation.error_thumbnails import stressed_thumbnails
    from audit.evaluation.evaluate import EvalSettings, EvalState, merge_attack_details
    from audit.evaluation.evaluate import evaluate as evaluate_conditions
    from audit.evaluation.fitting import check_fitted_attacks, fit_attacks
    from audit.evaluation.groups import SlotLayout, build_layout, slot_matrix
    from audit.evaluation.image_properties import merge_properties, properties_part_path
    from audit.evaluation.metrics import state_bytes
    from audit.evaluation.model import load_model, resolve_device, resolve_model_config
    from audit.evaluation.predictions import merge_predictions
    from audit.evaluation.results import ResultsInputs, assemble_results
    from audit.evaluation.robustness import compare_to_baseline
    from audit.evaluation.slice_watch import (
        measure_watched,
        measure_watched_detection,
        read_slice_table,
        search_table,
    )
    from audit.evaluation.slices.run_folder import SLICES_CSV, read_detection_table, search_run, slices_csv_text
    from audit.evaluation.slices.run_folder import promote as promote_slice
    from audit.evaluation.slices.search import DETECTION_METRICS, SEARCH_METRICS, SearchSettings
    from audit.evaluation.subset import stratified_subset
    from audit.evaluation.threads import ThreadPlan, plan_threads, using_threads

#: Public name -> (submodule, its name there). A public name never equals a submodule's name:
#: importing the submodule would replace the package attribute.
_PUBLIC: dict[str, tuple[str, str]] = {
    "ADVERSARIAL_CHECKS": ("adversarial_checks", "CHECKS"),
    "apply_allocator": ("allocator", "apply_allocator"),
    "allocator_setting": ("allocator", "allocator_setting"),
    "BREAKING_POINTS_CSV": ("breaking_points", "BREAKING_POINTS_CSV"),
    "RefineContext": ("breaking_points", "RefineContext"),
    "check_refinement": ("breaking_points", "check_refinement"),
    "compute_breaking_points": ("breaking_points", "compute_breaking_points"),
    "run_breaking_points": ("breaking_points", "run_breaking_points"),
    "Condition": ("conditions", "Condition"),
    "build_conditions": ("conditions", "build_conditions"),
    "check_classification_conditions": ("conditions", "check_classification_conditions"),
    "check_benchmark": ("corruption_benchmark", "check_benchmark"),
    "imagenet_c_summary": ("corruption_benchmark", "imagenet_c_summary"),
    "suite_condition_ids": ("corruption_benchmark", "suite_condition_ids"),
    "AuditDataset": ("data", "AuditDataset"),
    "SampleTable": ("data", "SampleTable"),
    "check_label_range": ("data", "check_label_range"),
    "read_samples": ("data", "read_samples"),
    "sample_keys_of": ("data", "sample_keys_of"),
    "StopMonitor": ("early_stop", "StopMonitor"),
    "stratified_order": ("early_stop", "stratified_order"),
    "stressed_thumbnails": ("error_thumbnails", "stressed_thumbnails"),
    "EvalSettings": ("evaluate", "EvalSettings"),
    "EvalState": ("evaluate", "EvalState"),
    "evaluate_conditions": ("evaluate", "evaluate"),
    "merge_attack_details": ("evaluate", "merge_attack_details"),
    "check_fitted_attacks": ("fitting", "check_fitted_attacks"),
    "fit_attacks": ("fitting", "fit_attacks"),
    "SlotLayout": ("groups", "SlotLayout"),
    "build_layout": ("groups", "build_layout"),
    "slot_matrix": ("groups", "slot_matrix"),
    "state_bytes": ("metrics", "state_bytes"),
    "load_model": ("model", "load_model"),
    "resolve_device": ("model", "resolve_device"),
    "resolve_model_config": ("model", "resolve_model_config"),
    "merge_predictions": ("predictions", "merge_predictions"),
    "merge_properties": ("image_properties", "merge_properties"),
    "properties_part_path": ("image_properties", "properties_part_path"),
    "measure_watched": ("slice_watch", "measure_watched"),
    "measure_watched_detection": ("slice_watch", "measure_watched_detection"),
    "read_slice_table": ("slice_watch", "read_slice_table"),
    "search_table": ("slice_watch", "search_table"),
    "assemble_results": ("results", "assemble_results"),
    "ResultsInputs": ("results", "ResultsInputs"),
    "compare_to_baseline": ("robustness", "compare_to_baseline"),
    "stratified_subset": ("subset", "stratified_subset"),
    "DETECTION_METRICS": ("slices.search", "DETECTION_METRICS"),
    "SEARCH_METRICS": ("slices.search", "SEARCH_METRICS"),
    "SearchSettings": ("slices.search", "SearchSettings"),
    "SLICES_CSV": ("slices.run_folder", "SLICES_CSV"),
    "promote_slice": ("slices.run_folder", "promote"),
    "read_detection_table": ("slices.run_folder", "read_detection_table"),
    "search_run": ("slices.run_folder", "search_run"),
    "slices_csv_text": ("slices.run_folder", "slices_csv_text"),
    "ThreadPlan": ("threads", "ThreadPlan"),
    "DETECTIONS_CSV": ("detection.summary", "DETECTIONS_CSV"),
    "DETECTIONS_JSON": ("detection.summary", "DETECTIONS_JSON"),
    "OBJECTS_CSV": ("detection.summary", "OBJECTS_CSV"),
    "check_box_support": ("detection.evaluate", "check_box_support"),
    "attacks_section": ("detection.attack_pass", "attacks_section"),
    "check_attacks": ("detection.attack_pass", "check_attacks"),
    "check_classifier_attacks": ("detection.attack_pass", "check_classifier_attacks"),
    "DetectionRunInfo": ("detection.results", "DetectionRunInfo"),
    "detection_examples": ("detection.results", "detection_examples"),
    "detection_results": ("detection.results", "detection_results"),
    "evaluate_detector": ("detection.evaluate", "evaluate_detector"),
    "load_detector": ("detection.model", "load_detector"),
    "read_detection_data": ("detection.evaluate", "read_detection_data"),
    "ImageDetections": ("detection.coco_metrics", "ImageDetections"),
    "match_images": ("detection.operating_point", "match_images"),
    "read_objects": ("detection.objects", "read_objects"),
    "summarize_detection": ("detection.summary", "summarize_detection"),
    "plan_threads": ("threads", "plan_threads"),
    "using_threads": ("threads", "using_threads"),
}

__all__ = [
    "ADVERSARIAL_CHECKS",
    "BREAKING_POINTS_CSV",
    "DETECTIONS_CSV",
    "DETECTIONS_JSON",
    "DETECTION_METRICS",
    "OBJECTS_CSV",
    "SEARCH_METRICS",
    "SLICES_CSV",
    "AuditDataset",
    "Condition",
    "DetectionRunInfo",
    "EvalSettings",
    "EvalState",
    "ImageDetections",
    "RefineContext",
    "ResultsInputs",
    "SampleTable",
    "SearchSettings",
    "SlotLayout",
    "StopMonitor",
    "ThreadPlan",
    "allocator_setting",
    "apply_allocator",
    "assemble_results",
    "attacks_section",
    "build_conditions",
    "build_layout",
    "check_attacks",
    "check_benchmark",
    "check_box_support",
    "check_classification_conditions",
    "check_classifier_attacks",
    "check_fitted_attacks",
    "check_label_range",
    "check_refinement",
    "compare_to_baseline",
    "compute_breaking_points",
    "detection_examples",
    "detection_results",
    "evaluate_conditions",
    "evaluate_detector",
    "fit_attacks",
    "imagenet_c_summary",
    "load_detector",
    "load_model",
    "match_images",
    "measure_watched",
    "measure_watched_detection",
    "merge_attack_details",
    "merge_predictions",
    "merge_properties",
    "plan_threads",
    "promote_slice",
    "properties_part_path",
    "read_detection_data",
    "read_detection_table",
    "read_objects",
    "read_samples",
    "read_slice_table",
    "resolve_device",
    "resolve_model_config",
    "run_breaking_points",
    "sample_keys_of",
    "search_run",
    "search_table",
    "slices_csv_text",
    "slot_matrix",
    "state_bytes",
    "stratified_order",
    "stratified_subset",
    "stressed_thumbnails",
    "suite_condition_ids",
    "summarize_detection",
    "using_threads",
]


def __getattr__(name: str) -> Any:
    """Load a public name from its submodule on first use.

    Raises:
        AttributeError: ``name`` is not public here (nor a submodule already imported).
    """
    if name not in _PUBLIC:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    module, attribute = _PUBLIC[name]
    value = getattr(importlib.import_module(f"{__name__}.{module}"), attribute)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_PUBLIC))
