"""Sending a campaign's jobs to the work pools that match their hardware, and bringing rows home.

Jobs are grouped by pool (libx264 -> cpu, h264_nvenc -> nvidia, ...) and split into
one batch per live node of the pool, so a flow run's start-up is paid once per
node, not once per job. Each batch is a ``node-batch/<pool>`` deployment run; its
node's facts and its rows arrive as table artifacts (:mod:`ffwatt.fleet.protocol`)
and are written to the master's dataset as they come.

Prefect doesn't retry crashed flow runs, and a SIGKILLed worker leaves its run
"Running" forever. So the :class:`Dispatcher` watches each batch's heartbeat: a
batch whose beat stops is marked Crashed and its unfinished jobs go to the pool
again (up to ``lost_job_retries`` times each); a batch no worker picks up is
reported, not awaited forever. It talks to Prefect only through a :class:`FleetAPI`
and reads time only from its clock, so every one of these cases is unit-tested in
milliseconds against an in-memory fleet.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any, Protocol
from uuid import UUID

from ffwatt.campaign import Campaign
from ffwatt.encoders import profile_for
from ffwatt.errors import ApiUnavailable
from ffwatt.fleet.nodes import NodeRecord
from ffwatt.fleet.protocol import BatchParameters, BatchState, NodeReport, Poll
from ffwatt.jobs import Job, sweep_groups
from ffwatt.schema import JobRow
from tasks import build_row

__all__ = ["Dispatcher", "FleetAPI", "plan_batches"]

ZOMBIE_AFTER_S = 20.0
PICKUP_TIMEOUT_S = 300.0
POLL_S = 1.0
NO_NODE = "(none)"


class FleetAPI(Protocol):
    """What dispatch needs of the Prefect API; any call may raise :class:`ApiUnavailable`."""

    def submit(self, pool: str, parameters: BatchParameters) -> UUID:
        """Start a ``node-batch/<pool>`` flow run; its id."""
        ...

    def poll(self, open_batches: list[UUID], all_batches: list[UUID], missing_jobs: list[str]) -> Poll:
        """States and heartbeats of the open batches; rows of the missing jobs (and node reports)
        that any batch has sent home since the last poll."""
        ...

    def crash(self, batch: UUID, message: str) -> None: ...

    def cancel(self, batch: UUID, message: str) -> None: ...


@dataclass
class _Batch:
    pool: str
    job_ids: list[str]
    flow_run_id: UUID
    submitted_at: float
    beat_seen_at: float
    last_beat: Any = None
    finished: bool = False


def plan_batches(jobs: list[Job], nodes: list[NodeRecord], now: float | None = None
                 ) -> tuple[dict[str, list[list[Job]]], dict[str, str]]:
    """Batches per pool (one per live node that can run them), and why other jobs can't be scheduled."""
    live = [n for n in nodes if n.online(now)]
    by_pool: dict[str, list[Job]] = {}
    pool: str
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
        # Interleaved, so every batch gets a mix of slow and fast configurations; a live sweep's steps
        # stay in one batch, in order, so that one node runs the whole sweep.
        units = sweep_groups(pool_jobs)
        batches[pool] = [batch for batch in ([job for unit in units[i::count] for job in unit] for i in range(count))
                         if batch]
    return batches, unschedulable


class Dispatcher:
    """One campaign run's jobs on the fleet: plan, send, watch, re-send, until every job has a row.

    ``record`` writes a row as it arrives (and returns it); ``clock`` is monotonic seconds.
    """

    def __init__(self, campaign: Campaign, jobs: list[Job], run_id: str, *, api: FleetAPI,
                 record: Callable[[JobRow], JobRow], clock: Callable[[], float] = time.monotonic,
                 log: logging.Logger | logging.LoggerAdapter[Any] | None = None,
                 zombie_after_s: float = ZOMBIE_AFTER_S, pickup_timeout_s: float = PICKUP_TIMEOUT_S) -> None:
        self.campaign = campaign
        self.jobs = jobs
        self.run_id = run_id
        self.rows: dict[str, JobRow] = {}
        self.reports: dict[str, NodeReport] = {}
        self.attempts = {job.job_id: 1 for job in jobs}
        self._api = api
        self._record = record
        self._clock = clock
        self._log = log or logging.getLogger("ffwatt.dispatch")
        self._zombie_after_s = zombie_after_s
        self._pickup_timeout_s = pickup_timeout_s
        self._by_id = {job.job_id: job for job in jobs}
        self._batches: dict[UUID, _Batch] = {}
        self._unsent: list[tuple[str, list[str]]] = []  # submissions the API refused, to try again

    @property
    def done(self) -> bool:
        return len(self.rows) == len(self.jobs)

    def start(self, nodes: list[NodeRecord], now: float | None = None) -> None:
        """Plan batches over the live ``nodes`` (``now`` in unix seconds) and send them."""
        plan, unschedulable = plan_batches(self.jobs, nodes, now)
        for job_id, reason in unschedulable.items():
            self._fail(job_id, reason)
        for pool, batches in plan.items():
            for batch in batches:
                self._unsent.append((pool, [job.job_id for job in batch]))
        self._send()

    def run(self, *, sleep: Callable[[float], None] = time.sleep, poll_s: float = POLL_S) -> list[JobRow]:
        """Poll until every job has a row; the rows in job order."""
        while not self.done:
            sleep(poll_s)
            self.step()
        return [self.rows[job.job_id] for job in self.jobs]

    def step(self) -> None:
        """One poll: take the rows that came home, then judge every open batch."""
        self._send()
        open_batches = [b for b in self._batches.values() if not b.finished]
        missing = [job.job_id for job in self.jobs if job.job_id not in self.rows]
        try:
            poll = self._api.poll([b.flow_run_id for b in open_batches], list(self._batches), missing)
        except ApiUnavailable as exc:
            # The master restarting: wait, and don't judge heartbeats while it can't be asked.
            self._log.warning("Prefect API unavailable (%s); waiting", exc)
            now = self._clock()
            for batch in open_batches:
                batch.beat_seen_at = now
            return
        for report in poll.reports:
            self.reports[report.facts.name] = report
        for row in poll.rows:
            # First row wins: a late row of a batch declared lost must not duplicate its re-run's.
            if row.job_id in self._by_id and row.job_id not in self.rows:
                self.rows[row.job_id] = self._record(row.model_copy(update={"run_id": self.run_id}))
        now = self._clock()
        for batch in open_batches:
            self._judge(batch, poll.states.get(batch.flow_run_id), poll.beats.get(batch.flow_run_id), now)

    def _judge(self, batch: _Batch, state: BatchState | None, beat: Any, now: float) -> None:
        if beat is not None and beat != batch.last_beat:
            batch.last_beat, batch.beat_seen_at = beat, now
        if state is None:
            return
        if state.final:
            batch.finished = True
            if any(j not in self.rows for j in batch.job_ids):
                self._lost(batch, f"batch ended {state.name} ({state.message or 'no message'})")
        elif state.running and now - batch.beat_seen_at > self._zombie_after_s:
            why = f"no heartbeat from its node for {self._zombie_after_s:.0f} s (worker killed or node lost)"
            self._api.crash(batch.flow_run_id, f"ffwatt: {why}")
            self._lost(batch, why)
        elif not state.running and now - batch.submitted_at > self._pickup_timeout_s:
            self._api.cancel(batch.flow_run_id, "ffwatt: no worker picked this batch up")
            batch.finished = True
            for job_id in self._missing(batch.job_ids):
                self._fail(job_id, f"unschedulable: no worker of pool {batch.pool} picked the batch up "
                                   f"within {self._pickup_timeout_s:.0f} s; is an agent running for that pool?")

    def _lost(self, batch: _Batch, why: str) -> None:
        batch.finished = True
        missing = self._missing(batch.job_ids)
        if missing:
            # Jobs run in the order sent, so the first without a row was in flight: that attempt is spent.
            self.attempts[missing[0]] += 1
        again = [j for j in missing if self.attempts[j] <= 1 + self.campaign.lost_job_retries]
        for job_id in missing:
            if job_id not in again:
                self._fail(job_id, f"lost: {why}; gave up after {self.attempts[job_id] - 1} attempt(s) "
                                   "(lost_job_retries)")
        if again:
            self._log.warning("batch %s: %s; sending %d unfinished job(s) to pool %s again",
                              batch.flow_run_id, why, len(again), batch.pool)
            self._unsent.append((batch.pool, again))
            self._send()

    def _send(self) -> None:
        while self._unsent:
            pool, job_ids = self._unsent[0]
            parameters = BatchParameters(campaign=self.campaign, job_ids=job_ids, run_id=self.run_id,
                                         attempts={j: self.attempts[j] for j in job_ids})
            try:
                flow_run_id = self._api.submit(pool, parameters)
            except ApiUnavailable as exc:
                self._log.warning("can't send %d job(s) to pool %s yet (%s)", len(job_ids), pool, exc)
                return
            self._unsent.pop(0)
            now = self._clock()
            self._batches[flow_run_id] = _Batch(pool=pool, job_ids=job_ids, flow_run_id=flow_run_id,
                                                submitted_at=now, beat_seen_at=now)
            self._log.info("sent %d job(s) to pool %s as flow run %s", len(job_ids), pool, flow_run_id)

    def _missing(self, job_ids: Iterable[str]) -> list[str]:
        return [j for j in job_ids if j not in self.rows]

    def _fail(self, job_id: str, error: str) -> None:
        row = build_row(job=self._by_id[job_id], run_id=self.run_id, node=NO_NODE, reference=None, error=error,
                        attempts=self.attempts[job_id])
        self.rows[job_id] = self._record(row)
