"""``ffwatt ladder``: an energy-aware per-title ladder from a run that swept resolutions x rate controls."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from cli._output import Output, OutputOption, console, exit_with
from ffwatt.settings import load_settings

__all__ = ["ladder"]


def ladder(
    run: Annotated[str, typer.Argument(help="The run (id, or 'latest').")] = "latest",
    campaign: Annotated[str | None, typer.Option(help="Its campaign (the latest run of it, without RUN).")] = None,
    input_name: Annotated[str | None, typer.Option("--input", help="The input (needed when the run has several).")]
    = None,
    rungs: Annotated[int | None, typer.Option(help="How many rungs (else one every --vmaf-step).", min=1, max=8)]
    = None,
    vmaf_step: Annotated[float, typer.Option(help="VMAF between rungs: 6 is about one just-noticeable difference.",
                                             min=0.5, max=100)] = 6.0,
    views: Annotated[float | None, typer.Option(
        help="Choose each rung's encode by encode + delivery energy to this many views.", min=0)] = None,
    delivery_wh_per_gb: Annotated[float | None, typer.Option(
        help="Network energy per GB delivered, with --views (default 30 Wh/GB: see docs/analysis.md).", min=0.001)]
    = None,
    out: Annotated[Path | None, typer.Option(
        help="Where to write the ladder YAML (default: <results>/_ladders/ladder-<campaign>-<input>-<run>.yaml).")]
    = None,
    output: OutputOption = Output.table,
) -> None:
    """Build a per-title ladder on the bitrate-VMAF hull, each rung's encode chosen by energy; write it as YAML."""
    from rich.markdown import Markdown

    from analysis.delivery import DELIVERY_WH_PER_GB
    from analysis.ladder import ladder as build_ladder

    if delivery_wh_per_gb is not None and views is None:
        exit_with("--delivery-wh-per-gb prices delivery to --views views: give --views too")
    results_dir = load_settings().results_dir
    answer = build_ladder(results_dir, run=run, campaign=campaign, input_name=input_name, rungs=rungs,
                          vmaf_step=vmaf_step, views=views, delivery_wh_per_gb=delivery_wh_per_gb or DELIVERY_WH_PER_GB)
    path = out or results_dir / "_ladders" / f"ladder-{answer.campaign}-{answer.input_name}-{answer.run_id}.yaml"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(answer.yaml())
    if output is Output.json:
        print(json.dumps({**answer.model_dump(mode="json"), "path": str(path)}, indent=2))
    else:
        console.print(Markdown(answer.markdown()))
        console.print(f"ladder YAML: {path} (live: {{ladder: {path.name}}} or matrix: {{ladder: {path.name}}} in a "
                      "campaign beside it)", highlight=False, soft_wrap=True)
