"""Live sweeps: each step's figures, and how many real-time streams a node carries and at what cost.

A sweep is one node, input, encoder, preset and ladder over several numbers of streams at once.
A step *held* real time when every repetition of it did (``live_realtime``: every stream's speed
at least 1 − the tolerance, and no source frame missing from any rendition). The outcome of a
sweep is its largest N that held, with the watts per stream at that N; the watts carry their
provenance (``energy_estimated``) as every energy figure does.
"""

from __future__ import annotations

import pandas as pd

from analysis.efficiency import job_efficiency
from ffwatt.schema import LIVE_SWEEP_COLUMNS

__all__ = ["SWEEP_KEYS", "is_live", "live_steps", "sweep_outcomes"]

SWEEP_KEYS: tuple[str, ...] = ("node", *LIVE_SWEEP_COLUMNS)


def is_live(frame: pd.DataFrame) -> pd.Series:
    """Which rows are live sweep steps."""
    if "live_streams" not in frame.columns:
        return pd.Series(False, index=frame.index)
    return frame["live_streams"].notna()


def live_steps(frame: pd.DataFrame) -> pd.DataFrame:
    """One row per sweep step (sweep keys × ``live_streams``), over its repetitions: ``n`` ok,
    ``n_failed``, ``n_skipped``, ``held`` (every repetition ran and held real time), the lowest
    ``speed``, the most ``dropped_frames``, and the means of the watts per stream, joules per
    stream-minute, latency and first-frame time; ``energy_estimated`` when any repetition's was."""
    live = frame[is_live(frame)]
    columns = [*SWEEP_KEYS, "live_streams", "n", "n_failed", "n_skipped", "held", "speed", "dropped_frames",
               "live_watts_per_stream", "live_joules_per_stream_minute", "live_latency_ms", "live_first_frame_s",
               "live_bitrate_error_pct", "energy_estimated", "phase", "reason"]
    if live.empty:
        return pd.DataFrame(columns=columns)
    jobs = job_efficiency(live)
    rows = []
    for key, group in jobs.groupby([*SWEEP_KEYS, "live_streams"], dropna=False, sort=True):
        ok = group[group["status"] == "ok"]
        reasons = group.loc[group["status"] != "ok", "error"].dropna()
        rows.append({
            **dict(zip([*SWEEP_KEYS, "live_streams"], key)),
            "n": len(ok), "n_failed": int((group["status"] == "failed").sum()),
            "n_skipped": int((group["status"] == "skipped").sum()),
            "held": bool(len(ok) == len(group) and ok["live_realtime"].fillna(False).astype(bool).all()),
            "speed": _min(ok["speed"]), "dropped_frames": _max(ok["dropped_frames"]),
            "live_watts_per_stream": _mean(ok["live_watts_per_stream"]),
            "live_joules_per_stream_minute": _mean(ok["live_joules_per_stream_minute"]),
            "live_latency_ms": _mean(ok["live_latency_ms"]), "live_first_frame_s": _mean(ok["live_first_frame_s"]),
            "live_bitrate_error_pct": _max(ok["live_bitrate_error_pct"]),
            "energy_estimated": bool(ok["energy_estimated"].any()),
            "phase": _phase(group),
            "reason": str(reasons.iloc[0]).splitlines()[0] if not reasons.empty else "",
        })
    steps = pd.DataFrame(rows, columns=columns)
    steps["live_streams"] = steps["live_streams"].astype(int)
    return steps


def sweep_outcomes(frame: pd.DataFrame) -> pd.DataFrame:
    """One row per sweep: ``max_realtime_streams`` (the largest N that held real time below the smallest
    that broke; 0 when none did), the ``watts_per_stream``, ``speed`` and ``joules_per_stream_minute`` at
    that N, ``broke_at`` (the smallest N that didn't hold, if any) and ``steps`` (the Ns measured, ``*``
    after those reached by bisection)."""
    steps = live_steps(frame)
    columns = [*SWEEP_KEYS, "max_realtime_streams", "watts_per_stream", "joules_per_stream_minute", "speed",
               "broke_at", "steps", "energy_estimated"]
    rows = []
    for key, sweep in steps.groupby(list(SWEEP_KEYS), dropna=False, sort=True):
        broke = sweep[~sweep["held"] & (sweep["n_skipped"] == 0)]
        # Below the smallest N that broke: a repetition that bisected past another's break doesn't count.
        limit = broke["live_streams"].min() if not broke.empty else float("inf")
        held = sweep[sweep["held"] & (sweep["live_streams"] < limit)]
        best = held.loc[held["live_streams"].idxmax()] if not held.empty else None
        rows.append({
            **dict(zip(SWEEP_KEYS, key)),
            "max_realtime_streams": int(best["live_streams"]) if best is not None else 0,
            "watts_per_stream": best["live_watts_per_stream"] if best is not None else None,
            "joules_per_stream_minute": best["live_joules_per_stream_minute"] if best is not None else None,
            "speed": best["speed"] if best is not None else None,
            "broke_at": int(broke["live_streams"].min()) if not broke.empty else None,
            "steps": ",".join(f"{int(r.live_streams)}{'*' if r.phase == 'bisection' else ''}"
                              for r in sweep[sweep["n_skipped"] == 0].sort_values("live_streams").itertuples()),
            "energy_estimated": bool(best["energy_estimated"]) if best is not None else False,
        })
    return pd.DataFrame(rows, columns=columns)


def _phase(group: pd.DataFrame) -> str:
    """How a step's N was reached (the steps of a sweep's repetitions may differ: bisection wins)."""
    phases = set(group["sweep_phase"].dropna()) if "sweep_phase" in group.columns else set()
    return next((p for p in ("bisection", "doubling", "listed") if p in phases), "listed")


def _min(values: pd.Series) -> float | None:
    values = pd.to_numeric(values, errors="coerce").dropna()
    return float(values.min()) if not values.empty else None


def _max(values: pd.Series) -> float | None:
    values = pd.to_numeric(values, errors="coerce").dropna()
    return float(values.max()) if not values.empty else None


def _mean(values: pd.Series) -> float | None:
    values = pd.to_numeric(values, errors="coerce").dropna()
    return float(values.mean()) if not values.empty else None
