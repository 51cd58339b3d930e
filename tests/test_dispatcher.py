"""The dispatcher's failure cases, in milliseconds: an in-memory fleet behind the FleetAPI seam
and a hand-moved clock. The namespace tests (test_fleet.py) prove the same against real hosts."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from uuid import UUID, uuid4

from ffwatt.errors import ApiUnavailable
from ffwatt.fleet.nodes import NodeRecord
from ffwatt.fleet.protocol import BatchParameters, BatchState, NodeReport, Poll
from ffwatt.jobs import expand
from ffwatt.nodefacts import NodeFacts
from ffwatt.schema import JobRow
from ffwatt.validation import parse_campaign
from flows.dispatch import Dispatcher


@dataclass
class FakeBatch:
    pool: str
    parameters: BatchParameters
    state: str = "SCHEDULED"
    beat: int = 0
    done: list[str] = field(default_factory=list)  # jobs whose rows it sent


class FakeFleet:
    """The Prefect API as the dispatcher sees it, with batches the test moves by hand."""

    def __init__(self) -> None:
        self.batches: dict[UUID, FakeBatch] = {}
        self.crashed: list[UUID] = []
        self.cancelled: list[UUID] = []
        self.down = False
        self.refuse_submits = 0
        self._unsent: list[JobRow] = []
        self._reports: list[NodeReport] = []

    # the FleetAPI
    def submit(self, pool: str, parameters: BatchParameters) -> UUID:
        if self.down or self.refuse_submits:
            self.refuse_submits = max(0, self.refuse_submits - 1)
            raise ApiUnavailable("connection refused")
        flow_run_id = uuid4()
        self.batches[flow_run_id] = FakeBatch(pool, parameters)
        return flow_run_id

    def poll(self, open_batches: list[UUID], all_batches: list[UUID], missing_jobs: list[str]) -> Poll:
        if self.down:
            raise ApiUnavailable("connection refused")
        rows = [row for row in self._unsent if row.job_id in missing_jobs]
        poll = Poll(states={b: BatchState(self.batches[b].state) for b in open_batches},
                    rows=rows, reports=self._reports,
                    beats={b: self.batches[b].beat for b in open_batches})
        self._unsent, self._reports = [], []
        return poll

    def crash(self, batch: UUID, message: str) -> None:
        self.crashed.append(batch)
        self.batches[batch].state = "CRASHED"

    def cancel(self, batch: UUID, message: str) -> None:
        self.cancelled.append(batch)
        self.batches[batch].state = "CANCELLED"

    # the "workers"
    def start(self, batch: UUID, node: str) -> None:
        self.batches[batch].state = "RUNNING"
        self._reports.append(NodeReport(facts=facts(node), idle_baseline=None))

    def finish_next_job(self, batch: UUID, node: str) -> str:
        fake = self.batches[batch]
        job_id = next(j for j in fake.parameters.job_ids if j not in fake.done)
        fake.done.append(job_id)
        fake.beat += 1
        self._unsent.append(row(fake.parameters, job_id, node))
        return job_id

    def beat(self, batch: UUID) -> None:
        self.batches[batch].beat += 1


def facts(node: str) -> NodeFacts:
    return NodeFacts(name=node, cpu_model="c", logical_cpus=2, kernel="k", cpu_energy="rapl", ffmpeg_path="f",
                     ffmpeg_version="v", ffmpeg_configuration="")


def row(parameters: BatchParameters, job_id: str, node: str) -> JobRow:
    job = next(j for j in expand(parameters.campaign) if j.job_id == job_id)
    return JobRow(campaign=job.campaign, run_id="batch-run", job_id=job_id, config_id=job.config_id,
                  repetition=job.repetition, node=node, input_name=job.input.name, encoder=job.encoder,
                  rate_control=job.rate_control, status="ok", attempts=parameters.attempts[job_id],
                  started_at=datetime.now(UTC))


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


CAMPAIGN = parse_campaign({
    "name": "c", "inputs": [{"name": "a", "source": "testsrc2", "size": "320x240", "duration_s": 1}],
    "matrix": {"encoders": ["libx264"], "rate_control": [{"mode": "crf", "values": [20, 25, 30, 35]}]},
    "lost_job_retries": 1,
})


def node(name: str) -> NodeRecord:
    now = time.time()
    return NodeRecord(node=name, address="10.0.0.1", pools=["cpu"], encoders=["libx264"], exporters={},
                      heartbeat_at=now, started_at=now)


def dispatcher(fleet: FakeFleet, clock: Clock, nodes: list[str], **kwargs) -> tuple[Dispatcher, list[JobRow]]:
    recorded: list[JobRow] = []

    def record(r: JobRow) -> JobRow:
        recorded.append(r)
        return r

    d = Dispatcher(CAMPAIGN, expand(CAMPAIGN), "run-1", api=fleet, record=record, clock=clock, **kwargs)
    d.start([node(n) for n in nodes])
    return d, recorded


def lose_the_first_batch(fleet: FakeFleet, clock: Clock, d: Dispatcher) -> UUID:
    """The first batch starts on w1, then its node goes silent for 30 s."""
    (first,) = fleet.batches
    fleet.start(first, "w1")
    d.step()
    clock.now += 30
    return first


def test_rows_come_home_once_each_with_the_nodes_facts():
    fleet, clock = FakeFleet(), Clock()
    d, recorded = dispatcher(fleet, clock, ["w1", "w2"])
    assert len(fleet.batches) == 2  # one batch per live node
    for batch_id, name in zip(fleet.batches, ("w1", "w2")):
        fleet.start(batch_id, name)
        fleet.finish_next_job(batch_id, name)
        fleet.finish_next_job(batch_id, name)
        fleet.batches[batch_id].state = "COMPLETED"
    d.step()
    assert d.done and len(recorded) == 4 and {r.run_id for r in recorded} == {"run-1"}
    assert set(d.reports) == {"w1", "w2"} and {r.node for r in recorded} == {"w1", "w2"}


def test_a_batch_whose_heartbeat_stops_is_crashed_and_its_unfinished_jobs_resent():
    fleet, clock = FakeFleet(), Clock()
    d, recorded = dispatcher(fleet, clock, ["w1"], zombie_after_s=20)
    (first,) = fleet.batches
    fleet.start(first, "w1")
    done = fleet.finish_next_job(first, "w1")
    d.step()
    clock.now += 15
    d.step()
    assert not fleet.crashed  # silent for 15 s: still trusted
    clock.now += 10
    d.step()
    assert fleet.crashed == [first]
    (second,) = [b for b in fleet.batches if b != first]
    resent = fleet.batches[second].parameters
    assert done not in resent.job_ids and len(resent.job_ids) == 3
    in_flight = resent.job_ids[0]  # jobs run in the order sent: this one was running when the node died
    assert resent.attempts == {in_flight: 2, **dict.fromkeys(resent.job_ids[1:], 1)}
    fleet.start(second, "w2")
    for _ in range(3):
        fleet.finish_next_job(second, "w2")
    fleet.batches[second].state = "COMPLETED"
    d.step()
    assert d.done and [r.attempts for r in recorded if r.job_id == in_flight] == [2]


def test_a_live_batch_keeps_beating_and_is_left_alone():
    fleet, clock = FakeFleet(), Clock()
    d, _ = dispatcher(fleet, clock, ["w1"], zombie_after_s=20)
    (batch,) = fleet.batches
    fleet.start(batch, "w1")
    for _ in range(10):  # a long job: no rows for 100 s, but the beat moves
        clock.now += 10
        fleet.beat(batch)
        d.step()
    assert not fleet.crashed and len(fleet.batches) == 1


def test_a_late_row_from_a_batch_declared_lost_is_not_duplicated():
    fleet, clock = FakeFleet(), Clock()
    d, recorded = dispatcher(fleet, clock, ["w1"], zombie_after_s=20)
    first = lose_the_first_batch(fleet, clock, d)
    d.step()  # declared lost, re-sent
    (second,) = [b for b in fleet.batches if b != first]
    fleet.start(second, "w2")
    for _ in range(4):
        fleet.finish_next_job(second, "w2")
    fleet.finish_next_job(first, "w1")  # the zombie wakes up and sends a row of the same job
    d.step()
    assert d.done and len(recorded) == 4 and len({r.job_id for r in recorded}) == 4


def test_jobs_are_given_up_after_lost_job_retries():
    """Only the job in flight spends an attempt when its node is lost; with lost_job_retries=1 a job
    lost twice is given up, and jobs that never started are sent again."""
    fleet, clock = FakeFleet(), Clock()
    d, recorded = dispatcher(fleet, clock, ["w1"], zombie_after_s=20)
    while not d.done:
        (batch,) = [b for b, fake in fleet.batches.items() if fake.state == "SCHEDULED"]
        fleet.start(batch, "w1")  # starts, then dies silently every time
        d.step()
        clock.now += 30
        d.step()
    assert len(fleet.crashed) == 4 * 2
    assert all(r.status == "failed" and r.attempts == 3 for r in recorded)
    assert all("gave up after 2 attempt(s) (lost_job_retries)" in (r.error or "") for r in recorded)


def test_a_batch_no_worker_picks_up_is_cancelled_and_reported():
    fleet, clock = FakeFleet(), Clock()
    d, recorded = dispatcher(fleet, clock, ["w1"], pickup_timeout_s=300)
    clock.now += 299
    d.step()
    assert not fleet.cancelled
    clock.now += 2
    d.step()
    assert len(fleet.cancelled) == 1 and d.done
    assert all("no worker of pool cpu picked the batch up within 300 s" in (r.error or "") for r in recorded)


def test_a_batch_that_ends_failed_has_its_missing_jobs_resent():
    fleet, clock = FakeFleet(), Clock()
    d, _ = dispatcher(fleet, clock, ["w1"])
    (first,) = fleet.batches
    fleet.start(first, "w1")
    fleet.finish_next_job(first, "w1")
    fleet.batches[first].state = "FAILED"
    d.step()
    (second,) = [b for b in fleet.batches if b != first]
    assert len(fleet.batches[second].parameters.job_ids) == 3


def test_heartbeats_are_not_judged_while_the_api_is_away():
    fleet, clock = FakeFleet(), Clock()
    d, _ = dispatcher(fleet, clock, ["w1"], zombie_after_s=20)
    (batch,) = fleet.batches
    fleet.start(batch, "w1")
    d.step()
    fleet.down = True
    for _ in range(6):  # the master restarting for a minute
        clock.now += 10
        d.step()
    fleet.down = False
    clock.now += 5
    fleet.beat(batch)
    d.step()
    assert not fleet.crashed


def test_a_resubmission_the_api_refuses_is_tried_again():
    fleet, clock = FakeFleet(), Clock()
    d, _ = dispatcher(fleet, clock, ["w1"], zombie_after_s=20)
    first = lose_the_first_batch(fleet, clock, d)
    fleet.refuse_submits = 1  # the poll answers, the re-send doesn't
    d.step()
    assert fleet.crashed == [first] and len(fleet.batches) == 1
    d.step()
    assert len(fleet.batches) == 2 and len(fleet.batches[list(fleet.batches)[1]].parameters.job_ids) == 4


def test_jobs_no_live_node_can_run_fail_at_once_as_unschedulable():
    fleet, clock = FakeFleet(), Clock()
    d, recorded = dispatcher(fleet, clock, [])
    assert d.done and not fleet.batches
    assert all((r.error or "").startswith("unschedulable: no live node runs libx264") for r in recorded)
