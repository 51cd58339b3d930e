"""publish: a run's outcome, and a regression check, as Prefect markdown artifacts.

People who start campaigns from the Prefect UI read the outcome there: each campaign
keeps one artifact key (``campaign-<name>``, ``regression-<name>``), so the UI shows
the latest next to the history of earlier runs' versions.
"""

from __future__ import annotations

import re

from prefect import task
from prefect.artifacts import create_markdown_artifact
from prefect.cache_policies import NO_CACHE

from analysis.outcome import run_outcome_markdown
from analysis.regression import RunComparison, compare_runs, previous_run
from ffwatt.errors import FfwattError
from ffwatt.results import RunSummary
from ffwatt.settings import load_settings
from tasks._logging import run_logger

__all__ = ["artifact_key", "compare_with_previous", "publish_outcome"]


def artifact_key(kind: str, campaign: str) -> str:
    """``<kind>-<campaign>`` in the characters Prefect allows in a key (lowercase, digits, dashes)."""
    return re.sub(r"-+", "-", re.sub(r"[^a-z0-9-]", "-", f"{kind}-{campaign}".lower())).strip("-")


@task(name="publish-outcome", cache_policy=NO_CACHE)
def publish_outcome(summary: RunSummary) -> RunSummary:
    """Publish the run's outcome as the campaign's markdown artifact."""
    results_dir = load_settings().results_dir
    try:
        markdown = run_outcome_markdown(results_dir, summary.campaign, summary.run_id, summary=summary)
    except FfwattError as exc:  # the rows are saved whatever happens here; say why there is no summary
        markdown = f"## Campaign {summary.campaign}, run {summary.run_id}\n\nNo summary: {exc}\n"
    create_markdown_artifact(markdown, key=artifact_key("campaign", summary.campaign),
                             description=f"Outcome of campaign {summary.campaign}, run {summary.run_id}")
    return summary


@task(name="compare-with-previous", cache_policy=NO_CACHE)
def compare_with_previous(summary: RunSummary, threshold_pct: float) -> RunComparison | None:
    """Compare the run with the previous run of its campaign on the same node(s), and publish the
    comparison as the campaign's regression artifact; None when there is no previous run."""
    results_dir = load_settings().results_dir
    key = artifact_key("regression", summary.campaign)
    baseline = previous_run(results_dir, summary.campaign, summary.run_id)
    if baseline is None:
        nodes = ", ".join(sorted(summary.nodes)) or "its nodes"
        create_markdown_artifact(
            f"## Regression check: campaign {summary.campaign}\n\nNo earlier run of this campaign on {nodes}: "
            f"run {summary.run_id} is the baseline for the next one.\n", key=key,
            description=f"Regression check of run {summary.run_id}: no baseline yet")
        return None
    comparison = compare_runs(results_dir, baseline, summary.run_id, campaign=summary.campaign)
    run_logger().info("%s", comparison.headline(threshold_pct))
    create_markdown_artifact(comparison.markdown(threshold_pct), key=key,
                             description=f"Run {summary.run_id} against {baseline}: {len(comparison.configs)} "
                                         f"configurations, threshold {threshold_pct:g} %")
    return comparison
