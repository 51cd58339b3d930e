"""``ffwatt results show|schema``."""

from __future__ import annotations

from typing import Annotated

import typer

from ffwatt.cli._output import console, exit_with, results_table
from ffwatt.settings import load_settings

app = typer.Typer(help="Read the Parquet results.", no_args_is_help=True)


@app.command()
def show(
    campaign: Annotated[str | None, typer.Option(help="Campaign name; the latest run's when omitted.")] = None,
    run: Annotated[str, typer.Option(help="Run id, or 'latest'.")] = "latest",
    output: Annotated[str, typer.Option("--output", "-o", help="table, json or csv")] = "table",
) -> None:
    """Show one run's job rows."""
    from ffwatt.results import list_runs, read_results

    results_dir = load_settings().results_dir
    if run == "latest":
        runs = list_runs(results_dir, campaign)
        if not runs:
            exit_with(f"no runs under {results_dir}" + (f" for campaign {campaign!r}" if campaign else ""))
        campaign, run, _ = runs[-1]
    frame = read_results(results_dir, campaign=campaign, run_id=run)
    if frame.empty:
        exit_with(f"no rows for run {run} under {results_dir}")
    if output == "json":
        console.print_json(frame.to_json(orient="records", date_format="iso"))
    elif output == "csv":
        print(frame.to_csv(index=False), end="")
    else:
        console.print(results_table(frame, f"campaign {frame['campaign'].iloc[0]}, run {run}"))


@app.command()
def schema() -> None:
    """Print the result schema (column, type, unit, description) as Markdown."""
    from ffwatt.schema import schema_markdown

    print(schema_markdown(), end="")
