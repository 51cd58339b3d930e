"""ffwatt's analysis room: from the Parquet results to decisions.

Reads results through :mod:`ffwatt.results` and never imports Prefect, flows or tasks.

    load_results / resolve_run        one run, several, or the whole tree (+ node facts)
    notebook_results_dir / shown      where a notebook finds results; a frame to display, never NaN
    job_efficiency / config_efficiency   J/frame, px/J, QoE/J, watts... per job and configuration
    repetition_stats / compare        mean, std, 95 % t-interval; different by Welch's t-test
    pareto_front                      non-dominated configurations (2-D or 3-D)
    bd_rate / bd_quality / bd_energy  Bjøntegaard deltas, cubic (VCEG-M33) or PCHIP (VCEG-AL22)
    fit_power_model                   watts and joules from job parameters, refuses to extrapolate
    window_means                      time-series samples (e.g. power) averaged per job window
    load_series / power_over_time     jobs' series (results/_series) joined to their jobs; watts per part
    load_frames                       jobs' per-frame scores (results/_frames) on their encode's time axis
    power_summary / sample_counts     per job, file by file: mean and peak watts; samples per metric
    series_checks                     each job's series energy against its row's (the cross-check)
    recommend                         the configuration meeting a target for the least energy/cost/...
    compare_runs / previous_run       run against run per configuration, with node changes
    campaign_history                  a campaign's configurations over its runs
    write_report                      one self-contained HTML report

Names are imported on first use, so ``import analysis.recommend`` (``ffwatt recommend``)
doesn't pay for matplotlib and the report.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from analysis.bd import bd_energy, bd_quality, bd_rate, bd_table
    from analysis.efficiency import config_efficiency, job_efficiency
    from analysis.frames import load_frames
    from analysis.load import load_results, node_metadata, notebook_results_dir, resolve_run, run_summary
    from analysis.markdown import md_number, shown
    from analysis.pareto import pareto_front, pareto_mask
    from analysis.power import CVScore, PowerModel, fit_power_model
    from analysis.recommend import Recommendation, Scope, Target, recommend
    from analysis.regression import RunComparison, campaign_history, compare_runs, previous_run
    from analysis.report import write_report
    from analysis.samples import window_means
    from analysis.series import load_series, power_over_time, power_summary, sample_counts, series_checks
    from analysis.stats import Comparison, compare, mean_ci, repetition_stats, t_critical, welch
    from ffwatt.errors import AnalysisError, ExtrapolationError, NotComputable

# Where each public name lives, imported on first use (tests/test_analysis_report.py checks it
# against __all__).
_SURFACE: dict[str, tuple[str, ...]] = {
    "analysis.bd": ("bd_energy", "bd_quality", "bd_rate", "bd_table"),
    "analysis.efficiency": ("config_efficiency", "job_efficiency"),
    "ffwatt.errors": ("AnalysisError", "ExtrapolationError", "NotComputable"),
    "analysis.frames": ("load_frames",),
    "analysis.load": ("load_results", "node_metadata", "notebook_results_dir", "resolve_run", "run_summary"),
    "analysis.markdown": ("md_number", "shown"),
    "analysis.pareto": ("pareto_front", "pareto_mask"),
    "analysis.power": ("CVScore", "PowerModel", "fit_power_model"),
    "analysis.recommend": ("Recommendation", "Scope", "Target", "recommend"),
    "analysis.regression": ("RunComparison", "campaign_history", "compare_runs", "previous_run"),
    "analysis.report": ("write_report",),
    "analysis.samples": ("window_means",),
    "analysis.series": ("load_series", "power_over_time", "power_summary", "sample_counts", "series_checks"),
    "analysis.stats": ("Comparison", "compare", "mean_ci", "repetition_stats", "t_critical", "welch"),
}
_WHERE = {name: module for module, names in _SURFACE.items() for name in names}

__all__ = [
    "AnalysisError", "CVScore", "Comparison", "ExtrapolationError", "NotComputable", "PowerModel",
    "Recommendation", "RunComparison", "Scope", "Target", "bd_energy", "bd_quality", "bd_rate", "bd_table",
    "campaign_history", "compare", "compare_runs", "config_efficiency", "fit_power_model", "job_efficiency",
    "load_frames", "load_results", "load_series", "md_number", "mean_ci", "node_metadata", "notebook_results_dir",
    "pareto_front", "pareto_mask", "power_over_time", "power_summary", "previous_run", "recommend",
    "repetition_stats", "resolve_run", "run_summary", "sample_counts", "series_checks", "shown", "t_critical",
    "welch", "window_means", "write_report",
]


def __getattr__(name: str) -> Any:
    module = _WHERE.get(name)
    if module is None:
        raise AttributeError(f"module 'analysis' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value  # once imported, a plain attribute
    return value
