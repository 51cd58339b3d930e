"""The node side of a distributed campaign: a batch of jobs on whichever node's worker took it.

The batch first sends home its node's facts and idle baseline, then each job's
row as soon as the job ends, as Prefect table artifacts of its flow run
(:mod:`ffwatt.fleet.protocol`), so the master's dataset gets them without a shared
disk, and a node that dies mid-batch loses only the job it was running. The batch
writes nothing else while it runs: the master tells a live batch from a zombie (a
SIGKILLed node leaves its flow run "Running" forever) by its node's workers'
heartbeats, which Prefect sends anyway.

A node whose heartbeats were only late (a stalled network, an overloaded master) is
still running a batch the master has declared lost and planned again elsewhere. So,
once per node timeout, the batch reads its own flow run between jobs and stops when
the master has ended it: its remaining jobs are another batch's now, and encoding
them here would only load the node that runs them.
"""

from __future__ import annotations

import contextlib
import logging
import time
from uuid import UUID

import httpx
from prefect import flow
from prefect.client.orchestration import SyncPrefectClient, get_client
from prefect.client.schemas.actions import ArtifactCreate
from prefect.runtime import flow_run
from prefect.states import Cancelled, State

from ffwatt.campaign import Campaign
from ffwatt.files import write_atomic
from ffwatt.fleet.cadence import read_cadence
from ffwatt.fleet.nodes import MISSED_HEARTBEATS
from ffwatt.fleet.protocol import (
    NodeReport,
    encode_frames,
    encode_report,
    encode_row,
    facts_artifact_key,
    frames_artifact_key,
    row_artifact_key,
)
from ffwatt.frames import FrameScores, frames_table, frames_to_bytes
from ffwatt.hardware.facts import describe_node
from ffwatt.hardware.ffmpeg import ffmpeg_path, probe_build
from ffwatt.jobs import expand
from ffwatt.nodefacts import IdleBaseline
from ffwatt.schema import JobRow
from ffwatt.settings import Settings, load_settings
from flows import nodelock
from flows.job import prepare_references, run_job
from tasks import build_row, idle_baseline

__all__ = ["node_batch"]

log = logging.getLogger("ffwatt.batch")


def node_lock(settings: Settings, what: str) -> contextlib.AbstractContextManager[None]:
    """One measured job at a time on this node, whichever pool's worker runs it (or a local run)."""
    return nodelock.node_lock(settings.home, what,
                              on_wait=lambda holder: log.info("waiting for this node: it is measuring %s", holder))


def _idle_for_run(run_id: str, campaign: Campaign, settings: Settings) -> IdleBaseline | None:
    """The node's idle baseline for this campaign run: taken by its first batch, used by the rest."""
    cached = settings.idle_dir / f"{run_id}.json"
    if cached.exists():
        return IdleBaseline.model_validate_json(cached.read_text())
    idle = idle_baseline(campaign.idle_baseline_s, campaign.idle_baseline_reuse_s)
    if idle is not None:
        write_atomic(cached, lambda tmp: tmp.write_text(idle.model_dump_json()))
    return idle


def _send_home(client: SyncPrefectClient, flow_run_id: UUID, key: str, data: str, description: str) -> None:
    """A table artifact of this flow run: stored by the API, read by the master."""
    client.create_artifact(ArtifactCreate(key=key, type="table", flow_run_id=flow_run_id, data=data,
                                          description=description))


def _given_up(client: SyncPrefectClient, flow_run_id: UUID) -> str | None:
    """Why this batch's flow run has ended while the batch still runs (the master declared it lost,
    or cancelled it), or None. An API that doesn't answer is no reason to stop."""
    try:
        state = client.read_flow_run(flow_run_id).state
    except httpx.HTTPError as exc:  # PrefectHTTPStatusError (an error status) is one too
        log.warning("couldn't read this batch's state (%s); going on", exc)
        return None
    if state is None or not state.is_final():
        return None
    return f"{state.name}: {state.message or 'no message'}"


@flow(name="node-batch")  # its runs are named <campaign>-<node> by the dispatcher
def node_batch(campaign: Campaign, job_ids: list[str], run_id: str, attempts: dict[str, int]) -> list[str] | State:
    """Run these jobs of the campaign on this node, one at a time, sending each row home."""
    settings = load_settings()
    by_id = {job.job_id: job for job in expand(campaign)}
    jobs = [by_id[job_id] for job_id in job_ids]  # in the order sent: the master relies on it
    available = probe_build(ffmpeg_path(settings)).encoders
    sent: list[str] = []
    run_uuid = UUID(str(flow_run.id))
    with get_client(sync_client=True) as client:
        references = prepare_references(campaign, jobs, from_api=True)  # batches always come through the API
        with node_lock(settings, f"the idle baseline of campaign {campaign.name} run {run_id}"):
            idle = _idle_for_run(run_id, campaign, settings)
        report = NodeReport(facts=describe_node(settings), idle_baseline=idle)
        _send_home(client, run_uuid, facts_artifact_key(settings.node), encode_report(report),
                   f"ffwatt node facts of {settings.node}")
        # The master declares a batch lost after its node missed this many heartbeats: checking as
        # often wastes at most that long, at one API call per node timeout, not per job.
        cadence = read_cadence(client)  # a large fleet beats slower, and its master waits longer
        check_every_s = MISSED_HEARTBEATS * max(settings.worker_heartbeat_s, cadence.heartbeat_s if cadence else 0)
        checked_at = time.monotonic()
        for job in jobs:
            if time.monotonic() - checked_at >= check_every_s:
                checked_at = time.monotonic()
                if (why := _given_up(client, run_uuid)) is not None:
                    # Ending it Completed would paper over the master's word: say what happened instead.
                    message = (f"the master ended this batch ({why}); stopped after {len(sent)} of {len(jobs)} "
                               "jobs, leaving the rest to the batch it planned them into")
                    log.warning("%s", message)
                    return Cancelled(message=message)
            frames: FrameScores | None = None
            if job.encoder not in available:
                row: JobRow = build_row(job=job, run_id=run_id, node=settings.node, reference=None,
                                        error=f"node {settings.node}'s FFmpeg has no encoder {job.encoder}")
            else:
                with node_lock(settings, f"job {job.job_id} of campaign {campaign.name} run {run_id}"):
                    outcome = run_job(job, references[job.input.name], idle, run_id, settings.node,
                                      campaign.encode_retries)
                row, frames = outcome.row, outcome.frames
            dispatches = attempts.get(job.job_id, 1)
            row = row.model_copy(update={"attempts": row.attempts + dispatches - 1})
            if frames is not None and len(frames):
                # Before the row: the master fetches them once the row has come home.
                _send_home(client, run_uuid, frames_artifact_key(run_id, row.job_id),
                           encode_frames(frames_to_bytes(frames_table(frames, job_id=row.job_id))),
                           f"ffwatt per-frame scores of job {row.job_id}")
            _send_home(client, run_uuid, row_artifact_key(row.job_id), encode_row(row),
                       f"ffwatt job row {row.job_id} ({row.status})")
            sent.append(job.job_id)
    return sent
