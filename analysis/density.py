"""VOD density: how many copies of an encode a node should run at once, and what each frame costs there.

A density sweep is one encode (input, encoder, preset, rate, size) on one node over several numbers of
copies at once (``concurrency``). Each step's figures are the means over its ok repetitions, with their
95 % intervals: aggregate frames/s (every copy's frames over the step's window), the node's average
watts, joules per frame and frames per joule. A step *grew* when its aggregate frames/s is at least the
sweep's ``saturation_gain`` (5 %) above that of the last step that grew (:func:`ffwatt.jobs.grew`, the
rule the node used to stop the sweep), judged in each repetition; a step grew when it did in every
repetition that ran it. The *knee* is the largest N that grew below the first that didn't: more copies
than that add less throughput than the gain. The most efficient N is the one with
the most frames per joule. Energy figures carry their provenance (``energy_estimated``).
"""

from __future__ import annotations

import pandas as pd

from analysis.efficiency import config_efficiency, job_efficiency
from ffwatt.campaign import SATURATION_GAIN
from ffwatt.jobs import grew
from ffwatt.schema import config_label

__all__ = ["DENSITY_KEYS", "density_outcomes", "density_steps", "is_density"]

DENSITY_KEYS: tuple[str, ...] = ("node", "density_sweep_id")
_FIGURES = ("encode_fps", "avg_power_w", "net_power_w", "joules_per_frame", "frames_per_joule")


def is_density(frame: pd.DataFrame) -> pd.Series:
    """Which rows are density sweep steps."""
    if "concurrency" not in frame.columns:
        return pd.Series(False, index=frame.index)
    return frame["concurrency"].notna()


def density_steps(frame: pd.DataFrame) -> pd.DataFrame:
    """One row per density sweep step (node, sweep, ``concurrency``): ``config`` (the encode in words,
    without its concurrency), ``n`` ok repetitions, ``n_failed``, ``n_skipped``, the means of
    ``encode_fps`` (aggregate), ``avg_power_w``, ``net_power_w``, ``joules_per_frame`` and
    ``frames_per_joule`` with ``_ci_low``/``_ci_high`` (≥ 2 repetitions), ``grew``, ``phase`` (listed,
    doubling, bisection), ``input_fps``, ``energy_estimated`` and ``reason`` (why a step was skipped)."""
    rows = frame[is_density(frame)]
    figures = [f"{m}{s}" for m in _FIGURES for s in ("", "_ci_low", "_ci_high")]
    columns = [*DENSITY_KEYS, "concurrency", "config", "input_name", "n", "n_failed", "n_skipped", *figures,
               "grew", "phase", "input_fps", "energy_estimated", "reason"]
    if rows.empty:
        return pd.DataFrame(columns=columns)
    jobs = job_efficiency(rows)
    # Skipped steps have no encode (no size): they count per step, not as configurations of their own.
    ran = jobs[jobs["status"] != "skipped"]
    configs = config_efficiency(ran, by=(*DENSITY_KEYS, "concurrency"), metrics=_FIGURES) if not ran.empty \
        else pd.DataFrame(columns=[*DENSITY_KEYS, "concurrency"])
    out = []
    for key, mine in jobs.groupby([*DENSITY_KEYS, "concurrency"], sort=True):
        node, sweep_id, concurrency = key
        found = configs[(configs["node"] == node) & (configs["density_sweep_id"] == sweep_id)
                        & (configs["concurrency"] == concurrency)]
        step = found.iloc[0] if not found.empty else None
        first = (mine[mine["status"] != "skipped"] if step is not None else mine).iloc[0]
        reasons = mine.loc[mine["status"] != "ok", "error"].dropna()
        phases = set(mine["sweep_phase"].dropna()) if "sweep_phase" in mine else set()
        out.append({
            "node": node, "density_sweep_id": sweep_id, "concurrency": int(concurrency),
            "config": config_label(first.drop(labels=["concurrency"])), "input_name": first["input_name"],
            "n": int(step["n"]) if step is not None else 0, "n_failed": int((mine["status"] == "failed").sum()),
            "n_skipped": int((mine["status"] == "skipped").sum()),
            **{f: step.get(f) if step is not None else None for f in figures}, "grew": False,
            "phase": next((p for p in ("bisection", "doubling", "listed") if p in phases), "listed"),
            "input_fps": mine["input_fps"].max(),
            "energy_estimated": bool(step.get("energy_estimated")) if step is not None else False,
            "reason": str(reasons.iloc[0]).splitlines()[0] if not reasons.empty else ""})
    steps = pd.DataFrame(out, columns=columns).sort_values([*DENSITY_KEYS, "concurrency"]).reset_index(drop=True)
    # Judged per repetition by the rule the node stopped the sweep by; a step grew when it did in every
    # repetition that ran it (a step that only failed didn't).
    verdicts: dict[tuple[object, ...], bool] = {}
    for (node, sweep_id, _), rep in jobs.groupby([*DENSITY_KEYS, "repetition"], sort=False):
        gains = pd.to_numeric(rep["density_saturation_gain"], errors="coerce").dropna()
        ran = rep[rep["status"] != "skipped"]
        fps = {int(r.concurrency): (float(r.encode_fps) if pd.notna(r.encode_fps) else None)
               for r in ran.itertuples()}
        for n, ok in grew(fps, float(gains.iloc[0]) if not gains.empty else SATURATION_GAIN).items():
            verdicts[(node, sweep_id, n)] = verdicts.get((node, sweep_id, n), True) and ok
    steps["grew"] = [verdicts.get((r.node, r.density_sweep_id, r.concurrency), False) for r in steps.itertuples()]
    return steps


def density_outcomes(frame: pd.DataFrame) -> pd.DataFrame:
    """One row per density sweep: ``knee`` (the largest N that grew below the first that didn't; None
    when nothing ran), ``saturated_at`` (the first N that didn't grow, if any), the aggregate fps and
    J/frame at the knee, ``best_n`` (most frames per joule) with its frames per joule, J/frame, fps and
    watts (and their intervals), ``steps`` (the Ns measured, ``*`` after those reached by bisection) and
    ``energy_estimated``."""
    steps = density_steps(frame)
    columns = [*DENSITY_KEYS, "config", "input_name", "knee", "saturated_at", "knee_fps", "knee_joules_per_frame",
               "best_n", "best_frames_per_joule", "best_frames_per_joule_ci_low", "best_frames_per_joule_ci_high",
               "best_joules_per_frame", "best_fps", "best_avg_power_w", "steps", "energy_estimated"]
    out = []
    for _, sweep in steps.groupby(list(DENSITY_KEYS), sort=True):
        measured = sweep[sweep["n"] > 0].sort_values("concurrency")
        ran = sweep[(sweep["n"] > 0) | (sweep["n_failed"] > 0)]  # not merely skipped
        broke = ran[~ran["grew"].astype(bool)]
        saturated_at = int(broke["concurrency"].min()) if not broke.empty else None
        below = measured[measured["grew"] & (measured["concurrency"] < (saturated_at or 10**9))]
        knee = below.iloc[-1] if not below.empty else None
        ranked = measured.dropna(subset=["frames_per_joule"])
        best = ranked.loc[ranked["frames_per_joule"].idxmax()] if not ranked.empty else None
        out.append({
            **{k: sweep.iloc[0][k] for k in DENSITY_KEYS}, "config": sweep.iloc[0]["config"],
            "input_name": sweep.iloc[0]["input_name"],
            "knee": int(knee["concurrency"]) if knee is not None else None, "saturated_at": saturated_at,
            "knee_fps": knee["encode_fps"] if knee is not None else None,
            "knee_joules_per_frame": knee["joules_per_frame"] if knee is not None else None,
            "best_n": int(best["concurrency"]) if best is not None else None,
            **{f"best_{f}": best[f] if best is not None else None
               for f in ("frames_per_joule", "frames_per_joule_ci_low", "frames_per_joule_ci_high",
                         "joules_per_frame")},
            "best_fps": best["encode_fps"] if best is not None else None,
            "best_avg_power_w": best["avg_power_w"] if best is not None else None,
            "steps": ",".join(f"{int(r.concurrency)}{'*' if r.phase == 'bisection' else ''}"
                              for r in measured.itertuples()),
            "energy_estimated": bool(measured["energy_estimated"].any()),
        })
    return pd.DataFrame(out, columns=columns)
