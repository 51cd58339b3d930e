"""The demo: this one machine as the master and its only node, through the real path.

Master stack up, an agent for this machine in a home of its own (``FFWATT_HOME/node``), ``prefect
deployment run 'campaign/quick'`` watched to its end, and the HTML report of the run. ``ffwatt demo``
prints what this returns; ``ffwatt demo --stop`` (``make down``) stops what it started.
"""

from __future__ import annotations

import os
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from ffwatt.errors import StackError
from ffwatt.fleet.client import api_client
from ffwatt.fleet.nodes import NodeRecord, list_nodes
from ffwatt.fleet.prefect_server import BIN
from ffwatt.fleet.services import Service, service_status, start_service, stop_service
from ffwatt.processes import incarnation, incarnation_runs
from ffwatt.results import resolve_run
from ffwatt.settings import Settings, load_settings
from master.stack import client_env, stack_down, stack_up

__all__ = ["DemoRun", "DemoStopped", "run_demo", "stop_demo"]

AGENT_ONLINE_S = 120.0


@dataclass(frozen=True)
class DemoRun:
    campaign: str
    run_id: str
    report: Path
    ui_url: str


@dataclass(frozen=True)
class DemoStopped:
    services: list[str]  # what ran and was stopped
    left_running: list[str]  # agents still serving a node of the stack: not the demo's to stop


def _agent_settings(settings: Settings) -> Settings:
    """The demo's agent: this node, in a home of its own under the master's."""
    return load_settings(home=settings.home / "node")


def _where(record: NodeRecord) -> str:
    if incarnation_runs(record.incarnation):
        return f"pid {record.incarnation.split('/')[1]} on this machine"
    return f"at {record.address}"


def _last_line(log: Path) -> str:
    try:
        lines = [line for line in log.read_text(errors="replace").splitlines() if line.strip()]
    except OSError:
        return "(no log)"
    return lines[-1] if lines else "(empty log)"


def _wait_for_own_agent(settings: Settings, agent: Settings, own: str | None) -> None:
    """Until the agent the demo started serves its node: another agent of that name being online proves
    nothing (the demo's own may have failed to start beside it, on the ports that one holds)."""
    deadline = time.monotonic() + AGENT_ONLINE_S
    log = agent.run_dir / "agent.log"
    with api_client(client_env(settings)) as client:
        while True:
            nodes = [n for n in list_nodes(client) if n.node == settings.node]
            if own is not None and any(n.incarnation == own and n.online() and n.pools for n in nodes):
                return
            other = next((n for n in nodes if n.incarnation != own and n.online()), None)
            beside = (f"; node {settings.node} is served by another agent ({_where(other)}): stop it, or run the "
                      "demo with FFWATT_NODE set to another name") if other is not None else ""
            if own is None or not service_status(agent.run_dir, "agent").running:
                raise StackError(f"the demo's agent exited: {_last_line(log)}{beside}")
            if time.monotonic() > deadline:
                raise StackError(f"the demo's agent didn't come online{beside}; see {log}; "
                                 "`ffwatt demo --stop` stops what the demo started")
            time.sleep(1)


def _agents_still_running(settings: Settings) -> list[NodeRecord]:
    """Agents that still serve a node of this stack: on this machine, those whose process runs; elsewhere,
    those online. [] when the API can't say."""
    try:
        with api_client(client_env(settings)) as client:
            nodes = list_nodes(client)
    except Exception:  # noqa: BLE001 - the stack already down: nothing to tell from it
        return []
    running = []
    for record in nodes:
        here = incarnation_runs(record.incarnation)
        if here or (here is None and record.online()):
            running.append(record)
    return running


def run_demo(settings: Settings, *, say: Callable[[str], None]) -> DemoRun:
    """Bring the stack and an agent up, run the quick campaign through the deployment, write its
    report; :class:`StackError` says in one line what failed and where its log is."""
    from analysis.report import write_report

    say("starting the master (Prefect server with credentials, campaign worker, discovery)...")
    stack_up(settings)
    agent = _agent_settings(settings)
    env = {**os.environ, **client_env(settings), "FFWATT_HOME": str(agent.home)}
    started = start_service(agent.run_dir, Service("agent", [str(BIN / "ffwatt"), "agent", "start", "--master",
                                                             env["PREFECT_API_URL"]], env))
    _wait_for_own_agent(settings, agent, incarnation(started.pid) if started.pid is not None else None)
    say(f"node {settings.node} online; running `prefect deployment run 'campaign/quick' --watch`")
    done = subprocess.run([str(BIN / "prefect"), "deployment", "run", "campaign/quick", "--watch",
                           "--watch-interval", "2"], env={**os.environ, **client_env(settings)},
                          capture_output=True, text=True)
    if done.returncode != 0:
        raise StackError(f"the campaign run failed:\n{done.stdout[-2000:]}{done.stderr[-2000:]}")
    campaign, run_id = resolve_run(settings.results_dir, "latest", "quick")
    report = write_report(settings.results_dir, run_id, campaign=campaign)
    return DemoRun(campaign, run_id, report, client_env(settings)["PREFECT_API_URL"].removesuffix("/api"))


def stop_demo(settings: Settings) -> DemoStopped:
    """Stop the demo's agent and the stack; what ran, and which agents still run (started by someone
    else, so not the demo's to stop: they would keep retrying a master that is gone)."""
    stopped = ["agent"] if stop_service(_agent_settings(settings).run_dir, "agent") else []
    others = [f"the agent of node {n.node} ({_where(n)})" for n in _agents_still_running(settings)]
    return DemoStopped(stopped + stack_down(settings), others)
