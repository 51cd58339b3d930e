"""The GPU path on a real NVIDIA GPU: the exporter on real NVML, a real GPU video job metered,
the two compared over the same window, and the test suite run on a GPU host.

    python -m bench.gpu_check [--exporter-seconds 30] [--job-seconds 20] [--no-tests]

Needs no internet: on a lent machine without one, install ffwatt's wheels first
(``bench/gpu_wheels.sh`` downloads them here; see docs/gpu.md). Prints one JSON
summary on stdout; progress goes to stderr. Steps that can't run say why in the
summary instead of failing the rest:

1. ``exporter``: ``ffwatt exporter gpu`` served on real NVML for N seconds, scraped
   every second: GPU count, driver, whether every scrape succeeded, the energy
   counter's increase and the mean power it implies, scrape latency.
2. ``nvdec_job``: a real decode on the GPU (``-hwaccel cuda``; H100 and H200 have
   NVDEC), metered by the job meter; its GPU joules compared with the exporter's
   counter over the same window (two scrapes around the job).
3. ``nvenc``: whether NVENC works here (H100/H200 have none, though NVML reports
   encoder capacity): a test encode, and if it works a metered NVENC job.
4. ``tests``: the suite (``pytest -x -q``), which must pass on a GPU host too.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import httpx
from prometheus_client.parser import text_string_to_metric_families

from ffwatt.settings import REPO, Settings

EXPORTER_INTERVAL_S = 0.5


def log(message: str) -> None:
    print(f"[gpu_check] {message}", file=sys.stderr, flush=True)


def scrape(url: str) -> tuple[dict[str, list[Any]], float]:
    start = time.perf_counter()
    text = httpx.get(url, timeout=10).text
    elapsed_ms = (time.perf_counter() - start) * 1000
    samples: dict[str, list[Any]] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            samples.setdefault(sample.name, []).append(sample)
    return samples, elapsed_ms


def gpu_energy(samples: dict[str, list[Any]]) -> float:
    return sum(s.value for s in samples.get("ffwatt_gpu_energy_joules_total", []))


class Exporter:
    """``ffwatt exporter gpu`` in this process, on real NVML."""

    def __init__(self, settings: Settings, interval_s: float) -> None:
        from exporters.server import ExporterOptions, serve
        from ffwatt.fleet.prefect_server import free_port

        self.port = free_port()
        self.stop = threading.Event()
        self.thread = threading.Thread(target=serve, daemon=True, args=(
            "gpu", f"127.0.0.1:{self.port}", settings, ExporterOptions(interval_s=interval_s), self.stop))
        self.thread.start()
        self.url = f"http://127.0.0.1:{self.port}/metrics"
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                scrape(self.url)
                return
            except httpx.HTTPError:
                time.sleep(0.2)
        raise RuntimeError("the GPU exporter did not answer within 30 s")

    def close(self) -> None:
        self.stop.set()
        self.thread.join(10)


def check_exporter(exporter: Exporter, seconds: float) -> dict[str, Any]:
    first, _ = scrape(exporter.url)
    latencies, failures = [], 0
    start = time.monotonic()
    while time.monotonic() - start < seconds:
        time.sleep(1.0)
        samples, elapsed_ms = scrape(exporter.url)
        latencies.append(elapsed_ms)
        failures += sum(1 for s in samples.get("ffwatt_scrape_collector_success", []) if s.value != 1)
    wall = time.monotonic() - start
    last, _ = scrape(exporter.url)
    info = (last.get("ffwatt_gpu_nvml_info") or [None])[0]
    joules = gpu_energy(last) - gpu_energy(first)
    return {
        "gpu_count": int(last["ffwatt_gpu_count"][0].value),
        "gpus": sorted({s.labels["name"] for s in last.get("ffwatt_gpu_power_watts", [])}),
        "driver": info.labels.get("driver_version") if info else None,
        "unavailable_reason": info.labels.get("reason") if info else None,
        "scrapes": len(latencies),
        "failed_collector_scrapes": failures,
        "scrape_ms_p50": round(statistics.median(latencies), 2) if latencies else None,
        "scrape_ms_max": round(max(latencies), 2) if latencies else None,
        "energy_counter_increase_j": round(joules, 3),
        "mean_power_w_from_counter": round(joules / wall, 2) if wall else None,
        "power_gauge_w_last": sum(s.value for s in last.get("ffwatt_gpu_power_watts", [])),
    }


def metered_job(settings: Settings, args: list[str], exporter: Exporter, timeout_s: float) -> dict[str, Any]:
    """Run FFmpeg ``args`` under the job meter, with exporter scrapes just before and after."""
    from ffwatt.hardware.ffmpeg import ffmpeg_path, run_ffmpeg
    from ffwatt.hardware.meter import EnergyMeter

    before, _ = scrape(exporter.url)
    meter = EnergyMeter(settings)
    meter.start()
    run = run_ffmpeg(ffmpeg_path(settings), args, timeout_s=timeout_s, on_start=meter.track,
                     on_progress=lambda _: meter.sample())
    window = meter.stop()
    # The exporter samples every interval: wait one more so its counter covers the job's end.
    time.sleep(EXPORTER_INTERVAL_S * 1.5)
    after, _ = scrape(exporter.url)
    job_j = sum((window.gpu_j or {}).values())
    exporter_j = gpu_energy(after) - gpu_energy(before)
    return {
        "ok": run.failure() is None,
        "failure": run.failure(),
        "stderr_tail": run.stderr_tail[-600:] if run.failure() else None,
        "wall_s": round(run.wall_s, 2),
        "frames": run.last_progress.frame if run.last_progress else 0,
        "job_gpu_j": round(job_j, 3),
        "exporter_gpu_j_same_window": round(exporter_j, 3),
        "relative_difference": round(abs(job_j - exporter_j) / exporter_j, 4) if exporter_j > 0 else None,
        "gpu_video_share": window.gpu_video_share,
        "note": "the exporter's window is the job's plus up to 1.5 sampling intervals around it",
    }



def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--exporter-seconds", type=float, default=30)
    parser.add_argument("--job-seconds", type=float, default=20)
    parser.add_argument("--no-tests", action="store_true")
    options = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="ffwatt-gpu-check-"))
    os.environ.pop("CUDA_VISIBLE_DEVICES", None)
    settings = Settings(home=work / "home", gpu=True)
    summary: dict[str, Any] = {"host": platform.node(), "python": platform.python_version()}

    from agent.probe import check_encoder
    from ffwatt.hardware.facts import describe_node
    from ffwatt.hardware.ffmpeg import ffmpeg_path, run_ffmpeg

    facts = describe_node(settings)
    summary["node"] = facts.model_dump(exclude={"ffmpeg_configuration"})
    if not facts.gpus:
        summary["error"] = f"no NVIDIA GPU visible: {facts.gpu_unavailable}"
        print(json.dumps(summary, indent=2, default=str))
        sys.exit(1)

    log(f"GPU exporter on real NVML for {options.exporter_seconds:g} s")
    exporter = Exporter(settings, EXPORTER_INTERVAL_S)
    try:
        summary["exporter"] = check_exporter(exporter, options.exporter_seconds)
        ffmpeg = ffmpeg_path(settings)
        clip = work / "clip.mkv"
        log("making a 1080p H.264 clip to decode")
        made = run_ffmpeg(ffmpeg, ["-f", "lavfi", "-i", "testsrc2=size=1920x1080:rate=30", "-t", "10",
                                   "-c:v", "libx264", "-preset", "ultrafast", "-crf", "18", str(clip)],
                          timeout_s=300)
        if made.failure():
            summary["nvdec_job"] = {"ok": False, "failure": f"making the clip: {made.failure()}"}
        else:
            loops = max(0, int(options.job_seconds / 2))  # NVDEC decodes 1080p far faster than real time
            log(f"NVDEC decode job (-hwaccel cuda), the clip {loops + 1} times")
            summary["nvdec_job"] = metered_job(settings, [
                "-hwaccel", "cuda", "-hwaccel_output_format", "cuda", "-stream_loop", str(loops),
                "-i", str(clip), "-f", "null", "-"], exporter, timeout_s=600)
        nvenc = check_encoder(ffmpeg, "h264_nvenc")
        summary["nvenc"] = {"works": nvenc.works, "error": nvenc.error}
        if nvenc.works and not made.failure():
            log("NVENC encode job")
            summary["nvenc"]["job"] = metered_job(settings, [
                "-hwaccel", "cuda", "-hwaccel_output_format", "cuda", "-stream_loop", "3", "-i", str(clip),
                "-c:v", "h264_nvenc", "-preset", "p4", "-cq", "23", "-f", "null", "-"], exporter, timeout_s=600)
    finally:
        exporter.close()

    if not options.no_tests:
        log("the test suite (pytest -x -q)")
        start = time.monotonic()
        done = subprocess.run([sys.executable, "-m", "pytest", "-x", "-q", "-p", "no:cacheprovider"],
                              cwd=REPO, capture_output=True, text=True)
        summary["tests"] = {"returncode": done.returncode, "seconds": round(time.monotonic() - start, 1),
                            "tail": done.stdout.strip().splitlines()[-3:]}
    print(json.dumps(summary, indent=2, default=str))


if __name__ == "__main__":
    main()
