"""``ffwatt recommend``: the configuration that meets a target for the least energy, cost, CO2,
time or bitrate, from measured runs."""

from __future__ import annotations

from typing import Annotated

import typer

from cli._output import Output, OutputOption, console, exit_with
from ffwatt.settings import load_settings

__all__ = ["recommend"]


def recommend(
    vmaf: Annotated[float, typer.Option(help="Quality target: VMAF at least this (the 95 % interval's lower "
                                             "bound, with repetitions).", min=0, max=100)],
    vmaf_percentile: Annotated[int | None, typer.Option(
        help="Apply the VMAF target to this percentile of the frames (1 or 5: vmaf_p1, vmaf_p5) instead of "
             "their mean: what the worst frames reach.")] = None,
    realtime: Annotated[bool, typer.Option("--realtime", help="At least the input's frame rate.")] = False,
    min_fps: Annotated[float | None, typer.Option(help="At least this many frames per second.", min=0)] = None,
    minimize: Annotated[str, typer.Option(help="energy, cost, co2, time or bitrate.")] = "energy",
    node: Annotated[str | None, typer.Option(help="Only configurations measured on this node.")] = None,
    pool: Annotated[str | None, typer.Option(help="Only encoders of this work pool (cpu, nvidia, ...).")] = None,
    input_name: Annotated[str | None, typer.Option("--input", help="Only this input.")] = None,
    campaign: Annotated[str | None, typer.Option(help="Only this campaign (its latest run, without --run).")]
    = None,
    run: Annotated[list[str] | None, typer.Option(
        help="Runs to choose from (repeat it); default: the latest run of each campaign.")] = None,
    runners_up: Annotated[int, typer.Option(help="How many alternatives to list.", min=0)] = 3,
    views: Annotated[float | None, typer.Option(
        help="Minimize encode + delivery energy for this many views of the file, and say for each runner-up "
             "at how many views it would be the better choice.", min=0)] = None,
    delivery_wh_per_gb: Annotated[float | None, typer.Option(
        help="Network energy per GB delivered, for --views (default 30 Wh/GB, fixed networks 2020; the answer "
             "is also given at 7 and 140 Wh/GB: see docs/analysis.md).", min=0)] = None,
    output: OutputOption = Output.table,
) -> None:
    """Recommend the measured configuration that meets a quality (and speed) target for the least of something."""
    from rich.markdown import Markdown

    from analysis.recommend import OBJECTIVES, Scope, Target, recommend, recommend_with_delivery

    if minimize not in OBJECTIVES:
        exit_with(f"--minimize {minimize}: choose one of {', '.join(OBJECTIVES)}")
    if realtime and min_fps:
        exit_with("--realtime and --min-fps both set: ask for one speed")
    if vmaf_percentile not in (None, 1, 5):
        exit_with(f"--vmaf-percentile {vmaf_percentile}: the rows keep the 1st and 5th percentiles; choose 1 or 5")
    if delivery_wh_per_gb is not None and views is None:
        exit_with("--delivery-wh-per-gb prices delivery to --views views: give --views too")
    if views is not None and minimize != "energy":
        exit_with(f"--views adds delivery energy to encode energy: use it with --minimize energy, not {minimize}")
    if delivery_wh_per_gb == 0:
        exit_with("--delivery-wh-per-gb 0: delivery costs something; give the Wh per GB your network spends")
    delivery = {} if delivery_wh_per_gb is None else {"delivery_wh_per_gb": delivery_wh_per_gb,
                                                       "delivery_source": "given with --delivery-wh-per-gb"}
    target = Target(vmaf=vmaf, vmaf_percentile=vmaf_percentile, min_fps=min_fps, realtime=realtime,
                    minimize=minimize, views=views, **delivery)
    scope = Scope(runs=run or [], campaign=campaign, node=node, pool=pool, input_name=input_name)
    results_dir = load_settings().results_dir
    answer = (recommend_with_delivery(results_dir, target, scope, runners_up=runners_up) if views is not None
              else recommend(results_dir, target, scope, runners_up=runners_up))
    if output is Output.json:
        print(answer.model_dump_json(indent=2))
    else:
        console.print(Markdown(answer.markdown()))
