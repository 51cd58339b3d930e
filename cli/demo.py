"""``ffwatt demo``: the whole product on this one machine, through the real path.

Master stack up, an agent for this machine, ``prefect deployment run
'campaign/quick'``, wait, the results table, the HTML report, and where the
Prefect UI is. ``ffwatt demo --stop`` (``make down``) stops it all.
"""

from __future__ import annotations

import os
import subprocess
import time
from typing import Annotated

import typer

from cli._output import console, exit_with, results_table, series_text
from ffwatt.settings import load_settings


def demo(stop: Annotated[bool, typer.Option("--stop", help="Stop the demo's stack and agent.")] = False) -> None:
    """Run the demo campaign through the deployed stack on this machine, then print its results."""
    from ffwatt.fleet.client import api_client
    from ffwatt.fleet.nodes import list_nodes
    from ffwatt.fleet.prefect_server import BIN
    from ffwatt.fleet.services import Service, start_service, stop_service
    from ffwatt.results import read_results, resolve_run
    from ffwatt.series import series_path
    from master.stack import client_env, stack_down, stack_up

    settings = load_settings()
    node = load_settings(home=settings.home / "node")  # the demo's agent, in a home of its own
    if stop:
        stopped = ["agent"] if stop_service(node.run_dir, "agent") else []
        console.print(f"stopped: {', '.join(stopped + stack_down(settings)) or 'nothing was running'}")
        return
    console.print("starting the master (Prefect server with credentials, campaign worker, discovery)...")
    stack_up(settings)
    env = {**os.environ, **client_env(settings), "FFWATT_HOME": str(node.home)}
    start_service(node.run_dir, Service("agent", [str(BIN / "ffwatt"), "agent", "start", "--master",
                                                        env["PREFECT_API_URL"]], env))
    deadline = time.monotonic() + 120
    with api_client(client_env(settings)) as client:
        while not any(n.node == settings.node and n.online() and n.pools for n in list_nodes(client)):
            if time.monotonic() > deadline:
                exit_with(f"the agent didn't come online; see {node.run_dir}/agent.log; "
                          "`ffwatt demo --stop` stops what the demo started")
            time.sleep(1)
    console.print(f"node {settings.node} online; running `prefect deployment run 'campaign/quick' --watch`")
    done = subprocess.run([str(BIN / "prefect"), "deployment", "run", "campaign/quick", "--watch",
                           "--watch-interval", "2"], env={**os.environ, **client_env(settings)},
                          capture_output=True, text=True)
    if done.returncode != 0:
        exit_with(f"the campaign run failed:\n{done.stdout[-2000:]}{done.stderr[-2000:]}")
    campaign, run_id = resolve_run(settings.results_dir, "latest", "quick")
    frame = read_results(settings.results_dir, campaign=campaign, run_id=run_id)
    console.print(results_table(frame, f"campaign {campaign}, run {run_id} (through the deployed stack)"))
    from analysis.report import write_report

    report = write_report(settings.results_dir, run_id, campaign=campaign)
    ui = client_env(settings)["PREFECT_API_URL"].removesuffix("/api")
    console.print(f"Parquet: {settings.results_dir.resolve()}/campaign={campaign}/run_id={run_id}\n"
                  + series_text(frame, str(series_path(settings.results_dir.resolve(), campaign, run_id, "*"))) + "\n"
                  f"report:  {report}\nPrefect UI: {ui}  (user:password in {settings.auth_file})\n"
                  "stop everything with: make down", highlight=False)
