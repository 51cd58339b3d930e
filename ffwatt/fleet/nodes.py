"""The fleet's node registry, kept in the Prefect API (no extra service, no shared disk).

Each agent publishes a :class:`NodeRecord` as the Prefect variable
``ffwatt_node_<name>`` every few seconds; the master reads them to know which nodes
and pools are live and to give the metrics store its scrape targets in the
Prometheus service-discovery format.
"""

from __future__ import annotations

import re
import time
from typing import Any, get_args

from pydantic import BaseModel

from ffwatt.encoders import Pool

__all__ = ["NODE_TIMEOUT_S", "NodeRecord", "forget_node", "list_nodes", "node_pool", "publish_node", "sd_targets"]

NODE_TIMEOUT_S = 20.0  # a node whose record is older than this is shown offline
_PREFIX = "ffwatt_node_"


class NodeRecord(BaseModel):
    node: str
    address: str
    pools: list[str]
    encoders: list[str]
    exporters: dict[str, str]  # exporter kind -> host:port
    heartbeat_at: float  # unix time of the last publish
    started_at: float

    def online(self, now: float | None = None) -> bool:
        return (now or time.time()) - self.heartbeat_at <= NODE_TIMEOUT_S


def variable_name(node: str) -> str:
    return _PREFIX + re.sub(r"[^a-z0-9_]", "_", node.lower())


def publish_node(record: NodeRecord) -> None:
    from prefect.variables import Variable

    Variable.set(variable_name(record.node), record.model_dump(mode="json"), overwrite=True)


def forget_node(node: str) -> None:
    from prefect.variables import Variable

    Variable.unset(variable_name(node))


def list_nodes() -> list[NodeRecord]:
    """Every node that ever registered, online or not."""
    from prefect.client.orchestration import get_client

    from ffwatt.fleet.api import read_variables_like

    records = []
    with get_client(sync_client=True) as client:
        # "_" is LIKE's any-character; the prefix check below is exact.
        for variable in read_variables_like(client, _PREFIX + "%"):
            if not variable["name"].startswith(_PREFIX):
                continue
            try:
                records.append(NodeRecord.model_validate(variable["value"]))
            except ValueError:
                continue
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
