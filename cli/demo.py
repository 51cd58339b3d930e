"""``ffwatt demo``: the whole product on this one machine, through the real path (:mod:`master.demo`).
``ffwatt demo --stop`` (``make down``) stops it all."""

from __future__ import annotations

from typing import Annotated

import typer

from cli._output import console, results_table, series_text
from ffwatt.settings import load_settings


def demo(stop: Annotated[bool, typer.Option("--stop", help="Stop the demo's stack and agent.")] = False) -> None:
    """Run the demo campaign through the deployed stack on this machine, then print its results."""
    from ffwatt.results import read_results
    from ffwatt.series import series_path
    from master.demo import run_demo, stop_demo

    settings = load_settings()
    if stop:
        stopped = stop_demo(settings)
        console.print(f"stopped: {', '.join(stopped.services) or 'nothing was running'}")
        for agent in stopped.left_running:
            console.print(f"still running: {agent}, not started by the demo; stop it where it was started "
                          "(Ctrl-C, or its service manager)", highlight=False)
        return
    run = run_demo(settings, say=lambda text: console.print(text, highlight=False))
    frame = read_results(settings.results_dir, campaign=run.campaign, run_id=run.run_id)
    console.print(results_table(frame, f"campaign {run.campaign}, run {run.run_id} (through the deployed stack)"))
    console.print(f"Parquet: {settings.results_dir.resolve()}/campaign={run.campaign}/run_id={run.run_id}\n"
                  + series_text(frame, str(series_path(settings.results_dir.resolve(), run.campaign, run.run_id,
                                                       "*"))) + "\n"
                  f"report:  {run.report}\nPrefect UI: {run.ui_url}  (user:password in {settings.auth_file})\n"
                  "stop everything with: make down", highlight=False)
