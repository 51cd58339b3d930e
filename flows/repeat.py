"""Adaptive repetitions: rounds over the configurations not yet settled, each round shuffled.

A campaign whose ``repetitions`` is ``{min, max, ci_pct}`` runs every configuration ``min`` times, then
keeps running those whose 95 % intervals (joules per frame and wall time, :func:`analysis.stats.settled`)
are wider than ``ci_pct`` % of the mean, one repetition each per round, until all have settled or reached
``max``. Rounds interleave the configurations so slow drift (heat, other load) spreads over all of them,
and each round's order is shuffled with a seed derived from the run id: recorded in the run summary, and
the same when the run is resumed, so a resumed run goes on in the order it would have.
"""

from __future__ import annotations

import hashlib
import random
from collections.abc import Iterator, Sequence

from analysis.stats import settled
from ffwatt.campaign import AdaptiveRepetitions
from ffwatt.jobs import Job
from ffwatt.schema import JobRow
from tasks._logging import run_logger

__all__ = ["rounds", "shuffle_seed"]


def shuffle_seed(run_id: str) -> int:
    """The run's shuffle seed: from its id, so a resumed run shuffles as the run it resumes did."""
    return int(hashlib.sha256(run_id.encode()).hexdigest()[:8], 16)


def _settled(config_id: str, rows: Sequence[JobRow], spec: AdaptiveRepetitions) -> bool:
    ok = [row for row in rows if row.config_id == config_id and row.status == "ok"]
    return settled([r.joules_per_frame for r in ok if r.joules_per_frame is not None],
                   [r.wall_s for r in ok if r.wall_s is not None], spec.ci_pct)


def rounds(spec: AdaptiveRepetitions, jobs: Sequence[Job], rows: list[JobRow], seed: int) -> Iterator[list[Job]]:
    """Each round's jobs in the order to run them: round r holds repetition r of every configuration not yet
    settled (all of them up to ``spec.min``), less those already in ``rows``. ``jobs`` is the campaign's up to
    ``spec.max`` (:func:`ffwatt.jobs.expand`); ``rows`` grows as the caller runs them, and is read when the
    next round is asked for, so the caller runs a round's jobs before asking."""
    by_repetition: dict[int, list[Job]] = {}
    for job in jobs:
        by_repetition.setdefault(job.repetition, []).append(job)
    for repetition in sorted(by_repetition):
        due = by_repetition[repetition]
        if repetition > spec.min:
            due = [job for job in due if not _settled(job.config_id, rows, spec)]
            if not due:
                run_logger().info("every configuration settled after %d repetitions", repetition - 1)
                return
            run_logger().info("round %d: %d of %d configuration(s) not settled yet", repetition, len(due),
                              len(by_repetition[repetition]))
        order = list(due)
        random.Random(f"{seed}-{repetition}").shuffle(order)  # an order, not a secret
        done = {row.job_id for row in rows}
        yield [job for job in order if job.job_id not in done]
