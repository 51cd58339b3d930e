"""The run's control: one fixed, short reference encode at the start and at the end of a local run.

The same encode every run, on every node (a synthetic clip, one x264 setting), so what changes between
its two rows is the node, not the work: heat, clocks, other load. When its joules per frame or its
speed moved more than the campaign's ``control_drift_pct`` from start to end, the run is flagged
unstable in its summary, with the figures: the differences between its configurations may be the node's.
Its rows are kind=control; analysis reads them only when asked (:func:`ffwatt.results.read_results`).
"""

from __future__ import annotations

from ffwatt.campaign import Campaign
from ffwatt.jobs import Job, expand
from ffwatt.nodefacts import IdleBaseline
from ffwatt.results import ControlCheck
from ffwatt.schema import JobRow, config_label
from ffwatt.validation import parse_campaign
from flows.job import prepare_references, run_job

__all__ = ["control_jobs", "judge", "run_control"]

# Long enough (about a third of a second here) that the meter's window and FFmpeg's start-up don't
# dominate it, short enough to cost a run little.
CONTROL_INPUT = {"name": "control", "source": "testsrc2", "size": "640x360", "fps": 30, "duration_s": 2}


def _control_campaign(campaign: Campaign) -> Campaign:
    return parse_campaign({
        "name": campaign.name, "inputs": [CONTROL_INPUT],
        "matrix": {"encoders": [{"name": "libx264", "presets": ["veryfast"]}],
                   "rate_control": [{"mode": "crf", "values": [23]}]},
        "repetitions": 2, "quality": [], "reference_format": campaign.reference_format,
        "settle_max_s": campaign.settle_max_s, "control": False,
    }, source="the control encode")


def control_jobs(campaign: Campaign) -> dict[str, Job]:
    """The start and end control encodes of a run of ``campaign``: ids of their own in every run."""
    start, end = expand(_control_campaign(campaign))
    return {"start": start.model_copy(update={"job_id": "control-start"}),
            "end": end.model_copy(update={"job_id": "control-end"})}


def run_control(campaign: Campaign, which: str, idle: IdleBaseline | None, run_id: str, node: str) -> JobRow:
    """Run the ``which`` (start or end) control encode; its row, kind=control."""
    job = control_jobs(campaign)[which]
    reference = prepare_references(_control_campaign(campaign), [job])[job.input.name]
    outcome = run_job(job, reference, idle, run_id, node, encode_retries=1)
    return outcome.row.model_copy(update={"kind": "control"})


def _drift(start: float | None, end: float | None) -> float | None:
    return (end - start) / start * 100.0 if start and end is not None else None


def judge(start: JobRow, end: JobRow, threshold_pct: float) -> ControlCheck:
    """How far the node drifted between the run's two control encodes: joules per frame and fps."""
    figures = {"joules_per_frame": (start.joules_per_frame, end.joules_per_frame),
               "encode_fps": (start.encode_fps, end.encode_fps)}
    drift = {metric: pct for metric, (a, b) in figures.items() if (pct := _drift(a, b)) is not None}
    return ControlCheck(label=config_label(start, with_input=True), joules_per_frame=figures["joules_per_frame"],
                        encode_fps=figures["encode_fps"], drift_pct=drift, threshold_pct=threshold_pct,
                        unstable=any(abs(pct) > threshold_pct for pct in drift.values()))
