"""Running batches, and how long since the node running each was last heard from.

A batch is alive as long as its node's workers heartbeat (:mod:`ffwatt.fleet.nodes`):
for every ``node-batch`` flow run that is RUNNING, the age of its node's latest worker
heartbeat. Only running batches are shown: one the dispatcher declared lost is
CRASHED, so a dead batch's series goes instead of alerting forever. Label values are
per running batch (its flow run id), so the label set is as bounded as the batches in
flight.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING

from prometheus_client.core import GaugeMetricFamily, Metric

from exporters._collector import NAMESPACE

if TYPE_CHECKING:
    from prefect.client.orchestration import SyncPrefectClient

    from ffwatt.fleet.nodes import NodeRecord

__all__ = ["BatchCollector"]


class BatchCollector:
    name = "batches"

    def __init__(self, client: SyncPrefectClient, nodes: Callable[[], list[NodeRecord]], *,
                 clock: Callable[[], float] = time.time) -> None:
        """``nodes``: the node records (:class:`master.discovery.NodeList`, shared with the targets)."""
        self._client = client
        self._nodes = nodes
        self._clock = clock

    def start(self) -> BatchCollector:
        return self

    def stop(self) -> None:
        pass

    def collect(self) -> Iterable[Metric]:
        from prefect.client.schemas.filters import (
            FlowFilter,
            FlowFilterName,
            FlowRunFilter,
            FlowRunFilterState,
            FlowRunFilterStateType,
        )
        from prefect.client.schemas.objects import StateType

        age = GaugeMetricFamily(f"{NAMESPACE}_batch_heartbeat_age_seconds",
                                "Seconds since the node running a batch last sent a worker heartbeat (Prefect "
                                "API time); only batches whose flow run is RUNNING.", labels=["batch", "node"])
        nodes = {record.queue: record for record in self._nodes()}
        running = self._client.read_flow_runs(
            flow_filter=FlowFilter(name=FlowFilterName(any_=["node-batch"])),
            flow_run_filter=FlowRunFilter(state=FlowRunFilterState(
                type=FlowRunFilterStateType(any_=[StateType.RUNNING]))), limit=200)
        now = self._clock()
        for run in running:
            node = nodes.get(run.work_queue_name or "")
            if node is not None:
                age.add_metric([str(run.id), node.node], max(0.0, now - node.heartbeat_at))
        return [age]
