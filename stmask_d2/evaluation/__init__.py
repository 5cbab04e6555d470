"""YouTube-VIS evaluation: the official video-mask AP/AR (`evaluate_ytvis`), HOTA via trackeval
(`compute_hota`), the Detectron2 `YTVISEvaluator`, and the CLI `python -m stmask_d2.evaluation`.

Light to import: the Detectron2 evaluator and trackeval load on first use.
"""
from .ytvis_eval import (  # noqa: F401
    METRIC_NAMES,
    YTVISEvalError,
    YTVISGroundTruth,
    YTVISResults,
    evaluate_ytvis,
    load_ytvis_gt,
    load_ytvis_results,
)

__all__ = [
    "METRIC_NAMES",
    "YTVISEvalError",
    "YTVISGroundTruth",
    "YTVISResults",
    "evaluate_ytvis",
    "load_ytvis_gt",
    "load_ytvis_results",
    "compute_hota",
    "YTVISEvaluator",
    "instances_to_ytvis_results",
]


def __getattr__(name):
    if name == "compute_hota":
        from .hota import compute_hota

        return compute_hota
    if name in ("YTVISEvaluator", "instances_to_ytvis_results"):
        from . import evaluator

        return getattr(evaluator, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
