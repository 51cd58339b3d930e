"""What writing jobs' series beside their rows costs: time and peak memory.

From a store: a real VictoriaMetrics (Debian's ``victoria-metrics``, on a free port, its own
data) holds what it would have scraped from one busy GPU node over a 100-job campaign:
two RAPL packages with subzones and psys, CPU utilisation, 8 GPUs (13 series each),
node_exporter's 64 CPUs (time per mode, frequency), temperatures, each job's FFmpeg series,
and series no job takes (memory, network). All at 1 s: 60 s encodes, 5 s apart. Timed:
export, long-form table and Parquet file of one job's window (``SeriesStore.export_window``,
``ffwatt.series.series_table``, ``write_series``), then the 100 jobs' one after another.

Without a store: the campaign's own sampler (``exporters.embedded.EmbeddedSeries``) over a
synthetic two-socket RAPL tree: the CPU one collection costs (inside every job's measured
window, once a second), and a 60 s window's table and file.

Each part runs in a child process of its own, twice: timed, then with its allocations traced
for its peak memory, what it held at most at once: Python objects and numpy arrays (tracemalloc)
plus Arrow's buffers (its memory pool's high-water mark). Prints figures only.

    .venv/bin/python -m bench.metrics_export
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
import tracemalloc
from pathlib import Path

import httpx
import numpy as np

from ffwatt.fleet.prefect_server import free_port
from ffwatt.fleet.services import Service, start_service, stop_service
from ffwatt.series import MARGIN_S, series_table, write_series
from tasks._store import SeriesStore

JOBS = 100
ENCODE_S = 60
GAP_S = 5
NODE = "gpu-node-1"
CPUS = 64
GPUS = 8
T0 = 1_767_225_600  # 2026-01-01 UTC
MODES = ("user", "nice", "system", "idle", "iowait", "irq", "softirq", "steal")
GPU_SERIES = ("energy_joules_total", "power_watts", "power_limit_watts", "utilization_ratio",
              "memory_utilization_ratio", "encoder_utilization_ratio", "decoder_utilization_ratio",
              "sm_clock_hertz", "video_clock_hertz", "memory_used_bytes", "memory_total_bytes",
              "temperature_celsius", "encoder_sessions")


def job_start(i: int) -> int:
    return T0 + 10 + i * (ENCODE_S + GAP_S)


def node_series() -> list[tuple[dict[str, str], str]]:
    """(labels, kind) of every series the node's targets give; kind: counter, gauge or other."""
    target = {"node": NODE, "instance": "10.0.0.1:9510", "job": "ffwatt-nodes", "pool": "nvidia"}
    out: list[tuple[dict[str, str], str]] = []
    for socket in (0, 1):
        for zone, kind in ((f"package-{socket}", "package"), (f"package-{socket}/core", "core"),
                           (f"package-{socket}/uncore", "uncore"), (f"package-{socket}/dram", "dram")):
            labels = {**target, "exporter": "cpu", "zone": zone, "kind": kind, "socket": str(socket)}
            out += [({**labels, "__name__": "ffwatt_rapl_energy_joules_total"}, "counter"),
                    ({**labels, "__name__": "ffwatt_rapl_power_watts"}, "gauge")]
    out += [({**target, "exporter": "cpu", "__name__": name}, "gauge")
            for name in ("ffwatt_rapl_readable", "ffwatt_cpu_utilization_ratio")]
    out += [({**target, "exporter": kind, "sampler": kind, "__name__": "ffwatt_sampler_last_success_age_seconds"},
             "age") for kind in ("rapl", "gpu")]
    for gpu in range(GPUS):
        labels = {**target, "exporter": "gpu", "index": str(gpu), "uuid": f"GPU-{gpu:04d}", "name": "NVIDIA H200"}
        out += [({**labels, "__name__": f"ffwatt_gpu_{name}"}, "counter" if name.endswith("_total") else "gauge")
                for name in GPU_SERIES]
    node = {**target, "exporter": "node", "instance": "10.0.0.1:9100"}
    for cpu in range(CPUS):
        out += [({**node, "cpu": str(cpu), "mode": mode, "__name__": "node_cpu_seconds_total"}, "counter")
                for mode in MODES]
        out.append(({**node, "cpu": str(cpu), "__name__": "node_cpu_scaling_frequency_hertz"}, "gauge"))
    out += [({**node, "zone": str(z), "type": "x86_pkg_temp", "__name__": "node_thermal_zone_temp"}, "gauge")
            for z in range(2)]
    out += [({**node, "chip": "coretemp", "sensor": f"temp{s}", "__name__": "node_hwmon_temp_celsius"}, "gauge")
            for s in range(10)]
    # What no job takes: the selector must leave these out.
    out += [({**node, "__name__": f"node_memory_{k}_bytes"}, "gauge") for k in ("MemFree", "Cached", "Buffers")]
    out += [({**node, "device": f"eth{d}", "__name__": "node_network_receive_bytes_total"}, "counter")
            for d in range(4)]
    return out


def import_campaign(url: str) -> int:
    """Write the node's series for the whole campaign into the store; the number of samples."""
    end = job_start(JOBS - 1) + ENCODE_S + 30
    stamps = np.arange(T0, end) * 1000 + 317
    rng = np.random.default_rng(0)
    lines, samples = [], 0
    for labels, kind in node_series():
        if kind == "counter":
            values = np.cumsum(rng.uniform(50, 150, len(stamps)))
        elif kind == "age":
            values = rng.uniform(0, 0.95, len(stamps))
        else:
            values = rng.normal(100, 5, len(stamps))
        lines.append(json.dumps({"metric": labels, "values": np.round(values, 3).tolist(),
                                 "timestamps": stamps.tolist()}))
        samples += len(stamps)
    for i in range(JOBS):
        t = np.arange(job_start(i), job_start(i) + ENCODE_S + 11) * 1000 + 317
        labels = {"node": NODE, "instance": "10.0.0.1:9506", "job": "ffwatt-nodes", "exporter": "ffmpeg",
                  "job_id": f"job-{i:03d}", "campaign": "bench", "encoder": "h264_nvenc", "preset": "p4"}
        for name in ("frames_total", "fps", "speed_ratio", "bitrate_bits_per_second", "output_bytes",
                     "dropped_frames_total", "duplicated_frames_total", "running"):
            lines.append(json.dumps({"metric": {**labels, "__name__": f"ffwatt_ffmpeg_{name}"},
                                     "values": np.linspace(0, 1000, len(t)).tolist(), "timestamps": t.tolist()}))
            samples += len(t)
    for chunk in range(0, len(lines), 200):
        httpx.post(f"{url}/api/v1/import", content="\n".join(lines[chunk:chunk + 200]), timeout=120
                   ).raise_for_status()
    httpx.get(f"{url}/internal/force_flush", timeout=60).raise_for_status()  # searchable now, not in a second
    return samples


def export_jobs(url: str, results: Path, jobs: int) -> dict[str, float]:
    """Export, tabulate and write ``jobs`` windows one after another, as the master does per row."""
    rows, started = 0, time.perf_counter()
    store = SeriesStore(url)  # one for the campaign, as the campaign flow keeps it
    for i in range(jobs):
        start, end = job_start(i) - MARGIN_S, job_start(i) + ENCODE_S + MARGIN_S
        series = store.export_window(node=NODE, job_id=f"job-{i:03d}", start=start, end=end)
        table = series_table(series, run_id="bench-run", job_id=f"job-{i:03d}", node=NODE, source="store")
        write_series(results, "bench", table)
        rows += table.num_rows
    seconds = time.perf_counter() - started
    store.close()
    size = sum(p.stat().st_size for p in results.rglob("*.parquet"))
    return {"seconds": seconds, "samples": rows, "bytes": size}


def local_window(results: Path) -> dict[str, float]:
    """The embedded sampler over a synthetic two-socket RAPL tree: CPU per collection, then a 60 s
    window's table and file."""
    from exporters.embedded import EmbeddedSeries
    from ffwatt.settings import Settings
    from testbed.powercap import intel_two_sockets

    root = results.parent
    intel_two_sockets(root / "powercap")
    settings = Settings(home=root / "home", results_dir=results, node="n1", powercap_root=root / "powercap",
                        gpu=False)
    with EmbeddedSeries(settings, interval_s=3600) as sampler:  # collected here, not by its thread
        cpu0 = time.process_time()
        wall0 = time.time()
        for _ in range(ENCODE_S + 2 * int(MARGIN_S)):
            sampler.collect()
        per_collect = (time.process_time() - cpu0) / (ENCODE_S + 2 * int(MARGIN_S))
        started = time.perf_counter()
        series = sampler.window("job-0", wall0 - 1, time.time() + 1)
        write_series(results, "bench", series_table(series, run_id="bench-run", job_id="job-0", node="n1",
                                                    source="local"))
        seconds = time.perf_counter() - started
    return {"cpu_per_collect_s": per_collect, "seconds": seconds, "samples": sum(len(s.values) for s in series)}


def child(part: str, url: str, results: Path) -> None:
    import pyarrow as pa

    def run(into: Path) -> dict[str, float]:
        return export_jobs(url, into, 1 if part == "one" else JOBS) if part != "local" else local_window(into)

    figures = run(results)  # timed untraced: tracing allocations slows Python two- to threefold
    tracemalloc.start()  # then again for memory: Python objects and numpy arrays, and Arrow's pool
    arrow_before = pa.default_memory_pool().max_memory()
    run(results.parent / "traced" / "results")
    figures["peak_bytes"] = tracemalloc.get_traced_memory()[1] + max(
        0, pa.default_memory_pool().max_memory() - arrow_before)
    print(json.dumps(figures))


def run_child(part: str, url: str, results: Path) -> dict[str, float]:
    done = subprocess.run([sys.executable, "-m", "bench.metrics_export", part, url, str(results)],
                          capture_output=True, text=True, check=True)
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> None:
    if len(sys.argv) == 4:
        child(sys.argv[1], sys.argv[2], Path(sys.argv[3]))
        return
    with tempfile.TemporaryDirectory(prefix="ffwatt-bench-export-") as tmp:
        port, run_dir = free_port(), Path(tmp) / "run"
        url = f"http://127.0.0.1:{port}"
        start_service(run_dir, Service("bench-store", [
            "/usr/bin/victoria-metrics", f"-httpListenAddr=127.0.0.1:{port}", f"-storageDataPath={tmp}/store",
            "-retentionPeriod=100y"], dict(os.environ), url=url, listen=("127.0.0.1", port)))
        try:
            t = time.perf_counter()
            samples = import_campaign(url)
            print(f"store: {len(node_series())} series of node {NODE} + {JOBS} jobs' FFmpeg series, "
                  f"{samples:,} samples imported in {time.perf_counter() - t:.1f} s (not counted); "
                  f"load average {os.getloadavg()[0]:.2f} on {os.cpu_count()} CPUs")
            one = run_child("one", url, Path(tmp) / "one" / "results")
            print(f"  one job's window ({ENCODE_S} s encode ± {MARGIN_S:g} s): {one['seconds'] * 1000:6.0f} ms, "
                  f"{one['samples']:,.0f} samples, {one['bytes'] / 1024:,.0f} KiB on disk, "
                  f"peak memory {one['peak_bytes'] / 2**20:,.1f} MiB")
            many = run_child("campaign", url, Path(tmp) / "campaign" / "results")
            print(f"  {JOBS} jobs' windows, one after another: {many['seconds']:6.1f} s "
                  f"({many['seconds'] / JOBS * 1000:.0f} ms a job), {many['samples']:,.0f} samples, "
                  f"{many['bytes'] / 2**20:,.1f} MiB on disk, peak memory {many['peak_bytes'] / 2**20:,.1f} MiB")
        finally:
            stop_service(run_dir, "bench-store")
        local = run_child("local", url, Path(tmp) / "local" / "results")
        print(f"local (embedded sampler, two-socket RAPL tree): {local['cpu_per_collect_s'] * 1000:.2f} ms CPU a "
              f"collection (once a second, inside every job's window); a {ENCODE_S} s job's window: "
              f"{local['seconds'] * 1000:.0f} ms for {local['samples']:,.0f} samples, "
              f"peak memory {local['peak_bytes'] / 2**20:,.1f} MiB; load average {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
