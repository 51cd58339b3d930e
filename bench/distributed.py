"""Distributed campaigns through the deployed stack, measured side by side in one run.

Builds a fleet on this machine (master and two worker nodes in network namespaces,
as the tests do; needs root), then:

1. one worker node, three times: a 10-job campaign of single-threaded x264 encodes
   through `ffwatt campaign submit` (and once through `prefect deployment run --watch`,
   to compare), then the very same FFmpeg commands bare
   (from the rows' ffmpeg_cmd). Each run's wall time is split into the campaign's
   fixed cost (CLI, flow start, dispatch, rows home, summary, the last job's series,
   flow end: goal < 5 s), the per-job overhead on the node (goal < 50 ms) and the
   encodes. Goal: campaign / bare < 1.10 in each run. The last job's series window
   runs ``MARGIN_S`` past its encode, and the run ends once the store has it: that
   series tail is the idle node being measured, and is printed apart too.
2. both worker nodes: the same campaign again, against this machine's own ceiling for
   two-way parallelism (the bare commands two at a time). Goal: >= 0.95 of it.

    sudo .venv/bin/python -m bench.distributed
"""

from __future__ import annotations

import json
import os
import shlex
import subprocess
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from pathlib import Path

import pandas as pd
import psutil

from ffwatt.series import MARGIN_S
from ffwatt.settings import Settings
from testbed import fleet
from testbed.fleet import Fleet, campaign

DURATION_S = 20  # ~7 s per single-threaded encode
RUNS = 3
HEARTBEAT_S = str(Settings.model_fields["worker_heartbeat_s"].default)


def timed_campaign(cluster: Fleet, name: str, cli: str = "ffwatt") -> tuple[float, float, list[str], str]:
    """Run the 10-job campaign; its wall time, its series tail, its FFmpeg commands, and a line splitting
    the time."""
    spec = campaign(name, size="1280x720", duration_s=DURATION_S, presets=["faster", "medium"],
                    crfs=[20, 25, 30, 35, 40])
    spec["threads"] = 1  # CPU-bound and single-threaded: one core per node
    spec["idle_baseline_s"] = 0  # measured in the warm-up runs; here only orchestration vs encoding
    asked = datetime.now(UTC)
    start = time.perf_counter()
    cluster.run_campaign(spec, cli=cli)
    wall = time.perf_counter() - start
    done = datetime.now(UTC)
    rows = cluster.rows(name).sort_values("started_at")
    assert len(rows) == 10 and (rows.status == "ok").all(), rows.error.tolist()
    summary = json.loads(next((cluster.work / "results" / f"campaign={name}").glob("run_id=*/_run.json"))
                         .read_text())
    flow_start = datetime.fromisoformat(summary["started_at"])
    flow_end = datetime.fromisoformat(summary["ended_at"])
    first, last = rows.started_at.min().to_pydatetime(), rows.ended_at.max().to_pydatetime()
    # Per job on the node: its row's span beyond FFmpeg's own wall time, plus the gap before the next
    # job on the same node (sending the row, starting the next). Everything else is fixed cost.
    spans = (rows.ended_at - rows.started_at).dt.total_seconds()
    per_job = float((spans - rows.wall_s).sum())
    for _, on_node in rows.groupby("node"):
        gaps = (on_node.started_at.iloc[1:].to_numpy() - on_node.ended_at.iloc[:-1].to_numpy())
        per_job += float(sum(gap / pd.Timedelta(seconds=1) for gap in gaps))
    per_job_ms = per_job / len(rows) * 1000
    ffmpeg = float(rows.wall_s.sum())
    nodes = rows.node.nunique()
    fixed = wall - (last - first).total_seconds() if nodes > 1 else wall - ffmpeg - per_job
    home = (flow_end - last).total_seconds()  # the summary is made while the last window runs out
    after = (done - last).total_seconds()
    tail = min(MARGIN_S, after)
    line = (f"{name} ({cli} CLI): {wall:.1f} s = fixed {fixed:.1f} s ({fixed - tail:.1f} s without the series "
            f"tail) + per-job overhead {per_job_ms:.0f} ms x {len(rows)} + FFmpeg {ffmpeg:.1f} s"
            f"{f' over {nodes} nodes' if nodes > 1 else ''}; the fixed part: CLI and flow start "
            f"{(flow_start - asked).total_seconds():.1f} s, dispatch to first encode "
            f"{(first - flow_start).total_seconds():.1f} s, last row home and summary {home:.1f} s, series tail "
            f"{tail:.1f} s, then the store's ingest, flow end and CLI {after - max(home, tail):.1f} s")
    return wall, tail, list(rows.ffmpeg_cmd), line


# Who uses the CPU beside FFmpeg, by command line: the encodes share this machine's cores with them.
SERVICES = [("prefect server", "Prefect server"), ("stack worker", "master worker"), ("agent start", "agents"),
            ("exporter", "exporters"), ("victoria-metrics", "VictoriaMetrics"), ("vmalert", "vmalert"),
            ("alertmanager", "Alertmanager"), ("node_exporter", "node_exporter"), ("nginx", "nginx")]


def cpu_by_service() -> dict[int, tuple[str, float]]:
    """CPU seconds so far of the living processes SERVICES names: pid -> (service, seconds). Nothing else
    runs on the machine while the bench does."""
    used: dict[int, tuple[str, float]] = {}
    for process in psutil.process_iter(["cmdline", "cpu_times"]):
        command = " ".join(process.info["cmdline"] or [])
        service = next((name for key, name in SERVICES if key in command), None)
        if service is not None and process.info["cpu_times"] is not None:
            used[process.pid] = (service, process.info["cpu_times"].user + process.info["cpu_times"].system)
    return used


def cpu_line(what: str, before: dict[int, tuple[str, float]], after: dict[int, tuple[str, float]],
             seconds: float) -> str:
    """CPU used by each service between two snapshots, by the processes alive at both (each FFmpeg lives
    for one encode, so the encodes themselves aren't in it)."""
    spent: dict[str, float] = {}
    for pid, (service, cpu) in after.items():
        if pid in before:
            spent[service] = spent.get(service, 0.0) + cpu - before[pid][1]
    shown = {name: cpu for name, cpu in spent.items() if cpu >= 0.05}
    parts = ", ".join(f"{name} {cpu:.1f}" for name, cpu in sorted(shown.items(), key=lambda item: -item[1]))
    total = sum(spent.values())
    return f"{what}: {total:.1f} CPU s beside the encodes in {seconds:.0f} s ({total / seconds:.2f} cores): {parts}"


def bare(commands: list[str], parallel: int = 1) -> float:
    start = time.perf_counter()
    with ThreadPoolExecutor(parallel) as pool:
        list(pool.map(lambda c: subprocess.run(shlex.split(c), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                               check=True), commands))
    return time.perf_counter() - start


def main() -> None:
    reason = fleet.available()
    if reason:
        raise SystemExit(f"bench/distributed.py: {reason}")
    work = Path(tempfile.mkdtemp(prefix="ffwatt-bench-fleet-"))
    lines: list[str] = []
    with fleet.hosts(["master", "w1", "w2"]) as hosts:
        cluster = Fleet(hosts, work)
        try:
            cluster.stack_up()
            # The product's heartbeat, not the tests' 2 s: on a busy 2-core machine a 6 s timeout
            # sees a live node as lost now and then, and the re-run batch would be timed too.
            cluster.start_agent("w1", FFWATT_WORKER_HEARTBEAT_S=HEARTBEAT_S)
            cluster.wait_nodes_online({"w1"})
            cluster.run_campaign(campaign("warm-up", size="1280x720", duration_s=DURATION_S, presets=["faster"],
                                          crfs=[30]))  # generates and caches the reference on w1
            one_node: list[tuple[float, float, float]] = []
            for run in range(1, RUNS + 1):
                cpu_before = cpu_by_service()
                wall, tail, commands, line = timed_campaign(cluster, f"one-node-{run}")
                cpu_between = cpu_by_service()
                bare_s = bare(commands)
                cpu_after = cpu_by_service()
                one_node.append((wall, tail, bare_s))
                lines.extend([line, "  " + cpu_line("  during the campaign", cpu_before, cpu_between, wall),
                              "  " + cpu_line("  during the bare commands", cpu_between, cpu_after, bare_s)])
                print("\n".join(lines[-3:]), flush=True)
            _, _, _, line = timed_campaign(cluster, "one-node-prefect-cli", cli="prefect")
            lines.append(line)  # the same through `prefect deployment run`, for its start-up cost
            print(line, flush=True)
            bare_parallel = bare(commands, parallel=2)  # this machine's ceiling for two-way parallelism
            bare_serial = one_node[-1][2]
            cluster.start_agent("w2", FFWATT_WORKER_HEARTBEAT_S=HEARTBEAT_S)
            cluster.wait_nodes_online({"w1", "w2"})
            cluster.run_campaign(campaign("warm-up-2", size="1280x720", duration_s=DURATION_S, presets=["faster"],
                                          crfs=[30, 31]))  # w2's reference cache too
            two_nodes, _, _, line = timed_campaign(cluster, "two-nodes")
            lines.append(line)
        finally:
            for agent in cluster.agents.values():
                agent.terminate()
                try:
                    agent.wait(30)
                except subprocess.TimeoutExpired:  # don't hide what went wrong before
                    agent.kill()
                    agent.wait()
            cluster.master.run(fleet.FFWATT, "stack", "down", env=cluster.master_env)
    print(f"10 single-threaded libx264 720p jobs ({DURATION_S * 24} frames each), quality off, "
          "via `ffwatt campaign submit` (one run via `prefect deployment run --watch` to compare)")
    for line in lines:
        print(line)
    for run, (wall, tail, bare_s) in enumerate(one_node, 1):
        print(f"one worker node, run {run}: campaign {wall:6.1f} s   bare FFmpeg {bare_s:6.1f} s   "
              f"ratio {wall / bare_s:.3f} (goal < 1.10), {(wall - tail) / bare_s:.3f} without the series tail")
    ceiling = bare_serial / bare_parallel
    speedup = one_node[-1][0] / two_nodes
    print(f"two worker nodes: campaign {two_nodes:.1f} s, {speedup:.2f}x one node's; this machine's ceiling (the "
          f"bare commands two at a time, {bare_parallel:.1f} s) is {ceiling:.2f}x: {speedup / ceiling:.2f} of it "
          f"(goal >= 0.95); the nodes share its {os.cpu_count()} cores with the master")

if __name__ == "__main__":
    main()
