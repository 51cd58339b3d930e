"""The fleet's cadence: nodes beat and poll slower as the fleet grows, so the master's API stays under
its budget; a node takes the master's cadence, and the master's liveness follows what each node reports."""

from __future__ import annotations

import asyncio
import contextlib

import httpx
import pytest

from ffwatt.fleet.cadence import Cadence, cadence_for, liveness_calls_per_s
from ffwatt.settings import Settings


def _calls_per_s(workers: int, nodes: int, interval_s: float) -> float:
    """What the fleet really costs at ``interval_s``, counted call by call: each worker's beat and poll per
    interval and pool read per 300 s; each agent's record and cadence read every 6 beats."""
    return workers * (1 / interval_s + 1 / interval_s + 1 / 300) + nodes * 2 / (6 * interval_s)


def test_a_small_fleet_keeps_the_nodes_own_intervals():
    assert cadence_for(10, 10, budget_rps=50, heartbeat_s=10, poll_s=10) == Cadence(
        heartbeat_s=10, poll_s=10.0, workers=16, budget_rps=50)


def test_a_thousand_nodes_beat_slow_enough_for_the_budget():
    cadence = cadence_for(1000, 1000, budget_rps=50, heartbeat_s=10, poll_s=10)
    # Worked out for 1024 workers and nodes: 50 - 1024/300 = 46.59 calls/s left for beats, polls and
    # reads; 2*1024 + 2*1024/6 = 2389.3 calls an interval; 2389.3 / 46.59 = 51.3 -> 52 s.
    assert (cadence.heartbeat_s, cadence.poll_s) == (52, 52.0)
    assert _calls_per_s(1000, 1000, cadence.heartbeat_s) <= 50
    assert _calls_per_s(1000, 1000, cadence.heartbeat_s - 10) > 50  # and not much slower than it must


def test_the_calls_the_cadence_bounds_are_the_fleets_calls_counted_one_by_one():
    # 10 000 nodes at the 300 s cap: 2*10 000/300 + 10 000/300 + 10 000*2/(6*300) = 111.1 calls/s.
    assert liveness_calls_per_s(300, 10_000, 10_000) == pytest.approx(_calls_per_s(10_000, 10_000, 300))
    assert liveness_calls_per_s(300, 10_000, 10_000) == pytest.approx(111.1, abs=0.1)


def test_the_cadence_changes_only_as_the_fleet_doubles():
    rule = {"budget_rps": 50.0, "heartbeat_s": 10, "poll_s": 10.0}
    assert cadence_for(600, 600, **rule) == cadence_for(1000, 1000, **rule)  # type: ignore[arg-type]
    assert cadence_for(1100, 1100, **rule).heartbeat_s > cadence_for(1000, 1000, **rule).heartbeat_s  # type: ignore[arg-type]


def test_a_fleet_the_budget_cant_hold_beats_at_the_slowest_allowed():
    assert cadence_for(20_000, 20_000, budget_rps=50, heartbeat_s=10, poll_s=10).heartbeat_s == 300


def test_a_node_is_never_faster_than_its_own_settings():
    published = Cadence(heartbeat_s=10, poll_s=10.0)
    assert published.at_least(30, 60.0).model_dump(include={"heartbeat_s", "poll_s"}) == {
        "heartbeat_s": 30, "poll_s": 60.0}


@pytest.mark.e2e  # a Prefect server
def test_the_master_publishes_the_cadence_a_node_takes_and_its_liveness_follows(prefect_server: dict[str, str]):
    """300 registered nodes: the discovery service publishes a 25 s cadence; an agent takes it, its worker's
    beat reports it, and the master gives that worker three of those beats before it is offline."""
    from agent.node import _follow_cadence
    from agent.warm import Pace, WarmWorker
    from ffwatt.fleet.cadence import CADENCE_VARIABLE, read_cadence
    from ffwatt.fleet.client import api_client, ensure_pools, work_pool
    from ffwatt.fleet.nodes import NodeRecord, read_worker_heartbeats, variable_name
    from master.discovery import CadenceKeeper, NodeList

    names = [f"cadence-{i:03d}" for i in range(300)]
    ensure_pools(prefect_server, ["cpu"])
    with api_client(prefect_server) as client:
        try:
            for name in names:
                record = NodeRecord(node=name, address="127.0.0.1", pools=["cpu"], encoders=["libx264"],
                                    exporters={}, started_at=0.0)
                client.request("POST", "/variables/", json={
                    "name": variable_name(name),
                    "value": record.model_dump(mode="json", exclude={"heartbeat_at", "timeout_s"})})
            keeper = CadenceKeeper(client, budget_rps=50, heartbeat_s=10, poll_s=10)
            NodeList(client, on_read=keeper)()
            # 300 -> 512 workers and nodes: 50 - 512/300 = 48.29 calls/s left; 2*512 + 2*512/6 = 1194.7
            # calls an interval; 1194.7 / 48.29 = 24.7 -> 25 s.
            published = read_cadence(client)
            assert published is not None and (published.heartbeat_s, published.poll_s) == (25, 25.0)

            pace = Pace(heartbeat_s=10, poll_s=10.0)
            _follow_cadence(pace, Settings(worker_heartbeat_s=10, worker_poll_s=10.0))
            assert (pace.heartbeat_s, pace.poll_s) == (25, 25.0)

            async def beat() -> None:
                async with WarmWorker(work_pool_name=work_pool("cpu"), name="cadence-000-cpu",
                                      heartbeat_interval_seconds=10, create_pool_if_not_found=True,
                                      pace=pace) as worker:
                    await worker.sync_with_backend()

            asyncio.run(beat())
            beats = read_worker_heartbeats(client, {"cpu"})
            assert beats["cadence-000-cpu"][1] == 3 * 25
        finally:
            for name in [*(variable_name(n) for n in names), CADENCE_VARIABLE]:
                with contextlib.suppress(httpx.HTTPStatusError):  # what an assertion above left unwritten
                    client.request("DELETE", f"/variables/name/{name}")
