"""A sweep's course on its node: each step's outcome noted, the steps past a break skipped, and the
steps between the largest N that held and the smallest that broke measured by bisection.

A sweep (a live one: N streams at once; a density one: N copies of an encode at once) runs its steps
in order on one node, one repetition at a time. After each step the node notes what it did under
``FFWATT_HOME/sweeps/<run_id>/`` — whether real time held (live), or the aggregate frames/s (density,
judged by :func:`ffwatt.jobs.grew`) — so that a later step of the same sweep, in this batch or a
resumed run, knows whether it is past a break. Once a sweep's listed and doubling steps have run,
:func:`course` goes on with :func:`ffwatt.jobs.next_bisection` until the gap is closed: the answer
is the exact largest N, not a power of two.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

from ffwatt.campaign import Campaign
from ffwatt.files import write_atomic
from ffwatt.jobs import Job, grew, next_bisection, sweep_step
from ffwatt.settings import Settings

__all__ = ["course", "held_steps", "note_step", "skip_reason"]


def _notes_file(settings: Settings, run_id: str, job: Job) -> Path:
    assert job.sweep is not None
    sweep_id, repetition = job.sweep
    return settings.home / "sweeps" / run_id / f"{sweep_id}-{repetition}.json"


def _notes(settings: Settings, run_id: str, job: Job) -> dict[int, dict[str, Any]]:
    """What this node noted of each step of ``job``'s sweep (N -> held, fps, why)."""
    path = _notes_file(settings, run_id, job)
    if job.sweep is None or not path.exists():
        return {}
    return {int(n): note for n, note in json.loads(path.read_text()).items()}


def note_step(settings: Settings, run_id: str, job: Job, *, held: bool | None = None, fps: float | None = None,
              why: str = "") -> None:
    """Note what ``job``'s step did: whether it ``held`` real time (a live step), or its aggregate ``fps``
    (a density step; None when it failed), and ``why`` it didn't hold, in words."""
    if job.sweep is None or job.step_n is None:
        return
    notes = _notes(settings, run_id, job)
    notes[job.step_n] = {"held": held, "fps": fps, "why": why.splitlines()[0][:200] if why else ""}
    text = json.dumps({str(n): note for n, note in sorted(notes.items())})
    write_atomic(_notes_file(settings, run_id, job), lambda tmp: tmp.write_text(text))


def held_steps(job: Job, notes: dict[int, dict[str, Any]]) -> dict[int, bool]:
    """Which noted steps of ``job``'s sweep held: real time (live) or still grew (density)."""
    if job.density is not None:
        return grew({n: note.get("fps") for n, note in notes.items()}, job.density.saturation_gain)
    return {n: bool(note.get("held")) for n, note in notes.items()}


def skip_reason(settings: Settings, run_id: str, job: Job) -> str | None:
    """Why this step is skipped: a smaller step of its sweep broke on this node (a step reached by
    bisection lies below the break, and runs)."""
    if job.sweep is None or job.step_n is None or job.sweep_phase == "bisection":
        return None
    notes = _notes(settings, run_id, job)
    broke = sorted(n for n, ok in held_steps(job, notes).items() if not ok and n < job.step_n)
    if not broke:
        return None  # nothing broke, or only this step did before (a resume runs it again)
    n = broke[0]
    if job.density is not None:
        return f"skipped: the node saturated at {n} copies ({_saturation_words(job, notes, n)})"
    return f"skipped: real time broke at {n} stream(s) ({notes[n].get('why') or 'not held'})"


def _saturation_words(job: Job, notes: dict[int, dict[str, Any]], n: int) -> str:
    assert job.density is not None
    fps = notes[n].get("fps")
    if fps is None:
        return notes[n].get("why") or "the step failed"
    held = held_steps(job, notes)
    below = [m for m in sorted(notes) if m < n and held.get(m)]
    if not below:
        return f"{fps:.1f} fps"
    base = notes[below[-1]]["fps"]
    return (f"{fps:.1f} fps aggregate, {(fps / base - 1) * 100:+.1f} % on {base:.1f} fps at {below[-1]}; "
            f"{job.density.saturation_gain:.0%} needed")


def _bisects(campaign: Campaign, job: Job) -> bool:
    spec = campaign.live if job.live is not None else campaign.density
    return bool(spec is not None and spec.bisect)


def course(campaign: Campaign, jobs: Iterable[Job], run_id: str, settings: Settings) -> Iterator[Job]:
    """``jobs`` in order and, after the last of a sweep's steps among them, that sweep's bisection steps
    one at a time (each decided once the one before it has run: the caller runs a job, and notes its
    step, before asking for the next)."""
    pending = list(jobs)
    for index, job in enumerate(pending):
        yield job
        following = pending[index + 1] if index + 1 < len(pending) else None
        if job.sweep is None or (following is not None and following.sweep == job.sweep) \
                or not _bisects(campaign, job):
            continue
        tried: set[int] = set()
        while True:
            notes = _notes(settings, run_id, job)
            n = next_bisection(held_steps(job, notes))
            if n is None or n in notes or n in tried:  # closed, or a step that ran and noted nothing
                break
            tried.add(n)
            yield sweep_step(campaign, job, n)
