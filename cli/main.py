"""The root ``ffwatt`` app. Library errors exit here with a message, not a traceback."""

from __future__ import annotations

import sys
from typing import Annotated

import typer
from rich.markup import escape

from cli import agent, campaign, compare, demo, exporter, ladder, plan, recommend, report, results, stack
from cli._output import err_console
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
app.command(name="plan")(plan.plan)
app.command(name="ladder")(ladder.ladder)
app.command(name="compare")(compare.compare)
app.command(name="demo")(demo.demo)


@app.callback()
def _root(debug: Annotated[bool, typer.Option("--debug", help="Show tracebacks (anywhere on the line).")] = False
          ) -> None:
    """Read by :func:`main` from argv; declared here so --help lists it."""


def _take_debug(args: list[str]) -> tuple[bool, list[str]]:
    """Whether ``--debug`` is on the line, and the line without it: it is the root's option, and a
    user adds it where the failure was, after the subcommand (``ffwatt campaign run x.yaml --debug``).
    Arguments after ``--`` are left as they are."""
    cut = args.index("--") if "--" in args else len(args)
    debug = "--debug" in args[:cut]
    return debug, [arg for arg in args[:cut] if arg != "--debug"] + args[cut:]


def main(argv: list[str] | None = None) -> None:
    """Run the CLI on ``argv`` (the process's arguments by default). A failure is one line on
    stderr and a non-zero exit; ``--debug`` re-raises it with its traceback."""
    debug, args = _take_debug(sys.argv[1:] if argv is None else argv)
    try:
        app(args=args, prog_name="ffwatt")
    except FfwattError as exc:
        if debug:
            raise
        err_console.print(f"[bold red]error:[/] {escape(str(exc))}", highlight=False, soft_wrap=True)
        sys.exit(2)
    except KeyboardInterrupt:
        if debug:
            raise
        err_console.print("[bold red]interrupted[/]", highlight=False, soft_wrap=True)
        sys.exit(130)
    except Exception as exc:
        if debug:
            raise
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
        err_console.print(f"[bold red]error:[/] unexpected {type(exc).__name__}: {escape(first[:300])} "
                          "(run again with --debug for the traceback)", highlight=False, soft_wrap=True)
        sys.exit(1)
