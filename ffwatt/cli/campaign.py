"""``ffwatt campaign validate|expand|run``."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from ffwatt.cli._output import console, results_table
from ffwatt.settings import load_settings

app = typer.Typer(help="Check, list and run benchmark campaigns.", no_args_is_help=True)

CampaignFile = Annotated[Path, typer.Argument(help="Campaign YAML file.")]


@app.command()
def validate(file: CampaignFile) -> None:
    """Check a campaign file, and that this node's FFmpeg can run it."""
    from ffwatt.hardware.ffmpeg import ffmpeg_path, probe_build
    from ffwatt.jobs import expand
    from ffwatt.validation import check_runnable, load_campaign

    campaign = load_campaign(file)
    build = probe_build(ffmpeg_path(load_settings()))
    check_runnable(campaign, build)
    jobs = expand(campaign)
    console.print(f"[green]ok[/]: {file} is campaign {campaign.name!r}: {len(jobs)} jobs "
                  f"({len(campaign.inputs)} inputs, encoders {', '.join(campaign.encoder_names())}, "
                  f"{campaign.repetitions} repetition(s)); FFmpeg {build.version}")


@app.command(name="expand")
def expand_command(
    file: CampaignFile,
    output: Annotated[str, typer.Option("--output", "-o", help="table or json")] = "table",
) -> None:
    """List the jobs a campaign expands into, in the order they run."""
    from ffwatt.jobs import expand
    from ffwatt.validation import load_campaign

    jobs = expand(load_campaign(file))
    if output == "json":
        console.print_json(json.dumps([job.model_dump(mode="json") for job in jobs]))
        return
    table = Table(title=f"{len(jobs)} jobs", title_justify="left")
    for column in ("#", "job_id", "input", "encoder", "preset", "rate control", "size", "rep"):
        table.add_column(column)
    for index, job in enumerate(jobs, 1):
        unit = "k" if job.target_bitrate_kbps else ""
        table.add_row(str(index), job.job_id, job.input.name, job.encoder, job.preset or "-",
                      f"{job.rate_control} {job.value}{unit}", job.output_size, str(job.repetition))
    console.print(table)


@app.command()
def run(file: CampaignFile) -> None:
    """Run a campaign on this node through Prefect and print its results."""
    import os

    # A temporary local server (no PREFECT_API_URL) must not try to phone home.
    os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
    from ffwatt.hardware.ffmpeg import ffmpeg_path, probe_build
    from ffwatt.jobs import expand
    from ffwatt.results import read_results
    from ffwatt.validation import check_runnable, load_campaign
    from flows.campaign import campaign_flow

    settings = load_settings()
    campaign = load_campaign(file)
    check_runnable(campaign, probe_build(ffmpeg_path(settings)))
    console.print(f"running campaign {campaign.name!r}: {len(expand(campaign))} jobs")
    summary = campaign_flow(campaign)
    frame = read_results(settings.results_dir, campaign=campaign.name, run_id=summary.run_id)
    console.print(results_table(frame, f"campaign {campaign.name}, run {summary.run_id}"))
    console.print(f"{summary.ok} ok, {summary.failed} failed, {summary.wall_s:.1f} s. "
                  f"Parquet: {settings.results_dir.resolve()}/campaign={campaign.name}/run_id={summary.run_id}")
