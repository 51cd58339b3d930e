"""The fleet's node registry, kept in the Prefect API (no extra service, no shared disk).

What a node is changes rarely, whether it is alive all the time, so the two are
kept apart. Each agent writes its :class:`NodeRecord` (pools, encoders, exporter
targets, its work queue and wake-up address) as the Prefect variable
``ffwatt_node_<name>`` when it starts and when the record changes. Whether it is
alive comes from Prefect's own liveness: the heartbeats its workers send anyway
(``<node>-<pool>`` in each ``ffwatt-<pool>`` pool). A node costs the API one write
per heartbeat interval, whatever it is doing, and the master reads the whole fleet
in a few paged calls.
"""

from __future__ import annotations

import re
import time
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any, get_args

from pydantic import BaseModel

from ffwatt.encoders import Pool
from ffwatt.fleet.client import PAGE, read_variables_like, work_pool

if TYPE_CHECKING:
    from prefect.client.orchestration import SyncPrefectClient

__all__ = [
    "MISSED_HEARTBEATS",
    "NodeRecord",
    "forget_node",
    "list_nodes",
    "node_pool",
    "node_queue",
    "publish_node",
    "read_worker_heartbeats",
    "sd_targets",
    "worker_name",
]

MISSED_HEARTBEATS = 3  # a node whose workers missed this many heartbeats is offline
_PREFIX = "ffwatt_node_"
_CATCH_UP_ROUNDS = 4
_CLOCK_MARGIN = timedelta(seconds=2)  # the server stamps heartbeats by its clock, the master reads by its own


class NodeRecord(BaseModel):
    """What a node is. ``heartbeat_at`` and ``timeout_s`` are filled in by :func:`list_nodes` from
    its workers' heartbeats (0 when none was ever seen)."""

    node: str
    address: str
    pools: list[str]
    encoders: list[str]
    exporters: dict[str, str]  # exporter kind -> host:port
    started_at: float
    queue: str = ""  # the work queue (in each of its pools) that only its workers poll
    wake_url: str = ""  # POST here and its workers poll at once
    # The agent process serving it (ffwatt.processes.incarnation): tells whose record it is, so the
    # next agent knows whether this one is gone, a demo that its own agent serves, and an agent
    # stopping forgets only its own record.
    incarnation: str = ""
    heartbeat_at: float = 0.0
    timeout_s: float = 30.0

    def online(self, now: float | None = None) -> bool:
        return (now or time.time()) - self.heartbeat_at <= self.timeout_s


def variable_name(node: str) -> str:
    return _PREFIX + re.sub(r"[^a-z0-9_]", "_", node.lower())


def worker_name(node: str, pool: str) -> str:
    return f"{node}-{pool}"


def node_queue(node: str) -> str:
    """The work queue a node's workers poll, so a batch meant for it goes to it and no other."""
    return "node-" + re.sub(r"[^A-Za-z0-9_.-]", "-", node)


def publish_node(record: NodeRecord) -> None:
    from prefect.variables import Variable

    Variable.set(variable_name(record.node), record.model_dump(mode="json", exclude={"heartbeat_at", "timeout_s"}),
                 overwrite=True)


def forget_node(node: str) -> None:
    from prefect.variables import Variable

    Variable.unset(variable_name(node))


def read_worker_heartbeats(client: SyncPrefectClient, pools: set[str]) -> dict[str, tuple[float, float]]:
    """Per worker name in the ``ffwatt-<pool>`` pools: (unix time of its last heartbeat, how long
    until it counts as missing), read page by page.

    Prefect lists workers newest heartbeat first, so a worker that beats while later pages are read
    moves onto a page already read and isn't listed at all: with a few hundred nodes, some live
    node would look silent at every look. Those that beat since the listing began are read again
    (a page or two), until a round fits one page and so can't have missed anyone."""
    beats: dict[str, tuple[float, float]] = {}
    for pool in sorted(pools):
        since: datetime | None = None
        for _ in range(_CATCH_UP_ROUNDS):
            began = datetime.now(UTC) - _CLOCK_MARGIN
            offset = 0
            while True:
                page = _workers_page(client, work_pool(pool), since, offset)
                for worker in page:
                    _note_heartbeat(beats, worker)
                if len(page) < PAGE:
                    break
                offset += PAGE
            if offset == 0:  # one page: read at once, so no one moved past it
                break
            since = began
    return beats


def _note_heartbeat(beats: dict[str, tuple[float, float]], worker: Any) -> None:
    last: datetime | None = worker.last_heartbeat_time
    if last is not None and (worker.name not in beats or last.timestamp() > beats[worker.name][0]):
        beats[worker.name] = (last.timestamp(), MISSED_HEARTBEATS * float(worker.heartbeat_interval_seconds or 10))


def _workers_page(client: SyncPrefectClient, pool: str, since: datetime | None, offset: int) -> list[Any]:
    from prefect.client.schemas.filters import WorkerFilter, WorkerFilterLastHeartbeatTime

    beat_since = None if since is None else WorkerFilter(
        last_heartbeat_time=WorkerFilterLastHeartbeatTime(after_=since))
    return client.read_workers_for_work_pool(pool, worker_filter=beat_since, offset=offset, limit=PAGE)


def list_nodes(client: SyncPrefectClient | None = None) -> list[NodeRecord]:
    """Every node that ever registered, online or not, with its liveness from its workers."""
    from prefect.client.orchestration import get_client

    if client is None:
        with get_client(sync_client=True) as own:
            return list_nodes(own)
    records = []
    # "_" is LIKE's any-character; the prefix check below is exact.
    for variable in read_variables_like(client, _PREFIX + "%"):
        if not variable["name"].startswith(_PREFIX):
            continue
        try:
            records.append(NodeRecord.model_validate(variable["value"]))
        except ValueError:
            continue
    beats = read_worker_heartbeats(client, {pool for record in records for pool in record.pools})
    for record in records:
        seen = [beats[name] for pool in record.pools if (name := worker_name(record.node, pool)) in beats]
        if seen:
            record.heartbeat_at, record.timeout_s = max(seen)
    return sorted(records, key=lambda r: r.node)


def node_pool(pools: list[str]) -> str:
    """The one ``pool`` label of a node's series: its accelerator pool if it serves one (in the order
    of :data:`ffwatt.encoders.Pool`), else ``cpu``, else ``none``.

    One value per node, from a fixed set, so ``sum by (pool)`` never counts a node twice, where
    the list of every pool it serves would make a label value per combination.
    """
    served = set(pools)
    for pool in get_args(Pool):
        if pool != "cpu" and pool in served:
            return str(pool)
    return "cpu" if "cpu" in served else "none"


def sd_targets(records: list[NodeRecord], now: float | None = None) -> list[dict[str, Any]]:
    """Prometheus HTTP/file service-discovery groups for every live node's exporters,
    labelled ``node``, ``exporter`` and ``pool``."""
    groups = []
    for record in records:
        if not record.online(now):
            continue
        for exporter, target in sorted(record.exporters.items()):
            groups.append({"targets": [target], "labels": {"node": record.node, "exporter": exporter,
                                                           "pool": node_pool(record.pools)}})
    return groups
