"""Distributed campaigns through the deployed stack, measured side by side in one run.

Builds a fleet on this machine (master and two worker nodes in network namespaces,
as the tests do; needs root), then:

1. one worker node: a 10-job campaign of single-threaded x264 encodes through
   `prefect deployment run`, then the very same FFmpeg commands bare (from the
   rows' ffmpeg_cmd). Goal: campaign wall time <= 1.15 x the bare total.
2. both worker nodes: the same campaign again. Goal: >= 1.7 x faster than one node.

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

from tests import fleet
from tests.fleet import Fleet, campaign

DURATION_S = 20  # ~7 s per single-threaded encode: the fixed ~11 s per campaign run amortizes


def timed_campaign(cluster: Fleet, name: str) -> tuple[float, list[str]]:
    spec = campaign(name, size="1280x720", duration_s=DURATION_S, presets=["faster", "medium"],
                    crfs=[20, 25, 30, 35, 40])
    spec["threads"] = 1  # CPU-bound and single-threaded: one core per node
    spec["idle_baseline_s"] = 0  # measured in the warm-up runs; here only orchestration vs encoding
    asked = datetime.now(UTC)
    start = time.perf_counter()
    cluster.run_campaign(spec)
    wall = time.perf_counter() - start
    done = datetime.now(UTC)
    rows = cluster.rows(name)
    assert len(rows) == 10 and (rows.status == "ok").all(), rows.error.tolist()
    summary = json.loads(next((cluster.work / "results" / f"campaign={name}").glob("run_id=*/_run.json"))
                         .read_text())
    flow_start = datetime.fromisoformat(summary["started_at"])
    flow_end = datetime.fromisoformat(summary["ended_at"])
    first, last = rows.started_at.min().to_pydatetime(), rows.ended_at.max().to_pydatetime()
    print(f"{name}: {wall:.1f} s = CLI and master worker start the flow {(flow_start - asked).total_seconds():.1f}"
          f" + dispatch until the first encode {(first - flow_start).total_seconds():.1f}"
          f" + jobs {(last - first).total_seconds():.1f} (FFmpeg {rows.wall_s.sum():.1f} s)"
          f" + rows home and summary {(flow_end - last).total_seconds():.1f}"
          f" + flow end and CLI {(done - flow_end).total_seconds():.1f}")
    return wall, list(rows.ffmpeg_cmd)


def main() -> None:
    reason = fleet.available()
    if reason:
        raise SystemExit(f"bench/distributed.py: {reason}")
    work = Path(tempfile.mkdtemp(prefix="ffwatt-bench-fleet-"))
    with fleet.hosts(["master", "w1", "w2"]) as hosts:
        cluster = Fleet(hosts, work)
        try:
            cluster.stack_up()
            cluster.start_agent("w1")
            cluster.wait_nodes_online({"w1"})
            cluster.run_campaign(campaign("warm-up", size="1280x720", duration_s=DURATION_S, presets=["faster"],
                                          crfs=[30]))  # generates and caches the reference on w1
            one_node, commands = timed_campaign(cluster, "one-node")
            start = time.perf_counter()
            for command in commands:
                subprocess.run(shlex.split(command), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                               check=True)
            bare = time.perf_counter() - start
            # This machine's own ceiling for two-way parallelism: the same commands bare, two at a time.
            start = time.perf_counter()
            with ThreadPoolExecutor(2) as pool:
                list(pool.map(lambda c: subprocess.run(shlex.split(c), stdout=subprocess.DEVNULL,
                                                       stderr=subprocess.DEVNULL, check=True), commands))
            bare_parallel = time.perf_counter() - start
            cluster.start_agent("w2")
            cluster.wait_nodes_online({"w1", "w2"})
            cluster.run_campaign(campaign("warm-up-2", size="1280x720", duration_s=DURATION_S, presets=["faster"],
                                          crfs=[30, 31]))  # w2's reference cache too
            two_nodes, _ = timed_campaign(cluster, "two-nodes")
        finally:
            for agent in cluster.agents.values():
                agent.terminate()
                agent.wait(30)
            cluster.master.run(fleet.FFWATT, "stack", "down", env=cluster.master_env)
    print(f"10 single-threaded libx264 720p jobs ({DURATION_S * 24} frames each), quality off, "
          "via `prefect deployment run`")
    print(f"one worker node:   campaign {one_node:6.1f} s   bare FFmpeg {bare:6.1f} s   "
          f"ratio {one_node / bare:.3f} (goal <= 1.15)")
    print(f"two worker nodes:  campaign {two_nodes:6.1f} s   speed-up vs one node {one_node / two_nodes:.2f}x "
          f"(goal >= 1.7)")
    print(f"this machine's ceiling: the bare commands two at a time take {bare_parallel:.1f} s, "
          f"a {bare / bare_parallel:.2f}x speed-up; nodes here share its {os.cpu_count()} cores with the master")


if __name__ == "__main__":
    main()
