"""Flows compose the tasks into campaigns."""

from flows.campaign import campaign_flow

__all__ = ["campaign_flow"]
