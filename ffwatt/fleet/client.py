"""A Prefect client of one API, named by an environment, and the few reads and writes every side
of the fleet makes through it (work pools, variables by pattern).

Prefect is imported inside the functions: a process (an agent, the CLI) sets the API it talks to in
its environment before Prefect is first imported, since Prefect reads its settings once.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from prefect.client.orchestration import SyncPrefectClient

__all__ = ["PAGE", "api_client", "ensure_pools", "read_variables_like", "work_pool"]

PAGE = 200  # the API's default and maximum page


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
