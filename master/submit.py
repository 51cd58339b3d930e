"""Submitting a campaign to a deployment over the Prefect REST API, and watching it.

What `prefect deployment run --params ... --watch` does, in three plain HTTP calls
and a poll: without importing Prefect, which costs the CLI about two seconds before
it sends anything. The server validates the parameters against the deployment's
schema, as it does for Prefect's own CLI.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import httpx

from ffwatt.errors import ApiError

__all__ = ["ApiClient", "FlowRunState", "submit_flow_run", "watch_flow_run"]

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


@dataclass(frozen=True)
class ApiClient:
    """The Prefect API a client's environment points at (PREFECT_API_URL, PREFECT_API_AUTH_STRING,
    PREFECT_API_SSL_CERT_FILE), as ``ffwatt stack env`` prints them."""

    url: str
    auth_string: str | None = None
    ca_file: str | None = None

    @classmethod
    def from_env(cls, env: dict[str, str] | None = None) -> ApiClient:
        env = dict(os.environ) if env is None else env
        url = env.get("PREFECT_API_URL")
        if not url:
            raise ApiError("PREFECT_API_URL is not set; on the master `eval \"$(ffwatt stack env)\"` sets it "
                           "(and the credentials) for this shell")
        return cls(url.rstrip("/"), env.get("PREFECT_API_AUTH_STRING") or None,
                   env.get("PREFECT_API_SSL_CERT_FILE") or None)

    @property
    def ui_url(self) -> str:
        return os.environ.get("PREFECT_UI_URL") or self.url.removesuffix("/api")

    def request(self, method: str, path: str, **kwargs: Any) -> Any:
        user, _, password = (self.auth_string or "").partition(":")
        try:
            response = httpx.request(method, f"{self.url}{path}", timeout=30, verify=self.ca_file or True,
                                     auth=(user, password) if self.auth_string else None, **kwargs)
        except httpx.HTTPError as exc:
            raise ApiError(f"can't reach the Prefect API at {self.url} ({exc}); is the master up "
                           "(`ffwatt stack status` there) and PREFECT_API_URL right?") from exc
        if response.status_code == 401:
            raise ApiError(f"the Prefect API at {self.url} refused the credentials (401); set "
                           "PREFECT_API_AUTH_STRING as `ffwatt stack env` prints it", status=401)
        if response.status_code >= 400:
            raise ApiError(f"{method} {path}: the Prefect API answered {response.status_code}: "
                           f"{_detail(response)}", status=response.status_code)
        return response.json() if response.content else None


def _detail(response: httpx.Response) -> str:
    try:
        detail = response.json().get("detail", response.text)
    except ValueError:
        detail = response.text
    return " ".join(str(detail).split())[:600]


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
