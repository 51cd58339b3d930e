"""summarize: the campaign run's summary, written beside its rows as ``_run.json``.

It is written twice: when the run starts (``running``, with the process that runs it)
and when it ends, ``complete`` or ``interrupted``, so a run that died in between is
told apart from one that finished (:meth:`ffwatt.results.RunSummary.observed_state`).
"""

from __future__ import annotations

import os
import socket
from collections import Counter
from datetime import UTC, datetime

from prefect import task
from prefect.cache_policies import NO_CACHE

from ffwatt.campaign import AdaptiveRepetitions
from ffwatt.errors import ResultsError
from ffwatt.nodefacts import IdleBaseline, NodeFacts
from ffwatt.results import ControlCheck, RunState, RunSummary, write_run_summary
from ffwatt.schema import JobRow, failure_reason
from ffwatt.settings import load_settings
from tasks._logging import run_logger

__all__ = ["start_run", "summarize", "summarize_run"]


def start_run(campaign: str, run_id: str, started_at: datetime, jobs: int,
              repetitions: AdaptiveRepetitions | None = None, shuffle_seed: int | None = None) -> RunSummary:
    """Mark the run as running, by this process on this host (with adaptive repetitions, their rule and
    the seed that shuffles the rounds)."""
    summary = RunSummary(campaign=campaign, run_id=run_id, state="running", host=socket.gethostname(),
                         pid=os.getpid(), started_at=started_at, jobs=jobs, repetitions=repetitions,
                         shuffle_seed=shuffle_seed)
    write_run_summary(load_settings().results_dir, summary)
    return summary


def summarize(rows: list[JobRow], *, campaign: str, run_id: str, started_at: datetime, jobs: int,
              nodes: dict[str, NodeFacts], idle_baselines: dict[str, IdleBaseline],
              state: RunState = "complete", repetitions: AdaptiveRepetitions | None = None,
              shuffle_seed: int | None = None, control: ControlCheck | None = None) -> RunSummary:
    """Counts, times, why jobs failed, and the nodes that ran them. Per-configuration figures are
    :func:`analysis.config_efficiency`'s, computed from the rows when they are read."""
    ended_at = datetime.now(UTC)
    failed = [r for r in rows if r.status == "failed"]
    return RunSummary(
        campaign=campaign,
        run_id=run_id,
        state=state,
        host=socket.gethostname(),
        pid=os.getpid(),
        started_at=started_at,
        ended_at=ended_at,
        wall_s=(ended_at - started_at).total_seconds(),
        jobs=jobs,
        ok=sum(r.status == "ok" for r in rows),
        failed=len(failed),
        skipped=sum(r.status == "skipped" for r in rows),
        failures=dict(Counter(failure_reason(r.error) for r in failed).most_common()),
        encode_wall_s=sum(r.wall_s or 0 for r in rows),
        nodes=nodes,
        idle_baselines=idle_baselines,
        repetitions=repetitions,
        shuffle_seed=shuffle_seed,
        control=control,
    )


@task(name="summarize", cache_policy=NO_CACHE)
def summarize_run(rows: list[JobRow], campaign: str, run_id: str, started_at: datetime, jobs: int,
                  nodes: dict[str, NodeFacts], idle_baselines: dict[str, IdleBaseline],
                  state: RunState = "complete", repetitions: AdaptiveRepetitions | None = None,
                  shuffle_seed: int | None = None, control: ControlCheck | None = None) -> RunSummary:
    """Summarize the run and store the summary beside its rows."""
    summary = summarize(rows, campaign=campaign, run_id=run_id, started_at=started_at, jobs=jobs, nodes=nodes,
                        idle_baselines=idle_baselines, state=state, repetitions=repetitions,
                        shuffle_seed=shuffle_seed, control=control)
    if control is not None and control.unstable:
        run_logger().warning("%s", control.words())
    try:
        write_run_summary(load_settings().results_dir, summary)
    except ResultsError as exc:
        # A full disk: the run is over and its outcome is returned all the same; on disk it stays marked
        # running, so once this process is gone it reads crashed, its counts taken from its rows.
        run_logger().error("%s", exc)
    return summary
