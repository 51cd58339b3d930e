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
from flows.campaign import campaign_flow
from tasks.publish import compare_with_previous

__all__ = ["regression_flow"]


@flow(name="regression", flow_run_name="regression-{campaign.name}", validate_parameters=True)
def regression_flow(campaign: Campaign, threshold_pct: Annotated[float, Field(ge=0)] = 5.0,
                    dispatch: Literal["local", "pools"] = "local") -> State:
    """Run ``campaign``, compare it with its previous run on the same node, fail on a regression."""
    summary = campaign_flow(campaign, dispatch)
    comparison = compare_with_previous(summary, threshold_pct)
    if comparison is None:
        return Completed(message=f"run {summary.run_id} is the first of campaign {campaign.name} here: a baseline")
    if comparison.regressions(threshold_pct):
        return Failed(message=comparison.headline(threshold_pct))
    return Completed(message=comparison.headline(threshold_pct))


if __name__ == "__main__":
    import sys

    from ffwatt.validation import load_campaign

    # python -m flows.regression [CAMPAIGN_FILE [THRESHOLD_PCT]]: exit 1 on a regression, for CI.
    file = sys.argv[1] if len(sys.argv) > 1 else "deployments/campaigns/regression.yaml"
    final = regression_flow(load_campaign(file), float(sys.argv[2]) if len(sys.argv) > 2 else 5.0,
                            return_state=True)
    print(f"{final.name}: {final.message}")
    sys.exit(1 if final.is_failed() else 0)
