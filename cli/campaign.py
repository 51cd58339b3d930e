"""``ffwatt campaign validate|expand|run|submit``."""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.markup import escape
from rich.table import Table

from cli._output import (
    Output,
    OutputOption,
    console,
    control_text,
    err_console,
    exit_with,
    failures_text,
    run_tables,
    run_title,
    same_output_text,
    series_text,
    settling_table,
)
from ffwatt.settings import Settings, load_settings

if TYPE_CHECKING:
    from prefect.states import State

    from ffwatt.campaign import Campaign

app = typer.Typer(help="Check, list and run benchmark campaigns.", no_args_is_help=True)

CampaignFile = Annotated[Path, typer.Argument(help="Campaign YAML file.")]


@app.command()
def validate(file: CampaignFile) -> None:
    """Check a campaign file, and that this node can run it: encoders, inputs, where results go."""
    from ffwatt.jobs import expand
    from ffwatt.validation import load_campaign, preflight

    campaign = load_campaign(file)
    build = preflight(campaign, load_settings())
    jobs = expand(campaign)
    console.print(f"[green]ok[/]: {file} is campaign {campaign.name!r}: {_jobs_words(campaign, len(jobs))} "
                  f"({len(campaign.inputs)} inputs, encoders {', '.join(campaign.encoder_names())}, "
                  f"{_repetitions_words(campaign)}); FFmpeg {build.version}")


def _jobs_words(campaign: Campaign, jobs: int) -> str:
    from ffwatt.campaign import AdaptiveRepetitions

    return f"up to {jobs} jobs" if isinstance(campaign.repetitions, AdaptiveRepetitions) else f"{jobs} jobs"


def _repetitions_words(campaign: Campaign) -> str:
    spec = campaign.repetitions
    if isinstance(spec, int):
        return f"{spec} repetition(s)"
    return f"{spec.min} to {spec.max} repetitions, until the 95 % intervals are within {spec.ci_pct:g} %"


@app.command(name="expand")
def expand_command(
    file: CampaignFile,
    output: OutputOption = Output.table,
) -> None:
    """List the jobs a campaign expands into, in the order they run."""
    from ffwatt.jobs import expand
    from ffwatt.validation import load_campaign

    jobs = expand(load_campaign(file))
    if output is Output.json:
        console.print_json(json.dumps([job.model_dump(mode="json") for job in jobs]))
        return
    table = Table(title=f"{len(jobs)} jobs", title_justify="left")
    for column in ("#", "job_id", "input", "encoder", "preset", "rate control", "size", "rep"):
        table.add_column(column)
    for index, job in enumerate(jobs, 1):
        unit = "k" if job.target_bitrate_kbps else ""
        rate, size = f"{job.rate_control} {job.value}{unit}", job.output_size
        if job.live is not None:  # a live sweep step: the ladder sets rates and sizes
            rate, size = "live ladder", f"{job.live.streams} x {job.live.ladder_label}"
        elif job.density is not None:  # a density sweep step: copies at once
            size = f"{job.density.concurrency} x {size}"
        table.add_row(str(index), job.job_id, job.input.name, job.encoder, job.preset or "-", rate, size,
                      str(job.repetition))
    console.print(table)


@app.command()
def run(
    file: CampaignFile,
    resume: Annotated[str | None, typer.Option(
        help="Run the jobs this run (an interrupted or crashed one) never reached, into the same run.")] = None,
    wait: Annotated[bool, typer.Option(
        "--wait", help="When another run is measuring on this node, wait for it rather than refuse.")] = False,
) -> None:
    """Run a campaign on this node through Prefect and print its results. Exits 1 when any job failed. One
    run measures on a node at a time: another one running makes this one refuse, or wait with --wait."""
    import contextlib
    import os

    from ffwatt.fleet.prefect_server import PREFECT_ENV

    for key, value in PREFECT_ENV.items():  # before Prefect is imported: it reads them once
        os.environ.setdefault(key, value)
    settings = load_settings()
    from ffwatt.results import RunSummary, read_results, read_run_summary
    from ffwatt.series import series_path
    from ffwatt.validation import load_campaign

    campaign = load_campaign(file)
    with contextlib.ExitStack() as context:
        if campaign.live is not None:  # the stack's ingest, or one of the run's own
            from master.ingest import ingest_for_run

            context.enter_context(ingest_for_run(settings, say=lambda text: console.print(text, highlight=False)))
            settings = load_settings()
        state = _run_flow(campaign, settings, resume, file, wait)
    summary = state.result(raise_on_failure=False)
    if isinstance(summary, BaseException):
        raise summary
    if not isinstance(summary, RunSummary):
        raise TypeError(f"the campaign flow returned {type(summary).__name__}, not a run summary")
    frame = read_results(settings.results_dir, campaign=campaign.name, run_id=summary.run_id)
    for table in run_tables(frame, run_title(campaign.name, summary.run_id, summary.state, summary.jobs, len(frame))):
        console.print(table)
    if (settled := settling_table(frame, summary.repetitions)) is not None:
        console.print(settled)
    if summary.control is not None:
        console.print(control_text(summary.control), highlight=False, soft_wrap=True)
    for node, idle in sorted(summary.idle_baselines.items()):
        console.print(f"idle baseline of {node}: {idle.describe(summary.started_at)}", highlight=False)
    console.print(f"{summary.ok} ok, {summary.failed} failed"
                  + (f", {summary.skipped} skipped" if summary.skipped else "")
                  + f", {summary.wall_s or 0:.1f} s. "
                  f"Parquet: {settings.results_dir.resolve()}/campaign={campaign.name}/run_id={summary.run_id}",
                  highlight=False)
    console.print(series_text(frame, str(series_path(settings.results_dir, campaign.name, summary.run_id, "*"))),
                  highlight=False)
    if (same := same_output_text(frame)) is not None:
        err_console.print(f"[yellow]{escape(same)}[/]", highlight=False, soft_wrap=True)
    recorded = read_run_summary(settings.results_dir, campaign.name, summary.run_id)
    if recorded is None or recorded.state != summary.state:
        err_console.print("[yellow]warning: the run's summary couldn't be written beside its rows (see the "
                          "log); `ffwatt results runs` counts them from disk[/]", highlight=False, soft_wrap=True)
    if summary.failed:
        unwritten = sum(n for reason, n in summary.failures.items() if reason.startswith("record:"))
        what = (f"{unwritten} of them have no row, as it couldn't be written: free space, then `ffwatt campaign run "
                f"{file} --resume {summary.run_id}` runs them again" if unwritten
                else "rows written; `error` says why")
        exit_with(f"{summary.failed} of {summary.jobs} jobs failed ({what}):\n" + failures_text(summary.failures),
                  code=1)


def _run_flow(campaign: Campaign, settings: Settings, resume: str | None, file: Path, wait: bool) -> State:
    """Preflight, then the campaign flow on this node; an interrupt exits saying how to resume."""
    import os

    from ffwatt.errors import NodeBusy
    from ffwatt.fleet.client import ApiClient
    from ffwatt.jobs import expand
    from ffwatt.validation import preflight
    from flows.nodelock import node_holder

    preflight(campaign, settings)
    holder = node_holder(settings.home)  # asked now, so a refusal is one line before Prefect starts
    if holder is not None:
        if not wait:
            raise NodeBusy(holder)
        console.print(f"waiting for this node: it is measuring {holder}", highlight=False, soft_wrap=True)
    if os.environ.get("PREFECT_API_URL"):  # else Prefect starts a temporary local server
        ApiClient.from_env().check()
    from flows.campaign import campaign_flow

    console.print(f"running campaign {campaign.name!r}: {len(expand(campaign))} jobs"
                  + (f", resuming run {resume}" if resume else ""))
    try:
        return campaign_flow(campaign, resume=resume, wait=wait, return_state=True)
    except KeyboardInterrupt:
        interrupted = _interrupted_run(settings.results_dir, campaign.name)
        exit_with("interrupted; the rows written so far are kept"
                  + (f", and `ffwatt campaign run {file} --resume {interrupted}` runs the rest" if interrupted else ""),
                  code=130)


@app.command()
def submit(
    file: CampaignFile,
    deployment: Annotated[str, typer.Option(help="The deployment to run it with (FLOW/NAME).")] = "campaign/quick",
    dispatch: Annotated[str, typer.Option(help="pools: on the fleet's nodes; local: on the master worker.")]
    = "pools",
    watch: Annotated[bool, typer.Option(help="Wait for the run to end; exit 1 unless it completed.")] = True,
) -> None:
    """Run a campaign on the fleet: `prefect deployment run` with this file as its parameters, without
    Prefect's start-up cost. Uses PREFECT_API_URL and its credentials (`eval "$(ffwatt stack env)"`)."""
    from ffwatt.fleet.client import ApiClient
    from ffwatt.validation import load_campaign
    from master.submit import FlowRunState, submit_flow_run, watch_flow_run

    campaign = load_campaign(file)  # a typo is told here, with its fix, before the API is asked
    api = ApiClient.from_env()
    run = submit_flow_run(api, deployment, {"campaign": campaign.model_dump(mode="json", exclude_unset=True),
                                            "dispatch": dispatch})
    console.print(f"flow run {run.name} ({run.flow_run_id}) of {deployment}: "
                  f"{api.ui_page(f'/runs/flow-run/{run.flow_run_id}')}", highlight=False, soft_wrap=True)
    if not watch:
        return

    def show(state: FlowRunState) -> None:
        console.print(f"  {state.state_name}", highlight=False)

    end = watch_flow_run(api, run.flow_run_id, on_change=show)
    if end.state_type != "COMPLETED":
        exit_with(f"flow run {run.name} ended {end.state_name}: {end.message or 'no message'}; "
                  f"`prefect flow-run logs {run.flow_run_id}` shows its log", code=1)


def _interrupted_run(results_dir: Path, campaign: str) -> str | None:
    """The run this process just left interrupted (its flow ran here, so its pid is ours)."""
    import os

    from ffwatt.results import list_runs

    for run in reversed(list_runs(results_dir, campaign)):
        if run.summary is not None and run.summary.pid == os.getpid() and run.summary.state == "interrupted":
            return run.run_id
    return None
