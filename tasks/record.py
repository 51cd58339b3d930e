"""record: a job's row, assembled from what each step returned, written to the dataset."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from typing import TYPE_CHECKING

from ffwatt.errors import ResultsError
from ffwatt.frames import FrameScores, frames_table, write_frames
from ffwatt.jobs import Job
from ffwatt.results import read_rows, write_job_row
from ffwatt.schema import ConditionsColumns, EncodeColumns, EnergyColumns, JobRow, QualityColumns, config_label
from ffwatt.settings import load_settings
from tasks.generate import Reference
from tasks.transcode import EncodeResult

if TYPE_CHECKING:
    from prefect.states import State

__all__ = ["build_row", "record_job", "record_same_outputs", "same_outputs", "step_failure", "unwritten"]

# What an encode result gives the row: its encode columns and the size it encoded at.
_FROM_ENCODE = set(EncodeColumns.model_fields) | {"output_width", "output_height"}


def step_failure(step: str, state: State) -> tuple[str, int]:
    """A failed step's error for its job's row (``step: message``), and the attempt that failed."""
    exc = state.result(raise_on_failure=False)
    return f"{step}: {exc}", getattr(exc, "attempt", 1)


def build_row(
    *,
    job: Job,
    run_id: str,
    node: str,
    reference: Reference | None,
    encoded: EncodeResult | None = None,
    energy: EnergyColumns | None = None,
    quality: QualityColumns | None = None,
    error: str | None = None,
    attempts: int | None = None,
) -> JobRow:
    """The row of one job. Anything a failed job never reached stays null."""
    values: dict[str, object] = {
        "campaign": job.campaign,
        "run_id": run_id,
        "job_id": job.job_id,
        "config_id": job.config_id,
        "repetition": job.repetition,
        "node": encoded.node if encoded else node,
        "input_name": job.input.name,
        "encoder": job.encoder,
        "preset": job.preset,
        "rate_control": job.rate_control,
        "crf": job.crf,
        "qp": job.qp,
        "target_bitrate_kbps": job.target_bitrate_kbps,
        "pix_fmt": job.pix_fmt,
        "status": "failed" if error else "ok",
        "error": error,
        "attempts": attempts if attempts is not None else (encoded.attempts if encoded else 1),
        "sweep_phase": job.sweep_phase,
    }
    if job.density is not None:
        values |= {"concurrency": job.density.concurrency, "density_sweep_id": job.density.sweep_id,
                   "density_saturation_gain": job.density.saturation_gain}
    if reference is not None:
        values |= {
            "input_width": reference.width,
            "input_height": reference.height,
            "input_fps": reference.fps,
            "input_frames": reference.frames,
            "reference_path": reference.path,
        }
    if encoded is not None:
        values |= encoded.model_dump(include=_FROM_ENCODE)
        if encoded.conditions is not None:
            values |= encoded.conditions.model_dump(include=set(ConditionsColumns.model_fields) - {"kind"})
        if not job.keep_output:
            values["output_path"] = None  # removed after the quality pass
    if energy is not None:
        values |= energy.model_dump(include=set(EnergyColumns.model_fields))
    if quality is not None:
        values |= quality.model_dump(include=set(QualityColumns.model_fields))
    return JobRow.model_validate(values)


def same_outputs(rows: Sequence[JobRow]) -> dict[str, str]:
    """job_id -> the other configurations whose encode of the same input is identical to the job's
    (``same_output_as``), for every ok job that has one: the settings that differ had no effect."""
    groups: dict[tuple[str, str], list[JobRow]] = defaultdict(list)
    for row in rows:
        if row.status == "ok" and row.output_hash:
            groups[(row.input_name, row.output_hash)].append(row)
    marks: dict[str, str] = {}
    for group in groups.values():
        labels = {row.config_id: config_label(row) for row in group}
        if len(labels) > 1:  # repetitions of one configuration are meant to be identical
            for row in group:
                marks[row.job_id] = "; ".join(sorted(label for config, label in labels.items()
                                                     if config != row.config_id))
    return marks


def record_same_outputs(campaign: str, run_id: str) -> list[JobRow]:
    """Once a run's jobs are in, mark in their rows on disk the jobs whose configuration had no effect
    (identical video for different settings, e.g. a rate control the encoder ignores); returns them."""
    results_dir = load_settings().results_dir
    rows = read_rows(results_dir, campaign, run_id)
    marks = same_outputs(rows)
    marked = []
    for row in rows:
        mark = marks.get(row.job_id)
        if row.same_output_as != mark:
            write_job_row(results_dir, row.model_copy(update={"same_output_as": mark}))
        if mark:
            marked.append(row.model_copy(update={"same_output_as": mark}))
    return marked


def unwritten(row: JobRow, exc: ResultsError) -> JobRow:
    """``row`` as its job's outcome when it couldn't be written: failed, saying why in one line. Only the
    run's summary counts it; the dataset has no row of it, so ``--resume`` runs the job again."""
    return row.model_copy(update={"status": "failed", "error": f"record: {exc}"})


def record_job(row: JobRow, frames: FrameScores | None = None) -> JobRow:
    """Write the row now, so a campaign that dies later loses nothing already measured; ``frames``,
    the job's per-frame scores, first, so a row that counts them never lacks them. Raises
    :class:`ResultsError` when the row can't be written.

    A plain function, not a task: a task run costs the Prefect server about 45 ms
    of CPU (measured with bench/overhead.py), which on a small node competes with
    the encode being measured, and writing one small file needs no retries.
    """
    results_dir = load_settings().results_dir
    if frames is not None and len(frames):
        write_frames(results_dir, row.campaign, row.run_id, frames_table(frames, job_id=row.job_id))
    write_job_row(results_dir, row)
    return row
