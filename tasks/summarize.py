"""summarize: the campaign run's summary, written beside its rows as ``_run.json``."""

from __future__ import annotations

from datetime import UTC, datetime

from prefect import task
from prefect.cache_policies import NO_CACHE

from ffwatt.nodefacts import IdleBaseline, NodeFacts
from ffwatt.results import RunSummary, write_run_summary
from ffwatt.schema import JobRow
from ffwatt.settings import load_settings

__all__ = ["summarize", "summarize_run"]


def summarize(rows: list[JobRow], *, campaign: str, run_id: str, started_at: datetime,
              nodes: dict[str, NodeFacts], idle_baselines: dict[str, IdleBaseline]) -> RunSummary:
    """Counts, times, and the nodes that ran the jobs. Per-configuration figures are
    :func:`analysis.config_efficiency`'s, computed from the rows when they are read."""
    ended_at = datetime.now(UTC)
    return RunSummary(
        campaign=campaign,
        run_id=run_id,
        started_at=started_at,
        ended_at=ended_at,
        wall_s=(ended_at - started_at).total_seconds(),
        jobs=len(rows),
        ok=sum(r.status == "ok" for r in rows),
        failed=sum(r.status == "failed" for r in rows),
        encode_wall_s=sum(r.wall_s or 0 for r in rows),
        nodes=nodes,
        idle_baselines=idle_baselines,
    )


@task(name="summarize", cache_policy=NO_CACHE)
def summarize_run(rows: list[JobRow], campaign: str, run_id: str, started_at: datetime,
                  nodes: dict[str, NodeFacts], idle_baselines: dict[str, IdleBaseline]) -> RunSummary:
    """Summarize the run and store the summary beside its rows."""
    summary = summarize(rows, campaign=campaign, run_id=run_id, started_at=started_at, nodes=nodes,
                        idle_baselines=idle_baselines)
    write_run_summary(load_settings().results_dir, summary)
    return summary
