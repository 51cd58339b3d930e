"""Submitting a campaign to a deployment over the Prefect REST API, and watching it.

What `prefect deployment run --params ... --watch` does, in three plain HTTP calls
and a poll: without importing Prefect, which costs the CLI about two seconds before
it sends anything. The server validates the parameters against the deployment's
schema, as it does for Prefect's own CLI.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from ffwatt.errors import ApiError
from ffwatt.fleet.client import ApiClient

__all__ = ["FlowRunState", "submit_flow_run", "watch_flow_run"]

FINAL = ("COMPLETED", "FAILED", "CRASHED", "CANCELLED")


@dataclass(frozen=True)
class FlowRunState:
    flow_run_id: str
    name: str  # the run's name
    state_type: str  # SCHEDULED, RUNNING, COMPLETED, FAILED, ...
    state_name: str
    message: str

    @property
    def final(self) -> bool:
        return self.state_type in FINAL


def _state(run: dict[str, Any]) -> FlowRunState:
    state = run.get("state") or {}
    return FlowRunState(flow_run_id=run["id"], name=run.get("name", ""), state_type=state.get("type", ""),
                        state_name=state.get("name", ""), message=state.get("message") or "")


def submit_flow_run(api: ApiClient, deployment: str, parameters: dict[str, Any]) -> FlowRunState:
    """Create a run of ``deployment`` (``flow/deployment``) with ``parameters``."""
    flow, _, name = deployment.partition("/")
    if not flow or not name:
        raise ApiError(f"deployment {deployment!r} should be FLOW/NAME, e.g. campaign/quick")
    try:
        found = api.request("GET", f"/deployments/name/{flow}/{name}")
    except ApiError as exc:
        if exc.status == 404:
            raise ApiError(f"no deployment {deployment} on {api.url}; `prefect deployment ls` lists them "
                           "(`ffwatt stack up` registers ffwatt's)") from exc
        raise
    return _state(api.request("POST", f"/deployments/{found['id']}/create_flow_run",
                              json={"parameters": parameters}))


def watch_flow_run(api: ApiClient, flow_run_id: str, *, every_s: float = 0.25, timeout_s: float | None = None,
                   on_change: Callable[[FlowRunState], None] | None = None) -> FlowRunState:
    """Poll the run until it ends (or ``timeout_s``); its last state. ``on_change`` sees every new state."""
    deadline = None if timeout_s is None else time.monotonic() + timeout_s
    seen = ""
    while True:
        state = _state(api.request("GET", f"/flow_runs/{flow_run_id}"))
        if state.state_name != seen and on_change is not None:
            on_change(state)
        seen = state.state_name
        if state.final or (deadline is not None and time.monotonic() > deadline):
            return state
        time.sleep(every_s)
