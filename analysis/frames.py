"""Jobs' per-frame scores (``results/_frames``) joined to their jobs, and on the time axis of their power.

A frame is placed in its encode's window by its pts: the encode of a clip of ``frames / input_fps``
seconds took ``wall_s``, so the frame at ``pts_s`` sits at ``pts_s x wall_s / duration`` seconds
after the encode began (the encode taken as steady; its first and last seconds are where it isn't).
That puts each frame's quality on the same axis as the node's 1 Hz power over the same encode
(:func:`analysis.series.power_over_time`'s ``t_s``).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import pandas as pd

from ffwatt.frames import read_frames
from ffwatt.results import read_results
from ffwatt.schema import CONFIG_COLUMNS

__all__ = ["FRAME_JOB_COLUMNS", "LOW_END_COLUMNS", "load_frames", "worst_job"]

# The job columns a frame is joined with by default: its configuration, its window, its low end.
FRAME_JOB_COLUMNS: tuple[str, ...] = ("config_id", "repetition", "node", *CONFIG_COLUMNS, "status", "started_at",
                                      "ended_at", "wall_s", "frames", "input_fps", "vmaf_model", "vmaf_p5")
# The low end the report lists per job (SSIM's sits in the third decimal: its file has it).
LOW_END_COLUMNS: tuple[str, ...] = ("vmaf", "vmaf_hmean", "vmaf_p5", "vmaf_p1", "vmaf_min", "vmaf_neg", "vmaf_phone",
                                    "psnr", "psnr_p5", "psnr_min")


def load_frames(results_dir: Path, *, campaign: str | None = None, run_id: str | Sequence[str] | None = None,
                job_id: str | Sequence[str] | None = None,
                job_columns: Sequence[str] | None = FRAME_JOB_COLUMNS) -> pd.DataFrame:
    """The per-frame scores of the runs and jobs asked for, each joined to its job's ``job_columns``, with
    ``t_s``: seconds since the job's encode began, the frame placed by its pts (module doc).
    ``job_columns=None`` gives the frames alone."""
    results_dir = Path(results_dir)
    frames = read_frames(results_dir, campaign=campaign, run_id=run_id, job_id=job_id).to_pandas()
    if not job_columns or frames.empty:
        return frames
    wanted = list(dict.fromkeys(["campaign", "run_id", "job_id", *job_columns]))
    jobs = read_results(results_dir, campaign=campaign, run_id=run_id if isinstance(run_id, str) else None,
                        columns=wanted)
    joined = frames.merge(jobs, on=["campaign", "run_id", "job_id"], how="left")
    if {"wall_s", "frames", "input_fps"} <= set(joined.columns):
        duration = pd.to_numeric(joined["frames"], errors="coerce") / pd.to_numeric(joined["input_fps"],
                                                                                    errors="coerce")
        joined["t_s"] = joined["pts_s"] * pd.to_numeric(joined["wall_s"], errors="coerce") / duration
    return joined


def worst_job(jobs: pd.DataFrame) -> str | None:
    """The scored ok job whose worst frames are worst: the lowest 5th-percentile VMAF (else PSNR); None
    when no job of these rows was scored frame by frame."""
    if "quality_frames" not in jobs.columns:
        return None
    scored = jobs[(jobs["status"] == "ok") & jobs["quality_frames"].notna()]
    for column in ("vmaf_p5", "psnr_p5", "ssim_p5"):
        if column in scored.columns and scored[column].notna().any():
            return str(scored.loc[pd.to_numeric(scored[column]).idxmin(), "job_id"])
    return None
