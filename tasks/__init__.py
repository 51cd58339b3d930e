"""The campaign's steps, one module each: generate-video, transcode, account-energy,
quality, record, summarize. Each is a Prefect task around a plain function that does
the work, so the work can also be called and tested without an orchestrator."""

from tasks.energy import account_energy, idle_baseline
from tasks.generate import Reference, generate_video
from tasks.quality import QualityScores, measure_quality
from tasks.record import build_row, record_job, record_same_outputs, step_failure
from tasks.summarize import summarize_run
from tasks.transcode import EncodeResult, transcode

__all__ = [
    "EncodeResult",
    "QualityScores",
    "Reference",
    "account_energy",
    "build_row",
    "generate_video",
    "idle_baseline",
    "measure_quality",
    "record_job",
    "record_same_outputs",
    "step_failure",
    "summarize_run",
    "transcode",
]
