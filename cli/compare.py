"""``ffwatt compare RUN_A RUN_B``: what changed per configuration between two runs, whether it is
significant, and what changed on the nodes; ``--fail-on-regression`` for CI."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated

import typer

from cli._output import Output, OutputOption, console, err_console, exit_with
from ffwatt.settings import load_settings

if TYPE_CHECKING:
    from pathlib import Path

__all__ = ["compare"]


def compare(
    baseline: Annotated[str, typer.Argument(help="The run to compare against (id, or 'latest').")],
    candidate: Annotated[str, typer.Argument(help="The run compared (id, or 'latest').")] = "latest",
    campaign: Annotated[str | None, typer.Option(help="Campaign of the runs, where an id is ambiguous.")] = None,
    fail_on_regression: Annotated[float | None, typer.Option(
        help="Exit 1 when a change for the worse is significant and larger than this percentage.", min=0)] = None,
    metric: Annotated[list[str] | None, typer.Option(
        help="Metrics --fail-on-regression looks at (repeat it); default all: joules_per_frame, encode_fps, "
             "vmaf, bitrate_kbps.")] = None,
    alpha: Annotated[float, typer.Option(help="Significance level of Welch's t-test.", min=0.0001, max=0.5)]
    = 0.05,
    output: OutputOption = Output.table,
) -> None:
    """Compare run CANDIDATE against run BASELINE, configuration by configuration (Welch's t-test)."""
    from rich.markdown import Markdown

    from analysis.regression import WORSE_WHEN, compare_runs

    unknown = sorted(set(metric or ()) - set(WORSE_WHEN))
    if unknown:
        exit_with(f"--metric {', '.join(unknown)}: choose among {', '.join(WORSE_WHEN)}")
    results_dir = load_settings().results_dir
    baseline = _not_itself(results_dir, baseline, candidate, campaign)
    result = compare_runs(results_dir, baseline, candidate, campaign=campaign, alpha=alpha)
    if output is Output.json:
        print(result.model_dump_json(indent=2))
    else:
        console.print(Markdown(result.markdown(fail_on_regression)))
    if fail_on_regression is not None and result.regressions(fail_on_regression, metric or None):
        err_console.print(f"[bold red]regression:[/] {result.headline(fail_on_regression)}", highlight=False)
        raise typer.Exit(1)


def _not_itself(results_dir: Path, baseline: str, candidate: str, campaign: str | None) -> str:
    """The baseline to compare with: never the candidate itself. ``compare latest`` (both latest) takes
    the previous run of the latest run's campaign on its node, and says so; the same run named twice
    is refused."""
    from analysis.regression import previous_run
    from ffwatt.results import resolve_run

    base = resolve_run(results_dir, baseline, campaign)
    cand = resolve_run(results_dir, candidate, campaign)
    if base != cand:
        return baseline
    name, run_id = cand
    if baseline != "latest":
        exit_with(f"BASELINE and CANDIDATE are both run {run_id} of campaign {name}: a run compared with itself "
                  f"shows no change. Give another run (`ffwatt results runs --campaign {name}` lists them)")
    earlier = previous_run(results_dir, name, run_id)
    if earlier is None:
        exit_with(f"'latest' is run {run_id} of campaign {name}, and there is no earlier complete run of it on "
                  f"the same node to compare it with; give two runs (`ffwatt results runs --campaign {name}` lists "
                  "them)")
    err_console.print(f"comparing the latest run {run_id} of campaign {name} with its previous run {earlier} "
                      "(BASELINE 'latest' was the candidate itself)", highlight=False, soft_wrap=True)
    return earlier
