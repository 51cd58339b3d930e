"""Loading results: one run, several runs, or the whole tree, joined with run metadata.

Built on :func:`ffwatt.results.read_results` (pyarrow dataset, pandas out). The facts
of the node that ran each row, from its run's ``_run.json``, are added as
``run_node_*`` columns, so rows from different machines can be told apart and grouped.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pandas as pd

from ffwatt.results import RunSummary, read_results, read_run_summary, resolve_run

__all__ = ["load_results", "node_metadata", "notebook_results_dir", "resolve_run", "run_summary"]

_NODE_FIELDS = ("cpu_model", "logical_cpus", "kernel", "cpu_energy", "gpu_driver", "ffmpeg_version")


def notebook_results_dir() -> Path:
    """Where a notebook finds results: ``FFWATT_RESULTS_DIR`` when set, else this repository's ``results/``,
    wherever the kernel started (Jupyter starts it in the notebook's folder, where ``./results`` is
    nothing of ours)."""
    import os

    from ffwatt.settings import REPO

    given = os.environ.get("FFWATT_RESULTS_DIR")
    return Path(given).expanduser() if given else REPO / "results"


def run_summary(results_dir: Path, campaign: str, run_id: str) -> RunSummary | None:
    """The run's ``_run.json`` (None when the run has none, e.g. it is still going)."""
    return read_run_summary(Path(results_dir), campaign, run_id)


def node_metadata(summary: RunSummary | None) -> list[dict[str, Any]]:
    """Per node of a run, its scalar facts as ``run_node_<field>`` (with ``node`` to join on)."""
    if summary is None:
        return []
    return [{"node": name, **{f"run_node_{k}": getattr(facts, k) for k in _NODE_FIELDS}}
            for name, facts in summary.nodes.items()]


def load_results(results_dir: Path, *, campaign: str | None = None,
                 run_id: str | Sequence[str] | None = None, with_run_metadata: bool = True) -> pd.DataFrame:
    """Job rows of one run (``run_id="..."``), several (a list), or all (``None``), optionally
    one campaign, with ``run_node_*`` columns from each run's ``_run.json``."""
    results_dir = Path(results_dir)
    if isinstance(run_id, str):
        frame = read_results(results_dir, campaign=campaign, run_id=run_id)
    else:
        frame = read_results(results_dir, campaign=campaign)
        if run_id is not None:
            frame = frame[frame["run_id"].isin(list(run_id))].reset_index(drop=True)
    if not with_run_metadata or frame.empty:
        return frame
    runs = frame[["campaign", "run_id"]].drop_duplicates()
    meta = pd.DataFrame([
        {"campaign": c, "run_id": r, **facts}
        for c, r in runs.itertuples(index=False)
        for facts in node_metadata(run_summary(results_dir, c, r))
    ], columns=["campaign", "run_id", "node", *(f"run_node_{k}" for k in _NODE_FIELDS)])
    return frame.merge(meta, on=["campaign", "run_id", "node"], how="left")
