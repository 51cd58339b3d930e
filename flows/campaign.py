"""The campaign flow: generate-video -> idle-baseline -> transcode -> collect-energy -> quality -> analyze.

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
from typing import Any, Literal
from uuid import uuid4

from prefect import flow
from prefect.runtime import flow_run
from prefect.states import State

from ffwatt.campaign import Campaign, Job, check_runnable, expand
from ffwatt.ffmpeg import ffmpeg_path, probe_build
from ffwatt.schema import JobRow
from ffwatt.settings import load_settings
from tasks import (
    IdleBaseline,
    Reference,
    analyze,
    build_row,
    collect_energy,
    generate_video,
    idle_baseline,
    measure_quality,
    record_job,
    transcode,
)

__all__ = ["campaign_flow", "prepare_references", "run_job"]


def _error(step: str, state: State) -> tuple[str, int]:
    """The failure message of a failed task state, and the attempt that failed."""
    exc = state.result(raise_on_failure=False)
    return f"{step}: {exc}", getattr(exc, "attempt", 1)


def prepare_references(campaign: Campaign, jobs: list[Job]) -> dict[str, Reference | str]:
    """The reference clip of every input these jobs use, or why it couldn't be made."""
    references: dict[str, Reference | str] = {}
    for spec in campaign.inputs:
        if any(job.input.name == spec.name for job in jobs):
            state = generate_video(spec, campaign.reference_format, return_state=True)
            references[spec.name] = state.result() if state.is_completed() else _error("generate-video", state)[0]
    return references


def run_job(job: Job, reference: Reference | str, idle: IdleBaseline | None, run_id: str, node: str,
            retries: int) -> JobRow:
    """One job through transcode, collect-energy and quality; always returns its row."""
    if isinstance(reference, str):  # the input itself couldn't be prepared
        return build_row(job=job, run_id=run_id, node=node, reference=None, error=reference)

    encode = transcode.with_options(retries=retries, retry_delay_seconds=1)
    encoded_state = encode(job, reference, run_id, return_state=True)
    if not encoded_state.is_completed():
        error, attempt = _error("transcode", encoded_state)
        return build_row(job=job, run_id=run_id, node=node, reference=reference, error=error, attempts=attempt)
    encoded = encoded_state.result()

    energy = collect_energy(encoded.energy, encoded.cpu_s, encoded.frames, idle)

    quality, error = None, None
    if job.quality:
        quality_state = measure_quality(job, reference, encoded, return_state=True)
        if quality_state.is_completed():
            quality = quality_state.result()
        else:
            error, _ = _error("quality", quality_state)

    return build_row(job=job, run_id=run_id, node=node, reference=reference,
                     encoded=encoded, energy=energy, quality=quality, error=error)


@flow(name="campaign", flow_run_name="{campaign.name}", validate_parameters=True)
def campaign_flow(campaign: Campaign, dispatch: Literal["local", "pools"] = "local") -> dict[str, Any]:
    """Run every job of ``campaign``, here or on the fleet's work pools, and summarize the run."""
    settings = load_settings()
    run_id = str(flow_run.id or uuid4())
    started_at = datetime.now(UTC)
    jobs = expand(campaign)

    if dispatch == "pools":
        from flows.dispatch import dispatch_to_pools

        rows = dispatch_to_pools(campaign, jobs, run_id)
        return analyze(rows, campaign.name, run_id, started_at, None)

    check_runnable(campaign, probe_build(ffmpeg_path(settings)))
    references = prepare_references(campaign, jobs)
    idle = idle_baseline(campaign.idle_baseline_s)

    rows = [record_job(run_job(job, references[job.input.name], idle, run_id, settings.node, campaign.retries))
            for job in jobs]

    return analyze(rows, campaign.name, run_id, started_at, idle)


if __name__ == "__main__":
    import sys

    from ffwatt.campaign import load_campaign

    campaign_flow(load_campaign(sys.argv[1] if len(sys.argv) > 1 else "deployments/campaigns/quick.yaml"))
