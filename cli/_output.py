"""Rendering and exiting, shared by every command."""

from __future__ import annotations

from enum import StrEnum
from typing import TYPE_CHECKING, Annotated, Any, NoReturn

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from ffwatt.schema import failure_reason, is_estimated, is_missing

if TYPE_CHECKING:
    import pandas as pd

    from ffwatt.campaign import AdaptiveRepetitions
    from ffwatt.results import ControlCheck

__all__ = [
    "Output",
    "OutputOption",
    "RowsOutput",
    "RowsOutputOption",
    "console",
    "control_text",
    "density_tables",
    "err_console",
    "exit_with",
    "failures_text",
    "live_tables",
    "results_table",
    "run_tables",
    "run_title",
    "same_output_text",
    "series_text",
    "settling_table",
]

# Wide when piped (make demo, CI logs), so result tables stay one line per job. No emoji codes:
# FFmpeg's text ("0:v:0") is printed as it is.
console = Console(width=None if Console().is_terminal else 180, emoji=False)
err_console = Console(stderr=True, emoji=False)


class Output(StrEnum):
    """What a command prints: a table for people, or JSON for scripts."""

    table = "table"
    json = "json"


class RowsOutput(StrEnum):
    """What a command that prints job rows prints: a table, JSON, or CSV."""

    table = "table"
    json = "json"
    csv = "csv"


# -o/--output, the same option and words on every command that has it; anything else exits 2.
OutputOption = Annotated[Output, typer.Option("--output", "-o", help="table (for people) or json (for scripts)")]
RowsOutputOption = Annotated[RowsOutput, typer.Option("--output", "-o", help="table, json or csv")]


def exit_with(message: str, code: int = 2) -> NoReturn:
    """Print ``message`` (plain text, printed as it is) as an error and exit with ``code``."""
    err_console.print(f"[bold red]error:[/] {escape(message)}", highlight=False, soft_wrap=True)
    raise typer.Exit(code)


def _fmt(value: Any, digits: int = 1) -> str:
    if is_missing(value):
        return "-"
    if isinstance(value, float):
        return f"{value:.{digits}f}"
    return str(value)


def _short(error: str | None, width: int = 72) -> str:
    reason = failure_reason(error)
    return reason if len(reason) <= width else reason[:width - 1] + "…"


def failures_text(failures: dict[str, int]) -> str:
    """Why jobs failed, grouped: one line per reason, most common first."""
    return "\n".join(f"  {count} x {reason}" for reason, count in failures.items())


def run_title(campaign: str, run_id: str, state: str, jobs: int, rows: int) -> str:
    """A run's table title; a run that isn't complete, or lacks rows (ones a full disk kept out), says so, and
    how many jobs it lacks."""
    title = f"campaign {campaign}, run {run_id}"
    if state != "complete" or rows < jobs:
        title += f" ({state}: {rows} of {jobs} jobs have rows" + (
            f"; `ffwatt campaign run FILE --resume {run_id}` runs the rest)" if state != "running" else ")")
    return title


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
        status = _status(row.status, getattr(row, "error", None))
        table.add_row(row.input_name, row.encoder, _fmt(row.preset), rate, size, _fmt(row.repetition), status,
                      _fmt(row.wall_s, 2), _fmt(row.encode_fps), _fmt(row.bitrate_kbps, 0), _fmt(row.psnr, 2),
                      _fmt(row.ssim, 4), _fmt(row.vmaf, 2), _fmt(row.energy_j) + mark,
                      _fmt(row.joules_per_frame, 3) + mark)
    if estimated:
        table.caption = "* estimated: busy CPU time x an assumed CPU power (RAPL not readable here); see energy_basis"
    return table


def series_text(frame: pd.DataFrame, where: str) -> str:
    """One line on a run's series: where they are, how many jobs have them and from where, and why
    the others don't (the commonest reason)."""
    if "series_source" not in frame.columns or frame.empty:
        return f"series: none ({where})"
    from ffwatt.series import SOURCE_WORDS

    sources = frame["series_source"].dropna().value_counts()
    text = f"series: {where} ({sum(sources)} of {len(frame)} jobs" + "".join(
        f", {n} from {SOURCE_WORDS.get(str(source), source)}" for source, n in sources.items()) + ")"
    missing = frame["series_missing"].dropna()
    if not missing.empty:
        reason, count = next(iter(missing.map(_short).value_counts().items()))
        text += f"; missing or incomplete: {len(missing)}, e.g. {count} x {reason}"
    return text


def _status(status: str, error: Any, width: int = 72) -> str:
    """ok in green; failed (red) or skipped (yellow, shorter) with the reason."""
    if status == "ok":
        return "[green]ok[/]"
    color, width = ("yellow", min(width, 40)) if status == "skipped" else ("red", width)
    return f"[{color}]{status}[/] {escape(_short(error if isinstance(error, str) else '', width))}"


_ESTIMATED_CAPTION = "* estimated: busy CPU time x an assumed CPU power (RAPL not readable here); see energy_basis"


def density_tables(frame: pd.DataFrame, title: str) -> list[Table]:
    """A density run: each sweep step (N copies at once: aggregate fps, watts, J/frame, frames per joule,
    and how N was reached), then each sweep's outcome: the knee, and the N with the most frames per joule."""
    from analysis.density import density_outcomes, density_steps

    steps = density_steps(frame)
    table = Table(title=f"{title}: density sweep steps (means over ok repetitions)", title_justify="left")
    for name, justify in (("node", "left"), ("encode", "left"), ("N", "right"), ("how", "left"), ("reps", "right"),
                          ("aggregate fps", "right"), ("W", "right"), ("J/frame", "right"),
                          ("frames/J", "right"), ("grew", "left"), ("skipped or failed", "left")):
        table.add_column(name, justify=justify)  # type: ignore[arg-type]
    estimated = bool(steps["energy_estimated"].any()) if not steps.empty else False
    for row in steps.itertuples():
        mark = "*" if row.energy_estimated else ""
        table.add_row(str(row.node), str(row.config), str(row.concurrency), str(row.phase), str(row.n),
                      _fmt(row.encode_fps), _fmt(row.avg_power_w, 1) + mark, _fmt(row.joules_per_frame, 3) + mark,
                      _fmt(row.frames_per_joule, 2) + mark, "[green]yes[/]" if row.grew else "[red]no[/]",
                      escape(_short(row.reason, 60)))
    outcome = Table(title="copies at once per node: the knee (more add < the gain in throughput), and the N "
                          "with the most frames per joule", title_justify="left")
    for name in ("node", "encode", "knee N", "fps at knee", "saturated at N", "most frames/J at N", "frames/J",
                 "J/frame", "fps", "N measured (* bisection)"):
        outcome.add_column(name)
    for row in density_outcomes(frame).itertuples():
        mark = "*" if row.energy_estimated else ""
        outcome.add_row(str(row.node), str(row.config), _fmt(row.knee), _fmt(row.knee_fps), _fmt(row.saturated_at),
                        _fmt(row.best_n), _fmt(row.best_frames_per_joule, 2) + mark,
                        _fmt(row.best_joules_per_frame, 3) + mark, _fmt(row.best_fps), row.steps)
    if estimated:
        table.caption = outcome.caption = _ESTIMATED_CAPTION
    return [table, outcome]
def same_output_text(frame: pd.DataFrame) -> str | None:
    """A warning naming the configurations that made identical video for different settings (their
    rows' ``same_output_as``), so two rows are never read as two points of a curve; None when none did."""
    if "same_output_as" not in frame.columns:
        return None
    marked = frame[frame["same_output_as"].notna()]
    if marked.empty:
        return None
    from ffwatt.schema import config_label

    groups = [f"{input_name}: {' = '.join(sorted({config_label(row) for _, row in rows.iterrows()}))}"
              for (input_name, _), rows in marked.groupby(["input_name", "output_hash"])]
    return (f"warning: {len(marked)} jobs made the same video as a job with other settings: those settings had no "
            f"effect (same_output_as says so in their rows): {'; '.join(groups)}")


_BAR = 24  # characters for a speed of 1.25x: real time is at the fifth-to-last


def _speed_bar(speed: Any, held: bool) -> str:
    """The speed as a bar, so a sweep reads as a picture: green where real time held, red where not."""
    if is_missing(speed):
        return "-"
    filled = max(0, min(_BAR, round(float(speed) / 1.25 * _BAR)))
    return f"[{'green' if held else 'red'}]{'█' * filled}[/]{' ' * (_BAR - filled)} {float(speed):.3f}x"


def live_tables(frame: pd.DataFrame, title: str) -> list[Table]:
    """A live run: each sweep step's row (speed drawn as a bar), then each sweep's outcome: the
    largest number of streams that held real time, and the watts per stream there."""
    from analysis.live import is_live, sweep_outcomes

    live = frame[is_live(frame)]
    steps = Table(title=f"{title}: live sweep steps", title_justify="left")
    for name, justify in (("input", "left"), ("encoder", "left"), ("preset", "left"), ("ladder", "left"),
                          ("N", "right"), ("rep", "right"), ("status", "left"), ("lowest speed", "left"),
                          ("dropped", "right"), ("latency ms", "right"), ("1st frame s", "right"),
                          ("W/stream", "right"), ("J/stream-min", "right"), ("kbit/s top", "right")):
        steps.add_column(name, justify=justify)  # type: ignore[arg-type]
    estimated = False
    for row in live.sort_values(["encoder", "preset", "live_ladder", "repetition", "live_streams"]).itertuples():
        mark = ""
        if is_estimated(row.energy_source):
            mark, estimated = "*", True
        status = _status(row.status, row.error, 60)
        steps.add_row(row.input_name, row.encoder, _fmt(row.preset), row.live_ladder, _fmt(row.live_streams),
                      _fmt(row.repetition), status, _speed_bar(row.speed, row.live_realtime is True),
                      _fmt(row.dropped_frames), _fmt(row.live_latency_ms, 0), _fmt(row.live_first_frame_s, 2),
                      _fmt(row.live_watts_per_stream, 2) + mark, _fmt(row.live_joules_per_stream_minute, 0) + mark,
                      _fmt(row.bitrate_kbps, 0))
    outcome = Table(title="streams per node: the largest N that held real time (no frame dropped), and its cost",
                    title_justify="left")
    for name in ("node", "input", "encoder", "preset", "ladder", "largest real-time N", "W/stream at N",
                 "J/stream-min at N", "broke at N", "N measured"):
        outcome.add_column(name)
    for row in sweep_outcomes(live).itertuples():
        mark = "*" if row.energy_estimated else ""
        outcome.add_row(row.node, row.input_name, row.encoder, _fmt(row.preset), row.live_ladder,
                        str(row.max_realtime_streams) if row.max_realtime_streams else "[red]none[/]",
                        _fmt(row.watts_per_stream, 2) + mark, _fmt(row.joules_per_stream_minute, 0) + mark,
                        _fmt(row.broke_at), row.steps)
    if estimated:
        caption = "* estimated: busy CPU time x an assumed CPU power (RAPL not readable here); see energy_basis"
        steps.caption = outcome.caption = caption
    return [steps, outcome]


def run_tables(frame: pd.DataFrame, title: str) -> list[Table]:
    """A run's tables: live sweep steps (streams per node, watts per stream), density sweep steps (the knee,
    frames per joule), and every other job's row."""
    from analysis.density import is_density
    from analysis.live import is_live

    live, density = is_live(frame), is_density(frame)
    tables = live_tables(frame[live], title) if live.any() else []
    if density.any():
        tables += density_tables(frame[density], title)
    if not (live | density).all():
        tables.append(results_table(frame[~live & ~density], title))
    return tables


def settling_table(frame: pd.DataFrame, rule: AdaptiveRepetitions | None) -> Table | None:
    """Per configuration: ok repetitions, joules per frame and wall time with their 95 % intervals (± % of
    the mean), and, with adaptive repetitions, whether it settled or stopped at the maximum. None when no
    configuration was repeated."""
    from analysis.stats import settling
    from ffwatt.schema import config_label

    if frame.empty or "config_id" not in frame.columns:
        return None
    stats = settling(frame, rule.ci_pct if rule else 0.0, rule.max if rule else 0)
    if rule is None and not (stats["n"] > 1).any():
        return None
    title = "repetitions per configuration (mean ± 95 % interval, in % of the mean)"
    if rule is not None:
        title += f": {rule.min} to {rule.max}, settled within {rule.ci_pct:g} %"
    table = Table(title=title, title_justify="left")
    for name, justify in (("configuration", "left"), ("n", "right"), ("J/frame", "right"), ("± %", "right"),
                          ("wall s", "right"), ("± %", "right"), ("state", "left")):
        table.add_column(name, justify=justify)  # type: ignore[arg-type]
    firsts = frame.drop_duplicates("config_id").set_index("config_id")
    estimated = set(frame.loc[frame["energy_source"].map(is_estimated), "config_id"]) \
        if "energy_source" in frame.columns else set()
    colors = {"settled": "green", "at max": "yellow", "unsettled": "red"}
    for row in stats.itertuples(index=False):
        mark = "*" if row.config_id in estimated else ""
        state = f"[{colors[row.state]}]{row.state}[/]" if rule is not None else "-"
        table.add_row(escape(config_label(firsts.loc[row.config_id], with_input=True)), str(row.n),
                      _fmt(row.joules_per_frame, 3) + mark, _fmt(row.joules_per_frame_ci_pct),
                      _fmt(row.wall_s, 2), _fmt(row.wall_s_ci_pct), state)
    if estimated:
        table.caption = _ESTIMATED_CAPTION
    return table


def control_text(control: ControlCheck) -> str:
    """The run's control encode, start to end: green when the node held steady, red when it drifted."""
    return f"[{'red' if control.unstable else 'green'}]{escape(control.words())}[/]"
