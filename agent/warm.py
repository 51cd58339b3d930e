"""A warm Prefect worker: Prefect's process worker, running each flow run in its own process.

Prefect's process worker starts a new Python for every flow run: importing Prefect
and the flow takes seconds, paid on the master for every campaign and on every node
for every batch. :class:`WarmWorker` keeps the pools, work queues, heartbeats and
state handling of the process worker and replaces only where a flow run executes:
in a thread of the worker's process, whose imports are already done.

It polls as Prefect's worker does, and can also be woken: :func:`serve` waits on an
event between polls, so a dispatcher that knows it just sent this node a batch can
poke it (``POST /wake`` on the agent) and the batch starts at once, while the
fallback poll stays slow enough for a thousand nodes not to flood the API. How slow follows the
fleet's size (:mod:`ffwatt.fleet.cadence`): the agent changes its :class:`Pace` as the master's
cadence changes, and each worker beats and polls at the pace in force.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib
import logging
import math
import os
import threading
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from functools import partial
from typing import Any
from uuid import UUID

import anyio
from prefect.client.schemas.objects import FlowRun
from prefect.exceptions import InfrastructureNotAvailable
from prefect.flow_engine import run_flow
from prefect.flows import Flow
from prefect.states import Crashed, State
from prefect.utilities.engine import propose_state
from prefect.workers.process import ProcessJobConfiguration, ProcessWorker, ProcessWorkerResult

from ffwatt.fleet.cadence import POOL_READ_EVERY_S
from ffwatt.fleet.client import api_away, work_pool
from ffwatt.settings import REPO

__all__ = ["Pace", "WarmWorker", "report_crashed", "serve"]

log = logging.getLogger("ffwatt.worker")


@dataclass
class Pace:
    """The intervals a node's workers keep; the agent's thread changes them, the workers' loop reads them."""

    heartbeat_s: int
    poll_s: float


def _flow_at(entrypoint: str) -> Flow[..., Any]:
    """The flow an entrypoint names (``flows/batch.py:node_batch``), imported as the package module
    (``flows.batch``) so it shares this process's modules."""
    path, _, name = entrypoint.partition(":")
    module = path.removesuffix(".py").replace("/", ".") if path.endswith(".py") else path
    found = getattr(importlib.import_module(module), name)
    if not isinstance(found, Flow):
        raise TypeError(f"{entrypoint} is not a Prefect flow")
    return found


def _run_here(flow: Flow[..., Any], flow_run: FlowRun) -> State | BaseException:
    try:
        state = run_flow(flow, flow_run=flow_run, return_type="state")
    except BaseException as exc:  # a flow that dies takes no worker with it
        log.exception("flow run %s ended with an exception", flow_run.id)
        return exc
    assert isinstance(state, State)
    return state


async def report_crashed(propose: Callable[[], Awaitable[object]], flow_run_id: UUID, *,
                         sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
                         first_wait_s: float = 5.0, longest_wait_s: float = 60.0) -> bool:
    """Propose a flow run's Crashed state until the API takes it (or refuses it for good); True if it did.

    A flow run that raised here raised past its engine, most often because the API was away when the
    engine set its final state, so the API may still hold it Running. Its node lives on, beating, so
    the campaign would wait on that batch forever; the API is the one place to say it ended, however
    long it is away. A run the API has ended already (it aborts the proposal) is left as it is.
    """
    from prefect.exceptions import Abort, ObjectNotFound

    wait_s = first_wait_s
    while True:
        try:
            await propose()
            return True
        except (Abort, ObjectNotFound):
            return False
        except Exception as exc:  # noqa: BLE001 - which ones to try again is api_away's to say
            if not api_away(exc):
                log.error("can't mark flow run %s crashed: %s", flow_run_id, exc)
                return False
            log.warning("can't mark flow run %s crashed yet (%s); trying again in %.0f s", flow_run_id, exc, wait_s)
        await sleep(wait_s)
        wait_s = min(2 * wait_s, longest_wait_s)


class WarmWorker(ProcessWorker):
    """Prefect's process worker (same pools, same work-pool type), running flow runs in-process."""

    @classmethod
    def __dispatch_key__(cls) -> str:
        # Its own key in Prefect's registry of worker types, so `prefect worker start --type process`
        # in this process still means Prefect's own worker; the pools stay of type "process".
        return "ffwatt-warm"

    def __init__(self, *args: Any, pace: Pace | None = None, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._flows: dict[UUID, Flow[..., Any]] = {}
        self._pool_read_at = -math.inf
        beat = int(self.heartbeat_interval_seconds)
        self.pace = pace or Pace(heartbeat_s=beat, poll_s=beat)

    async def sync_with_backend(self) -> None:
        # Each beat reports the interval in force, and the next comes after that interval: the master
        # (three missed beats of the reported interval) never sees a node offline as its pace changes.
        self.heartbeat_interval_seconds = self.pace.heartbeat_s
        # Prefect's worker reads its pool at every heartbeat, for the job template a warm worker
        # doesn't use: half of a node's steady API load. Read it now and then; beat every time.
        if self._work_pool is None or time.monotonic() - self._pool_read_at > POOL_READ_EVERY_S:
            await super().sync_with_backend()
            self._pool_read_at = time.monotonic()
            return
        await self.client.send_worker_heartbeat(work_pool_name=self._work_pool_name, worker_name=self.name,
                                                heartbeat_interval_seconds=self.heartbeat_interval_seconds)

    async def _flow(self, flow_run: FlowRun) -> Flow[..., Any]:
        if flow_run.deployment_id is None:
            raise ValueError(f"flow run {flow_run.id} has no deployment; a warm worker runs deployments' runs")
        if flow_run.deployment_id not in self._flows:
            deployment = await self.client.read_deployment(flow_run.deployment_id)
            if not deployment.entrypoint:
                raise ValueError(f"deployment {deployment.name} has no entrypoint")
            self._flows[flow_run.deployment_id] = _flow_at(deployment.entrypoint)
        return self._flows[flow_run.deployment_id]

    async def kill_infrastructure(self, infrastructure_pid: str, configuration: ProcessJobConfiguration,
                                  grace_seconds: int = 30) -> None:
        # The "infrastructure" is this very process: Prefect's process worker would signal it.
        raise InfrastructureNotAvailable("the flow run runs inside the warm worker's own process; it is not killed")

    async def run(self, flow_run: FlowRun, configuration: ProcessJobConfiguration,
                  task_status: anyio.abc.TaskStatus[int] | None = None) -> ProcessWorkerResult:
        flow = await self._flow(flow_run)
        if task_status is not None:
            task_status.started(os.getpid())
        outcome = await anyio.to_thread.run_sync(partial(_run_here, flow, flow_run))
        if isinstance(outcome, BaseException):
            message = f"the flow run raised in the warm worker: {outcome!r}"
            await report_crashed(lambda: propose_state(self.client, Crashed(message=message), flow_run_id=flow_run.id),
                                 flow_run.id)
            return ProcessWorkerResult(status_code=0, identifier=str(os.getpid()))
        # A flow run that reached a final state (Failed included) ended properly: 0. Anything else
        # lets the worker mark it crashed, as it does for a process that died.
        return ProcessWorkerResult(status_code=0 if outcome.is_final() else 1, identifier=str(os.getpid()))


async def _beat(worker: WarmWorker) -> None:
    while True:
        try:
            await worker.sync_with_backend()
        except Exception as exc:  # noqa: BLE001 - the API restarting: keep trying, as Prefect's loops do
            log.warning("heartbeat of %s failed: %s", worker.name, exc)
        await asyncio.sleep(worker.heartbeat_interval_seconds)


async def _poll(worker: WarmWorker, wake: asyncio.Event) -> None:
    while True:
        wake.clear()
        try:
            await worker.get_and_submit_flow_runs()
        except Exception as exc:  # noqa: BLE001 - the API restarting: poll again later
            log.warning("polling %s failed: %s", worker.name, exc)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(wake.wait(), timeout=worker.pace.poll_s)


async def serve(workers: list[WarmWorker], *, wake: asyncio.Event, stop: threading.Event) -> None:
    """Run ``workers`` until ``stop`` is set: each heartbeats and polls for flow runs at its pace, and
    polls at once when ``wake`` is set."""
    async with contextlib.AsyncExitStack() as stack:
        for worker in workers:
            await stack.enter_async_context(worker)
        async with anyio.create_task_group() as group:
            for worker in workers:
                group.start_soon(_beat, worker)
                group.start_soon(_poll, worker, wake)
            while not stop.is_set():
                await asyncio.sleep(0.2)
            group.cancel_scope.cancel()


def run_warm_workers(pool_names: list[str], *, node: str, queue: str | None, limit: int | None, pace: Pace,
                     stop: threading.Event, on_wake_ready: Callable[[Callable[[], None]], None] | None = None) -> None:
    """Serve one warm worker per pool (named ``<node>-<pool>``) at ``pace`` in this thread's own event loop
    until ``stop``; ``on_wake_ready`` receives a thread-safe function that wakes them all."""
    os.chdir(REPO)  # where the deployments' pull step would have put a process worker's flow run

    async def main() -> None:
        wake = asyncio.Event()
        loop = asyncio.get_running_loop()
        if on_wake_ready is not None:
            def wake_up() -> None:
                loop.call_soon_threadsafe(wake.set)

            on_wake_ready(wake_up)
        workers = [WarmWorker(work_pool_name=work_pool(pool), work_queues=[queue] if queue else None,
                              name=f"{node}-{pool}", limit=limit, heartbeat_interval_seconds=pace.heartbeat_s,
                              create_pool_if_not_found=True, pace=pace) for pool in pool_names]
        await serve(workers, wake=wake, stop=stop)

    asyncio.run(main())
