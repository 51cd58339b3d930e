"""``ffwatt report``: one self-contained HTML report of a run."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from cli._output import console
from ffwatt.settings import load_settings

__all__ = ["report"]


def report(
    run: Annotated[str, typer.Argument(help="Run id, or 'latest'.")] = "latest",
    compare: Annotated[str | None, typer.Option(help="Another run id to compare with.")] = None,
    out: Annotated[Path | None, typer.Option(
        help="HTML file to write; default <results>/_reports/report-<campaign>-<run>.html.")] = None,
    campaign: Annotated[str | None, typer.Option(help="Campaign name; the latest run's when omitted.")] = None,
    job: Annotated[str | None, typer.Option(
        help="Job whose per-frame quality and power over time are drawn; default: the lowest 5th-percentile "
             "VMAF.")] = None,
) -> None:
    """Write an HTML report of a run (efficiency, Pareto fronts, BD deltas, power model)."""
    # Imported here so `ffwatt --help` doesn't pay for matplotlib and scipy.
    from analysis.report import write_report

    path = write_report(load_settings().results_dir, run, compare, out, campaign=campaign, job_id=job)
    console.print(str(path), highlight=False, soft_wrap=True)
