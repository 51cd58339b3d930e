"""``ffwatt agent start``: make this machine a worker node of a master.

It probes the node, creates the work pools it can serve and its own work queue in
each, starts the local exporters and node_exporter, and serves one warm worker per
pool in this process (:mod:`agent.warm`: flow runs start without a new
Python; each worker runs one at a time, and a node-wide lock in the batch flow keeps
measured jobs one at a time across pools). Its record (pools, encoders, exporter
targets, queue, wake-up address) is written once and again only when it changes;
whether the node is alive is its workers' own heartbeats. ``POST /wake`` on the
agent's port makes the workers poll at once: the master's dispatcher calls it after
sending this node a batch, with the stack's credentials (anyone else gets 401, a caller
past its rate 429: :mod:`exporters.control`). It survives the master restarting: workers and the
record retry until the API answers again.

One agent serves a ``FFWATT_HOME``: it holds ``run/agent.lock`` while it lives (the
kernel releases it however the agent ends), so a second one fails at once, before it
touches anything. The node's record names the agent process serving it, and is
written before that agent takes any batch. A new agent whose record names a process
of this machine that is gone knows every batch that process was running died with it
(they ran in it): it says so to the master first thing, so those batches are planned
again at once rather than after a heartbeat timeout that its own heartbeats never let
come. One whose record names an agent still running here refuses to start beside it.
It adopts exporters its predecessor left running in its home, stops at the end only
what it started or adopted, and forgets the record only while it is its own.
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import os
import threading
import time
from collections.abc import Callable, Iterator
from http.server import ThreadingHTTPServer
from pathlib import Path
from typing import TYPE_CHECKING

import httpx

from agent.probe import NodeProbe, probe_node
from exporters.control import ControlGuard, ControlHandler, Refused
from ffwatt.errors import ApiError, MonitoringError, ServiceError
from ffwatt.fleet.cadence import RECORD_CHECKS_PER_BEAT, read_cadence
from ffwatt.fleet.client import ensure_pools
from ffwatt.fleet.nodes import NodeRecord, forget_node, node_queue, publish_node, variable_name
from ffwatt.fleet.prefect_server import BIN, PREFECT_ENV
from ffwatt.fleet.services import Service, port_holder, program, start_service, stop_service
from ffwatt.processes import incarnation, incarnation_runs
from ffwatt.settings import Settings

if TYPE_CHECKING:
    from prefect.client.orchestration import SyncPrefectClient

    from agent.warm import Pace

__all__ = ["node_exporter_service", "run_agent"]

log = logging.getLogger("ffwatt.agent")
RECORD_CHECK_S = 60.0  # how often the agent makes sure the master still has its record
NODE_EXPORTER_COLLECTORS = ("cpu", "cpufreq", "meminfo", "hwmon", "thermal_zone", "netdev", "diskstats", "pressure")


def node_exporter_service(address: str, port: int, *, sysfs: Path | None = None) -> Service:
    """node_exporter on ``address:port`` with only :data:`NODE_EXPORTER_COLLECTORS`
    (``sysfs``: another root than ``/sys``, as tests give it)."""
    command = [program("prometheus-node-exporter", "prometheus-node-exporter"),
               f"--web.listen-address={address}:{port}", "--collector.disable-defaults",
               *(f"--collector.{name}" for name in NODE_EXPORTER_COLLECTORS)]
    if sysfs is not None:
        command.append(f"--path.sysfs={sysfs}")
    return Service("node-exporter", command, {}, url=f"http://{address}:{port}/metrics", listen=(address, port))


WAKE_MAX_BODY_BYTES = 1024  # a wake-up carries nothing: any body is a JSON object, and small
# Per caller: the dispatcher wakes a node once per batch it sends there, a handful at a time; a flood
# would only make the workers read the API in a loop.
WAKE_RATE_PER_S = 2.0
WAKE_BURST = 10


def _wake_server(address: str, port: int, wake: Callable[[], None], credentials: str | None, *,
                 clock: Callable[[], float] = time.monotonic) -> ThreadingHTTPServer:
    """``POST /wake`` with the stack's ``credentials`` (:mod:`exporters.control`) runs ``wake``; ``clock``
    times the per-caller rate."""
    class Handler(ControlHandler):
        guard = ControlGuard(credentials, max_body_bytes=WAKE_MAX_BODY_BYTES, rate_per_s=WAKE_RATE_PER_S,
                             burst=WAKE_BURST, clock=clock)

        def do_POST(self) -> None:
            if self.path.split("?")[0] != "/wake":
                self.refuse(Refused(404, "POST /wake"))
                return
            try:
                self.guarded()
                self.json_body(required=False)
            except Refused as refused:
                self.refuse(refused)
                return
            wake()
            self.send_json(200, {"woken": True})

    try:
        server = ThreadingHTTPServer((address, port), Handler)
    except OSError as exc:
        holder = port_holder(address, port)
        raise ServiceError(f"the agent can't listen on {address}:{port} for wake-ups: "
                           f"{f'held by {holder}' if holder else exc.strerror}; set FFWATT_AGENT_PORT") from exc
    threading.Thread(target=server.serve_forever, name="wake-server", daemon=True).start()
    return server


@contextlib.contextmanager
def _sole_agent(run_dir: Path, node: str) -> Iterator[None]:
    """Be this home's one agent for the block, or fail at once naming the one that is. The file says
    who holds it, for people to read: it is never a reason to signal anyone."""
    run_dir.mkdir(parents=True, exist_ok=True)
    with (run_dir / "agent.lock").open("a+") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.seek(0)
            holder = handle.read().strip() or "another process"
            raise ServiceError(f"another agent ({holder}) already serves FFWATT_HOME={run_dir.parent}; stop it "
                               "first, or give this one its own FFWATT_HOME") from None
        handle.truncate(0)
        handle.write(f"pid {os.getpid()}, node {node}\n")
        handle.flush()
        yield


def _declare_gone(client: SyncPrefectClient, node: str) -> int:
    """End the batches this node's queue (in whichever pool) shows taken up (Pending) or Running: this
    agent takes work only after this, so they were the previous agent's, and died with its process.
    Crashed when one had started (its job in flight is spent), Cancelled when it hadn't. How many
    there were."""
    from prefect.client.schemas.filters import (
        FlowRunFilter,
        FlowRunFilterState,
        FlowRunFilterStateType,
        FlowRunFilterWorkQueueName,
    )
    from prefect.client.schemas.objects import StateType
    from prefect.states import Cancelled, Crashed

    runs = client.read_flow_runs(flow_run_filter=FlowRunFilter(
        state=FlowRunFilterState(type=FlowRunFilterStateType(any_=[StateType.RUNNING, StateType.PENDING])),
        work_queue_name=FlowRunFilterWorkQueueName(any_=[node_queue(node)])))
    for run in runs:
        running = run.state is not None and run.state.type == StateType.RUNNING
        message = (f"ffwatt: the agent of node {node} was restarted; this batch "
                   f"{'died with the previous one' if running else 'was taken up by the previous one, never started'}")
        client.set_flow_run_state(run.id, (Crashed if running else Cancelled)(message=message), force=True)
        log.warning("batch %s (%s) %s", run.id, run.name, message.removeprefix("ffwatt: "))
    return len(runs)


def _recorded_incarnation(client: SyncPrefectClient, node: str) -> str:
    """The incarnation of the agent the master's record of ``node`` names ("" when none does)."""
    current = client.read_variable_by_name(variable_name(node))
    value = current.value if current is not None else None
    return str(value.get("incarnation") or "") if isinstance(value, dict) else ""


def _take_over(client: SyncPrefectClient, node: str) -> None:
    """Serve ``node`` after the agent the master's record names, if that one is provably gone: it ran
    on this machine and its process is dead; then its batches died with it (:func:`_declare_gone`). One
    still running here is another agent of this node: refuse. One that ran elsewhere, or before a
    reboot, can't be judged from here; its batches are judged by its heartbeats, long stopped."""
    previous = _recorded_incarnation(client, node)
    runs = incarnation_runs(previous) if previous else None
    if runs:
        raise ServiceError(f"node {node} is already served by another agent (pid {previous.split('/')[1]} on "
                           "this machine); stop it first, or give this one another FFWATT_NODE")
    if runs is False:
        _declare_gone(client, node)


def _forget_if_ours(record: NodeRecord) -> None:
    """Remove the node's record if it is still this agent's: another agent of the same name may serve
    the node now."""
    from prefect.client.orchestration import get_client

    with get_client(sync_client=True) as client:
        ours = _recorded_incarnation(client, record.node) == record.incarnation
    if ours:
        forget_node(record.node)


def _keep_record(record: NodeRecord) -> None:
    """Write the record unless the master already has it as it is (after a restart with an empty
    database, say, it hasn't)."""
    from prefect.client.orchestration import get_client

    with get_client(sync_client=True) as client:
        current = client.read_variable_by_name(variable_name(record.node))
    if current is None or current.value != record.model_dump(mode="json", exclude={"heartbeat_at", "timeout_s"}):
        publish_node(record)


def _follow_cadence(pace: Pace, settings: Settings) -> None:
    """Take the fleet's cadence as the master published it (never faster than this node's settings)."""
    from prefect.client.orchestration import get_client

    with get_client(sync_client=True) as client:
        cadence = read_cadence(client)
    if cadence is None:
        return
    cadence = cadence.at_least(settings.worker_heartbeat_s, settings.worker_poll_s)
    if (cadence.heartbeat_s, cadence.poll_s) != (pace.heartbeat_s, pace.poll_s):
        log.info("the fleet's cadence (%d workers): beating every %d s, polling every %g s", cadence.workers,
                 cadence.heartbeat_s, cadence.poll_s)
        pace.heartbeat_s, pace.poll_s = cadence.heartbeat_s, cadence.poll_s


def run_agent(settings: Settings, *, master_env: dict[str, str], address: str, stop: threading.Event,
              probe: NodeProbe | None = None) -> None:
    """Serve this node until ``stop`` is set; then stop what it started and deregister."""
    with _sole_agent(settings.run_dir, settings.node):
        _serve(settings, master_env=master_env, address=address, stop=stop, probe=probe)


def _serve(settings: Settings, *, master_env: dict[str, str], address: str, stop: threading.Event,
           probe: NodeProbe | None) -> None:
    # This process talks to the master too (its workers, its record): before Prefect is imported.
    os.environ.update({**PREFECT_ENV, **master_env})
    from prefect.client.orchestration import get_client

    try:  # first: the master plans the dead batches again while this agent probes and starts
        with get_client(sync_client=True) as client:
            _take_over(client, settings.node)
    except httpx.HTTPError as exc:  # PrefectHTTPStatusError (an error status) is one too
        raise ApiError(f"node {settings.node} can't tell the master which batches died with its previous "
                       f"agent ({exc}); start it again once the API answers") from exc
    probe = probe or probe_node(settings)
    if not probe.pools:
        raise ServiceError(f"node {settings.node} has no working encoder; see `ffwatt agent probe`")
    env = {**os.environ, "FFWATT_HOME": str(settings.home), "FFWATT_NODE": settings.node}
    ensure_pools(env, probe.pools, queue=node_queue(settings.node))
    run_dir = settings.run_dir
    ports = settings.exporter_ports
    exporters: dict[str, str] = {}
    ours: list[str] = []  # services this agent started, or adopted from the agent before it (see _sole_agent)
    workers: threading.Thread | None = None
    wake_server: ThreadingHTTPServer | None = None
    record: NodeRecord | None = None
    try:  # whatever fails to start, what did start is stopped again
        for kind, port in ports.items():
            start_service(run_dir, Service(f"exporter-{kind}", [str(BIN / "ffwatt"), "exporter", kind,
                                                                "--listen", f"{address}:{port}"], env,
                                           listen=(address, port)))
            ours.append(f"exporter-{kind}")
            exporters[kind] = f"{address}:{port}"
        try:
            node_exporter = node_exporter_service(address, settings.node_exporter_port)
        except MonitoringError as exc:  # ffwatt's own readings don't need it: serve without
            log.warning("%s; this node's CPU frequency and temperatures won't be in the store", exc)
        else:
            start_service(run_dir, node_exporter)
            ours.append(node_exporter.name)
            exporters["node"] = f"{address}:{settings.node_exporter_port}"

        wakers: list[Callable[[], None]] = []

        def wake_all() -> None:
            for wake in wakers:
                wake()

        credentials = master_env.get("PREFECT_API_AUTH_STRING") or None
        if credentials is None:
            log.warning("no API credentials (PREFECT_API_AUTH_STRING): POST /wake refuses every call, so batches "
                        "start at this node's next poll, within %g s", settings.worker_poll_s)
        wake_server = _wake_server(address, settings.agent_port, wake_all, credentials)
        # Published before the workers take any batch, so every batch this agent runs has a record naming
        # it: its successor can tell that it is gone (see _take_over).
        record = NodeRecord(node=settings.node, address=address, pools=probe.pools,
                            encoders=probe.working_encoders, exporters=exporters, started_at=time.time(),
                            queue=node_queue(settings.node), wake_url=f"http://{address}:{settings.agent_port}/wake",
                            incarnation=incarnation(os.getpid()) or "")
        try:
            _keep_record(record)
        except httpx.HTTPError as exc:
            raise ApiError(f"node {settings.node} can't register with the master ({exc}); start it again once the "
                           "API answers") from exc
        from agent.warm import Pace, run_warm_workers

        pace = Pace(heartbeat_s=settings.worker_heartbeat_s, poll_s=settings.worker_poll_s)
        _follow_cadence(pace, settings)  # a node joining a large fleet starts at its pace
        ready = threading.Event()

        def wake_ready(wake: Callable[[], None]) -> None:
            wakers.append(wake)
            ready.set()

        workers = threading.Thread(target=run_warm_workers, name="workers", daemon=True, args=(probe.pools,), kwargs={
            "node": settings.node, "queue": node_queue(settings.node), "limit": 1, "pace": pace, "stop": stop,
            "on_wake_ready": wake_ready})
        workers.start()
        ready.wait(60)
        log.info("node %s serving pools %s; exporters %s; beating every %d s, polling every %g s", settings.node,
                 ", ".join(probe.pools), exporters, pace.heartbeat_s, pace.poll_s)
        while not stop.is_set():
            if not workers.is_alive():
                raise ServiceError(f"the workers of node {settings.node} stopped; see the log above")
            try:
                _keep_record(record)
                _follow_cadence(pace, settings)
            except Exception as exc:  # noqa: BLE001 - the master restarting: keep serving, try again soon
                log.warning("can't reach the master (%s); retrying", exc)
                stop.wait(5)
                continue
            stop.wait(max(RECORD_CHECK_S, RECORD_CHECKS_PER_BEAT * pace.heartbeat_s))
    finally:
        stop.set()
        if wake_server is not None:
            wake_server.shutdown()
        if workers is not None:
            workers.join(30)
        for name in reversed(ours):
            stop_service(run_dir, name)
        if record is not None:
            with contextlib.suppress(Exception):
                _forget_if_ours(record)
