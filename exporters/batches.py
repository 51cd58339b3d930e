"""The running batches' heartbeats, as the master sees them in the Prefect API.

A batch beats its variable every few seconds (:mod:`flows.batch`). Only batches whose
flow run is still RUNNING are shown: a batch that ended deleted its variable, and one
the dispatcher declared lost is CRASHED, so a dead batch's series goes instead of
alerting forever. Label values are per running batch (its flow run id), so the label
set is as bounded as the batches in flight.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from datetime import datetime
from uuid import UUID

from prometheus_client.core import GaugeMetricFamily, Metric

from exporters._collector import NAMESPACE
from ffwatt.fleet.protocol import BATCH_VARIABLE_PREFIX as _PREFIX

__all__ = ["BatchCollector"]


class BatchCollector:
    name = "batches"

    def __init__(self, *, clock: Callable[[], float] = time.time) -> None:
        self._clock = clock

    def start(self) -> BatchCollector:
        return self

    def stop(self) -> None:
        pass

    def collect(self) -> Iterable[Metric]:
        from prefect.client.orchestration import get_client
        from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId

        from ffwatt.fleet.api import read_variables_like

        age = GaugeMetricFamily(f"{NAMESPACE}_batch_heartbeat_age_seconds",
                                "Seconds since a running batch last beat its heartbeat (Prefect API time).",
                                labels=["batch", "node"])
        with get_client(sync_client=True) as client:
            beats = {}
            for variable in read_variables_like(client, _PREFIX + "%"):
                name = variable["name"]
                if name.startswith(_PREFIX) and isinstance(variable.get("value"), dict):
                    beats[UUID(name.removeprefix(_PREFIX))] = variable
            running: set[UUID] = set()
            ids = list(beats)
            for start in range(0, len(ids), 200):
                chunk = FlowRunFilter(id=FlowRunFilterId(any_=ids[start:start + 200]))
                runs = client.read_flow_runs(flow_run_filter=chunk, limit=200)
                running |= {run.id for run in runs if run.state is not None and run.state.is_running()}
        now = self._clock()
        for flow_run_id in sorted(running):
            variable = beats[flow_run_id]
            updated = datetime.fromisoformat(str(variable["updated"]).replace("Z", "+00:00")).timestamp()
            age.add_metric([str(flow_run_id), str(variable["value"].get("node", ""))], max(0.0, now - updated))
        return [age]
