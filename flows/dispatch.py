"""Sending a campaign's jobs to the work pools that match their hardware, and bringing rows home.

Jobs are grouped by pool (libx264 -> cpu, h264_nvenc -> nvidia, ...) and split into
one batch per live node of the pool, so a flow run's start-up (~5 s through a
process worker) is paid once per node, not once per job. Each batch is a
``node-batch/<pool>`` deployment run; its rows arrive as table artifacts and are
written to the master's dataset as they come.

Prefect doesn't retry crashed flow runs, and a SIGKILLed worker leaves its run
"Running" forever. So this loop watches each batch's heartbeat: a batch whose beat
stops is marked Crashed and its unfinished jobs go to the pool again (up to
``max_retries`` times each); a batch no worker picks up is reported, not awaited
forever.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from uuid import UUID

from prefect.client.orchestration import get_client
from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterKey, FlowRunFilter, FlowRunFilterId
from prefect.deployments import run_deployment
from prefect.states import Cancelled, Crashed

from ffwatt.campaign import Campaign, Job
from ffwatt.encoders import profile_for
from ffwatt.nodes import NodeRecord, list_nodes
from ffwatt.schema import JobRow
from flows.batch import batch_variable
from tasks import build_row, record_job
from tasks._ffmpeg import run_logger

__all__ = ["Batch", "dispatch_to_pools", "plan_batches"]

ZOMBIE_AFTER_S = 20.0
PICKUP_TIMEOUT_S = 300.0
POLL_S = 1.0
NO_NODE = "(none)"


@dataclass
class Batch:
    pool: str
    job_ids: list[str]
    flow_run_id: UUID
    last_beat: object = None
    beat_seen_at: float = field(default_factory=time.monotonic)
    submitted_at: float = field(default_factory=time.monotonic)
    finished: bool = False


def plan_batches(jobs: list[Job], nodes: list[NodeRecord]) -> tuple[dict[str, list[list[Job]]], dict[str, str]]:
    """Batches per pool (one per live node that can run them), and why other jobs can't be scheduled."""
    live = [n for n in nodes if n.online()]
    by_pool: dict[str, list[Job]] = {}
    unschedulable: dict[str, str] = {}
    for job in jobs:
        pool = profile_for(job.encoder).pool
        able = [n for n in live if pool in n.pools and job.encoder in n.encoders]
        if not able:
            pools = sorted({p for n in live for p in n.pools}) or ["none"]
            unschedulable[job.job_id] = (f"unschedulable: no live node runs {job.encoder} (pool {pool}); "
                                         f"live pools: {', '.join(pools)}. Start an agent on a node with "
                                         f"that hardware (ffwatt agent start) or drop the encoder.")
            continue
        by_pool.setdefault(pool, []).append(job)
    batches = {}
    for pool, pool_jobs in by_pool.items():
        count = len([n for n in live if pool in n.pools])
        # Interleaved, so every batch gets a mix of slow and fast configurations.
        batches[pool] = [batch for batch in (pool_jobs[i::count] for i in range(count)) if batch]
    return batches, unschedulable


def dispatch_to_pools(campaign: Campaign, jobs: list[Job], run_id: str, *,
                      zombie_after_s: float = ZOMBIE_AFTER_S, pickup_timeout_s: float = PICKUP_TIMEOUT_S
                      ) -> list[JobRow]:
    logger = run_logger()
    by_id = {job.job_id: job for job in jobs}
    rows: dict[str, JobRow] = {}
    attempts = {job.job_id: 1 for job in jobs}
    batches: dict[UUID, Batch] = {}
    seen_artifacts: set[UUID] = set()

    def fail(job_id: str, error: str) -> None:
        rows[job_id] = record_job(build_row(job=by_id[job_id], run_id=run_id, node=NO_NODE, reference=None,
                                            error=error, attempts=attempts[job_id]))

    def submit(pool: str, job_ids: list[str]) -> None:
        run = run_deployment(
            name=f"node-batch/{pool}", timeout=0, as_subflow=True,
            parameters={"campaign": campaign.model_dump(mode="json"), "job_ids": job_ids, "run_id": run_id,
                        "attempts": {j: attempts[j] for j in job_ids}},
        )
        batches[run.id] = Batch(pool=pool, job_ids=job_ids, flow_run_id=run.id)
        logger.info("sent %d job(s) to pool %s as flow run %s", len(job_ids), pool, run.name)

    plan, unschedulable = plan_batches(jobs, list_nodes())
    for job_id, reason in unschedulable.items():
        fail(job_id, reason)
    for pool, pool_batches in plan.items():
        for batch in pool_batches:
            submit(pool, [job.job_id for job in batch])

    def lost(batch: Batch, why: str) -> None:
        batch.finished = True
        missing = [j for j in batch.job_ids if j not in rows]
        if missing:
            # Jobs run in the order sent, so the first without a row was in flight: that attempt is spent.
            attempts[missing[0]] += 1
        again = [j for j in missing if attempts[j] <= 1 + campaign.max_retries]
        for job_id in missing:
            if job_id not in again:
                fail(job_id, f"lost: {why}; gave up after {attempts[job_id] - 1} attempt(s) (max_retries)")
        if again:
            logger.warning("batch %s: %s; sending %d unfinished job(s) to pool %s again",
                           batch.flow_run_id, why, len(again), batch.pool)
            submit(batch.pool, again)

    with get_client(sync_client=True) as client:
        while len(rows) < len(jobs):
            time.sleep(POLL_S)
            open_batches = [b for b in batches.values() if not b.finished]
            ids = [b.flow_run_id for b in open_batches]
            try:
                runs = {run.id: run for run in client.read_flow_runs(
                    flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=ids)))}
                artifacts = client.read_artifacts(
                    artifact_filter=ArtifactFilter(key=ArtifactFilterKey(like_="ffwatt-row-%")),
                    flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[b.flow_run_id for b in batches.values()])))
                beats = {b.flow_run_id: client.read_variable_by_name(batch_variable(str(b.flow_run_id)))
                         for b in open_batches}
            except Exception as exc:  # the master restarting: wait, and don't judge heartbeats meanwhile
                logger.warning("Prefect API unavailable (%s); waiting", exc)
                for batch in open_batches:
                    batch.beat_seen_at = time.monotonic()
                continue
            for artifact in artifacts:
                if artifact.id in seen_artifacts:
                    continue
                seen_artifacts.add(artifact.id)
                data = json.loads(artifact.data) if isinstance(artifact.data, str) else artifact.data
                for record in data:
                    row = JobRow.model_validate(record)
                    if row.job_id in by_id and row.job_id not in rows:
                        rows[row.job_id] = record_job(row.model_copy(update={"run_id": run_id}))
            now = time.monotonic()
            for batch in open_batches:
                run = runs.get(batch.flow_run_id)
                state = run.state if run else None
                beat = beats.get(batch.flow_run_id)
                if beat is not None and beat.value != batch.last_beat:
                    batch.last_beat, batch.beat_seen_at = beat.value, now
                if state is None:
                    continue
                if state.is_final():
                    batch.finished = True
                    if any(j not in rows for j in batch.job_ids):
                        lost(batch, f"batch ended {state.type.value} ({state.message or 'no message'})")
                elif state.is_running() and now - batch.beat_seen_at > zombie_after_s:
                    client.set_flow_run_state(batch.flow_run_id, Crashed(
                        message=f"ffwatt: no heartbeat for {zombie_after_s:.0f} s; worker or node lost"),
                        force=True)
                    lost(batch, f"no heartbeat from its node for {zombie_after_s:.0f} s (worker killed or node lost)")
                elif not state.is_running() and now - batch.submitted_at > pickup_timeout_s:
                    client.set_flow_run_state(batch.flow_run_id, Cancelled(
                        message="ffwatt: no worker picked this batch up"), force=True)
                    batch.finished = True
                    for job_id in batch.job_ids:
                        if job_id not in rows:
                            fail(job_id, f"unschedulable: no worker of pool {batch.pool} picked the batch up "
                                         f"within {pickup_timeout_s:.0f} s; is an agent running for that pool?")
    return [rows[job.job_id] for job in jobs]
