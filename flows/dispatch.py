"""Sending a campaign's jobs to the nodes whose hardware runs them, and bringing rows home.

Jobs are grouped by pool (libx264 -> cpu, h264_nvenc -> nvidia, ...) and split into
one batch per live node of the pool, so a flow run's start is paid once per node,
not once per job. Each batch is a ``node-batch/<pool>`` deployment run sent to the
node's own work queue, so it is known where every batch runs; the node is then
woken to take it at once. Its facts and its rows arrive as table artifacts
(:mod:`ffwatt.fleet.protocol`) and are written to the master's dataset as they come.

Prefect doesn't retry crashed flow runs, and a SIGKILLed node leaves its run
"Running" forever. So the :class:`Dispatcher` watches the node of each open batch
through its workers' heartbeats (Prefect's own liveness; nothing extra is written):
a batch whose node goes silent is marked Crashed and its unfinished jobs are planned
again over the live nodes (up to ``lost_job_retries`` times each); jobs whose able
nodes are all offline wait for one to come back, for a while; a batch its node
doesn't take up goes elsewhere. It talks to Prefect only through a
:class:`FleetAPI` and reads time only from its clocks, so every one of these cases is
unit-tested in milliseconds against an in-memory fleet.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any, Protocol
from uuid import UUID

from ffwatt.campaign import Campaign
from ffwatt.encoders import profile_for
from ffwatt.errors import ApiUnavailable
from ffwatt.fleet.nodes import MISSED_HEARTBEATS, NodeRecord
from ffwatt.fleet.protocol import BatchParameters, BatchState, NodeReport, Poll
from ffwatt.jobs import Job, sweep_groups
from ffwatt.schema import JobRow
from tasks import build_row

__all__ = ["Dispatcher", "FleetAPI", "Submission", "plan_batches"]

PICKUP_TIMEOUT_S = 300.0
# How long jobs whose able nodes are all offline wait for one to come back (a restart, a reboot)
# before they are recorded as unschedulable.
NODE_GRACE_S = 300.0
# After the API was away, a node's next heartbeat can lag that long: Prefect's client retries a
# failed call up to five times, backing off 2, 4, ... 32 s.
API_RECOVERY_S = 40.0
# A poll is a few quick calls. One that took this long waited in those same retries (or on an API
# too busy to record heartbeats on time): the API was away for the nodes too, though no call failed.
API_STALL_S = 5.0
POLL_S = 1.0
LAG_QUORUM = 10  # nodes needed to tell the API's lag from nodes dying
NO_NODE = "(none)"


class FleetAPI(Protocol):
    """What dispatch needs of the Prefect API; any call may raise :class:`ApiUnavailable`."""

    def submit(self, pool: str, node: NodeRecord, parameters: BatchParameters, key: str) -> UUID:
        """Start a ``node-batch/<pool>`` flow run on ``node``'s queue and wake the node; its id. ``key``
        names this submission: sent again (its answer lost), it gives the flow run it already made."""
        ...

    def submit_all(self, batches: list[Submission]) -> list[UUID | ApiUnavailable]:
        """:meth:`submit` each batch (at once where the API can take it); per batch its flow run id, or
        the :class:`ApiUnavailable` that refused it."""
        ...

    def poll(self, open_batches: list[UUID], all_batches: list[UUID], missing_jobs: list[str]) -> Poll:
        """States of the open batches; rows of the missing jobs (and node reports) that any batch has
        sent home since the last poll; the nodes, with their liveness, when it is time to look (every
        few seconds while any job is missing, whether or not a batch is open)."""
        ...

    def crash(self, batch: UUID, message: str) -> None: ...

    def cancel(self, batch: UUID, message: str) -> None: ...


@dataclass(frozen=True)
class Submission:
    """A batch to send; ``key`` stays the same each time the dispatcher sends it again."""

    pool: str
    node: NodeRecord
    parameters: BatchParameters
    key: str


@dataclass
class _Batch:
    pool: str
    node: str
    job_ids: list[str]
    flow_run_id: UUID
    submitted_at: float
    started: bool = False
    finished: bool = False


def plan_batches(jobs: list[Job], nodes: list[NodeRecord], now: float | None = None
                 ) -> tuple[list[tuple[str, NodeRecord, list[Job]]], dict[str, str]]:
    """(pool, node, jobs) for every batch (one per live node that can run them, jobs dealt round-robin
    so every batch gets a mix of slow and fast configurations; a live sweep as one unit), and why
    other jobs can't be scheduled."""
    live = [n for n in nodes if n.online(now)]
    batches: dict[tuple[str, str], tuple[str, NodeRecord, list[Job]]] = {}
    dealt: dict[str, int] = {}  # per pool, jobs dealt so far: round-robin over the nodes able
    unschedulable: dict[str, str] = {}
    # A live sweep's steps stay together, in order, so that one node runs the whole sweep.
    for unit in sweep_groups(jobs):
        job = unit[0]
        pool: str = profile_for(job.encoder).pool
        able = [n for n in live if _can_run(n, job)]
        if not able:
            pools = sorted({p for n in live for p in n.pools}) or ["none"]
            for each in unit:
                unschedulable[each.job_id] = (f"unschedulable: no live node runs {job.encoder} (pool {pool}); "
                                              f"live pools: {', '.join(pools)}. Start an agent on a node with "
                                              f"that hardware (ffwatt agent start) or drop the encoder.")
            continue
        node = able[dealt.get(pool, 0) % len(able)]
        dealt[pool] = dealt.get(pool, 0) + 1
        batches.setdefault((pool, node.node), (pool, node, []))[2].extend(unit)
    return list(batches.values()), unschedulable


def _can_run(node: NodeRecord, job: Job) -> bool:
    return profile_for(job.encoder).pool in node.pools and job.encoder in node.encoders


class Dispatcher:
    """One campaign run's jobs on the fleet: plan, send, watch, re-send, until every job has a row.

    ``record`` writes a row as it arrives (and returns it); ``clock`` is monotonic seconds for the
    dispatcher's own timers, ``wall`` unix seconds to judge nodes' heartbeats by.
    """

    def __init__(self, campaign: Campaign, jobs: list[Job], run_id: str, *, api: FleetAPI,
                 record: Callable[[JobRow], JobRow], clock: Callable[[], float] = time.monotonic,
                 wall: Callable[[], float] = time.time,
                 log: logging.Logger | logging.LoggerAdapter[Any] | None = None,
                 pickup_timeout_s: float = PICKUP_TIMEOUT_S, node_grace_s: float = NODE_GRACE_S) -> None:
        self.campaign = campaign
        self.jobs = jobs
        self.run_id = run_id
        self.rows: dict[str, JobRow] = {}
        self.reports: dict[str, NodeReport] = {}
        self.attempts = {job.job_id: 1 for job in jobs}
        self._api = api
        self._record = record
        self._clock = clock
        self._wall = wall
        self._log = log or logging.getLogger("ffwatt.dispatch")
        self._pickup_timeout_s = pickup_timeout_s
        self._node_grace_s = node_grace_s
        self._by_id = {job.job_id: job for job in jobs}
        self._batches: dict[UUID, _Batch] = {}
        self._unsent: list[tuple[str, NodeRecord, list[str], str]] = []  # to send, or refused: to send again
        self._planned = 0  # batches planned, for their submission keys
        self._nodes: dict[str, NodeRecord] = {}
        # When they were read (unix s). Polls read them every few seconds only; judged by a later clock,
        # a node read a while ago would look silent for that while on top of its last beat.
        self._nodes_seen_at = -math.inf
        self._api_back_at = -math.inf  # when the API last came back after being away
        self._api_away_since: float | None = None  # when the current outage began, while it lasts
        self._waiting: dict[str, tuple[float, str]] = {}  # jobs whose nodes are offline: since, why
        self._lag_s = 0.0  # how late the API records heartbeats (see _api_lag)

    @property
    def done(self) -> bool:
        return len(self.rows) == len(self.jobs)

    def start(self, nodes: list[NodeRecord]) -> None:
        """Plan batches over the live ``nodes`` and send them."""
        self._nodes, self._nodes_seen_at = {n.node: n for n in nodes}, self._wall()
        self._plan([job.job_id for job in self.jobs], exclude=set())

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
        began = self._clock()
        try:
            poll = self._api.poll([b.flow_run_id for b in open_batches], list(self._batches), missing)
        except ApiUnavailable as exc:
            # The master restarting: wait; nodes' heartbeats couldn't reach it either, so judge them
            # again only once it has been back for longer than a node may be silent.
            if self._api_away_since is None:
                self._api_away_since = began
                self._log.warning("Prefect API unavailable (%s); waiting for it, judging no node meanwhile", exc)
            return
        self._note_api_back(began)
        if poll.nodes is not None:
            # A node missing from the registry (its agent stopped and deregistered, its batch dying with
            # it) keeps its last record: its heartbeats, no longer renewed, judge it.
            self._nodes, self._nodes_seen_at = {**self._nodes, **{n.node: n for n in poll.nodes}}, self._wall()
            self._lag_s = self._api_lag()
        for report in poll.reports:
            self.reports[report.facts.name] = report
        for row in poll.rows:
            # First row wins: a late row of a batch declared lost must not duplicate its re-run's.
            if row.job_id in self._by_id and row.job_id not in self.rows:
                self.rows[row.job_id] = self._record(row.model_copy(update={"run_id": self.run_id}))
        for batch in open_batches:
            self._judge(batch, poll.states.get(batch.flow_run_id))
        self._plan_waiting()

    def _note_api_back(self, began: float) -> None:
        """After an outage (polls that failed, or one that answered only once the client's retries rode
        it out), say so, and give every node a full heartbeat timeout and a back-off from now."""
        now = self._clock()
        if self._api_away_since is not None:
            what = f"Prefect API back after {now - self._api_away_since:.0f} s away"
            self._api_away_since = None
        elif now - began > API_STALL_S:
            what = (f"Prefect API answered only after {now - began:.0f} s (restarting, or too busy; its client "
                    "retried meanwhile)")
        else:
            return
        grace = max((n.timeout_s for n in self._nodes.values()), default=0.0) + API_RECOVERY_S
        self._log.warning("%s; no node is judged lost for the next %.0f s (a heartbeat timeout and the "
                          "client's back-off)", what, grace)
        self._api_back_at = now

    def _judge(self, batch: _Batch, state: BatchState | None) -> None:
        now = self._clock()
        if state is not None and state.final:
            batch.finished = True
            if self._missing(batch.job_ids):
                self._lost(batch, f"batch ended {state.name} ({state.message or 'no message'})",
                           in_flight=batch.started or state.name != "CANCELLED")
            return
        if state is not None and state.running:
            batch.started = True
        node = self._nodes.get(batch.node)
        trusted_after = node.timeout_s + API_RECOVERY_S if node is not None else 0.0
        if (node is not None and not node.online(self._nodes_seen_at - self._lag_s)
                and now - self._api_back_at > trusted_after):
            why = (f"node {batch.node} went silent (no worker heartbeat for {node.timeout_s:.0f} s: "
                   "agent killed or node lost)")
            self._api.crash(batch.flow_run_id, f"ffwatt: {why}")
            self._lost(batch, why, in_flight=batch.started)
        elif not batch.started and now - batch.submitted_at > self._pickup_timeout_s:
            self._api.cancel(batch.flow_run_id, "ffwatt: its node didn't take this batch up")
            self._lost(batch, f"node {batch.node} didn't take the batch up within {self._pickup_timeout_s:.0f} s",
                       in_flight=False)

    def _api_lag(self) -> float:
        """How late the API is recording heartbeats, judged by the nodes holding this run's batches:
        their freshest tenth should be at most a tenth of an interval old. An overloaded master
        delays every heartbeat alike, and re-running its nodes' batches would only add load; a
        dead node's silence grows past any lag. Zero for fewer than ten such nodes."""
        busy = {b.node for b in self._batches.values() if not b.finished}
        nodes = [n for name, n in self._nodes.items() if name in busy and n.heartbeat_at > 0]
        if len(nodes) < LAG_QUORUM:
            return 0.0
        ages = sorted(self._nodes_seen_at - n.heartbeat_at for n in nodes)
        freshest = ages[len(ages) // 10]
        expected = nodes[0].timeout_s / MISSED_HEARTBEATS / 10
        return max(0.0, freshest - expected)

    def _lost(self, batch: _Batch, why: str, *, in_flight: bool) -> None:
        batch.finished = True
        missing = self._missing(batch.job_ids)
        if missing and in_flight:
            # Jobs run in the order sent, so the first without a row was in flight: that attempt is spent.
            self.attempts[missing[0]] += 1
        again = [j for j in missing if self.attempts[j] <= 1 + self.campaign.lost_job_retries]
        for job_id in missing:
            if job_id not in again:
                self._fail(job_id, f"lost: {why}; gave up after {self.attempts[job_id] - 1} attempt(s) "
                                   "(lost_job_retries)")
        if again:
            self._log.warning("batch %s on %s: %s; planning %d unfinished job(s) again", batch.flow_run_id,
                              batch.node, why, len(again))
            self._plan(again, exclude={batch.node})

    def _plan(self, job_ids: list[str], exclude: set[str]) -> None:
        """Plan ``job_ids`` over the live nodes, avoiding those in ``exclude`` (the node a batch was
        just lost or stuck on) where another node can run the job."""
        jobs = [self._by_id[j] for j in job_ids]
        elsewhere = [n for name, n in self._nodes.items() if name not in exclude]
        batches, unschedulable = plan_batches(jobs, elsewhere, self._nodes_seen_at)
        if unschedulable and exclude:
            retry, unschedulable = plan_batches([self._by_id[j] for j in unschedulable],
                                                list(self._nodes.values()), self._nodes_seen_at)
            batches += retry
        for job_id, reason in unschedulable.items():
            if any(_can_run(n, self._by_id[job_id]) for n in self._nodes.values()):
                self._waiting.setdefault(job_id, (self._clock(), reason))  # its node may come back
            else:
                self._fail(job_id, reason)
        self._queue(batches)

    def _plan_waiting(self) -> None:
        """Plan the jobs waiting for an offline node once one that can run them is back; fail them as
        unschedulable once no such node came back within the grace."""
        if not self._waiting:
            return
        now = self._clock()
        batches, unschedulable = plan_batches([self._by_id[j] for j in self._waiting], list(self._nodes.values()),
                                              self._nodes_seen_at)
        for job_id in [j for j in self._waiting if j not in unschedulable]:
            del self._waiting[job_id]
        for job_id in unschedulable:
            since, why = self._waiting[job_id]
            if now - since > self._node_grace_s:
                del self._waiting[job_id]
                self._fail(job_id, f"{why} (waited {now - since:.0f} s for one to come back; the grace is "
                                   f"{self._node_grace_s:.0f} s)")
        self._queue(batches)

    def _queue(self, batches: list[tuple[str, NodeRecord, list[Job]]]) -> None:
        # A key per planned batch, kept while it is sent again: an API that made the flow run but whose
        # answer was lost (a 5xx after the commit, a dropped connection) gives that run back rather
        # than a second one, which its node would also run.
        for pool, node, jobs in batches:
            self._planned += 1
            self._unsent.append((pool, node, [job.job_id for job in jobs], f"{self.run_id}:{self._planned}"))
        self._send()

    def _send(self) -> None:
        if not self._unsent:
            return
        unsent, self._unsent = self._unsent, []
        outcomes = self._api.submit_all([Submission(pool, node, BatchParameters(
            campaign=self.campaign, job_ids=job_ids, run_id=self.run_id,
            attempts={j: self.attempts[j] for j in job_ids}), key) for pool, node, job_ids, key in unsent])
        for (pool, node, job_ids, key), outcome in zip(unsent, outcomes, strict=True):
            if isinstance(outcome, ApiUnavailable):
                self._log.warning("can't send %d job(s) to %s yet (%s)", len(job_ids), node.node, outcome)
                self._unsent.append((pool, node, job_ids, key))
                continue
            self._batches[outcome] = _Batch(pool=pool, node=node.node, job_ids=job_ids, flow_run_id=outcome,
                                            submitted_at=self._clock())
            self._log.info("sent %d job(s) to %s (pool %s) as flow run %s", len(job_ids), node.node, pool, outcome)

    def _missing(self, job_ids: Iterable[str]) -> list[str]:
        return [j for j in job_ids if j not in self.rows]

    def _fail(self, job_id: str, error: str) -> None:
        row = build_row(job=self._by_id[job_id], run_id=self.run_id, node=NO_NODE, reference=None, error=error,
                        attempts=self.attempts[job_id])
        self.rows[job_id] = self._record(row)
