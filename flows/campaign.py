"""The campaign flow: generate-video -> idle-baseline -> transcode -> account-energy -> quality -> summarize
-> publish (the outcome as the campaign's markdown artifact in the Prefect UI).

On one machine (``dispatch="local"``) the jobs run here, one at a time: energy is
measured on the whole machine, so a second encode running alongside would be
counted in the first one's joules. With ``dispatch="pools"`` the jobs go in
batches to the work pools matching their encoders' hardware, and each job's row
comes home through the Prefect API (see :mod:`flows.dispatch`). Either way a job
that fails is recorded with ``status=failed`` and its reason, each row is written
as soon as its job ends, and the campaign goes on; the flow run ends Failed when
any job failed, with how many and why.

A run is marked running when it starts and complete (or interrupted, by Ctrl-C
or SIGTERM) when it ends; ``resume=RUN`` runs the jobs a run never reached into
that same run.
"""

from __future__ import annotations

import contextlib
import signal
from collections.abc import Iterator
from datetime import UTC, datetime
from types import FrameType
from typing import Literal
from uuid import uuid4

from prefect import flow
from prefect.runtime import flow_run
from prefect.states import Failed, State

from ffwatt.campaign import AdaptiveRepetitions, Campaign
from ffwatt.errors import CampaignError, ResultsError
from ffwatt.files import sweep_scratch
from ffwatt.fleet.protocol import NodeReport
from ffwatt.frames import FrameScores
from ffwatt.hardware.facts import describe_node
from ffwatt.hardware.progress import prune_progress_records
from ffwatt.jobs import Job, expand
from ffwatt.nodefacts import IdleBaseline, NodeFacts
from ffwatt.results import RunSummary, read_rows, read_run_summary, write_run_summary
from ffwatt.schema import JobRow, config_label
from ffwatt.settings import Settings, load_settings
from ffwatt.validation import preflight
from flows.control import judge, run_control
from flows.job import prepare_references, run_job
from flows.nodelock import node_lock
from flows.repeat import rounds, shuffle_seed
from flows.sweep import course
from tasks import idle_baseline, record_job, record_same_outputs, summarize_run
from tasks._logging import run_logger
from tasks.publish import publish_outcome
from tasks.record import unwritten
from tasks.series import JobSeries, job_series
from tasks.summarize import start_run, summarize

__all__ = ["campaign_flow"]


@flow(name="campaign", flow_run_name="{campaign.name}", validate_parameters=True)
def campaign_flow(campaign: Campaign, dispatch: Literal["local", "pools"] = "local",
                  resume: str | None = None, wait: bool = True) -> RunSummary | State:
    """Run every job of ``campaign`` (or those run ``resume`` never reached), here or on the fleet's
    work pools, and summarize the run. Here, it holds the node's lock while it measures: another run
    measuring on this node is waited for (``wait``), or refuses this one at once."""
    settings = load_settings()
    run_id = resume or str(flow_run.id or uuid4())
    started_at = datetime.now(UTC)
    from_api = _from_api()
    preflight(campaign, settings, local=dispatch == "local", from_api=from_api)
    earlier, nodes, idle_baselines = _earlier(settings, campaign, resume)
    all_jobs = expand(campaign)
    jobs = [job for job in all_jobs if job.job_id not in {row.job_id for row in earlier}]
    adaptive = campaign.repetitions if isinstance(campaign.repetitions, AdaptiveRepetitions) else None
    seed = shuffle_seed(run_id) if adaptive else None
    rows = list(earlier)
    controls: dict[str, JobRow] = {}  # the run's control encodes, start and end: the node, not a configuration
    start_run(campaign.name, run_id, started_at, jobs=_planned(campaign, all_jobs, rows), repetitions=adaptive,
              shuffle_seed=seed)
    sweep_scratch(settings.home)  # what runs killed on this node left behind

    try:
        with _interrupts() as interrupted, job_series(settings, local=dispatch == "local") as series:
            if dispatch == "pools":
                # Adaptive: one dispatch per round, each round's rows home before the next is decided.
                for batch in (rounds(adaptive, all_jobs, rows, seed or 0) if adaptive else [jobs]):
                    reports = _on_the_pools(campaign, batch, run_id, rows, series, interrupted)
                    nodes |= {name: report.facts for name, report in reports.items()}
                    idle_baselines |= {name: report.idle_baseline for name, report in reports.items()
                                       if report.idle_baseline is not None}
            else:
                with node_lock(settings.home, f"campaign {campaign.name} run {run_id}", wait=wait,
                               on_wait=lambda holder: run_logger().warning(
                                   "waiting for this node: it is measuring %s", holder)):
                    references = prepare_references(campaign, jobs, from_api=from_api)
                    idle = idle_baseline(campaign.idle_baseline_s, campaign.idle_baseline_reuse_s)
                    nodes[settings.node] = describe_node(settings)
                    if idle is not None:
                        idle_baselines[settings.node] = idle
                    if campaign.control:
                        controls["start"] = _record(run_control(campaign, "start", idle, run_id, settings.node),
                                                    series)
                    planned = (job for batch in rounds(adaptive, all_jobs, rows, seed or 0) for job in batch) \
                        if adaptive else course(campaign, jobs, run_id, settings)  # with sweeps' bisection steps
                    for job in planned:
                        outcome = run_job(job, references[job.input.name], idle, run_id, settings.node,
                                          campaign.encode_retries)
                        rows.append(_record(outcome.row, series, outcome.frames))
                        interrupted.check()
                    if campaign.control:
                        controls["end"] = _record(run_control(campaign, "end", idle, run_id, settings.node), series)
            drift = judge(controls["start"], controls["end"], campaign.control_drift_pct) if len(controls) == 2 \
                else None
            # While the last job's window runs out (MARGIN_S after its encode) and its series are written.
            summary = publish_outcome(summarize_run(rows, campaign.name, run_id, started_at,
                                                    _planned(campaign, all_jobs, rows), nodes, idle_baselines,
                                                    repetitions=adaptive, shuffle_seed=seed, control=drift))
    except BaseException:
        # Ctrl-C, SIGTERM, a crash inside the loop: the rows written so far stay, and the run says
        # it was cut short, so it can be resumed rather than mistaken for a finished one.
        try:
            write_run_summary(settings.results_dir, summarize(
                rows, campaign=campaign.name, run_id=run_id, started_at=started_at,
                jobs=_planned(campaign, all_jobs, rows), nodes=nodes, idle_baselines=idle_baselines,
                state="interrupted", repetitions=adaptive, shuffle_seed=seed))
        except ResultsError as exc:  # a full disk: the run is judged from the rows on disk (crashed, resumable)
            run_logger().error("%s", exc)
        raise
    finally:
        sweep_scratch(settings.home, own=True)
        prune_progress_records(settings.progress_dir)
    # Every row and its series are in: the jobs whose settings made no difference say so in their rows.
    try:
        for row in record_same_outputs(campaign.name, run_id):
            run_logger().warning("job %s (%s) made the same video as %s: those settings had no effect",
                                 row.job_id, config_label(row), row.same_output_as)
    except ResultsError as exc:
        run_logger().warning("couldn't mark the jobs whose settings had no effect: %s", exc)

    if summary.failed:
        reasons = "; ".join(f"{count} x {reason}" for reason, count in summary.failures.items())
        return Failed(message=f"{summary.failed} of {summary.jobs} jobs failed: {reasons}", data=summary)
    return summary


def _planned(campaign: Campaign, jobs: list[Job], rows: list[JobRow]) -> int:
    """The run's jobs: the campaign's, and the bisection steps its sweeps added as they ran. With adaptive
    repetitions, every configuration's minimum, or what the rounds ran when that is more."""
    spec = campaign.repetitions
    if isinstance(spec, AdaptiveRepetitions):
        return max(sum(job.repetition <= spec.min for job in jobs), len(rows))
    return len(jobs) + sum(row.sweep_phase == "bisection" for row in rows)


def _record(row: JobRow, series: JobSeries, frames: FrameScores | None = None) -> JobRow:
    """Write a job's row (its per-frame scores first) now, and again with its series once they are in. A
    row that can't be written (a full disk) fails its job with why, and the campaign goes on: the run
    counts it failed, and ``--resume`` runs it again, since no row of it is on disk."""
    try:
        record_job(row, frames)
    except ResultsError as exc:
        run_logger().error("job %s: %s", row.job_id, exc)
        return unwritten(row, exc)
    return series.submit(row, record_job)


def _from_api() -> bool:
    """Whether this run came through the API (a deployment run, which anyone holding the API's credentials
    can start), not in-process from ``ffwatt campaign run``: its file inputs are then read only where this
    node's settings allow."""
    from prefect.context import FlowRunContext

    context = FlowRunContext.get()
    return context is not None and context.flow_run is not None and context.flow_run.deployment_id is not None


def _earlier(settings: Settings, campaign: Campaign, resume: str | None
             ) -> tuple[list[JobRow], dict[str, NodeFacts], dict[str, IdleBaseline]]:
    """The rows, node facts and idle baselines a resumed run already has (nothing for a new run)."""
    if resume is None:
        return [], {}, {}
    summary = read_run_summary(settings.results_dir, campaign.name, resume)
    if summary is None:
        raise CampaignError(f"no run {resume} of campaign {campaign.name!r} under {settings.results_dir} to resume; "
                            "`ffwatt results runs` lists runs")
    if summary.observed_state() == "running":
        raise CampaignError(f"run {resume} is still running (pid {summary.pid} on {summary.host}); "
                            "resume it once it has stopped")
    rows = read_rows(settings.results_dir, campaign.name, resume)
    return rows, dict(summary.nodes), dict(summary.idle_baselines)


class _Interrupted:
    """Whether Ctrl-C or SIGTERM came. The handler raises at once, but Python drops an exception raised
    where it runs a finalizer (a CI run's SIGTERM landed in logging's ``_releaseLock`` and the campaign
    ran to the end), so the flow also checks between jobs."""

    def __init__(self) -> None:
        self.by: str | None = None

    def handle(self, signum: int, frame: FrameType | None) -> None:
        self.by = signal.Signals(signum).name
        raise KeyboardInterrupt(f"signal {self.by}")

    def check(self) -> None:
        if self.by is not None:
            raise KeyboardInterrupt(f"signal {self.by}")


@contextlib.contextmanager
def _interrupts() -> Iterator[_Interrupted]:
    """Ctrl-C and SIGTERM (a worker cancelling the run, ``kill``) interrupt the run, which is recorded as
    interrupted; the previous handlers come back afterwards."""
    interrupted = _Interrupted()
    previous: dict[signal.Signals, object] = {}
    try:
        for each in (signal.SIGINT, signal.SIGTERM):
            previous[each] = signal.signal(each, interrupted.handle)
    except ValueError:  # not the main thread: leave signals to whoever owns them
        pass
    try:
        yield interrupted
    finally:
        for each, handler in previous.items():
            signal.signal(each, handler)  # type: ignore[arg-type]


def _on_the_pools(campaign: Campaign, jobs: list[Job], run_id: str, rows: list[JobRow],
                  series: JobSeries, interrupted: _Interrupted) -> dict[str, NodeReport]:
    from prefect.client.orchestration import get_client

    from ffwatt.errors import ApiUnavailable, ResultsError
    from ffwatt.fleet.nodes import list_nodes
    from ffwatt.frames import frames_from_bytes, write_frames
    from flows.dispatch import Dispatcher
    from flows.fleet_api import PrefectFleetAPI
    from tasks._logging import run_logger

    results_dir = load_settings().results_dir

    def bring_frames_home(row: JobRow) -> None:
        """The per-frame scores its batch sent home just before the row; a row never waits on them."""
        try:
            parquet = api.frames(row.run_id, row.job_id)
            if parquet is None:
                raise ResultsError("no frames artifact of this job in this run")
            write_frames(results_dir, row.campaign, row.run_id, frames_from_bytes(parquet))
        except (ApiUnavailable, ResultsError) as exc:
            run_logger().warning("job %s's per-frame scores aren't under %s: %s", row.job_id, results_dir, exc)

    def record(row: JobRow) -> JobRow:
        if row.quality_frames:
            bring_frames_home(row)
        rows.append(_record(row, series))
        interrupted.check()
        return rows[-1]

    with get_client(sync_client=True) as client:
        api = PrefectFleetAPI(client)
        dispatcher = Dispatcher(campaign, jobs, run_id, api=api, record=record, log=run_logger())
        dispatcher.start(list_nodes(client))
        dispatcher.run()
    return dispatcher.reports


if __name__ == "__main__":
    import sys

    from ffwatt.validation import load_campaign

    campaign_flow(load_campaign(sys.argv[1] if len(sys.argv) > 1 else "deployments/campaigns/quick.yaml"))
