"""The two ways to one Prefect API, named by an environment, and the few reads and writes every side
of the fleet makes through it (work pools, variables by pattern).

:func:`api_client` is Prefect's own client, for processes that run Prefect anyway; Prefect is
imported inside the functions, since a process (an agent, the CLI) sets the API it talks to in its
environment before Prefect is first imported, and Prefect reads its settings once. :class:`ApiClient`
is plain REST, for commands that must not pay Prefect's import before their first call.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import httpx

from ffwatt.errors import ApiError

if TYPE_CHECKING:
    from prefect.client.orchestration import SyncPrefectClient

__all__ = ["PAGE", "ApiClient", "api_away", "api_client", "ensure_pools", "read_variables_like", "work_pool"]

PAGE = 200  # the API's default and maximum page


def api_away(exc: BaseException) -> bool:
    """Whether an API call failed because the API was away or failing for now (no connection, a
    timeout, a 5xx), so the same call may succeed later, rather than because it was wrong."""
    if isinstance(exc, httpx.TransportError):
        return True
    return isinstance(exc, httpx.HTTPStatusError) and exc.response.status_code >= 500


def work_pool(pool: str) -> str:
    """The Prefect work pool that serves ``pool`` (a :data:`ffwatt.encoders.Pool`, or ``master``)."""
    return f"ffwatt-{pool}"


@contextlib.contextmanager
def api_client(env: dict[str, str]) -> Iterator[SyncPrefectClient]:
    """A Prefect client of the API that ``env`` names (``PREFECT_API_URL``, ``PREFECT_API_AUTH_STRING``,
    ``PREFECT_API_SSL_CERT_FILE``). Prefect reads its settings from the environment once, when imported:
    setting them later changes nothing."""
    from prefect.client.orchestration import get_client
    from prefect.settings import PREFECT_API_AUTH_STRING, PREFECT_API_SSL_CERT_FILE, PREFECT_API_URL, temporary_settings

    updates = {PREFECT_API_URL: env["PREFECT_API_URL"]}
    if env.get("PREFECT_API_AUTH_STRING"):
        updates[PREFECT_API_AUTH_STRING] = env["PREFECT_API_AUTH_STRING"]
    if env.get("PREFECT_API_SSL_CERT_FILE"):
        updates[PREFECT_API_SSL_CERT_FILE] = env["PREFECT_API_SSL_CERT_FILE"]
    with temporary_settings(updates=updates), get_client(sync_client=True) as client:
        yield client


def ensure_pools(env: dict[str, str], pools: tuple[str, ...] | list[str], *, queue: str | None = None) -> None:
    """Create the process work pools ``ffwatt-<pool>`` that don't exist yet, and ``queue`` in each
    (a node's own queue), through the API ``env`` points at."""
    from prefect.client.schemas.actions import WorkPoolCreate
    from prefect.exceptions import ObjectAlreadyExists
    from prefect.workers.process import ProcessWorker

    template = ProcessWorker.get_default_base_job_template()
    with api_client(env) as client:
        for pool in pools:
            with contextlib.suppress(ObjectAlreadyExists):
                client.create_work_pool(WorkPoolCreate(name=work_pool(pool), type="process",
                                                       base_job_template=template))
            if queue is not None:
                with contextlib.suppress(ObjectAlreadyExists):
                    client.create_work_queue(name=queue, work_pool_name=work_pool(pool))


def read_variables_like(client: SyncPrefectClient, pattern: str) -> Iterator[dict[str, Any]]:
    """Every variable whose name matches ``pattern`` (SQL LIKE), page by page."""
    offset = 0
    while True:
        response = client.request("POST", "/variables/filter", json={
            "variables": {"name": {"like_": pattern}}, "limit": PAGE, "offset": offset})
        page = response.json()
        yield from page
        if len(page) < PAGE:
            return
        offset += PAGE


@dataclass(frozen=True)
class ApiClient:
    """The Prefect REST API a client's environment points at (PREFECT_API_URL, PREFECT_API_AUTH_STRING,
    PREFECT_API_SSL_CERT_FILE, as ``ffwatt stack env`` prints them), over plain HTTP: for commands that
    must not pay Prefect's import before their first call (submitting, checking credentials)."""

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

    def ui_page(self, path: str) -> str:
        """A page of the Prefect UI (``/runs/flow-run/ID``) to print for people, in its V2 UI: that one asks
        for the credentials before it calls the API, where the V1 UI's first call is refused and its login
        page shows "Oops. Something went wrong" and "Authentication failed" before anything is typed
        (PrefectHQ/prefect#18518). Once logged in, both UIs use the same credentials."""
        return f"{self.ui_url}/v2{path}"

    def request(self, method: str, path: str, **kwargs: Any) -> Any:
        user, _, password = (self.auth_string or "").partition(":")
        try:
            response = httpx.request(method, f"{self.url}{path}", timeout=30, verify=self.ca_file or True,
                                     auth=(user, password) if self.auth_string else None, **kwargs)
        except httpx.ConnectError as exc:
            if "CERTIFICATE_VERIFY_FAILED" in str(exc):
                raise ApiError(f"the Prefect API at {self.url} presented a certificate "
                               f"{self.ca_file or 'this system'} doesn't trust; set PREFECT_API_SSL_CERT_FILE to "
                               "the master's stack/tls/ca.pem") from exc
            raise ApiError(f"can't reach the Prefect API at {self.url} ({exc}); is the master up "
                           "(`ffwatt stack status` there) and PREFECT_API_URL right?") from exc
        except httpx.HTTPError as exc:
            raise ApiError(f"can't reach the Prefect API at {self.url} ({exc}); is the master up "
                           "(`ffwatt stack status` there) and PREFECT_API_URL right?") from exc
        if response.status_code == 401:
            given = "the credentials given" if self.auth_string else "no credentials"
            raise ApiError(f"the Prefect API at {self.url} refused {given} (401); set PREFECT_API_AUTH_STRING to "
                           "the content of the master's stack/auth (`eval \"$(ffwatt stack env)\"` on the master "
                           "prints it)", status=401)
        if response.status_code >= 400:
            raise ApiError(f"{method} {path}: the Prefect API answered {response.status_code}: "
                           f"{_detail(response)}", status=response.status_code)
        return response.json() if response.content else None

    def check(self) -> None:
        """Make sure the API answers and takes these credentials; :class:`ApiError` says in one line
        what is wrong and what to do."""
        try:
            self.request("GET", "/health")
        except ApiError as exc:
            if exc.status is None or exc.status == 401:
                raise
            raise ApiError(f"the Prefect API at {self.url} doesn't answer its health check ({exc.status}); is "
                           "PREFECT_API_URL the API (ending in /api)?", status=exc.status) from exc
        self.request("POST", "/flows/filter", json={"limit": 1})


def _detail(response: httpx.Response) -> str:
    try:
        detail = response.json().get("detail", response.text)
    except ValueError:
        detail = response.text
    return " ".join(str(detail).split())[:600]
