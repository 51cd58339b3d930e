"""The dispatcher's failure cases, in milliseconds: an in-memory fleet behind the FleetAPI seam
and hand-moved clocks. The namespace tests (test_fleet.py) prove the same against real hosts."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any
from uuid import UUID, uuid4

from ffwatt.campaign import Campaign
from ffwatt.errors import ApiUnavailable
from ffwatt.fleet.nodes import NodeRecord
from ffwatt.fleet.protocol import BatchParameters, BatchState, NodeReport, Poll
from ffwatt.jobs import expand
from ffwatt.nodefacts import NodeFacts
from ffwatt.schema import JobRow
from ffwatt.validation import parse_campaign
from flows.dispatch import Dispatcher, Submission, plan_batches

TIMEOUT_S = 30.0  # three missed 10 s worker heartbeats


class Clock:
    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


@dataclass
class FakeBatch:
    pool: str
    node: str
    parameters: BatchParameters
    state: str = "SCHEDULED"
    done: list[str] = field(default_factory=list)  # jobs whose rows it sent


class FakeFleet:
    """The Prefect API as the dispatcher sees it: nodes whose workers beat while the test says so,
    batches the test moves by hand."""

    def __init__(self, clock: Clock, wall: Clock, nodes: list[str]) -> None:
        self.clock, self.wall = clock, wall
        self.nodes = {name: node(name, wall.now) for name in nodes}
        self.silent: set[str] = set()  # nodes whose workers stopped beating
        self.batches: dict[UUID, FakeBatch] = {}
        self.crashed: list[UUID] = []
        self.cancelled: list[UUID] = []
        self.woken: list[str] = []
        self.down = False
        self.stall_s = 0.0  # the next poll answers only this much later (the client retrying meanwhile)
        self.beat_every_s = 0.0  # workers beat at these intervals (0: all the time)
        self.nodes_every_s = 0.0  # a poll reads the nodes only this often, as the real one does (0: every poll)
        self._nodes_read_at = -1e18
        self.refuse_submits = 0
        self.lose_answers = 0
        self.keys: dict[str, UUID] = {}
        self._unsent: list[JobRow] = []
        self._reports: list[NodeReport] = []

    def advance(self, seconds: float) -> None:
        self.clock.now += seconds
        self.wall.now += seconds
        for name, record in self.nodes.items():
            if name not in self.silent:
                record.heartbeat_at = self.wall.now - (self.wall.now % self.beat_every_s if self.beat_every_s else 0)

    # the FleetAPI
    def submit(self, pool: str, node: NodeRecord, parameters: BatchParameters, key: str) -> UUID:
        if self.down or self.refuse_submits:
            self.refuse_submits = max(0, self.refuse_submits - 1)
            raise ApiUnavailable("connection refused")
        if key not in self.keys:  # as Prefect's idempotency key: the same key, the same flow run
            self.keys[key] = uuid4()
            self.batches[self.keys[key]] = FakeBatch(pool, node.node, parameters)
        self.woken.append(node.node)
        if self.lose_answers:  # made, but the answer lost on its way back
            self.lose_answers -= 1
            raise ApiUnavailable("500 Internal Server Error")
        return self.keys[key]

    def submit_all(self, batches: list[Submission]) -> list[UUID | ApiUnavailable]:
        outcomes: list[UUID | ApiUnavailable] = []
        for batch in batches:
            try:
                outcomes.append(self.submit(batch.pool, batch.node, batch.parameters, batch.key))
            except ApiUnavailable as exc:
                outcomes.append(exc)
        return outcomes

    def poll(self, open_batches: list[UUID], all_batches: list[UUID], missing_jobs: list[str]) -> Poll:
        if self.down:
            raise ApiUnavailable("connection refused")
        if self.stall_s:
            self.advance(self.stall_s)
            self.stall_s = 0.0
        rows = [row for row in self._unsent if row.job_id in missing_jobs]
        nodes = None
        if self.wall.now - self._nodes_read_at >= self.nodes_every_s:
            nodes, self._nodes_read_at = [r.model_copy() for r in self.nodes.values()], self.wall.now
        poll = Poll(states={b: BatchState(self.batches[b].state) for b in open_batches}, rows=rows,
                    reports=self._reports, nodes=nodes)
        self._unsent, self._reports = [], []
        return poll

    def crash(self, batch: UUID, message: str) -> None:
        self.crashed.append(batch)
        self.batches[batch].state = "CRASHED"

    def cancel(self, batch: UUID, message: str) -> None:
        self.cancelled.append(batch)
        self.batches[batch].state = "CANCELLED"

    # the nodes
    def start(self, batch: UUID) -> None:
        fake = self.batches[batch]
        fake.state = "RUNNING"
        self._reports.append(NodeReport(facts=facts(fake.node), idle_baseline=None))

    def finish_next_job(self, batch: UUID) -> str:
        fake = self.batches[batch]
        job_id = next(j for j in fake.parameters.job_ids if j not in fake.done)
        fake.done.append(job_id)
        self._unsent.append(row(fake.parameters, job_id, fake.node))
        return job_id

    def finish(self, batch: UUID) -> None:
        while len(self.batches[batch].done) < len(self.batches[batch].parameters.job_ids):
            self.finish_next_job(batch)
        self.batches[batch].state = "COMPLETED"

    def on(self, name: str) -> list[UUID]:
        return [b for b, fake in self.batches.items() if fake.node == name and fake.state in ("SCHEDULED", "RUNNING")]


def node(name: str, now: float, encoders: tuple[str, ...] = ("libx264",)) -> NodeRecord:
    return NodeRecord(node=name, address="10.0.0.1", pools=["cpu"], encoders=list(encoders), exporters={},
                      started_at=now, queue=f"node-{name}", heartbeat_at=now, timeout_s=TIMEOUT_S)


def facts(name: str) -> NodeFacts:
    return NodeFacts(name=name, cpu_model="c", logical_cpus=2, kernel="k", cpu_energy="rapl", ffmpeg_path="f",
                     ffmpeg_version="v", ffmpeg_configuration="")


def row(parameters: BatchParameters, job_id: str, name: str) -> JobRow:
    job = next(j for j in expand(parameters.campaign) if j.job_id == job_id)
    return JobRow(campaign=job.campaign, run_id="batch-run", job_id=job_id, config_id=job.config_id,
                  repetition=job.repetition, node=name, input_name=job.input.name, encoder=job.encoder,
                  rate_control=job.rate_control, status="ok", attempts=parameters.attempts[job_id],
                  started_at=datetime.now(UTC))


CAMPAIGN = parse_campaign({
    "name": "c", "inputs": [{"name": "a", "source": "testsrc2", "size": "320x240", "duration_s": 1}],
    "matrix": {"encoders": ["libx264"], "rate_control": [{"mode": "crf", "values": [20, 25, 30, 35]}]},
    "lost_job_retries": 1,
})


def dispatcher(nodes: list[str], campaign: Campaign = CAMPAIGN, **kwargs: Any
               ) -> tuple[FakeFleet, Dispatcher, list[JobRow]]:
    fleet = FakeFleet(Clock(1000.0), Clock(1_800_000_000.0), nodes)
    recorded: list[JobRow] = []

    def record(r: JobRow) -> JobRow:
        recorded.append(r)
        return r

    d = Dispatcher(campaign, expand(campaign), "run-1", api=fleet, record=record, clock=fleet.clock,
                   wall=fleet.wall, **kwargs)
    d.start(list(fleet.nodes.values()))
    return fleet, d, recorded


def test_one_batch_per_live_node_sent_to_it_and_woken():
    fleet, d, recorded = dispatcher(["w1", "w2"])
    assert sorted(fake.node for fake in fleet.batches.values()) == ["w1", "w2"] and sorted(fleet.woken) == ["w1", "w2"]
    for batch in list(fleet.batches):
        fleet.start(batch)
        fleet.finish(batch)
    d.step()
    assert d.done and len(recorded) == 4 and {r.run_id for r in recorded} == {"run-1"}
    assert set(d.reports) == {"w1", "w2"} and {r.node for r in recorded} == {"w1", "w2"}


def test_planning_deals_jobs_round_robin_over_the_nodes_that_can_run_them():
    matrix = {"encoders": [{"name": "libx264"}, {"name": "libx265"}],
              "rate_control": [{"mode": "crf", "values": [20, 30]}]}
    jobs = expand(parse_campaign(CAMPAIGN.model_dump(mode="json") | {"matrix": matrix}))
    now = 1_800_000_000.0
    nodes = [node("both", now, ("libx264", "libx265")), node("x264", now), node("gone", now - 100)]
    batches, unschedulable = plan_batches(jobs, nodes, now)
    assert unschedulable == {}
    assigned = {n.node: [j.encoder for j in js] for _, n, js in batches}
    assert "gone" not in assigned and sorted(assigned["x264"]) == ["libx264"]
    assert sorted(assigned["both"]) == ["libx264", "libx265", "libx265"]


def test_a_batch_whose_node_goes_silent_is_crashed_and_its_jobs_planned_again():
    fleet, d, _ = dispatcher(["w1", "w2"])
    (on_w1,) = fleet.on("w1")
    fleet.start(on_w1)
    done = fleet.finish_next_job(on_w1)
    d.step()
    fleet.silent.add("w1")  # the node dies: its workers stop beating
    fleet.advance(25)
    d.step()
    assert not fleet.crashed  # silent for 25 s: still trusted
    fleet.advance(10)
    d.step()
    assert fleet.crashed == [on_w1]
    resent = [fake.parameters for b, fake in fleet.batches.items() if b != on_w1 and fake.node == "w2"
              and fake.state == "SCHEDULED"]
    (parameters,) = resent[-1:]
    assert done not in parameters.job_ids and len(parameters.job_ids) == 1
    in_flight = parameters.job_ids[0]  # jobs run in the order sent: this one was running when the node died
    assert parameters.attempts == {in_flight: 2}


def test_a_node_that_keeps_beating_keeps_its_long_batch():
    fleet, d, _ = dispatcher(["w1"])
    (batch,) = fleet.batches
    fleet.start(batch)
    for _ in range(20):  # a long job: no rows for 200 s, but the workers beat
        fleet.advance(10)
        d.step()
    assert not fleet.crashed and len(fleet.batches) == 1


def test_nodes_read_a_while_ago_are_judged_as_of_then():
    """The nodes are read every few seconds, not at every poll. Judged by the clock at a later poll, a
    node beating every 2 s (6 s timeout) read 4.9 s ago looks 6.9 s silent; as of its reading it was
    only as old as its last beat."""
    fleet, d, _ = dispatcher(["w1"])
    fleet.nodes["w1"].timeout_s = 6.0
    fleet.beat_every_s, fleet.nodes_every_s = 2.0, 5.0
    (batch,) = fleet.batches
    fleet.start(batch)
    for _ in range(600):  # a minute of polls every 0.1 s
        fleet.advance(0.1)
        d.step()
    assert not fleet.crashed
    fleet.silent.add("w1")  # and when it does die, that is still seen
    for _ in range(150):
        fleet.advance(0.1)
        d.step()
    assert fleet.crashed == [batch]


def test_a_node_whose_record_is_gone_is_judged_by_its_last_heartbeats():
    """An agent stopped mid-batch deregisters (its record is deleted) and its batch dies with it (Prefect
    leaves the run Running): a node missing from the registry is judged as it was last seen."""
    fleet, d, _ = dispatcher(["w1", "w2"])
    (on_w1,) = fleet.on("w1")
    fleet.start(on_w1)
    d.step()
    del fleet.nodes["w1"]
    fleet.advance(25)
    d.step()
    assert not fleet.crashed
    fleet.advance(10)
    d.step()
    assert fleet.crashed == [on_w1]


def test_a_late_row_from_a_batch_declared_lost_is_not_duplicated():
    fleet, d, recorded = dispatcher(["w1", "w2"])
    (on_w1,) = fleet.on("w1")
    fleet.start(on_w1)
    fleet.silent.add("w1")
    fleet.advance(40)
    d.step()  # declared lost, planned again on w2
    for batch in fleet.on("w2"):
        fleet.start(batch)
        fleet.finish(batch)
    fleet.finish_next_job(on_w1)  # the zombie wakes up and sends a row of the same job
    d.step()
    assert d.done and len(recorded) == 4 and len({r.job_id for r in recorded}) == 4


def test_jobs_are_given_up_after_lost_job_retries():
    """Only the job in flight spends an attempt when its node is lost; with lost_job_retries=1 a job
    lost twice is given up, and jobs that never started are sent again."""
    fleet, d, recorded = dispatcher(["w1", "w2"])
    lost_while_running = 0
    while not d.done:
        batch = next(b for name in ("w1", "w2") for b in fleet.on(name))
        victim = fleet.batches[batch].node
        fleet.start(batch)  # starts, then its node goes silent every time
        d.step()
        fleet.silent.add(victim)
        fleet.advance(40)
        d.step()
        lost_while_running += batch in fleet.crashed
        fleet.silent.discard(victim)  # and comes back, to be lost again
        fleet.advance(1)
        d.step()
    assert lost_while_running == 4 * 2
    assert all(r.status == "failed" and r.attempts == 3 for r in recorded)
    assert all("gave up after 2 attempt(s) (lost_job_retries)" in (r.error or "") for r in recorded)


def test_with_no_live_node_left_the_unfinished_jobs_fail_as_unschedulable_after_the_grace():
    fleet, d, recorded = dispatcher(["w1"], node_grace_s=120)
    (batch,) = fleet.batches
    fleet.start(batch)
    fleet.finish_next_job(batch)
    fleet.silent.add("w1")
    fleet.advance(40)
    d.step()
    d.step()
    fleet.advance(119)
    d.step()
    assert not d.done  # the jobs wait for their node to come back, for the grace
    fleet.advance(2)
    d.step()
    assert d.done and [r.status for r in recorded].count("ok") == 1
    assert all((r.error or "").startswith("unschedulable: no live node runs libx264")
               and "waited 121 s for one to come back; the grace is 120 s" in r.error
               for r in recorded if r.status == "failed")


def test_jobs_waiting_for_their_offline_node_go_to_it_when_it_is_back():
    fleet, d, recorded = dispatcher(["w1"])
    (batch,) = fleet.batches
    fleet.start(batch)
    fleet.silent.add("w1")
    fleet.advance(40)
    d.step()
    assert fleet.crashed == [batch] and len(fleet.batches) == 1
    fleet.silent.discard("w1")
    fleet.advance(5)
    d.step()
    (again,) = fleet.on("w1")
    fleet.start(again)
    fleet.finish(again)
    d.step()
    assert d.done and all(r.status == "ok" for r in recorded)


def test_a_batch_its_node_never_takes_up_goes_elsewhere():
    fleet, d, _ = dispatcher(["w1", "w2"], pickup_timeout_s=300)
    (on_w1,) = fleet.on("w1")
    (on_w2,) = fleet.on("w2")
    fleet.start(on_w2)
    fleet.advance(299)
    d.step()
    assert not fleet.cancelled
    fleet.advance(2)
    d.step()
    assert fleet.cancelled == [on_w1]
    (moved,) = [fake for fake in fleet.batches.values() if fake.node == "w2" and fake.state == "SCHEDULED"]
    assert moved.parameters.job_ids == fleet.batches[on_w1].parameters.job_ids
    assert set(moved.parameters.attempts.values()) == {1}


def test_a_batch_that_ends_failed_has_its_missing_jobs_planned_again():
    fleet, d, _ = dispatcher(["w1"])
    (first,) = fleet.batches
    fleet.start(first)
    fleet.finish_next_job(first)
    fleet.batches[first].state = "FAILED"
    d.step()
    (second,) = fleet.on("w1")
    assert len(fleet.batches[second].parameters.job_ids) == 3


def test_nodes_are_not_judged_while_the_api_is_away_nor_right_after():
    fleet, d, _ = dispatcher(["w1"])
    (batch,) = fleet.batches
    fleet.start(batch)
    d.step()
    fleet.down = True
    fleet.silent.add("w1")  # its heartbeats can't reach the API either
    for _ in range(6):  # the master restarting for a minute
        fleet.advance(10)
        d.step()
    fleet.down = False
    d.step()  # back: the node's last heartbeat is a minute old, but so is the API's absence
    assert not fleet.crashed
    fleet.advance(35)  # its client backs off before trying again: still not judged
    d.step()
    assert not fleet.crashed
    fleet.silent.discard("w1")
    fleet.advance(5)
    d.step()
    assert not fleet.crashed


def test_an_outage_the_clients_retries_hid_in_one_poll_is_still_an_outage(caplog):
    """Prefect's client retries a refused call for up to a minute, so a restart of the master can pass
    inside one poll that raises nothing: its nodes' heartbeats couldn't reach the API either."""
    fleet, d, _ = dispatcher(["w1"])
    (batch,) = fleet.batches
    fleet.start(batch)
    d.step()
    fleet.silent.add("w1")
    fleet.stall_s = 35  # the master restarting while one poll waits in the client's back-off
    with caplog.at_level(logging.WARNING, logger="ffwatt.dispatch"):
        d.step()
    assert not fleet.crashed
    assert "Prefect API answered only after 35 s" in caplog.text
    fleet.advance(35)  # its heartbeats back off as long: still within a timeout and a back-off
    d.step()
    assert not fleet.crashed
    fleet.advance(40)  # and it never beat again: dead after all
    d.step()
    assert fleet.crashed == [batch]


def test_an_outage_is_logged_when_it_begins_and_when_it_ends(caplog):
    fleet, d, _ = dispatcher(["w1"])
    fleet.down = True
    with caplog.at_level(logging.WARNING, logger="ffwatt.dispatch"):
        for _ in range(5):
            fleet.advance(10)
            d.step()
        fleet.down = False
        d.step()
    lines = [r.getMessage() for r in caplog.records]
    assert len(lines) == 2, lines
    assert lines[0].startswith("Prefect API unavailable (connection refused)")
    assert lines[1].startswith("Prefect API back after 40 s away")


def test_a_submission_the_api_refuses_is_tried_again():
    fleet = FakeFleet(Clock(1000.0), Clock(1_800_000_000.0), ["w1"])
    fleet.refuse_submits = 1
    d = Dispatcher(CAMPAIGN, expand(CAMPAIGN), "run-1", api=fleet, record=lambda r: r, clock=fleet.clock,
                   wall=fleet.wall)
    d.start(list(fleet.nodes.values()))
    assert fleet.batches == {}
    d.step()
    assert len(fleet.batches) == 1 and len(next(iter(fleet.batches.values())).parameters.job_ids) == 4


def test_a_submission_the_api_made_but_whose_answer_was_lost_makes_no_second_flow_run():
    fleet = FakeFleet(Clock(1000.0), Clock(1_800_000_000.0), ["w1"])
    fleet.lose_answers = 1
    d = Dispatcher(CAMPAIGN, expand(CAMPAIGN), "run-1", api=fleet, record=lambda r: r, clock=fleet.clock,
                   wall=fleet.wall)
    d.start(list(fleet.nodes.values()))
    d.step()  # sent again, under its key
    assert len(fleet.batches) == 1 and list(d._batches) == list(fleet.batches)
    for flow_run_id in fleet.batches:
        fleet.finish(flow_run_id)
    d.run(sleep=fleet.advance)
    assert d.done and all(a == 1 for a in d.attempts.values())


def test_jobs_no_live_node_can_run_fail_at_once_as_unschedulable():
    fleet, d, recorded = dispatcher([])
    assert d.done and not fleet.batches
    assert all((r.error or "").startswith("unschedulable: no live node runs libx264") for r in recorded)


def test_an_api_too_busy_to_record_heartbeats_does_not_get_its_nodes_declared_lost():
    names = [f"w{i}" for i in range(20)]
    campaign = parse_campaign(CAMPAIGN.model_dump(mode="json") | {"matrix": {
        "encoders": ["libx264"], "rate_control": [{"mode": "crf", "values": list(range(10, 30))}]}})
    fleet, d, _ = dispatcher(names, campaign)
    for batch in list(fleet.batches):
        fleet.start(batch)
    d.step()
    fleet.silent.update(names)  # every heartbeat reaches the API 50 s late...
    fleet.advance(50)
    for name in names:
        fleet.nodes[name].heartbeat_at = fleet.wall.now - 50 + (int(name[1:]) % 10)  # ...staggered as they beat
    d.step()
    assert not fleet.crashed
    fleet.silent.difference_update(names[1:])  # the API catches up; w0 alone stays silent: it is dead
    fleet.advance(35)
    d.step()
    assert [fleet.batches[b].node for b in fleet.crashed] == ["w0"]
