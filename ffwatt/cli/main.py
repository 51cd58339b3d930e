"""The root ``ffwatt`` app. Library errors exit here with a message, not a traceback."""

from __future__ import annotations

import sys
from typing import Annotated

import typer

from ffwatt.cli import agent, campaign, compare, demo, exporter, recommend, report, results, stack
from ffwatt.cli._output import err_console
from ffwatt.errors import FfwattError

app = typer.Typer(
    help="ffwatt: what each way of encoding video costs in time, quality and joules.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)
app.add_typer(campaign.app, name="campaign")
app.add_typer(results.app, name="results")
app.add_typer(exporter.app, name="exporter")
app.add_typer(agent.app, name="agent")
app.add_typer(stack.app, name="stack")
app.command(name="report")(report.report)
app.command(name="recommend")(recommend.recommend)
app.command(name="compare")(compare.compare)
app.command(name="demo")(demo.demo)


@app.callback()
def _root(debug: Annotated[bool, typer.Option("--debug", help="Show tracebacks.")] = False) -> None:
    """Read by :func:`main` from argv; declared here so --help lists it."""


def main() -> None:
    try:
        app()
    except FfwattError as exc:
        if "--debug" in sys.argv:
            raise
        err_console.print(f"[bold red]error:[/] {exc}", highlight=False)
        sys.exit(2)
