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
from ffwatt.fleet.nodes import list_nodes
from ffwatt.fleet.prefect_server import BIN
from ffwatt.fleet.services import Service, start_service, stop_service
from ffwatt.results import resolve_run
from ffwatt.settings import Settings, load_settings
from master.stack import client_env, stack_down, stack_up

__all__ = ["DemoRun", "run_demo", "stop_demo"]

AGENT_ONLINE_S = 120.0


@dataclass(frozen=True)
class DemoRun:
    campaign: str
    run_id: str
    report: Path
    ui_url: str


def _agent_settings(settings: Settings) -> Settings:
    """The demo's agent: this node, in a home of its own under the master's."""
    return load_settings(home=settings.home / "node")


def run_demo(settings: Settings, *, say: Callable[[str], None]) -> DemoRun:
    """Bring the stack and an agent up, run the quick campaign through the deployment, write its
    report; :class:`StackError` says in one line what failed and where its log is."""
    from analysis.report import write_report

    say("starting the master (Prefect server with credentials, campaign worker, discovery)...")
    stack_up(settings)
    agent = _agent_settings(settings)
    env = {**os.environ, **client_env(settings), "FFWATT_HOME": str(agent.home)}
    start_service(agent.run_dir, Service("agent", [str(BIN / "ffwatt"), "agent", "start", "--master",
                                                   env["PREFECT_API_URL"]], env))
    deadline = time.monotonic() + AGENT_ONLINE_S
    with api_client(client_env(settings)) as client:
        while not any(n.node == settings.node and n.online() and n.pools for n in list_nodes(client)):
            if time.monotonic() > deadline:
                raise StackError(f"the agent didn't come online; see {agent.run_dir}/agent.log; "
                                 "`ffwatt demo --stop` stops what the demo started")
            time.sleep(1)
    say(f"node {settings.node} online; running `prefect deployment run 'campaign/quick' --watch`")
    done = subprocess.run([str(BIN / "prefect"), "deployment", "run", "campaign/quick", "--watch",
                           "--watch-interval", "2"], env={**os.environ, **client_env(settings)},
                          capture_output=True, text=True)
    if done.returncode != 0:
        raise StackError(f"the campaign run failed:\n{done.stdout[-2000:]}{done.stderr[-2000:]}")
    campaign, run_id = resolve_run(settings.results_dir, "latest", "quick")
    report = write_report(settings.results_dir, run_id, campaign=campaign)
    return DemoRun(campaign, run_id, report, client_env(settings)["PREFECT_API_URL"].removesuffix("/api"))


def stop_demo(settings: Settings) -> list[str]:
    """Stop the demo's agent and the stack; the names of what ran."""
    stopped = ["agent"] if stop_service(_agent_settings(settings).run_dir, "agent") else []
    return stopped + stack_down(settings)
