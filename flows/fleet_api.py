"""The Prefect API as the dispatcher sees it: submit batches, poll what they sent home.

A poll is a few calls whatever the fleet's size: the open batches' states, and the
row and node-report artifacts not yet seen (filtered by key to the jobs still
missing, paged); every few seconds also the nodes and their workers' heartbeats
(paged reads). A call that fails because the API is away raises
:class:`ApiUnavailable`; anything else (a deployment that doesn't exist, a refused
request) is a real error and propagates. Waking a node is best effort: if the node
can't be reached, its workers find the batch at their next poll anyway.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import TypeVar
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
from prefect.client.schemas.sorting import ArtifactSort
from prefect.states import Cancelled, Crashed

from ffwatt.errors import ApiUnavailable
from ffwatt.fleet.client import PAGE, api_away
from ffwatt.fleet.nodes import NodeRecord, list_nodes
from ffwatt.fleet.protocol import (
    FACTS_ARTIFACT_PREFIX,
    BatchParameters,
    BatchState,
    Poll,
    batch_deployment,
    decode_frames,
    decode_report,
    decode_row,
    decode_table,
    frames_artifact_key,
    row_artifact_key,
)
from flows.dispatch import Submission

__all__ = ["PrefectFleetAPI"]

T = TypeVar("T")
_KEYS_PER_QUERY = 5000  # a filter's list is a SQL IN (...): large is fine, one query per poll
BATCH_TAG = "ffwatt-batch"
SUBMITTERS = 8  # batches created at once
NODES_EVERY_S = 5.0  # how often a poll also reads the nodes' liveness (paged reads of the whole fleet)


def _guarded(call: Callable[[], T]) -> T:
    try:
        return call()
    except (httpx.HTTPError, OSError) as exc:
        if isinstance(exc, OSError) or api_away(exc):
            raise ApiUnavailable(str(exc) or type(exc).__name__) from exc
        raise


def _wake(url: str) -> None:
    """Ask a node to poll now, with the stack's credentials: the API's, which agents hold too (a wake-up
    that fails costs only the node's next poll)."""
    from prefect.settings import PREFECT_API_AUTH_STRING

    user, _, password = (PREFECT_API_AUTH_STRING.value() or "").partition(":")
    with contextlib.suppress(httpx.HTTPError):
        httpx.post(url, timeout=2, auth=(user, password) if user or password else None)


def _chunks(items: list[T], size: int = PAGE) -> Iterator[list[T]]:
    for start in range(0, len(items), size):
        yield items[start:start + size]


class PrefectFleetAPI:
    """:class:`flows.dispatch.FleetAPI` over a real Prefect client."""

    def __init__(self, client: SyncPrefectClient, *, nodes_every_s: float = NODES_EVERY_S,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self._client = client
        self._seen: set[UUID] = set()
        self._reported: set[UUID] = set()  # batches whose node report arrived
        self._nodes_every_s = nodes_every_s
        self._clock = clock
        self._nodes_read_at: float | None = None
        self._waker = ThreadPoolExecutor(max_workers=4, thread_name_prefix="wake")
        self._deployments: dict[str, UUID] = {}

    def submit(self, pool: str, node: NodeRecord, parameters: BatchParameters, key: str) -> UUID:
        # One call per batch on the open client: run_deployment would open a client, read the
        # deployment and create a linking task run each time, four calls and ~0.5 s on a busy master.
        deployment_id = self._deployment_id(pool)
        run: FlowRun = _guarded(lambda: self._client.create_flow_run_from_deployment(
            deployment_id, parameters=parameters.model_dump(mode="json"), tags=[BATCH_TAG],
            name=f"{parameters.campaign.name}-{node.node}", work_queue_name=node.queue or None,
            idempotency_key=key))
        if node.wake_url:
            self._waker.submit(_wake, node.wake_url)
        return run.id

    def submit_all(self, batches: list[Submission]) -> list[UUID | ApiUnavailable]:
        def one(batch: Submission) -> UUID | ApiUnavailable:
            try:
                return self.submit(batch.pool, batch.node, batch.parameters, batch.key)
            except ApiUnavailable as exc:
                return exc

        if len(batches) <= 1:
            return [one(batch) for batch in batches]
        # Creating a flow run is mostly the server waiting on its database: several at once.
        with ThreadPoolExecutor(max_workers=SUBMITTERS, thread_name_prefix="submit") as pool:
            return list(pool.map(one, batches))

    def _deployment_id(self, pool: str) -> UUID:
        if pool not in self._deployments:
            deployment = _guarded(lambda: self._client.read_deployment_by_name(batch_deployment(pool)))
            self._deployments[pool] = deployment.id
        return self._deployments[pool]

    def poll(self, open_batches: list[UUID], all_batches: list[UUID], missing_jobs: list[str]) -> Poll:
        return _guarded(lambda: self._poll(open_batches, all_batches, missing_jobs))

    def _poll(self, open_batches: list[UUID], all_batches: list[UUID], missing_jobs: list[str]) -> Poll:
        poll = Poll()
        for ids in _chunks(open_batches):
            for run in self._client.read_flow_runs(flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=ids)),
                                                   limit=PAGE):
                if run.state is not None:
                    poll.states[run.id] = BatchState(run.state.type.value, run.state.message or "")
        keys = [row_artifact_key(job_id) for job_id in missing_jobs]
        for artifact in self._new_artifacts(keys, all_batches):
            for record in decode_table(artifact.data):
                if artifact.key and artifact.key.startswith(FACTS_ARTIFACT_PREFIX):
                    poll.reports.append(decode_report(record))
                else:
                    poll.rows.append(decode_row(record))
        now = self._clock()
        # While any job lacks a row, not only while a batch is open: jobs whose nodes are all offline
        # wait with no batch open, for a node that can run them to come back.
        if missing_jobs and (self._nodes_read_at is None or now - self._nodes_read_at >= self._nodes_every_s):
            poll.nodes = list_nodes(self._client)
            self._nodes_read_at = now
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
                                                   limit=PAGE, offset=offset)
                for artifact in page:
                    if artifact.id not in self._seen:
                        self._seen.add(artifact.id)
                        if artifact.key and artifact.key.startswith(FACTS_ARTIFACT_PREFIX) and artifact.flow_run_id:
                            self._reported.add(artifact.flow_run_id)
                        yield artifact
                if len(page) < PAGE:
                    break
                offset += PAGE

    def frames(self, run_id: str, job_id: str) -> bytes | None:
        """The frames file a batch sent home for this job of this run (its Parquet bytes), or None."""
        key = frames_artifact_key(run_id, job_id)
        found = _guarded(lambda: self._client.read_artifacts(
            artifact_filter=ArtifactFilter(key=ArtifactFilterKey(any_=[key])), sort=ArtifactSort.CREATED_DESC,
            limit=1))
        return decode_frames(found[0].data) if found else None

    def crash(self, batch: UUID, message: str) -> None:
        _guarded(lambda: self._client.set_flow_run_state(batch, Crashed(message=message), force=True))

    def cancel(self, batch: UUID, message: str) -> None:
        _guarded(lambda: self._client.set_flow_run_state(batch, Cancelled(message=message), force=True))
