"""A thousand nodes on one master, simulated: does every node stay online, and do a
10 000-job campaign's rows all come home, and at what cost to the master?

The master is real: a Prefect server on a throwaway PostgreSQL, ffwatt's own
dispatcher (:class:`flows.dispatch.Dispatcher` over :class:`flows.fleet_api.PrefectFleetAPI`)
writing every row to Parquet, and the discovery service (``ffwatt stack discovery``),
asked for targets every 2 s and scraped every second, as the metrics store does.
The nodes are simulated in one separate process, but over real HTTP, making the calls
an agent makes (``agent/node.py``, ``flows/batch.py``): register the node record and
queue; send the worker heartbeat (reading the pool every five minutes, as
:class:`agent.warm.WarmWorker` does); poll the node's queue every ``--poll-s`` or
when woken (``POST /wake``); for a batch, set it Pending and Running, send the node
report, then one row artifact per job (``--job-s`` apart, no FFmpeg), reading its own
state once per node timeout between jobs (stopping if the master ended it), and set it
Completed.

Prints: how long until every node was online; during the campaign the fewest nodes
the dispatcher saw online and the batches it declared lost; API calls per job, master
and nodes apart (liveness calls, which cost per node and second whatever the
campaign, are counted apart); CPU seconds of the Prefect server, of PostgreSQL and of
the dispatcher; the master's memory (PSS) with no node, with the idle fleet and at its
peak over the campaign; and API latency percentiles per call.

    sudo .venv/bin/python -m bench.fleet_scale [--nodes 1000] [--jobs 10000] [--api-processes 2]

Needs root (PostgreSQL runs as the postgres user) and Debian's postgresql.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import random
import resource
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections import defaultdict
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import psutil

from ffwatt.processes import stop_group

POOL = "cpu"
MIB, GIB = 2**20, 2**30
PRESETS = ["ultrafast", "superfast", "veryfast", "faster", "fast", "medium", "slow", "slower", "veryslow", "placebo"]


def campaign_of(jobs: int) -> dict[str, Any]:
    """A campaign of exactly ``jobs`` jobs (a multiple of 500): 10 presets x 50 CRFs x repetitions."""
    if jobs % 500:
        raise SystemExit("--jobs must be a multiple of 500")
    return {"name": "fleet-scale", "inputs": [{"name": "a", "source": "testsrc2", "size": "320x240",
                                               "duration_s": 1}],
            "matrix": {"encoders": [{"name": "libx264", "presets": PRESETS}],
                       "rate_control": [{"mode": "crf", "values": list(range(1, 51))}]},
            "repetitions": jobs // 500, "quality": [], "idle_baseline_s": 0}


def percentiles(values: list[float]) -> str:
    if not values:
        return "-"
    ordered = sorted(values)

    def at(q: float) -> float:
        return ordered[min(len(ordered) - 1, int(q * len(ordered)))] * 1000

    return f"n={len(ordered)} p50={at(0.5):.0f} ms p99={at(0.99):.0f} ms max={ordered[-1] * 1000:.0f} ms"


# ---------------------------------------------------------------- the simulated nodes (own process)

_RETRIES = 5
_LIVENESS_CALLS = {"heartbeat", "poll", "read pool", "read record", "write record", "read cadence"}


class Nodes:
    """``count`` simulated agents in one event loop, sharing one HTTP connection pool."""

    def __init__(self, api: str, count: int, heartbeat_s: int, poll_s: float, job_s: float, wake_port: int) -> None:
        import httpx

        from agent.warm import Pace

        # Job traffic (batch states, reports, rows) shares 64 connections, which caps what this one process
        # puts on the master at once. Liveness (beats, polls, record reads) has a connection per node, as each
        # real node's workers have: a node's beat never waits behind another node's rows in a real fleet, and
        # in one shared pool it did (beats minutes late, live nodes counted offline, on a master that answered
        # its own calls in under 4 s).
        self.http = httpx.AsyncClient(base_url=api, timeout=60,
                                      limits=httpx.Limits(max_connections=64, max_keepalive_connections=64))
        self.liveness = httpx.AsyncClient(base_url=api, timeout=60,
                                          limits=httpx.Limits(max_connections=count, max_keepalive_connections=count))
        self.names = [f"sim-{i:04d}" for i in range(count)]
        self.heartbeat_s, self.poll_s, self.job_s, self.wake_port = heartbeat_s, poll_s, job_s, wake_port
        # Each node's own pace, as an agent keeps it: its settings, then the master's cadence.
        self.pace = {name: Pace(heartbeat_s=heartbeat_s, poll_s=poll_s) for name in self.names}
        self.wake = {name: asyncio.Event() for name in self.names}
        self.latency: dict[str, list[float]] = defaultdict(list)
        self.errors: dict[str, int] = defaultdict(int)
        self.retries: dict[str, int] = defaultdict(int)
        self.calls: dict[str, int] = defaultdict(int)
        self.registered = 0
        self.records: dict[str, Any] = {}
        self._jobs: dict[str, Any] = {}

    async def call(self, what: str, method: str, path: str, *, ok: tuple[int, ...] = (200, 201, 204),
                   **kwargs: Any) -> Any:
        start = time.perf_counter()
        self.calls[what] += 1
        client = self.liveness if what in _LIVENESS_CALLS else self.http
        # As Prefect's client retries an agent's calls: a timeout, a dropped connection or a 429/502/503 (and
        # 500, which ffwatt adds: PREFECT_ENV), up to PREFECT_CLIENT_MAX_RETRIES (5) times with jittered
        # exponential back-off.
        for attempt in range(_RETRIES + 1):
            try:
                response = await client.request(method, path, **kwargs)
            except Exception:
                response = None
            if response is not None and response.status_code not in (429, 500, 502, 503):
                break
            if attempt < _RETRIES:
                self.retries[what] += 1
                await asyncio.sleep(random.uniform(0.5, 1.5) * 2 ** attempt)
        if response is None:  # counted; the node goes on as an agent would
            self.errors[what] += 1
            return None
        self.latency[what].append(time.perf_counter() - start)
        if response.status_code not in ok:
            self.errors[what] += 1
            return None
        return response.json() if response.content else None

    async def register(self, name: str, gate: asyncio.Semaphore) -> None:
        from ffwatt.fleet.nodes import NodeRecord, node_queue

        record = NodeRecord(node=name, address="127.0.0.1", pools=[POOL], encoders=["libx264"], exporters={},
                            started_at=time.time(), queue=node_queue(name),
                            wake_url=f"http://127.0.0.1:{self.wake_port}/wake/{name}")
        self.records[name] = record
        async with gate:
            await self.call("create queue", "POST", f"/work_pools/ffwatt-{POOL}/queues",
                            json={"name": record.queue}, ok=(201, 409))
            await self.write_record(name)
            await self.follow_cadence(name)
            await self.heartbeat(name, read_pool=True)
        self.registered += 1

    async def write_record(self, name: str) -> None:
        from ffwatt.fleet.nodes import variable_name

        await self.call("write record", "POST", "/variables/", ok=(201, 409), json={
            "name": variable_name(name),
            "value": self.records[name].model_dump(mode="json", exclude={"heartbeat_at", "timeout_s"})})

    async def follow_cadence(self, name: str) -> None:
        """What an agent does every few beats (agent.node): check its record (writing it again if the
        master lost it), take the fleet's cadence."""
        from ffwatt.fleet.cadence import CADENCE_VARIABLE, Cadence
        from ffwatt.fleet.nodes import variable_name

        if await self.call("read record", "GET", f"/variables/name/{variable_name(name)}", ok=(200,)) is None:
            await self.write_record(name)
        # 404 until the master has published one: the node keeps its own settings
        published = await self.call("read cadence", "GET", f"/variables/name/{CADENCE_VARIABLE}", ok=(200, 404))
        if published is not None and "value" in published:
            cadence = Cadence.model_validate(published["value"]).at_least(self.heartbeat_s, self.poll_s)
            self.pace[name].heartbeat_s, self.pace[name].poll_s = cadence.heartbeat_s, cadence.poll_s

    async def checking(self, name: str) -> None:
        from ffwatt.fleet.cadence import RECORD_CHECKS_PER_BEAT

        while True:
            await asyncio.sleep(max(60.0, RECORD_CHECKS_PER_BEAT * self.pace[name].heartbeat_s))
            await self.follow_cadence(name)

    async def heartbeat(self, name: str, *, read_pool: bool = False) -> None:
        from ffwatt.fleet.nodes import worker_name

        # What a warm worker does each heartbeat (WarmWorker.sync_with_backend): beat, and read its
        # pool every POOL_READ_EVERY_S.
        if read_pool:
            await self.call("read pool", "GET", f"/work_pools/ffwatt-{POOL}")
        await self.call("heartbeat", "POST", f"/work_pools/ffwatt-{POOL}/workers/heartbeat",
                        json={"name": worker_name(name, POOL),
                              "heartbeat_interval_seconds": self.pace[name].heartbeat_s})

    async def beating(self, name: str) -> None:
        from ffwatt.fleet.cadence import POOL_READ_EVERY_S

        await asyncio.sleep(random.uniform(0, self.pace[name].heartbeat_s))
        pool_read_at = time.monotonic() - random.uniform(0, POOL_READ_EVERY_S)
        while True:
            started = time.monotonic()
            read_pool = started - pool_read_at > POOL_READ_EVERY_S
            pool_read_at = started if read_pool else pool_read_at
            beat = self.pace[name].heartbeat_s  # the interval this beat reports
            await self.heartbeat(name, read_pool=read_pool)
            await asyncio.sleep(max(0.0, beat - (time.monotonic() - started)))

    async def polling(self, name: str) -> None:
        from ffwatt.fleet.nodes import node_queue

        await asyncio.sleep(random.uniform(0, self.pace[name].poll_s))
        while True:
            self.wake[name].clear()
            runs = await self.call("poll", "POST", f"/work_pools/ffwatt-{POOL}/get_scheduled_flow_runs", json={
                "work_queue_names": [node_queue(name)], "scheduled_before": datetime.now(UTC).isoformat()})
            for run in runs or []:
                await self.run_batch(name, run["flow_run"])
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.wake[name].wait(), self.pace[name].poll_s)

    async def set_state(self, flow_run_id: str, state: str) -> bool:
        answer = await self.call(f"set {state.lower()}", "POST", f"/flow_runs/{flow_run_id}/set_state",
                                 json={"state": {"type": state}})
        return bool(answer) and answer.get("status") == "ACCEPT"

    async def run_batch(self, name: str, flow_run: dict[str, Any]) -> None:
        from ffwatt.fleet.protocol import (
            BatchParameters,
            NodeReport,
            encode_report,
            encode_row,
            facts_artifact_key,
            row_artifact_key,
        )
        from ffwatt.nodefacts import NodeFacts

        run_id = flow_run["id"]
        if not await self.set_state(run_id, "PENDING") or not await self.set_state(run_id, "RUNNING"):
            return
        parameters = BatchParameters.model_validate(flow_run["parameters"])
        jobs = self.jobs_of(parameters)
        facts = NodeFacts(name=name, cpu_model="simulated", logical_cpus=1, kernel="-", cpu_energy="simulated",
                          ffmpeg_path="-", ffmpeg_version="-", ffmpeg_configuration="")
        await self.call("send report", "POST", "/artifacts/", json={
            "key": facts_artifact_key(name), "type": "table", "flow_run_id": run_id,
            "data": encode_report(NodeReport(facts=facts, idle_baseline=None))})
        from prefect.client.schemas.objects import TERMINAL_STATES

        from ffwatt.fleet.nodes import MISSED_HEARTBEATS

        checked_at = time.monotonic()
        for job_id in parameters.job_ids:
            if time.monotonic() - checked_at >= MISSED_HEARTBEATS * self.pace[name].heartbeat_s:
                checked_at = time.monotonic()
                flow_run = await self.call("read own state", "GET", f"/flow_runs/{run_id}")
                if flow_run and flow_run["state"]["type"] in TERMINAL_STATES:
                    await self.set_state(run_id, "CANCELLED")
                    return
            await asyncio.sleep(self.job_s)
            row = self.row(jobs[job_id], parameters, name)
            await self.call("send row", "POST", "/artifacts/", json={
                "key": row_artifact_key(job_id), "type": "table", "flow_run_id": run_id, "data": encode_row(row)})
        await self.set_state(run_id, "COMPLETED")

    def jobs_of(self, parameters: Any) -> dict[str, Any]:
        from ffwatt.jobs import expand

        key = parameters.campaign.name
        if key not in self._jobs:  # every node expands the campaign; one process does it once for all
            self._jobs[key] = {job.job_id: job for job in expand(parameters.campaign)}
        return dict(self._jobs[key])

    @staticmethod
    def row(job: Any, parameters: Any, name: str) -> Any:
        from ffwatt.schema import JobRow

        now = datetime.now(UTC)
        return JobRow(campaign=job.campaign, run_id=parameters.run_id, job_id=job.job_id, config_id=job.config_id,
                      repetition=job.repetition, node=name, input_name=job.input.name, encoder=job.encoder,
                      rate_control=job.rate_control, status="ok", attempts=parameters.attempts[job.job_id],
                      started_at=now)

    async def serve_wake(self) -> asyncio.Server:
        async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            request = (await reader.readline()).decode()
            while (await reader.readline()) not in (b"\r\n", b"\n", b""):
                pass
            name = request.split(" ")[1].rsplit("/", 1)[-1] if " " in request else ""
            if name in self.wake:
                self.wake[name].set()
            writer.write(b"HTTP/1.1 204 No Content\r\nConnection: close\r\n\r\n")
            await writer.drain()
            writer.close()

        return await asyncio.start_server(handle, "127.0.0.1", self.wake_port, backlog=1024)

    async def main(self, stats: Path, stop: asyncio.Event) -> None:
        server = await self.serve_wake()
        gate = asyncio.Semaphore(32)
        await asyncio.gather(*(self.register(name, gate) for name in self.names))
        lives = [asyncio.create_task(coro) for name in self.names
                 for coro in (self.beating(name), self.polling(name), self.checking(name))]
        while not stop.is_set():
            beats = [pace.heartbeat_s for pace in self.pace.values()]
            stats.write_text(json.dumps({"registered": self.registered, "beat_s": [min(beats), max(beats)],
                                         "calls": self.calls}))
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), 1)
        for life in lives:
            life.cancel()
        server.close()
        await self.http.aclose()
        await self.liveness.aclose()
        stats.write_text(json.dumps({"registered": self.registered, "calls": self.calls, "errors": self.errors,
                                     "retries": self.retries, "latency": self.latency}))


def simulate(args: argparse.Namespace) -> None:
    nodes = Nodes(args.api, args.nodes, args.heartbeat_s, args.poll_s, args.job_s, args.wake_port)

    async def run() -> None:
        stop = asyncio.Event()
        asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
        await nodes.main(Path(args.stats), stop)

    asyncio.run(run())


# ---------------------------------------------------------------- the master (this process)

def cpu_seconds(*roots: int) -> float:
    """CPU seconds of ``roots`` and every process under them, the reaped ones included."""
    total = 0.0
    for root in roots:
        with contextlib.suppress(psutil.NoSuchProcess):
            top = psutil.Process(root)
            for process in [top, *top.children(recursive=True)]:
                with contextlib.suppress(psutil.NoSuchProcess):
                    times = process.cpu_times()
                    total += times.user + times.system + times.children_user + times.children_system
    return total


def memory_bytes(*roots: int) -> int:
    """Proportional set size of ``roots`` and every process under them: pages they share (PostgreSQL's
    buffers, what the API processes inherited) counted once across them, as a machine must hold them."""
    total = 0
    for root in roots:
        with contextlib.suppress(psutil.NoSuchProcess):
            top = psutil.Process(root)
            for process in [top, *top.children(recursive=True)]:
                with contextlib.suppress(psutil.NoSuchProcess, psutil.AccessDenied):
                    total += process.memory_full_info().pss
    return total


@contextlib.contextmanager
def peak_memory(roots: list[int], every_s: float = 5.0) -> Iterator[list[int]]:
    """The largest :func:`memory_bytes` of ``roots`` seen while the block runs, in a one-item list."""
    peak, done = [memory_bytes(*roots)], threading.Event()

    def sample() -> None:
        while not done.wait(every_s):
            peak[0] = max(peak[0], memory_bytes(*roots))

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    try:
        yield peak
    finally:
        done.set()
        sampler.join()


@contextlib.contextmanager
def discovery_scraped(work: Path, env: dict[str, str], args: argparse.Namespace
                      ) -> Iterator[tuple[subprocess.Popen[bytes], dict[str, list[float]]]]:
    """``ffwatt stack discovery`` against this server, asked for targets every 2 s and for /metrics every
    second from a thread, as the store does, while this lasts: the process and the answers' latencies."""
    import threading

    import httpx

    from ffwatt.fleet.prefect_server import BIN, free_port

    port = free_port()
    log = (work / "discovery.log").open("wb")
    process = subprocess.Popen([str(BIN / "ffwatt"), "stack", "discovery", "--listen", f"127.0.0.1:{port}"],
                               env={**os.environ, **env, "FFWATT_HOME": str(work / "master"),
                                    "FFWATT_WORKER_HEARTBEAT_S": str(args.heartbeat_s),
                                    "FFWATT_WORKER_POLL_S": str(args.poll_s)}, stdout=log,
                               stderr=subprocess.STDOUT, start_new_session=True)
    latency: dict[str, list[float]] = {"/targets": [], "/metrics": []}
    stop = threading.Event()

    def scrape() -> None:
        tick = 0
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=30) as http:
            while not stop.wait(1.0):
                tick += 1
                for path in ("/metrics", "/targets") if tick % 2 == 0 else ("/metrics",):
                    started = time.perf_counter()
                    with contextlib.suppress(httpx.HTTPError):
                        if http.get(path).status_code == 200:
                            latency[path].append(time.perf_counter() - started)

    thread = threading.Thread(target=scrape, daemon=True)
    thread.start()
    try:
        yield process, latency
    finally:
        stop.set()
        thread.join(60)
        if process.poll() is None:
            stop_group(process.pid, timeout_s=30)
            process.wait()
        log.close()


def idle_costs(stats: Path, server_pids: list[int], pg_pid: int | None, discovery_pid: int, seconds: float
               ) -> dict[str, float]:
    """The master's CPU seconds (server, PostgreSQL, discovery) and the nodes' API calls over ``seconds``
    of an idle fleet."""
    def sample() -> tuple[float, float, float, int]:
        calls = sum(json.loads(stats.read_text()).get("calls", {}).values())
        return (cpu_seconds(*server_pids), cpu_seconds(pg_pid) if pg_pid else 0.0, cpu_seconds(discovery_pid), calls)

    before, start = sample(), time.monotonic()
    time.sleep(seconds)
    after, took = sample(), time.monotonic() - start
    return {"seconds": took, "server": after[0] - before[0], "pg": after[1] - before[1],
            "discovery": after[2] - before[2], "calls": after[3] - before[3]}


def load_settings_budget() -> float:
    from ffwatt.settings import load_settings

    return load_settings().fleet_api_budget_rps


def postmaster_pid(data_dirs: list[Path]) -> int | None:
    for data in data_dirs:
        with contextlib.suppress(OSError, ValueError):
            return int((data / "db" / "postmaster.pid").read_text().split()[0])
    return None


@contextlib.contextmanager
def simulated_nodes(api: str, args: argparse.Namespace, work: Path) -> Iterator[tuple[subprocess.Popen[bytes], Path]]:
    from ffwatt.fleet.prefect_server import free_port

    stats = work / "nodes.json"
    command = [sys.executable, "-m", "bench.fleet_scale", "--simulate", "--api", api, "--stats", str(stats),
               "--nodes", str(args.nodes), "--heartbeat-s", str(args.heartbeat_s), "--poll-s", str(args.poll_s),
               "--job-s", str(args.job_s), "--wake-port", str(args.wake_port or free_port())]
    with (work / "nodes.log").open("ab") as log:
        process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        yield process, stats
    finally:
        if process.poll() is None:
            stop_group(process.pid, timeout_s=60)  # the group this bench started
            process.wait()


def run_master(args: argparse.Namespace, work: Path, env: dict[str, str], server_pids: list[int],
               pg_pid: int | None) -> None:
    os.environ.update(env)
    from prefect.client.orchestration import get_client

    from ffwatt.fleet.cadence import RECORD_CHECKS_PER_BEAT, cadence_for, liveness_calls_per_s, read_cadence
    from ffwatt.fleet.client import ensure_pools
    from ffwatt.fleet.nodes import list_nodes
    from ffwatt.fleet.protocol import Poll
    from ffwatt.jobs import expand
    from ffwatt.results import write_job_row
    from ffwatt.schema import JobRow
    from ffwatt.validation import parse_campaign
    from flows.dispatch import Dispatcher
    from flows.fleet_api import PrefectFleetAPI

    ensure_pools(env, [POOL])
    master_latency: list[float] = []
    master_calls = [0]

    def on_request(request: Any) -> None:
        request.extensions["ffwatt_started"] = time.perf_counter()
        master_calls[0] += 1

    def on_response(response: Any) -> None:
        master_latency.append(time.perf_counter() - response.request.extensions["ffwatt_started"])

    with get_client(sync_client=True) as client:
        flow_id = client.create_flow_from_name("node-batch")
        client.create_deployment(flow_id=flow_id, name=POOL, work_pool_name=f"ffwatt-{POOL}",
                                 entrypoint="flows/batch.py:node_batch", enforce_parameter_schema=False)

    with contextlib.ExitStack() as later:
        # The discovery service is up before the nodes: it publishes the cadence they join at.
        discovery, discovery_latency = later.enter_context(discovery_scraped(work, env, args))
        master_roots = [*server_pids, *([pg_pid] if pg_pid else []), discovery.pid]
        memory_before = memory_bytes(*master_roots)  # the master with no node yet
        memory_joining: tuple[int, int] | None = None
        process, stats = later.enter_context(simulated_nodes(env["PREFECT_API_URL"], args, work))
        started = time.monotonic()
        online_at, told_at, online = None, started, 0
        with get_client(sync_client=True) as client:
            while time.monotonic() - started < args.join_timeout_s:
                if process.poll() is not None:
                    raise SystemExit(f"the simulated nodes died; see {work / 'nodes.log'}")
                online = sum(n.online() for n in list_nodes(client))
                if memory_joining is None and online >= max(1, args.nodes // 10):
                    # A tenth in: the API has warmed up and opened its database connections under the
                    # joining's load, so what the master grows by from here on is what nodes cost it.
                    memory_joining = (online, memory_bytes(*master_roots))
                if online >= args.nodes:
                    online_at = time.monotonic() - started
                    break
                if time.monotonic() - told_at > 15:
                    told_at = time.monotonic()
                    print(f"  {told_at - started:.0f} s: {online} of {args.nodes} nodes online", flush=True)
                time.sleep(2)
        if online_at is None:
            raise SystemExit(f"only {online} of {args.nodes} nodes online after {args.join_timeout_s} s")
        print(f"{args.nodes} nodes registered and online {online_at:.1f} s after they started")
        with get_client(sync_client=True) as client:
            cadence = read_cadence(client)
        beat_s = cadence.heartbeat_s if cadence else args.heartbeat_s
        print(f"cadence published by the master: {cadence.model_dump() if cadence else None}")
        # Steady state: every node has taken the cadence (it re-reads it every 6 beats) and beaten twice.
        time.sleep(RECORD_CHECKS_PER_BEAT * beat_s + 2 * beat_s)
        paces = json.loads(stats.read_text()).get("beat_s")
        print(f"the nodes' beats now: every {paces[0]}-{paces[1]} s (their own floor {args.heartbeat_s} s)")
        idle = idle_costs(stats, server_pids, pg_pid, discovery.pid, max(60.0, 2 * beat_s))
        print(f"idle fleet over {idle['seconds']:.0f} s: {idle['calls'] / idle['seconds']:.1f} API calls/s from "
              f"{args.nodes} nodes (budget {load_settings_budget():g}/s); master CPU per node per minute: Prefect "
              f"server {idle['server'] / args.nodes / idle['seconds'] * 60 * 1000:.1f} ms, PostgreSQL "
              f"{idle['pg'] / args.nodes / idle['seconds'] * 60 * 1000:.1f} ms, discovery "
              f"{idle['discovery'] / args.nodes / idle['seconds'] * 60 * 1000:.1f} ms")
        idle_cores_per_node = (idle["server"] + idle["pg"] + idle["discovery"]) / idle["seconds"] / args.nodes
        idle_cpu_s_per_call = idle_cores_per_node * args.nodes / (idle["calls"] / idle["seconds"])
        memory_idle = memory_bytes(*master_roots)
        joined, memory_then = memory_joining or (args.nodes, memory_idle)
        # Nodes past the first tenth, over the memory they added (none measured when all joined between looks).
        memory_per_node = max(0, memory_idle - memory_then) / (args.nodes - joined) if joined < args.nodes else 0.0
        print(f"master memory (PSS: server, PostgreSQL, discovery): {memory_before / MIB:.0f} MiB with no node, "
              f"{memory_then / MIB:.0f} MiB with {joined} joined (warmed up), {memory_idle / MIB:.0f} MiB with "
              f"{args.nodes} idle: " + (f"{memory_per_node / 1024:.0f} KiB per node past the first {joined}"
                                        if joined < args.nodes else "per node not measured (all joined at once)"))

        campaign = parse_campaign(campaign_of(args.jobs))
        jobs = expand(campaign)
        results = work / "results"
        seen_online: list[int] = []
        lost: list[str] = []

        class Watched(PrefectFleetAPI):
            def poll(self, open_batches: Any, all_batches: Any, missing_jobs: Any) -> Poll:
                poll = super().poll(open_batches, all_batches, missing_jobs)
                if poll.nodes is not None:
                    seen_online.append(sum(n.online() for n in poll.nodes))
                return poll

            def crash(self, batch: Any, message: str) -> None:
                lost.append(message)
                super().crash(batch, message)

            def cancel(self, batch: Any, message: str) -> None:
                lost.append(message)
                super().cancel(batch, message)

        def record(row: JobRow) -> JobRow:
            write_job_row(results, row)
            return row

        before_nodes = json.loads(stats.read_text()) if stats.exists() else {}
        cpu_before = (cpu_seconds(*server_pids), cpu_seconds(pg_pid) if pg_pid else 0.0,
                      resource.getrusage(resource.RUSAGE_SELF), cpu_seconds(discovery.pid))
        begun = time.monotonic()
        with get_client(sync_client=True) as client, peak_memory(master_roots) as memory_peak:
            client._client.event_hooks = {"request": [on_request], "response": [on_response]}
            dispatcher = Dispatcher(campaign, jobs, "fleet-scale-run", api=Watched(client), record=record)
            dispatcher.start(list_nodes(client))
            sent_at = time.monotonic() - begun
            rows = dispatcher.run()
        wall = time.monotonic() - begun
        after = resource.getrusage(resource.RUSAGE_SELF)
        server_cpu = cpu_seconds(*server_pids) - cpu_before[0]
        pg_cpu = (cpu_seconds(pg_pid) if pg_pid else 0.0) - cpu_before[1]
        dispatcher_cpu = (after.ru_utime + after.ru_stime) - (cpu_before[2].ru_utime + cpu_before[2].ru_stime)
        discovery_cpu = cpu_seconds(discovery.pid) - cpu_before[3]
        if discovery.poll() is not None:
            raise SystemExit(f"the discovery service died; see {work / 'discovery.log'}")
        os.killpg(process.pid, signal.SIGTERM)
        process.wait(120)
    nodes = json.loads(stats.read_text())
    calls = {what: n - before_nodes.get("calls", {}).get(what, 0) for what, n in nodes["calls"].items()}
    ok = sum(r.status == "ok" for r in rows)
    job_calls = sum(n for what, n in calls.items() if what.startswith(("set ", "send ", "read own state")))
    liveness = sum(calls.get(what, 0) for what in ("read pool", "heartbeat", "poll", "read record", "read cadence"))
    print(f"campaign: {len(jobs)} jobs on {args.nodes} nodes ({args.job_s:g} s each): all batches sent in "
          f"{sent_at:.1f} s, {ok} rows ok home in {wall:.1f} s; jobs failed: {len(rows) - ok}")
    print(f"liveness: fewest nodes online seen by the dispatcher {min(seen_online, default=0)} of {args.nodes} "
          f"({len(seen_online)} looks); batches declared lost or stuck: {len(lost)}")
    print(f"API calls per job: nodes {job_calls / len(jobs):.2f} (batch states, report, rows, state checks), master "
          f"{master_calls[0] / len(jobs):.2f} (submits, polls, node reads); total "
          f"{(job_calls + master_calls[0]) / len(jobs):.2f}")
    print(f"liveness calls (beat and poll every {beat_s} s): {liveness / wall:.0f}/s for "
          f"{args.nodes} nodes = {liveness / wall / args.nodes * 60:.1f} per node per minute")
    print(f"master CPU over the campaign ({wall:.0f} s): Prefect server {server_cpu:.0f} s "
          f"({server_cpu / wall:.2f} cores), PostgreSQL {pg_cpu:.0f} s ({pg_cpu / wall:.2f} cores), "
          f"dispatcher and Parquet rows {dispatcher_cpu:.0f} s ({dispatcher_cpu / wall:.2f} cores), discovery "
          f"{discovery_cpu:.0f} s ({discovery_cpu / wall:.2f} cores); this machine has {os.cpu_count()} cores, the "
          "simulated nodes use some of them")
    latency = nodes["latency"]
    for what in sorted(latency):
        errors, retried = nodes["errors"].get(what, 0), nodes.get("retries", {}).get(what, 0)
        print(f"  API {what:13s} {percentiles(latency[what])}" + (f", {retried} retried" if retried else "")
              + (f", {errors} failed" if errors else ""))
    print(f"  API master        {percentiles(master_latency)}")
    for what, seconds in sorted(discovery_latency.items()):
        print(f"  discovery {what:9s} {percentiles(seconds)}")
    # What the jobs cost beyond the fleet's liveness, which the master pays over the campaign as when idle.
    idle_cpu = idle_cores_per_node * args.nodes * wall
    busy_s_per_job = max(0.0, server_cpu + pg_cpu + discovery_cpu - idle_cpu) / len(jobs)
    print(f"master cost: idle {idle_cores_per_node * 1000:.2f} millicores per node (one master core holds "
          f"{1 / idle_cores_per_node:.0f} idle nodes); busy {busy_s_per_job * 1000:.1f} ms of CPU per job beyond "
          f"that (server, PostgreSQL and discovery; dispatcher {dispatcher_cpu / len(jobs) * 1000:.1f} ms)")
    print(f"master memory over the campaign: peak {memory_peak[0] / MIB:.0f} MiB, "
          f"{max(0, memory_peak[0] - memory_idle) / MIB:.0f} MiB above idle")
    memory_10k = memory_idle + max(0, 10_000 - args.nodes) * memory_per_node
    # The budget holds the idle calls, not the node count, so idle CPU is bounded both ways: per call at the
    # cadence 10 000 nodes would get, and per node as if each cost the master something of its own.
    cadence_10k = cadence_for(10_000, 10_000, budget_rps=load_settings_budget(), heartbeat_s=args.heartbeat_s,
                              poll_s=args.poll_s)
    calls_10k = liveness_calls_per_s(cadence_10k.heartbeat_s, 10_000, 10_000)
    print(f"a 10 000-node master at this budget: idle {calls_10k * idle_cpu_s_per_call:.1f} cores counted per "
          f"call ({idle_cpu_s_per_call * 1000:.1f} ms each, {calls_10k:.0f} calls/s at {cadence_10k.heartbeat_s} s) "
          f"to {10_000 * idle_cores_per_node:.1f} cores counted per node, plus {busy_s_per_job:.3f} cores per "
          f"job/s of throughput; memory {memory_10k / GIB:.1f} GiB idle, plus what a campaign adds "
          f"({max(0, memory_peak[0] - memory_idle) / MIB:.0f} MiB here)")
    if ok < len(jobs) or lost or min(seen_online, default=0) < args.nodes:
        raise SystemExit(1)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--nodes", type=int, default=1000)
    parser.add_argument("--jobs", type=int, default=10_000)
    from ffwatt.settings import Settings

    defaults = Settings.model_fields  # what an agent does unless told otherwise
    parser.add_argument("--heartbeat-s", type=int, default=defaults["worker_heartbeat_s"].default)
    parser.add_argument("--poll-s", type=float, default=defaults["worker_poll_s"].default)
    parser.add_argument("--job-s", type=float, default=1.0, help="seconds a simulated job takes")
    parser.add_argument("--join-timeout-s", type=float, default=600)
    parser.add_argument("--sqlite", action="store_true", help="run the server on SQLite instead (to compare)")
    parser.add_argument("--api-processes", type=int, default=1,
                        help="API processes of the Prefect server (above 1: with Redis and a services process, "
                             "as `ffwatt stack up` runs FFWATT_API_PROCESSES)")
    parser.add_argument("--simulate", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--api", help=argparse.SUPPRESS)
    parser.add_argument("--stats", help=argparse.SUPPRESS)
    parser.add_argument("--wake-port", type=int, default=0, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.simulate:
        simulate(args)
        return

    from testbed import fleet
    from testbed.prefect_server import temporary_server

    if os.geteuid() != 0 and not args.sqlite:
        raise SystemExit("bench/fleet_scale.py: PostgreSQL runs as the postgres user; run as root (or --sqlite)")
    work = Path(tempfile.mkdtemp(prefix="ffwatt-bench-scale-"))
    data_dirs: list[Path] = []
    with contextlib.ExitStack() as stack:
        database_url = None
        if not args.sqlite:
            database_url = stack.enter_context(fleet.postgres(None, port=_free_port(), data_dirs=data_dirs))
            if database_url is None:
                raise SystemExit("bench/fleet_scale.py: needs Debian's postgresql (apt-get install postgresql)")
        pids: list[int] = []
        env = stack.enter_context(temporary_server(log=work / "server.log", database_url=database_url, pids=pids,
                                                   api_processes=args.api_processes))
        shape = "" if args.api_processes == 1 else f", {args.api_processes} API processes with Redis"
        print(f"Prefect server on {'SQLite' if args.sqlite else 'PostgreSQL'}{shape}; work in {work}")
        run_master(args, work, env, pids, postmaster_pid(data_dirs))


def _free_port() -> int:
    from ffwatt.fleet.prefect_server import free_port

    return free_port()


if __name__ == "__main__":
    main()
