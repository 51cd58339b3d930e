"""The Prefect API as the dispatcher sees it: submit batches, poll what they sent home.

Each poll is three calls whatever the fleet's size: the open batches' states, the
row and node-report artifacts not yet seen (filtered by key to the jobs still
missing, paged), and the heartbeat variables (one filtered read). A call that
fails because the API is away raises :class:`ApiUnavailable`; anything else (a
deployment that doesn't exist, a refused request) is a real error and propagates.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any, TypeVar
from uuid import UUID

import httpx
from prefect.client.orchestration import SyncPrefectClient
from prefect.client.schemas.filters import (
    ArtifactFilter,
    ArtifactFilterKey,
    FlowRunFilter,
    FlowRunFilterId,
)
from prefect.client.schemas.objects import Artifact, FlowRun
from prefect.states import Cancelled, Crashed

from ffwatt.errors import ApiUnavailable
from ffwatt.fleet.protocol import (
    BATCH_VARIABLE_PREFIX,
    FACTS_ARTIFACT_PREFIX,
    BatchParameters,
    BatchState,
    Poll,
    batch_deployment,
    batch_variable,
    decode_report,
    decode_row,
    decode_table,
    row_artifact_key,
)

__all__ = ["PrefectFleetAPI", "read_variables_like"]

T = TypeVar("T")
_PAGE = 200  # the API's default and maximum page
_KEYS_PER_QUERY = 5000  # a filter's list is a SQL IN (...): large is fine, one query per poll


def _unavailable(exc: Exception) -> bool:
    if isinstance(exc, httpx.TransportError):
        return True
    return isinstance(exc, httpx.HTTPStatusError) and exc.response.status_code >= 500


def _guarded(call: Callable[[], T]) -> T:
    try:
        return call()
    except (httpx.HTTPError, OSError) as exc:
        if isinstance(exc, OSError) or _unavailable(exc):
            raise ApiUnavailable(str(exc) or type(exc).__name__) from exc
        raise


def read_variables_like(client: SyncPrefectClient, pattern: str) -> Iterator[dict[str, Any]]:
    """Every variable whose name matches ``pattern`` (SQL LIKE), page by page."""
    offset = 0
    while True:
        response = client.request("POST", "/variables/filter", json={
            "variables": {"name": {"like_": pattern}}, "limit": _PAGE, "offset": offset})
        page = response.json()
        yield from page
        if len(page) < _PAGE:
            return
        offset += _PAGE


def _chunks(items: list[T], size: int = _PAGE) -> Iterator[list[T]]:
    for start in range(0, len(items), size):
        yield items[start:start + size]


class PrefectFleetAPI:
    """:class:`flows.dispatch.FleetAPI` over a real Prefect client."""

    def __init__(self, client: SyncPrefectClient) -> None:
        self._client = client
        self._seen: set[UUID] = set()
        self._reported: set[UUID] = set()  # batches whose node report arrived

    def submit(self, pool: str, parameters: BatchParameters) -> UUID:
        from prefect.deployments import run_deployment

        run = _guarded(lambda: run_deployment(name=batch_deployment(pool), timeout=0, as_subflow=True,
                                              parameters=parameters.model_dump(mode="json")))
        assert isinstance(run, FlowRun)  # sync context: run_deployment returns the run, not a coroutine
        return run.id

    def poll(self, open_batches: list[UUID], all_batches: list[UUID], missing_jobs: list[str]) -> Poll:
        return _guarded(lambda: self._poll(open_batches, all_batches, missing_jobs))

    def _poll(self, open_batches: list[UUID], all_batches: list[UUID], missing_jobs: list[str]) -> Poll:
        poll = Poll()
        for ids in _chunks(open_batches):
            for run in self._client.read_flow_runs(flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=ids)),
                                                   limit=_PAGE):
                if run.state is not None:
                    poll.states[run.id] = BatchState(run.state.type.value, run.state.message or "")
        keys = [row_artifact_key(job_id) for job_id in missing_jobs]
        for artifact in self._new_artifacts(keys, all_batches):
            for record in decode_table(artifact.data):
                if artifact.key and artifact.key.startswith(FACTS_ARTIFACT_PREFIX):
                    poll.reports.append(decode_report(record))
                else:
                    poll.rows.append(decode_row(record))
        if open_batches:
            names = {batch_variable(str(flow_run_id)): flow_run_id for flow_run_id in open_batches}
            for variable in read_variables_like(self._client, BATCH_VARIABLE_PREFIX + "%"):
                if variable["name"] in names:
                    poll.beats[names[variable["name"]]] = variable["value"]
        return poll

    def _new_artifacts(self, row_keys: list[str], batches: list[UUID]) -> Iterator[Artifact]:
        """Artifacts not seen before: node reports of batches that haven't sent one, and rows of
        the jobs still missing. Each comes back about once, so a poll costs what arrived."""
        # Rows first: a batch sends its report before its first row, so a row seen here has its
        # report seen by the query after it, in this same poll.
        queries = [(ArtifactFilter(key=ArtifactFilterKey(any_=keys)), batches)
                   for keys in _chunks(row_keys, _KEYS_PER_QUERY)] if batches else []
        unreported = [b for b in batches if b not in self._reported]
        queries += [(ArtifactFilter(key=ArtifactFilterKey(like_=f"{FACTS_ARTIFACT_PREFIX}%")), ids)
                    for ids in _chunks(unreported)]
        for artifact_filter, flow_run_ids in queries:
            flow_runs = FlowRunFilter(id=FlowRunFilterId(any_=flow_run_ids))
            offset = 0
            while True:
                page = self._client.read_artifacts(artifact_filter=artifact_filter, flow_run_filter=flow_runs,
                                                   limit=_PAGE, offset=offset)
                for artifact in page:
                    if artifact.id not in self._seen:
                        self._seen.add(artifact.id)
                        if artifact.key and artifact.key.startswith(FACTS_ARTIFACT_PREFIX) and artifact.flow_run_id:
                            self._reported.add(artifact.flow_run_id)
                        yield artifact
                if len(page) < _PAGE:
                    break
                offset += _PAGE

    def crash(self, batch: UUID, message: str) -> None:
        _guarded(lambda: self._client.set_flow_run_state(batch, Crashed(message=message), force=True))

    def cancel(self, batch: UUID, message: str) -> None:
        _guarded(lambda: self._client.set_flow_run_state(batch, Cancelled(message=message), force=True))
