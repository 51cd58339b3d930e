"""Rendering and exiting, shared by every command."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, NoReturn

import typer
from rich.console import Console
from rich.table import Table

from ffwatt.schema import is_estimated, is_missing

if TYPE_CHECKING:
    import pandas as pd

__all__ = ["console", "err_console", "exit_with", "results_table"]

# Wide when piped (make demo, CI logs), so result tables stay one line per job.
console = Console(width=None if Console().is_terminal else 180)
err_console = Console(stderr=True)


def exit_with(message: str, code: int = 2) -> NoReturn:
    """Print ``message`` as an error and exit with ``code``."""
    err_console.print(f"[bold red]error:[/] {message}", highlight=False)
    raise typer.Exit(code)


def _fmt(value: Any, digits: int = 1) -> str:
    if is_missing(value):
        return "-"
    if isinstance(value, float):
        return f"{value:.{digits}f}"
    return str(value)


def results_table(frame: pd.DataFrame, title: str) -> Table:
    """A run's rows as a table; estimated energy is marked as such."""
    table = Table(title=title, title_justify="left")
    for name, justify in (("input", "left"), ("encoder", "left"), ("preset", "left"), ("rate", "left"),
                          ("size", "left"), ("rep", "right"), ("status", "left"), ("wall s", "right"),
                          ("fps", "right"), ("kbit/s", "right"), ("PSNR", "right"), ("SSIM", "right"),
                          ("VMAF", "right"), ("energy J", "right"), ("J/frame", "right")):
        table.add_column(name, justify=justify)  # type: ignore[arg-type]
    estimated = False
    for row in frame.itertuples(index=False):
        rate = {"crf": f"crf {_fmt(row.crf)}", "qp": f"qp {_fmt(row.qp)}"}.get(
            row.rate_control, f"{row.rate_control} {_fmt(row.target_bitrate_kbps)}k")
        size = "-" if is_missing(row.output_width) else f"{row.output_width}x{row.output_height}"
        mark = ""
        if is_estimated(row.energy_source):
            mark, estimated = "*", True
        status = "[green]ok[/]" if row.status == "ok" else "[red]failed[/]"
        table.add_row(row.input_name, row.encoder, _fmt(row.preset), rate, size, _fmt(row.repetition), status,
                      _fmt(row.wall_s, 2), _fmt(row.encode_fps), _fmt(row.bitrate_kbps, 0), _fmt(row.psnr, 2),
                      _fmt(row.ssim, 4), _fmt(row.vmaf, 2), _fmt(row.energy_j) + mark,
                      _fmt(row.joules_per_frame, 3) + mark)
    if estimated:
        table.caption = "* estimated: busy CPU time x an assumed CPU power (RAPL not readable here); see energy_basis"
    return table
