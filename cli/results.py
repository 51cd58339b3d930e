"""``ffwatt results runs|show|schema``."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

import typer
from rich.markup import escape
from rich.table import Table

from cli._output import (
    Output,
    OutputOption,
    RowsOutput,
    RowsOutputOption,
    console,
    control_text,
    err_console,
    exit_with,
    failures_text,
    run_tables,
    run_title,
    same_output_text,
    settling_table,
)
from ffwatt.settings import load_settings

app = typer.Typer(help="Read the Parquet results.", no_args_is_help=True)


@app.command()
def runs(
    campaign: Annotated[str | None, typer.Option(help="Only this campaign's runs.")] = None,
    output: OutputOption = Output.table,
) -> None:
    """List the runs: campaign, run id, state, jobs ok/failed/missing, when."""
    import json

    from ffwatt.results import list_runs, row_counts

    results_dir = load_settings().results_dir
    found = list_runs(results_dir, campaign)
    if not found:
        exit_with(f"no runs under {results_dir}" + (f" for campaign {campaign!r}" if campaign else ""))
    rows = []
    for run in found:
        summary = run.summary
        counts: dict[str, int | None] = {"ok": None, "failed": None, "missing": None}
        if summary is not None and run.state == "complete":
            counts = {"ok": summary.ok, "failed": summary.failed, "missing": summary.missing}
        elif summary is not None:  # cut short: its summary may predate its rows; what is on disk counts
            on_disk = row_counts(results_dir, run.campaign, run.run_id)
            counts = {"ok": on_disk.get("ok", 0), "failed": on_disk.get("failed", 0),
                      # never below 0: adaptive repetitions plan each configuration's minimum, and may run more
                      "missing": max(0, summary.jobs - sum(on_disk.values()))}
        rows.append({"campaign": run.campaign, "run_id": run.run_id, "state": run.state,
                     "jobs": summary.jobs if summary else None, **counts,
                     "started_at": summary.started_at.isoformat() if summary else None,
                     "modified": datetime.fromtimestamp(run.modified).astimezone().isoformat(timespec="seconds")})
    if output is Output.json:
        print(json.dumps(rows, indent=2))
        return
    table = Table(title=f"runs under {results_dir}", title_justify="left")
    for column in ("campaign", "run id", "state", "jobs", "ok", "failed", "missing", "last written"):
        table.add_column(column)
    for row in rows:
        color = {"complete": "green", "running": "cyan"}.get(str(row["state"]), "red")
        table.add_row(str(row["campaign"]), str(row["run_id"]), f"[{color}]{row['state']}[/]",
                      *(("-" if row[k] is None else str(row[k])) for k in ("jobs", "ok", "failed", "missing")),
                      str(row["modified"]))
    console.print(table)


@app.command()
def show(
    campaign: Annotated[str | None, typer.Option(help="Campaign name; the latest run's when omitted.")] = None,
    run: Annotated[str, typer.Option(help="Run id, or 'latest'.")] = "latest",
    output: RowsOutputOption = RowsOutput.table,
) -> None:
    """Show one run's job rows, and whether the run is complete."""
    from ffwatt.results import read_results, read_run_summary, resolve_run

    results_dir = load_settings().results_dir
    campaign, run = resolve_run(results_dir, run, campaign)
    frame = read_results(results_dir, campaign=campaign, run_id=run)
    summary = read_run_summary(results_dir, campaign, run)
    if output is RowsOutput.json:
        console.print_json(frame.to_json(orient="records", date_format="iso"))
    elif output is RowsOutput.csv:
        print(frame.to_csv(index=False), end="")
    else:
        state = summary.observed_state() if summary else "unknown (no _run.json)"
        title = run_title(campaign, run, state, summary.jobs if summary else len(frame), len(frame))
        for table in run_tables(frame, title):
            console.print(table)
        if (settled := settling_table(frame, summary.repetitions if summary else None)) is not None:
            console.print(settled)
        if summary and summary.control is not None:
            console.print(control_text(summary.control), highlight=False, soft_wrap=True)
        if summary and summary.failed:
            console.print(f"{summary.failed} failed:\n{failures_text(summary.failures)}", highlight=False)
        if (same := same_output_text(frame)) is not None:
            err_console.print(f"[yellow]{escape(same)}[/]", highlight=False, soft_wrap=True)
    if frame.empty:
        exit_with(f"run {run} of campaign {campaign} has no rows yet")


@app.command()
def schema() -> None:
    """Print the result schema (column, type, unit, description) as Markdown."""
    from ffwatt.schema import schema_markdown

    print(schema_markdown(), end="")
