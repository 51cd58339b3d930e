"""`ffwatt agent start` against a real Prefect server: one agent per home, and a restarted agent
telling the master which batches died with the one before it."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING
from uuid import UUID

import httpx
import pytest

from agent.node import _take_over
from ffwatt.errors import ServiceError
from ffwatt.fleet.client import api_client, ensure_pools
from ffwatt.fleet.nodes import NodeRecord, list_nodes, node_queue, variable_name
from ffwatt.fleet.services import service_status
from ffwatt.processes import incarnation, incarnation_runs
from testbed.net import free_ports_env
from tests.conftest import ffwatt_cli

if TYPE_CHECKING:
    from prefect.client.orchestration import SyncPrefectClient

pytestmark = pytest.mark.e2e  # a Prefect server

FFWATT = ffwatt_cli()


def agent_env(home: Path, node: str, server: dict[str, str]) -> dict[str, str]:
    return {**os.environ, **server, "FFWATT_HOME": str(home), "FFWATT_NODE": node, **free_ports_env()}


@pytest.fixture
def agent(tmp_path: Path, prefect_server: dict[str, str]) -> Iterator[tuple[subprocess.Popen[bytes], dict[str, str]]]:
    """An agent serving node ``solo``, online; stopped (and so deregistered) at the end."""
    env = agent_env(tmp_path / "home", "solo", prefect_server)
    with (tmp_path / "agent.log").open("wb") as log:
        process = subprocess.Popen([FFWATT, "agent", "start", "--master", prefect_server["PREFECT_API_URL"]], env=env,
                                   stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        deadline = time.monotonic() + 180
        with api_client(prefect_server) as client:
            while not any(n.node == "solo" and n.incarnation == incarnation(process.pid) and n.online()
                          for n in list_nodes(client)):
                assert process.poll() is None and time.monotonic() < deadline, (tmp_path / "agent.log").read_text()
                time.sleep(0.5)
        yield process, env
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGTERM)  # the session this test started
            try:
                process.wait(60)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait()


def test_a_second_agent_on_the_same_home_fails_at_once_and_stops_nothing(
        agent: tuple[subprocess.Popen[bytes], dict[str, str]], prefect_server: dict[str, str]):
    first, env = agent
    run_dir = Path(env["FFWATT_HOME"]) / "run"
    exporters = {name: service_status(run_dir, name) for name in ("exporter-cpu", "exporter-ffmpeg")}
    assert all(status.running for status in exporters.values())
    second = subprocess.run([FFWATT, "agent", "start", "--master", prefect_server["PREFECT_API_URL"]], env=env,
                            capture_output=True, text=True, timeout=120)
    assert second.returncode != 0 and "Traceback" not in second.stderr
    assert second.stderr.strip().splitlines()[-1] == (
        f"error: another agent (pid {first.pid}, node solo) already serves FFWATT_HOME={env['FFWATT_HOME']}; "
        "stop it first, or give this one its own FFWATT_HOME")
    assert first.poll() is None
    for name, status in exporters.items():
        assert service_status(run_dir, name) == status, f"{name} was stopped or replaced"
    with api_client(prefect_server) as client:
        (record,) = [n for n in list_nodes(client) if n.node == "solo"]
    assert record.incarnation == incarnation(first.pid)  # still the first's record


def _record(client: SyncPrefectClient, node: str, agent: str) -> None:
    """The master's record of ``node``, naming the agent process ``agent`` (an incarnation)."""
    record = NodeRecord(node=node, address="127.0.0.1", pools=["cpu"], encoders=["libx264"], exporters={},
                        started_at=time.time(), queue=node_queue(node), incarnation=agent)
    with contextlib.suppress(httpx.HTTPStatusError):  # 404: there was none
        client.request("DELETE", f"/variables/name/{variable_name(node)}")
    client.request("POST", "/variables/", json={
        "name": variable_name(node), "value": record.model_dump(mode="json", exclude={"heartbeat_at", "timeout_s"})})


def test_a_restarted_agent_ends_the_batches_its_predecessor_was_running(prefect_server: dict[str, str]):
    """What a SIGKILLed agent leaves: its record, a batch Running and one taken up (Pending) in its queue.
    Its successor, seeing that agent's process gone, ends both before it takes work; other nodes' batches
    and those not yet taken up are not its to end."""
    from prefect.client.schemas.objects import StateType
    from prefect.states import Pending, Running, State

    predecessor = subprocess.Popen(["sleep", "30"])
    gone = incarnation(predecessor.pid)
    predecessor.kill()
    predecessor.wait()
    assert gone is not None and incarnation_runs(gone) is False
    ensure_pools(prefect_server, ["cpu"], queue="node-restarted")
    ensure_pools(prefect_server, ["cpu"], queue="node-other")
    with api_client(prefect_server) as client:
        flow_id = client.create_flow_from_name("node-batch")
        deployment = client.create_deployment(flow_id, "restart-test", work_pool_name="ffwatt-cpu",
                                              entrypoint="flows/batch.py:node_batch")
        try:
            def run_in(queue: str, state: State | None) -> UUID:
                run = client.create_flow_run_from_deployment(deployment, work_queue_name=queue)
                if state is not None:
                    client.set_flow_run_state(run.id, state, force=True)
                return run.id

            running = run_in("node-restarted", Running())
            taken = run_in("node-restarted", Pending())
            waiting = run_in("node-restarted", None)
            elsewhere = run_in("node-other", Running())
            _record(client, "restarted", gone)
            _take_over(client, "restarted")
            states = {run: client.read_flow_run(run).state for run in (running, taken, waiting, elsewhere)}
        finally:
            client.delete_deployment(deployment)
            client.request("DELETE", f"/variables/name/{variable_name('restarted')}")
    assert states[running] is not None and states[running].type == StateType.CRASHED
    assert "agent of node restarted was restarted; this batch died with the previous one" in states[running].message
    assert states[taken] is not None and states[taken].type == StateType.CANCELLED
    assert states[waiting] is not None and states[waiting].type == StateType.SCHEDULED
    assert states[elsewhere] is not None and states[elsewhere].type == StateType.RUNNING


def test_an_agent_wont_take_over_a_node_whose_agent_runs_here(prefect_server: dict[str, str]):
    """Another agent of the same node on this machine (another FFWATT_HOME, so the lock can't tell): its
    batches are alive, and a second agent must neither end them nor serve beside it."""
    with api_client(prefect_server) as client:
        _record(client, "served", incarnation(os.getpid()) or "")
        try:
            with pytest.raises(ServiceError, match=rf"node served is already served by another agent "
                                                   rf"\(pid {os.getpid()} on this machine\)"):
                _take_over(client, "served")
        finally:
            client.request("DELETE", f"/variables/name/{variable_name('served')}")
