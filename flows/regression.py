"""The regression flow: run a small fixed campaign, compare it with the previous run of the
same campaign on the same node, and end Failed when something got significantly worse.

Deployed as ``regression/nightly`` (``deployments/prefect.yaml``, its schedule off until
switched on). A regression is a change for the worse in joules per frame, fps, VMAF or
bitrate that Welch's t-test finds significant and that exceeds ``threshold_pct``; the
comparison, with what changed on the node (FFmpeg build, driver, kernel, governor, CPU),
is published as the ``regression-<campaign>`` markdown artifact either way.
"""

from __future__ import annotations

from typing import Annotated, Literal

from prefect import flow
from prefect.states import Completed, Failed, State
from pydantic import Field

from ffwatt.campaign import Campaign
from ffwatt.results import RunSummary
from flows.campaign import campaign_flow
from tasks.publish import compare_with_previous

__all__ = ["regression_flow"]


@flow(name="regression", flow_run_name="regression-{campaign.name}", validate_parameters=True)
def regression_flow(campaign: Campaign, threshold_pct: Annotated[float, Field(ge=0)] = 5.0,
                    dispatch: Literal["local", "pools"] = "local") -> State:
    """Run ``campaign``, compare it with its previous run on the same node, fail on a regression
    (or when some of its jobs failed: the comparison then covers what was measured)."""
    run = campaign_flow(campaign, dispatch, return_state=True)
    summary = run.result(raise_on_failure=False)
    if not isinstance(summary, RunSummary):
        return Failed(message=f"the campaign run failed: {run.message or summary}")
    comparison = compare_with_previous(summary, threshold_pct)
    if comparison is None:
        outcome = f"run {summary.run_id} is the first of campaign {campaign.name} here: a baseline"
    else:
        outcome = comparison.headline(threshold_pct)
    if (comparison is not None and comparison.regressions(threshold_pct)) or summary.failed:
        return Failed(message="; ".join(m for m in (run.message if summary.failed else "", outcome) if m))
    return Completed(message=outcome)


if __name__ == "__main__":
    import sys

    from ffwatt.validation import load_campaign

    # python -m flows.regression [CAMPAIGN_FILE [THRESHOLD_PCT]]: exit 1 on a regression, for CI.
    file = sys.argv[1] if len(sys.argv) > 1 else "deployments/campaigns/regression.yaml"
    final = regression_flow(load_campaign(file), float(sys.argv[2]) if len(sys.argv) > 2 else 5.0,
                            return_state=True)
    print(f"{final.name}: {final.message}")
    sys.exit(1 if final.is_failed() else 0)
