"""What the exporters cost: CPU (percent of one core) and scrape latency.

Starts the three exporters as real processes (`ffwatt exporter ...`), each sampling
every second, and scrapes each once a second for DURATION_S, as the metrics store
would. The CPU exporter reads a synthetic two-socket powercap tree (with subzones,
psys and MMIO) and also the estimate path; the GPU exporter replays NVML readings
recorded on an H200; the FFmpeg exporter serves five running jobs.
Goal: under 0.5 % of a core and p99 under 5 ms for each.

    .venv/bin/python -m bench.exporters
"""

from __future__ import annotations

import http.client
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from urllib.parse import urlsplit

from ffwatt.fleet.prefect_server import free_port
from ffwatt.hardware.progress import Progress, ProgressRecord, write_progress_record
from testbed.net import wait_http
from testbed.powercap import intel_two_sockets

DURATION_S = 60
BIN = Path(sys.executable).parent
PROBE = Path(__file__).resolve().parent.parent / "tests" / "data" / "nvml-h200-probe.json"


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def scrape_ms(url: str) -> float:
    """One scrape as a metrics store makes it (gzip accepted), timed to the last byte."""
    parts = urlsplit(url)
    connection = http.client.HTTPConnection(parts.hostname or "127.0.0.1", parts.port, timeout=5)
    start = time.perf_counter()
    connection.request("GET", parts.path, headers={"Accept-Encoding": "gzip"})
    response = connection.getresponse()
    response.read()
    elapsed = (time.perf_counter() - start) * 1000
    connection.close()
    if response.status != 200:
        raise RuntimeError(f"{url}: HTTP {response.status}")
    return elapsed


def main() -> None:
    work = Path(tempfile.mkdtemp(prefix="ffwatt-bench-exporters-"))
    intel_two_sockets(work / "powercap")
    home = work / "home"
    for index in range(5):
        write_progress_record(home / "progress", ProgressRecord(
            job_id=f"job{index}", campaign="bench", encoder="libx264", preset="medium", node="bench",
            progress=Progress(frame=100, fps=30, bitrate_kbps=2000, total_size_bytes=10**6, speed=1.0),
            updated_at=time.time() + 3600))
    exporters = {
        "cpu (RAPL tree)": ["cpu", "--powercap-root", str(work / "powercap")],
        "cpu (estimate)": ["cpu", "--powercap-root", str(work / "absent")],
        "gpu (H200 replay)": ["gpu", "--replay", str(PROBE)],
        "ffmpeg (5 jobs)": ["ffmpeg"],
    }
    processes = {}
    env = {**os.environ, "FFWATT_HOME": str(home)}
    for name, args in exporters.items():
        port = free_port()
        process = subprocess.Popen([str(BIN / "ffwatt"), "exporter", *args, "--listen", f"127.0.0.1:{port}"],
                                   env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        processes[name] = (process, f"http://127.0.0.1:{port}/metrics")
    try:
        for process, url in processes.values():
            wait_http(url, 30, process)
        time.sleep(2)  # past start-up
        latencies: dict[str, list[float]] = {name: [] for name in processes}
        start_cpu = {name: cpu_seconds(p.pid) for name, (p, _) in processes.items()}
        start = time.monotonic()
        for tick in range(DURATION_S):
            for name, (_, url) in processes.items():
                latencies[name].append(scrape_ms(url))
            time.sleep(max(0.0, start + tick + 1 - time.monotonic()))
        wall = time.monotonic() - start
        used = {name: cpu_seconds(p.pid) - start_cpu[name] for name, (p, _) in processes.items()}
    finally:
        for process, _ in processes.values():
            process.terminate()
            process.wait(10)
    print(f"{DURATION_S} scrapes each at 1/s, sampling every 1 s; CPU from /proc/<pid>/stat (10 ms ticks)")
    print(f"{'exporter':<20} {'CPU % of a core':>16} {'p50 ms':>8} {'p99 ms':>8}")
    for name in processes:
        ordered = sorted(latencies[name])
        p99 = ordered[min(len(ordered) - 1, round(0.99 * (len(ordered) - 1)))]
        print(f"{name:<20} {100 * used[name] / wall:>16.2f} {statistics.median(ordered):>8.2f} {p99:>8.2f}")
    print("goal: < 0.5 % of a core and p99 < 5 ms each")


if __name__ == "__main__":
    main()
