"""The job step both the local campaign and a node's batch run: references, then each job
through transcode -> account-energy -> quality into its row and its per-frame scores (a live
job through :mod:`flows.live` instead). A density sweep step's row is noted for its sweep's course
(:mod:`flows.sweep`), and a step past its sweep's saturation is recorded as skipped."""

from __future__ import annotations

from pydantic import BaseModel

from ffwatt.campaign import Campaign, FileInput
from ffwatt.frames import FrameScores
from ffwatt.jobs import Job
from ffwatt.nodefacts import IdleBaseline
from ffwatt.schema import JobRow
from ffwatt.settings import load_settings
from ffwatt.validation import input_path_refusal
from flows.live import run_live_job
from flows.sweep import note_step, skip_reason
from tasks import (
    QualityScores,
    Reference,
    account_energy,
    build_row,
    generate_video,
    measure_quality,
    step_failure,
    transcode,
)
from tasks.conditions import settle

__all__ = ["JobOutcome", "prepare_references", "run_job"]


class JobOutcome(BaseModel):
    """What a job leaves: its row, and its per-frame scores when it was scored."""

    row: JobRow
    frames: FrameScores | None = None


def prepare_references(campaign: Campaign, jobs: list[Job], *, from_api: bool = False) -> dict[str, Reference | str]:
    """The reference clip of every input these jobs use, or why it couldn't be made. A campaign that came
    through the API (``from_api``) has its file inputs read only where this node's settings allow."""
    references: dict[str, Reference | str] = {}
    settings = load_settings()
    for spec in campaign.inputs:
        if from_api and isinstance(spec, FileInput) and (why := input_path_refusal(spec, settings)) is not None:
            references[spec.name] = f"generate-video: {why}"  # refused before the path is looked at
        elif any(job.input.name == spec.name for job in jobs):
            state = generate_video(spec, campaign.reference_format, return_state=True)
            references[spec.name] = state.result() if state.is_completed() else step_failure("generate-video", state)[0]
    return references


def run_job(job: Job, reference: Reference | str, idle: IdleBaseline | None, run_id: str, node: str,
            encode_retries: int) -> JobOutcome:
    """One job through transcode, account-energy and quality; always returns its row."""
    if job.live is not None:
        return JobOutcome(row=run_live_job(job, reference, idle, run_id, node))
    if job.density is None:
        return _run_encode(job, reference, idle, run_id, node, encode_retries)
    settings = load_settings()
    skipped = skip_reason(settings, run_id, job)
    if skipped is not None:
        row = build_row(job=job, run_id=run_id, node=node, reference=reference if not isinstance(reference, str)
                        else None)
        return JobOutcome(row=row.model_copy(update={"status": "skipped", "error": skipped}))
    outcome = _run_encode(job, reference, idle, run_id, node, encode_retries)
    row = outcome.row
    # Throughput is the encode's: a quality pass that failed afterwards doesn't change it.
    encoded = row.encode_fps is not None and bool(row.frames)
    note_step(settings, run_id, job, fps=row.encode_fps if encoded else None,
              why="" if encoded else row.error or "failed")
    return outcome


def _run_encode(job: Job, reference: Reference | str, idle: IdleBaseline | None, run_id: str, node: str,
                encode_retries: int) -> JobOutcome:
    if isinstance(reference, str):  # the input itself couldn't be prepared
        return JobOutcome(row=build_row(job=job, run_id=run_id, node=node, reference=None, error=reference))

    # Each job starts from a quiet, cool node as far as settle_max_s allows; how long that took is recorded.
    waited = settle(load_settings(), job.settle_max_s)
    encode = transcode.with_options(retries=encode_retries, retry_delay_seconds=1)
    encoded_state = encode(job, reference, run_id, return_state=True)
    if not encoded_state.is_completed():
        error, attempt = step_failure("transcode", encoded_state)
        row = build_row(job=job, run_id=run_id, node=node, reference=reference, error=error,
                        attempts=attempt).model_copy(update={"settle_s": waited})
        # An FFmpeg that ran and failed still used memory: the row says how much, as an ok one does.
        peak = getattr(encoded_state.result(raise_on_failure=False), "max_rss_bytes", None)
        return JobOutcome(row=row.model_copy(update={"max_rss_bytes": peak}) if peak else row)
    encoded = encoded_state.result()

    energy = account_energy(encoded.energy, encoded.cpu_s, encoded.frames, idle)

    quality: QualityScores | None = None
    quality_error: str | None = None
    if job.quality:
        quality_state = measure_quality(job, reference, encoded, return_state=True)
        if quality_state.is_completed():
            quality = quality_state.result()
        else:
            quality_error, _ = step_failure("quality", quality_state)

    row = build_row(job=job, run_id=run_id, node=node, reference=reference,
                    encoded=encoded, energy=energy, quality=quality, error=quality_error
                    ).model_copy(update={"settle_s": waited})
    return JobOutcome(row=row, frames=quality.frames if quality is not None else None)
