"""ffwatt's analysis room: from the Parquet results to decisions.

Reads results through :mod:`ffwatt.results` and never imports Prefect, flows or tasks.

    load_results / resolve_run        one run, several, or the whole tree (+ node facts)
    job_efficiency / config_efficiency   J/frame, px/J, QoE/J, watts... per job and configuration
    repetition_stats / compare        mean, std, 95 % t-interval; "different" only without overlap
    pareto_front                      non-dominated configurations (2-D or 3-D)
    bd_rate / bd_quality / bd_energy  Bjøntegaard deltas, cubic (VCEG-M33) or PCHIP (VCEG-AL22)
    fit_power_model                   watts and joules from job parameters, refuses to extrapolate
    window_means                      time-series samples (e.g. power) averaged per job window
    write_report                      one self-contained HTML report
"""

from __future__ import annotations

from analysis.bd import bd_energy, bd_quality, bd_rate, bd_table
from analysis.efficiency import config_efficiency, job_efficiency
from analysis.errors import AnalysisError, ExtrapolationError, NotComputable
from analysis.load import load_results, node_metadata, resolve_run, run_summary
from analysis.pareto import pareto_front, pareto_mask
from analysis.power import CVScore, PowerModel, fit_power_model
from analysis.report import write_report
from analysis.samples import window_means
from analysis.stats import Comparison, compare, mean_ci, repetition_stats, t_critical

__all__ = [
    "AnalysisError",
    "CVScore",
    "Comparison",
    "ExtrapolationError",
    "NotComputable",
    "PowerModel",
    "bd_energy",
    "bd_quality",
    "bd_rate",
    "bd_table",
    "compare",
    "config_efficiency",
    "fit_power_model",
    "job_efficiency",
    "load_results",
    "mean_ci",
    "node_metadata",
    "pareto_front",
    "pareto_mask",
    "repetition_stats",
    "resolve_run",
    "run_summary",
    "t_critical",
    "window_means",
    "write_report",
]
