"""How often the fleet's nodes talk to the master: stretched with the fleet's size, as Nomad stretches
heartbeat TTLs, so the API's steady load stays under a budget however many nodes there are.

Each node's workers beat and poll every interval, and the agent re-reads its record and this
cadence every :data:`RECORD_CHECKS_PER_BEAT` beats. The master (its discovery service) counts the
registered workers, works out the intervals that keep that load under ``FFWATT_FLEET_API_BUDGET_RPS``
and publishes them as the Prefect variable ``ffwatt_fleet_cadence``; a node never goes faster than
its own settings (``FFWATT_WORKER_HEARTBEAT_S``, ``FFWATT_WORKER_POLL_S``). Liveness follows: a worker
reports its interval with each beat and is offline after three missed ones of the interval it
reported. Dispatch doesn't wait on the interval: the master wakes a node when it sends it a batch,
and polling is the fallback.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

from pydantic import BaseModel, ValidationError

if TYPE_CHECKING:
    from prefect.client.orchestration import SyncPrefectClient

__all__ = ["CADENCE_VARIABLE", "RECORD_CHECKS_PER_BEAT", "Cadence", "cadence_for", "liveness_calls_per_s",
           "publish_cadence", "read_cadence"]

CADENCE_VARIABLE = "ffwatt_fleet_cadence"
RECORD_CHECKS_PER_BEAT = 6  # the agent re-reads its record and the cadence every 6 beats (2 calls)
POOL_READ_EVERY_S = 300.0  # a warm worker reads its pool this often, beside its beats
_MAX_INTERVAL_S = 300


class Cadence(BaseModel):
    """The intervals in force: each worker beats every ``heartbeat_s`` and polls every ``poll_s``."""

    heartbeat_s: int
    poll_s: float
    workers: int = 0  # what they were worked out for
    budget_rps: float = 0.0

    def record_check_s(self) -> float:
        return float(RECORD_CHECKS_PER_BEAT * self.heartbeat_s)

    def at_least(self, heartbeat_s: int, poll_s: float) -> Cadence:
        """Never faster than a node's own settings."""
        return self.model_copy(update={"heartbeat_s": max(self.heartbeat_s, heartbeat_s),
                                       "poll_s": max(self.poll_s, poll_s)})


def cadence_for(workers: int, nodes: int, *, budget_rps: float, heartbeat_s: int, poll_s: float) -> Cadence:
    """The shortest common interval T (never under the floors) with the fleet's calls per second,
    ``workers * (1/T beats + 1/T polls + 1/POOL_READ_EVERY_S pool reads) + nodes * 2/(6 T)`` record
    and cadence reads, within ``budget_rps``; worked out for the next power of two of ``workers`` and
    ``nodes``, so it changes only as the fleet doubles, and a crowd of nodes joining is paced already."""
    workers, nodes = _next_power_of_two(workers), _next_power_of_two(nodes)
    left = budget_rps - workers / POOL_READ_EVERY_S
    per_interval = _calls_per_interval(workers, nodes)
    needed = _MAX_INTERVAL_S if left <= 0 else min(_MAX_INTERVAL_S, math.ceil(per_interval / left))
    return Cadence(heartbeat_s=max(heartbeat_s, needed), poll_s=max(poll_s, float(needed)), workers=workers,
                   budget_rps=budget_rps)


def liveness_calls_per_s(interval_s: float, workers: int, nodes: int) -> float:
    """The fleet's steady calls per second at a common interval: what :func:`cadence_for` bounds."""
    return _calls_per_interval(workers, nodes) / interval_s + workers / POOL_READ_EVERY_S


def _calls_per_interval(workers: int, nodes: int) -> float:
    return 2 * workers + 2 * nodes / RECORD_CHECKS_PER_BEAT  # beats and polls; record and cadence reads


def _next_power_of_two(n: int) -> int:
    return 1 << max(0, n - 1).bit_length()


def read_cadence(client: SyncPrefectClient) -> Cadence | None:
    """The cadence the master published, or None (no master has yet, or the value is not one)."""
    variable = client.read_variable_by_name(CADENCE_VARIABLE)
    if variable is None:
        return None
    try:
        return Cadence.model_validate(variable.value)
    except ValidationError:
        return None


def publish_cadence(client: SyncPrefectClient, cadence: Cadence) -> None:
    from prefect.client.schemas.actions import VariableCreate, VariableUpdate

    value = cadence.model_dump(mode="json")
    if client.read_variable_by_name(CADENCE_VARIABLE) is None:
        client.create_variable(VariableCreate(name=CADENCE_VARIABLE, value=value))
    else:
        client.update_variable(VariableUpdate(name=CADENCE_VARIABLE, value=value))
