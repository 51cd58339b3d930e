from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta
from types import SimpleNamespace

import pytest
import yaml

from ffwatt.fleet.nodes import NodeRecord, node_pool, read_worker_heartbeats, sd_targets
from ffwatt.jobs import expand
from ffwatt.settings import REPO
from ffwatt.validation import load_campaign, parse_campaign
from flows.dispatch import plan_batches


def node(name: str, pools: list[str], encoders: list[str], age_s: float = 0) -> NodeRecord:
    now = time.time()
    return NodeRecord(node=name, address=f"10.0.0.{len(name)}", pools=pools, encoders=encoders,
                      exporters={"cpu": f"{name}:9510", "ffmpeg": f"{name}:9506"},
                      heartbeat_at=now - age_s, timeout_s=30, started_at=now - 100)


def jobs(encoders: list[str]):
    return expand(parse_campaign({
        "name": "c", "inputs": [{"name": "a", "source": "testsrc2", "size": "320x240", "duration_s": 1}],
        "matrix": {"encoders": encoders, "rate_control": [{"mode": "crf", "values": [20, 25, 30, 35, 40]}]},
    }))


def test_one_batch_per_live_node_of_each_pool_interleaved():
    all_jobs = jobs(["libx264"])
    plan, unschedulable = plan_batches(all_jobs, [node("a", ["cpu"], ["libx264"]),
                                                  node("b", ["cpu"], ["libx264"]),
                                                  node("dead", ["cpu"], ["libx264"], age_s=60)])
    assert unschedulable == {} and [(pool, n.node) for pool, n, _ in plan] == [("cpu", "a"), ("cpu", "b")]
    (_, _, first), (_, _, second) = plan
    assert [j.value for j in first] == [20, 30, 40] and [j.value for j in second] == [25, 35]


def test_jobs_no_live_node_can_run_are_unschedulable_with_the_reason():
    all_jobs = jobs(["libx264", "h264_nvenc"])
    plan, unschedulable = plan_batches(all_jobs, [node("a", ["cpu"], ["libx264"])])
    assert sum(len(js) for pool, _, js in plan if pool == "cpu") == 5 and len(unschedulable) == 5
    reason = next(iter(unschedulable.values()))
    assert "no live node runs h264_nvenc (pool nvidia)" in reason and "live pools: cpu" in reason


def test_sd_targets_list_live_nodes_only():
    groups = sd_targets([node("a", ["cpu"], ["libx264"]), node("gone", ["cpu"], [], age_s=60)])
    assert {(g["labels"]["node"], g["labels"]["exporter"]) for g in groups} == {("a", "cpu"), ("a", "ffmpeg")}
    assert groups[0]["targets"] == ["a:9510"]
    assert groups[0]["labels"] == {"node": "a", "exporter": "cpu", "pool": "cpu"}


def test_a_node_has_one_pool_label_whatever_it_serves():
    assert node_pool(["cpu", "nvidia"]) == "nvidia" and node_pool(["nvidia", "cpu"]) == "nvidia"
    assert node_pool(["cpu"]) == "cpu" and node_pool(["vaapi", "qsv"]) == "qsv" and node_pool([]) == "none"


def test_prefect_yaml_runs_the_demo_campaign_on_the_pools():
    deployments = {d["name"]: d for d in yaml.safe_load((REPO / "deployments/prefect.yaml").read_text())
                   ["deployments"]}
    quick = deployments["quick"]
    assert quick["parameters"]["dispatch"] == "pools"
    assert parse_campaign(quick["parameters"]["campaign"]) == load_campaign(REPO / "deployments/campaigns/quick.yaml")
    assert {d["work_pool"]["name"] for d in deployments.values()} >= {"ffwatt-master", "ffwatt-cpu", "ffwatt-nvidia"}


def test_every_pool_an_encoder_can_need_has_its_batch_deployment_and_the_stack_creates_it():
    """amf and vulkan encoders were planned onto node-batch deployments that didn't exist."""
    from ffwatt.encoders import NODE_POOLS, PROFILES
    from ffwatt.fleet.client import work_pool
    from master.stack import POOLS

    batches = {d["name"]: d for d in yaml.safe_load((REPO / "deployments/prefect.yaml").read_text())["deployments"]
               if d["entrypoint"] == "flows/batch.py:node_batch"}
    assert {profile.pool for profile in PROFILES.values()} <= set(NODE_POOLS) == set(batches)
    assert all(batches[pool]["work_pool"]["name"] == work_pool(pool) for pool in NODE_POOLS)
    assert set(POOLS) == {"master", *NODE_POOLS}


def test_prefect_yaml_runs_the_regression_campaign_nightly_with_its_schedule_off():
    deployments = {d["name"]: d for d in yaml.safe_load((REPO / "deployments/prefect.yaml").read_text())
                   ["deployments"]}
    nightly = deployments["nightly"]
    assert nightly["entrypoint"] == "flows/regression.py:regression_flow"
    assert [s["active"] for s in nightly["schedules"]] == [False]
    assert parse_campaign(nightly["parameters"]["campaign"]) == load_campaign(
        REPO / "deployments/campaigns/regression.yaml")
    assert load_campaign(REPO / "deployments/campaigns/regression.yaml").repetitions >= 3  # Welch needs spread


class _BeatingWorkers:
    """Prefect's worker listing as the server gives it: newest heartbeat first, paged by offset.
    While it is read, the worker at the bottom beats (moving to the top) after each page, as
    hundreds of live nodes do, so an offset scan alone skips it."""

    def __init__(self, count: int) -> None:
        start = datetime.now(UTC) - timedelta(seconds=20)
        self.beats = {f"n{i:04d}-cpu": start + timedelta(milliseconds=i) for i in range(count)}

    def read_workers_for_work_pool(self, pool: str, worker_filter=None, offset: int = 0, limit: int = 200):
        after = worker_filter.last_heartbeat_time.after_ if worker_filter is not None else None
        listed = sorted(((at, name) for name, at in self.beats.items() if after is None or at >= after), reverse=True)
        page = [SimpleNamespace(name=name, last_heartbeat_time=at, heartbeat_interval_seconds=10)
                for at, name in listed[offset:offset + limit]]
        bottom = min(self.beats, key=self.beats.__getitem__)
        self.beats[bottom] = datetime.now(UTC)
        return page


def test_workers_that_beat_while_the_listing_is_read_are_not_missed():
    workers = _BeatingWorkers(650)
    beats = read_worker_heartbeats(workers, {"cpu"})  # type: ignore[arg-type]
    assert sorted(beats) == sorted(workers.beats)
    assert {timeout for _, timeout in beats.values()} == {30.0}


@pytest.mark.e2e  # a Prefect server
def test_discovery_reads_the_node_list_at_most_every_two_seconds(prefect_server: dict[str, str]):
    """Targets every 2 s, /metrics every second, /nodes when asked: one read of the registry serves them
    all for NODES_MAX_AGE_S, through the process's one client; then it is read again."""
    from ffwatt.fleet.client import api_client
    from master.discovery import NODES_MAX_AGE_S, NodeList

    now = [0.0]
    with api_client(prefect_server) as client:
        nodes = NodeList(client, clock=lambda: now[0])
        first = nodes()
        now[0] += NODES_MAX_AGE_S - 0.1
        assert nodes() is first
        now[0] += 0.1
        again = nodes()
        assert again is not first and again == first  # read again (the registry didn't change meanwhile)


@pytest.mark.e2e  # a Prefect server
def test_a_poll_reads_the_fleet_while_jobs_wait_with_no_batch_open(prefect_server: dict[str, str]):
    """Jobs whose nodes are all offline wait with no batch open; the poll must still read the nodes, or
    one coming back is never seen and the jobs end unschedulable."""
    from ffwatt.fleet.client import api_client
    from ffwatt.fleet.nodes import variable_name
    from flows.fleet_api import PrefectFleetAPI

    record = node("back", [], ["libx264"])  # no pools: no work pool to read heartbeats from
    with api_client(prefect_server) as client:
        client.request("POST", "/variables/", json={
            "name": variable_name(record.node),
            "value": record.model_dump(mode="json", exclude={"heartbeat_at", "timeout_s"})})
        try:
            poll = PrefectFleetAPI(client).poll([], [], ["job-waiting"])
        finally:
            client.request("DELETE", f"/variables/name/{variable_name(record.node)}")
    assert poll.nodes is not None and [n.node for n in poll.nodes] == ["back"]


@pytest.mark.e2e  # a Prefect server
def test_a_batch_sent_again_under_its_key_gets_the_flow_run_it_already_made(prefect_server: dict[str, str]):
    """A submit whose answer was lost (a 500 after the commit, a dropped connection) is sent again; Prefect
    gives the run it made for that key, so the node doesn't run the batch twice. A new key, a new run."""
    from prefect.client.schemas.actions import DeploymentCreate

    from ffwatt.fleet.client import api_client
    from ffwatt.fleet.protocol import BatchParameters
    from ffwatt.validation import parse_campaign
    from flows.fleet_api import PrefectFleetAPI

    campaign = parse_campaign({"name": "keyed", "inputs": [{"name": "a", "source": "testsrc2", "duration_s": 1}],
                               "matrix": {"encoders": ["libx264"], "rate_control": [{"mode": "crf", "values": [30]}]}})
    parameters = BatchParameters(campaign=campaign, job_ids=["j1"], run_id="run-keyed", attempts={"j1": 1})
    with api_client(prefect_server) as client:
        flow_id = client.create_flow_from_name("node-batch")
        deployment_id = client.create_deployment(**DeploymentCreate(
            name="keyed-pool", flow_id=flow_id, entrypoint="flows/batch.py:node_batch").model_dump(
                include={"name", "flow_id", "entrypoint"}))
        try:
            api = PrefectFleetAPI(client)
            record = node("w1", ["keyed-pool"], ["libx264"])
            first = api.submit("keyed-pool", record, parameters, "run-keyed:1")
            assert api.submit("keyed-pool", record, parameters, "run-keyed:1") == first
            assert api.submit("keyed-pool", record, parameters, "run-keyed:2") != first
        finally:
            client.delete_deployment(deployment_id)
