"""``ffwatt plan``: nodes, kWh a day, cost and CO2 to encode H hours of content a day, from a density run."""

from __future__ import annotations

from typing import Annotated

import typer

from cli._output import Output, OutputOption, console
from ffwatt.settings import load_settings

__all__ = ["plan"]


def plan(
    hours: Annotated[float, typer.Option(help="Hours of content to encode a day.", min=0.001)],
    run: Annotated[str, typer.Option(help="The density run to plan from (id, or 'latest').")] = "latest",
    campaign: Annotated[str | None, typer.Option(help="Its campaign (the latest run of it, without --run).")] = None,
    node_hours: Annotated[float, typer.Option(help="Hours a day a node works.", min=0.1, max=24.0)]
    = 24.0,
    concurrency: Annotated[int | None, typer.Option(
        help="Copies at once per node (a step the run measured); default: the one with the most frames per "
             "joule.", min=1)] = None,
    input_name: Annotated[str | None, typer.Option("--input", help="Only this input.")] = None,
    price_per_kwh: Annotated[float | None, typer.Option(help="Electricity price; default FFWATT_PRICE_PER_KWH.",
                                                        min=0)] = None,
    co2_g_per_kwh: Annotated[float | None, typer.Option(help="Grid carbon intensity; default FFWATT_CO2_G_PER_KWH.",
                                                        min=0)] = None,
    output: OutputOption = Output.table,
) -> None:
    """Plan a daily load from a density run: nodes needed, kWh a day, cost and CO2, and what they rest on."""
    from rich.markdown import Markdown

    from analysis.plan import plan as make_plan

    settings = load_settings()
    answer = make_plan(settings.results_dir, hours, run=run, campaign=campaign, node_hours_per_day=node_hours,
                       concurrency=concurrency, input_name=input_name,
                       price_per_kwh=price_per_kwh if price_per_kwh is not None else settings.price_per_kwh,
                       co2_g_per_kwh=co2_g_per_kwh if co2_g_per_kwh is not None else settings.co2_g_per_kwh)
    if output is Output.json:
        print(answer.model_dump_json(indent=2))
    else:
        console.print(Markdown(answer.markdown()))
