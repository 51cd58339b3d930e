"""The node side of a distributed campaign: a batch of jobs on whichever node's worker took it.

The batch first sends home its node's facts and idle baseline, then each job's
row as soon as the job ends, as Prefect table artifacts of its flow run
(:mod:`ffwatt.fleet.protocol`), so the master's dataset gets them without a shared
disk, and a node that dies mid-batch loses only the job it was running. While the
batch runs, a heartbeat variable lets the master tell a live batch from a zombie
(a SIGKILLed worker leaves its flow run "Running" forever).
"""

from __future__ import annotations

import contextlib
import logging
import threading
from typing import Self
from uuid import UUID

from prefect import flow
from prefect.client.orchestration import SyncPrefectClient, get_client
from prefect.client.schemas.actions import ArtifactCreate, VariableCreate, VariableUpdate
from prefect.runtime import flow_run

from ffwatt.campaign import Campaign
from ffwatt.files import file_lock, write_atomic
from ffwatt.fleet.protocol import (
    HEARTBEAT_S,
    NodeReport,
    batch_variable,
    encode_report,
    encode_row,
    facts_artifact_key,
    row_artifact_key,
)
from ffwatt.hardware.facts import describe_node
from ffwatt.hardware.ffmpeg import ffmpeg_path, probe_build
from ffwatt.jobs import expand
from ffwatt.nodefacts import IdleBaseline
from ffwatt.schema import JobRow
from ffwatt.settings import Settings, load_settings
from flows.job import prepare_references, run_job
from tasks import build_row, idle_baseline

__all__ = ["node_batch"]

log = logging.getLogger("ffwatt.batch")


def node_lock(settings: Settings) -> contextlib.AbstractContextManager[None]:
    """One measured job at a time on this node, whichever pool's worker runs it."""
    return file_lock(settings.home / "node.lock")


class Heartbeat:
    """Publishes a beat counter (and the job in flight) every HEARTBEAT_S and when the job
    changes. The master only watches the counter move; it knows the job in flight from
    the rows: jobs run in the order sent, so it is the first one without a row."""

    def __init__(self, flow_run_id: str, node: str) -> None:
        self.name = batch_variable(flow_run_id)
        self.state: dict[str, object] = {"node": node, "beat": 0, "job": None}
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="batch-heartbeat", daemon=True)

    def _run(self) -> None:
        created = False
        beat = 0
        # One client for the batch's life: a new one per beat costs a TLS handshake and more.
        with get_client(sync_client=True) as client:
            while not self._stop.is_set():
                beat += 1
                self.state["beat"] = beat
                try:
                    if created:
                        client.update_variable(VariableUpdate(name=self.name, value=dict(self.state)))
                    else:
                        client.create_variable(VariableCreate(name=self.name, value=dict(self.state)))
                        created = True
                except Exception as exc:  # noqa: BLE001 - the master may be restarting: keep beating
                    log.warning("heartbeat not published: %s", exc)
                self._wake.wait(HEARTBEAT_S)
                self._wake.clear()
            with contextlib.suppress(Exception):
                client.delete_variable_by_name(self.name)

    def job(self, job_id: str) -> None:
        """Announce the job now starting (for people watching; the master doesn't wait for it)."""
        self.state["job"] = job_id
        self._wake.set()

    def __enter__(self) -> Self:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._wake.set()
        self._thread.join(10)


def _idle_for_run(run_id: str, seconds: float, settings: Settings) -> IdleBaseline | None:
    """The node's idle baseline for this campaign run: measured by its first batch, reused by the rest."""
    cached = settings.home / "idle" / f"{run_id}.json"
    if cached.exists():
        return IdleBaseline.model_validate_json(cached.read_text())
    idle = idle_baseline(seconds)
    if idle is not None:
        write_atomic(cached, lambda tmp: tmp.write_text(idle.model_dump_json()))
    return idle


def _send_home(client: SyncPrefectClient, flow_run_id: UUID, key: str, data: str, description: str) -> None:
    """A table artifact of this flow run: stored by the API, read by the master."""
    client.create_artifact(ArtifactCreate(key=key, type="table", flow_run_id=flow_run_id, data=data,
                                          description=description))


@flow(name="node-batch", flow_run_name="{campaign.name}-batch")
def node_batch(campaign: Campaign, job_ids: list[str], run_id: str, attempts: dict[str, int]) -> list[str]:
    """Run these jobs of the campaign on this node, one at a time, sending each row home."""
    settings = load_settings()
    by_id = {job.job_id: job for job in expand(campaign)}
    jobs = [by_id[job_id] for job_id in job_ids]  # in the order sent: the master relies on it
    available = probe_build(ffmpeg_path(settings)).encoders
    sent = []
    run_uuid = UUID(str(flow_run.id))
    with Heartbeat(str(run_uuid), settings.node) as beat, get_client(sync_client=True) as client:
        references = prepare_references(campaign, jobs)
        with node_lock(settings):
            idle = _idle_for_run(run_id, campaign.idle_baseline_s, settings)
        report = NodeReport(facts=describe_node(settings), idle_baseline=idle)
        _send_home(client, run_uuid, facts_artifact_key(settings.node), encode_report(report),
                   f"ffwatt node facts of {settings.node}")
        for job in jobs:
            beat.job(job.job_id)
            if job.encoder not in available:
                row: JobRow = build_row(job=job, run_id=run_id, node=settings.node, reference=None,
                                        error=f"node {settings.node}'s FFmpeg has no encoder {job.encoder}")
            else:
                with node_lock(settings):
                    row = run_job(job, references[job.input.name], idle, run_id, settings.node,
                                  campaign.encode_retries)
            dispatches = attempts.get(job.job_id, 1)
            row = row.model_copy(update={"attempts": row.attempts + dispatches - 1})
            _send_home(client, run_uuid, row_artifact_key(row.job_id), encode_row(row),
                       f"ffwatt job row {row.job_id} ({row.status})")
            sent.append(job.job_id)
    return sent
