"""The campaign flow: generate-video -> idle-baseline -> transcode -> account-energy -> quality -> summarize
-> publish (the outcome as the campaign's markdown artifact in the Prefect UI).

On one machine (``dispatch="local"``) the jobs run here, one at a time: energy is
measured on the whole machine, so a second encode running alongside would be
counted in the first one's joules. With ``dispatch="pools"`` the jobs go in
batches to the work pools matching their encoders' hardware, and each job's row
comes home through the Prefect API (see :mod:`flows.dispatch`). Either way a job
that fails is recorded with ``status=failed`` and its reason, each row is written
as soon as its job ends, and the campaign goes on.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Literal
from uuid import uuid4

from prefect import flow
from prefect.runtime import flow_run

from ffwatt.campaign import Campaign
from ffwatt.hardware.facts import describe_node
from ffwatt.hardware.ffmpeg import ffmpeg_path, probe_build
from ffwatt.jobs import Job, expand
from ffwatt.results import RunSummary
from ffwatt.schema import JobRow
from ffwatt.settings import load_settings
from ffwatt.validation import check_runnable
from flows.job import prepare_references, run_job
from tasks import idle_baseline, record_job, summarize_run
from tasks.publish import publish_outcome

__all__ = ["campaign_flow"]


@flow(name="campaign", flow_run_name="{campaign.name}", validate_parameters=True)
def campaign_flow(campaign: Campaign, dispatch: Literal["local", "pools"] = "local") -> RunSummary:
    """Run every job of ``campaign``, here or on the fleet's work pools, and summarize the run."""
    settings = load_settings()
    run_id = str(flow_run.id or uuid4())
    started_at = datetime.now(UTC)
    jobs = expand(campaign)

    if dispatch == "pools":
        return publish_outcome(_on_the_pools(campaign, jobs, run_id, started_at))

    check_runnable(campaign, probe_build(ffmpeg_path(settings)))
    references = prepare_references(campaign, jobs)
    idle = idle_baseline(campaign.idle_baseline_s)

    rows = [record_job(run_job(job, references[job.input.name], idle, run_id, settings.node,
                               campaign.encode_retries))
            for job in jobs]

    summary = summarize_run(rows, campaign.name, run_id, started_at, nodes={settings.node: describe_node(settings)},
                            idle_baselines={settings.node: idle} if idle else {})
    return publish_outcome(summary)


def _on_the_pools(campaign: Campaign, jobs: list[Job], run_id: str, started_at: datetime) -> RunSummary:
    from prefect.client.orchestration import get_client

    from ffwatt.fleet.api import PrefectFleetAPI
    from ffwatt.fleet.nodes import list_nodes
    from flows.dispatch import Dispatcher
    from tasks._logging import run_logger

    with get_client(sync_client=True) as client:
        dispatcher = Dispatcher(campaign, jobs, run_id, api=PrefectFleetAPI(client), record=record_job,
                                log=run_logger())
        dispatcher.start(list_nodes())
        rows: list[JobRow] = dispatcher.run()
    reports = dispatcher.reports
    return summarize_run(rows, campaign.name, run_id, started_at,
                         nodes={name: report.facts for name, report in reports.items()},
                         idle_baselines={name: report.idle_baseline for name, report in reports.items()
                                         if report.idle_baseline is not None})


if __name__ == "__main__":
    import sys

    from ffwatt.validation import load_campaign

    campaign_flow(load_campaign(sys.argv[1] if len(sys.argv) > 1 else "deployments/campaigns/quick.yaml"))
