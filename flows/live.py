"""A live job (one concurrency sweep step) through contribution-stream -> live-step -> account-energy
into its row, for the local campaign and a node's batch alike (:func:`flows.job.run_job` hands live
jobs here).

A sweep's steps run in order on one node. Each step's outcome is noted on the node
(:mod:`flows.sweep`); when a step doesn't hold real time (or fails), the larger steps of that sweep
and repetition are recorded as skipped rather than run — a step with twice the streams would only
break harder — and the steps between the largest N that held and the smallest that broke are
measured by bisection.
"""

from __future__ import annotations

import json
import statistics

from ffwatt.jobs import Job
from ffwatt.nodefacts import IdleBaseline
from ffwatt.schema import JobRow
from ffwatt.settings import load_settings
from flows.sweep import note_step, skip_reason
from tasks import Reference, account_energy, build_row, step_failure
from tasks.live import Contribution, LiveStepResult, contribution_stream, live_step

__all__ = ["live_columns", "run_live_job"]


def live_columns(job: Job, step: LiveStepResult) -> dict[str, object]:
    """The row's encode and live columns from what the step measured (energy comes separately)."""
    assert job.live is not None
    ladder = job.live.ladder
    streams = step.streams
    speeds = [s.speed for s in streams if s.speed is not None]
    rung_kbps: dict[str, float] = {}
    for k, rung in enumerate(ladder):
        measured = [s.rung_kbps[k] for s in streams if k < len(s.rung_kbps) and s.rung_kbps[k] is not None]
        if measured:
            rung_kbps[rung.label] = round(statistics.fmean(m for m in measured if m is not None), 1)
    errors = [abs(rung_kbps[r.label] - r.bitrate_kbps) / r.bitrate_kbps * 100 for r in ladder if r.label in rung_kbps]
    latencies = sorted(value for s in streams for value in s.latencies_ms)
    delays = [s.first_frame_s for s in streams if s.first_frame_s is not None]
    frames = sum(s.frames for s in streams)
    dropped = sum(s.dropped_frames for s in streams)
    width, height = (int(side) for side in ladder[0].size.split("x"))
    lowest = min(speeds) if len(speeds) == len(streams) and speeds else None
    realtime = None
    if step.error is None and lowest is not None:
        realtime = lowest >= 1 - job.live.realtime_tolerance and dropped == 0
    return {
        "started_at": step.started_at, "ended_at": step.ended_at, "wall_s": step.wall_s,
        "cpu_user_s": step.cpu_user_s, "cpu_sys_s": step.cpu_sys_s, "max_rss_bytes": step.max_rss_bytes or None,
        "frames": frames or None, "encode_fps": frames / step.wall_s if frames and step.wall_s else None,
        "speed": lowest, "bitrate_kbps": rung_kbps.get(ladder[0].label),
        "dropped_frames": dropped if streams else None,
        "duplicated_frames": sum(s.duplicated_frames for s in streams) if streams else None,
        "output_width": width, "output_height": height,
        "ffmpeg_version": step.ffmpeg_version, "ffmpeg_cmd": step.ffmpeg_cmd, "output_path": step.output_path,
        "live_streams": job.live.streams, "live_ladder": job.live.ladder_label, "live_sweep_id": job.live.sweep_id,
        "live_realtime": realtime, "live_realtime_tolerance": job.live.realtime_tolerance,
        "live_source_frames": max((s.source_frames for s in streams), default=None) or None,
        "live_rung_bitrates_kbps": json.dumps(rung_kbps) if rung_kbps else None,
        "live_bitrate_error_pct": max(errors) if errors else None,
        "live_first_frame_s": max(delays) if delays else None,
        "live_latency_ms": statistics.median(latencies) if latencies else None,
        "live_latency_p95_ms": latencies[min(len(latencies) - 1, int(0.95 * len(latencies)))] if latencies else None,
        "live_streams_detail": json.dumps([
            {"stream": s.stream, "speed": None if s.speed is None else round(s.speed, 4), "frames": s.frames,
             "dropped_frames": s.dropped_frames, "state": s.state if s.error is None else f"failed: {s.error}"}
            for s in streams]) if streams else None,
        "live_ingest": step.ingest,
    }


def _per_stream_energy(row: JobRow, streams: int) -> dict[str, float | None]:
    """Watts per stream and joules per stream-minute, net of idle (None without an idle baseline)."""
    if row.net_energy_j is None or not row.wall_s:
        return {"live_watts_per_stream": None, "live_joules_per_stream_minute": None}
    stream_minutes = (row.frames or 0) / (row.input_fps or 1) / 60
    return {"live_watts_per_stream": row.net_energy_j / row.wall_s / streams,
            "live_joules_per_stream_minute": row.net_energy_j / stream_minutes if stream_minutes else None}


def run_live_job(job: Job, reference: Reference | str, idle: IdleBaseline | None, run_id: str,
                 node: str) -> JobRow:
    """One live sweep step through contribution-stream, live-step and account-energy; always its row
    (``reference`` is why the input couldn't be prepared, when it is text)."""
    assert job.live is not None
    settings = load_settings()
    identity = {"live_streams": job.live.streams, "live_ladder": job.live.ladder_label,
                "live_sweep_id": job.live.sweep_id, "live_realtime_tolerance": job.live.realtime_tolerance}
    if isinstance(reference, str):
        note_step(settings, run_id, job, held=False, why="the input couldn't be prepared")
        return JobRow.model_validate(build_row(job=job, run_id=run_id, node=node, reference=None,
                                               error=reference).model_dump() | identity)
    skipped = skip_reason(settings, run_id, job)
    if skipped is not None:
        row = build_row(job=job, run_id=run_id, node=node, reference=reference)
        return JobRow.model_validate(row.model_dump() | identity | {"status": "skipped", "error": skipped})

    contribution_state = contribution_stream(reference, return_state=True)
    if not contribution_state.is_completed():
        note_step(settings, run_id, job, held=False, why="no contribution clip")
        error, _ = step_failure("contribution-stream", contribution_state)
        return JobRow.model_validate(build_row(job=job, run_id=run_id, node=node, reference=reference,
                                               error=error).model_dump() | identity)
    contribution: Contribution = contribution_state.result()
    step_state = live_step(job, contribution, run_id, return_state=True)
    if not step_state.is_completed():
        note_step(settings, run_id, job, held=False, why="the step failed")
        error, _ = step_failure("live-step", step_state)
        return JobRow.model_validate(build_row(job=job, run_id=run_id, node=node, reference=reference,
                                               error=error).model_dump() | identity)
    step: LiveStepResult = step_state.result()
    energy = (account_energy(step.energy, step.cpu_s, sum(s.frames for s in step.streams) or None, idle)
              if step.energy is not None else None)
    row = build_row(job=job, run_id=run_id, node=step.node, reference=reference, energy=energy,
                    error=f"live-step: {step.error}" if step.error else None)
    row = JobRow.model_validate(row.model_dump() | live_columns(job, step))
    row = JobRow.model_validate(row.model_dump() | _per_stream_energy(row, job.live.streams))
    why = ""
    if row.live_realtime is not True:
        why = step.error or (f"lowest speed {row.speed:.3f}" if row.speed is not None else "no speed measured")
        if row.dropped_frames:
            why += f", {row.dropped_frames} frames dropped"
    note_step(settings, run_id, job, held=row.live_realtime is True, why=why)
    return row

