"""How fast the analysis room turns a fleet's results into figures: 1 000 000 job rows and
100 000 000 samples of their series, loaded and summarized.

Generates once, in a temporary directory (not timed):

* 1 000 000 synthetic job rows (5 nodes × 10 inputs × 3 encoders × 3 presets × 8 CRFs × 3
  resolutions, ~90 repetitions) in 10 runs, as Parquet in the results layout, each with its
  series columns (source, samples, the cross-check), and
* 100 000 000 samples of their series under ``results/_series``, in the long form ffwatt
  writes (run_id, job_id, node, metric, labels, timestamp, value, source): per job, 10 series
  (RAPL package power and energy, CPU utilisation, sampler age, GPU power, energy and
  utilisation, FFmpeg fps and frames, CPU frequency) × 10 samples at 1 Hz.

Series files here hold a run's jobs each (compacted), not one job each as a campaign writes
them: a million files can't be opened in 30 s by anything, so a fleet's history is read from
compacted runs (the reader is the same: :func:`analysis.power_summary` goes file by file).

Then, in a fresh child process whose peak memory (ru_maxrss) is the figure, times:

* loading the job rows, only the columns the summaries use (column projection);
* per-job efficiency and per-configuration repetition statistics, the 3-D Pareto fronts;
* the cross-check over every row (jobs of 30 s or more beyond 2 %);
* per-job CPU and GPU power over each encode from the series (a pyarrow filter on the power
  metrics, column projection, dictionary-encoded strings, one file at a time), joined to the
  configurations;
* samples per job and metric over all 100 000 000 (dictionary codes only), to find short series.

Goal: under 30 s and under 4 GiB peak on a 2-core machine. Prints figures only.

    .venv/bin/python -m bench.analysis [--keep DIR]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from ffwatt.schema import arrow_schema
from ffwatt.series import series_schema

JOB_ROWS = 1_000_000
RUNS = 10
SAMPLES_PER_JOB = 100
NODES = [f"node-{i}" for i in range(5)]
EPOCH = np.datetime64("2026-01-01T00:00:00", "s")
# (metric, labels): the ten series of every job; FFmpeg's carry the job's own id (added per job).
SERIES = [
    ("ffwatt_rapl_power_watts", '{"kind":"package","socket":"0","zone":"package-0"}'),
    ("ffwatt_rapl_energy_joules_total", '{"kind":"package","socket":"0","zone":"package-0"}'),
    ("ffwatt_cpu_utilization_ratio", "{}"),
    ("ffwatt_sampler_last_success_age_seconds", '{"sampler":"rapl"}'),
    ("ffwatt_gpu_power_watts", '{"index":"0","name":"NVIDIA H200","uuid":"GPU-0"}'),
    ("ffwatt_gpu_energy_joules_total", '{"index":"0","name":"NVIDIA H200","uuid":"GPU-0"}'),
    ("ffwatt_gpu_utilization_ratio", '{"index":"0","name":"NVIDIA H200","uuid":"GPU-0"}'),
    ("ffwatt_ffmpeg_fps", None),
    ("ffwatt_ffmpeg_frames_total", None),
    ("node_cpu_scaling_frequency_hertz", '{"cpu":"0"}'),
]
SAMPLES_PER_SERIES = SAMPLES_PER_JOB // len(SERIES)
# What the timed phase reads of the job rows: the configuration, the window, the figures summarized.
JOB_COLUMNS = ["campaign", "run_id", "job_id", "config_id", "node", "input_name", "encoder", "preset",
               "rate_control", "crf", "output_width", "output_height", "input_fps", "status", "started_at",
               "ended_at", "wall_s", "frames", "encode_fps", "bitrate_kbps", "vmaf", "energy_j", "energy_source",
               "joules_per_frame", "series_source", "series_energy_j", "series_energy_gap"]


def synthetic_jobs(rng: np.random.Generator) -> pd.DataFrame:
    """JOB_ROWS rows; each node's jobs run back to back, a second apart."""
    encoders = np.array(["libx264", "libx265", "libsvtav1"])
    presets = np.array([["veryfast", "medium", "slow"], ["ultrafast", "medium", "slow"], ["10", "8", "6"]])
    sizes = np.array([[640, 360], [1280, 720], [1920, 1080]])
    n = JOB_ROWS
    enc_i, preset_i, size_i = rng.integers(0, 3, n), rng.integers(0, 3, n), rng.integers(0, 3, n)
    crf = rng.choice(np.arange(20, 44, 3), n)
    inputs = rng.integers(0, 10, n)
    node = np.array(NODES)[np.arange(n) % len(NODES)]
    width, height = sizes[size_i, 0], sizes[size_i, 1]
    pixels = width * height
    frames = np.full(n, 300)
    fps = 3e7 / pixels / ((1 + enc_i) * (1 + preset_i)) * rng.normal(1, 0.05, n)
    wall = frames / fps
    kbps = 4000 * pixels / 921600 * 2 ** (-(crf - 23) / 6) / (1 + 0.2 * enc_i) * rng.normal(1, 0.02, n)
    energy = (15 + 5 * enc_i + 3 * preset_i + rng.normal(0, 0.5, n)) * wall
    start = np.zeros(n)
    for name in NODES:
        idx = np.flatnonzero(node == name)
        start[idx] = np.concatenate([[0.0], np.cumsum(wall[idx] + 1.0)[:-1]])
    started = EPOCH + (start * 1e6).astype("timedelta64[us]")
    config = (pd.Series(encoders[enc_i]).str.cat([pd.Series(presets[enc_i, preset_i]), pd.Series(crf.astype(str)),
                                                  pd.Series(size_i.astype(str)), pd.Series(inputs.astype(str))],
                                                 sep="-"))
    gap = rng.normal(0, 0.006, n)
    return pd.DataFrame({
        "run_id": np.char.add("bench-run-", (np.arange(n) * RUNS // n).astype(str)),
        "job_id": np.char.add("job-", np.arange(n).astype(str)), "config_id": config.to_numpy(),
        "repetition": np.arange(n) // 10_800 + 1, "node": node,
        "input_name": np.char.add("clip-", inputs.astype(str)), "input_width": width, "input_height": height,
        "input_fps": np.full(n, 30.0), "input_frames": frames, "encoder": encoders[enc_i],
        "preset": presets[enc_i, preset_i], "rate_control": "crf", "crf": crf, "output_width": width,
        "output_height": height, "status": "ok", "attempts": 1, "started_at": pd.to_datetime(started, utc=True),
        "ended_at": pd.to_datetime(started + (wall * 1e6).astype("timedelta64[us]"), utc=True),
        "wall_s": wall, "frames": frames, "encode_fps": frames / wall, "bitrate_kbps": kbps,
        "psnr": 20 + 3.2 * np.log(kbps), "vmaf": np.clip(100 - 600 / np.sqrt(kbps), 0, 100),
        "energy_j": energy, "energy_source": np.where(enc_i == 2, "estimated", "rapl"),
        "joules_per_frame": energy / frames, "series_source": "local", "series_samples": SAMPLES_PER_JOB,
        "series_energy_j": energy * (1 + gap), "series_energy_source": np.where(enc_i == 2, "estimated", "rapl"),
        "series_energy_gap": gap,
    })


def write_jobs(frame: pd.DataFrame, root: Path) -> None:
    schema = arrow_schema()
    fields = [f for f in schema if f.name in frame.columns and f.name not in ("campaign", "run_id")]
    for run_id, rows in frame.groupby("run_id", sort=True):
        table = pa.Table.from_pandas(rows[[f.name for f in fields]], schema=pa.schema(fields), preserve_index=False)
        directory = root / "campaign=bench" / f"run_id={run_id}"
        directory.mkdir(parents=True)
        for i, start in enumerate(range(0, len(table), 10_000)):  # compacted: 10 000 rows a file
            pq.write_table(table.slice(start, 10_000), directory / f"job-part{i:03d}.parquet")


def _dictionary(codes: np.ndarray, values: list[str]) -> pa.Array:
    return pa.DictionaryArray.from_arrays(pa.array(codes.astype(np.int32)), pa.array(values)).cast(pa.string())


def write_series(frame: pd.DataFrame, root: Path, rng: np.random.Generator) -> None:
    """Each run's jobs' series as one file, sorted by metric then job then time (as a per-job file is)."""
    for run_id, rows in frame.groupby("run_id", sort=True):
        jobs = len(rows)
        job_ids = rows["job_id"].tolist()
        first = rows["started_at"].dt.as_unit("ms").astype("int64").to_numpy() - 2000 + 317  # from start - 2 s
        directory = root / "_series" / "campaign=bench" / f"run_id={run_id}"
        directory.mkdir(parents=True)
        writer = pq.ParquetWriter(directory / f"jobs-{job_ids[0]}-{job_ids[-1]}.parquet", series_schema(),
                                  compression="zstd")
        per_series = jobs * SAMPLES_PER_SERIES
        job = np.repeat(np.arange(jobs), SAMPLES_PER_SERIES)
        stamps = np.repeat(first, SAMPLES_PER_SERIES) + np.tile(np.arange(SAMPLES_PER_SERIES) * 1000, jobs)
        node_codes = pd.Categorical(rows["node"]).codes
        node_values = list(pd.Categorical(rows["node"]).categories)
        for metric, labels in SERIES:
            values = rng.normal(30.0, 3.0, per_series)
            if labels is None:  # FFmpeg's: one label set per job
                own = [json.dumps({"job_id": j, "encoder": "x"}, separators=(",", ":")) for j in job_ids]
                label_array = _dictionary(job, own)
            else:
                label_array = _dictionary(np.zeros(per_series), [labels])
            writer.write_table(pa.Table.from_arrays([
                _dictionary(np.zeros(per_series), [str(run_id)]), _dictionary(job, job_ids),
                _dictionary(np.repeat(node_codes, SAMPLES_PER_SERIES), node_values),
                _dictionary(np.zeros(per_series), [metric]), label_array,
                pa.array(stamps, pa.int64()).cast(pa.timestamp("ms", tz="UTC")), pa.array(values),
                _dictionary(np.zeros(per_series), ["local"])], schema=series_schema()), row_group_size=1_000_000)
        writer.close()


def measure(root: Path) -> dict[str, float]:
    """The timed phase (in a child process, so its peak memory is its own)."""
    from analysis.efficiency import config_efficiency, job_efficiency
    from analysis.pareto import pareto_front
    from analysis.series import power_summary, sample_counts
    from ffwatt.results import read_results

    timings: dict[str, float] = {}
    t = time.perf_counter()
    raw = read_results(root, columns=JOB_COLUMNS)
    timings["load job rows (27 of 67 columns)"] = time.perf_counter() - t
    t = time.perf_counter()
    jobs = job_efficiency(raw)
    configs = config_efficiency(jobs)
    timings["efficiency + repetition stats"] = time.perf_counter() - t
    t = time.perf_counter()
    front = pareto_front(configs, {"energy_j": "min", "vmaf": "max", "encode_fps": "max"})
    timings["3-D Pareto per input"] = time.perf_counter() - t
    t = time.perf_counter()
    long = jobs[jobs["wall_s"] >= 30]
    off = int((long["series_energy_gap"].abs() > 0.02).sum())
    timings["cross-check (jobs >= 30 s beyond 2 %)"] = time.perf_counter() - t
    t = time.perf_counter()
    power = power_summary(root, jobs=raw[["run_id", "job_id", "started_at", "ended_at"]])
    timings["power per job from the series"] = time.perf_counter() - t
    t = time.perf_counter()
    cpu = power[power["part"] == "cpu"][["run_id", "job_id", "mean_w", "max_w"]]
    with_power = jobs[["run_id", "job_id", "config_id", "node"]].merge(cpu, on=["run_id", "job_id"], how="left")
    per_config = with_power.groupby(["config_id", "node"], sort=False).agg(
        cpu_w=("mean_w", "mean"), cpu_w_peak=("max_w", "max"))
    timings["power per configuration"] = time.perf_counter() - t
    t = time.perf_counter()
    counts = sample_counts(root)
    short = int((counts["samples"] < SAMPLES_PER_SERIES).sum())
    timings["samples per job and metric (all)"] = time.perf_counter() - t
    assert len(raw) == JOB_ROWS and int(counts["samples"].sum()) == JOB_ROWS * SAMPLES_PER_JOB
    print(f"  {len(raw):,} rows -> {len(configs):,} configurations (node x config), "
          f"{int(front['pareto'].sum())} on the 3-D fronts; {len(long):,} jobs >= 30 s, {off:,} beyond 2 %")
    print(f"  {int(power['samples'].sum()):,} power samples inside the encodes (of "
          f"{JOB_ROWS * SAMPLES_PER_JOB:,} in the dataset) -> {len(power):,} job x part figures, "
          f"{len(per_config):,} configurations; {int(counts['samples'].sum()):,} samples counted, "
          f"{short} series short")
    return timings


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--keep", type=Path, help="generate into DIR (or reuse it) and keep it")
    parser.add_argument("--measure", type=Path, help=argparse.SUPPRESS)  # the child process
    args = parser.parse_args()
    if args.measure:
        timings = measure(args.measure)
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
        print(json.dumps({"timings": timings, "peak_bytes": peak}))
        return
    with tempfile.TemporaryDirectory(prefix="ffwatt-bench-") as tmp:
        root = (args.keep or Path(tmp)) / "results"
        if not root.exists():
            rng = np.random.default_rng(0)
            t0 = time.perf_counter()
            jobs = synthetic_jobs(rng)
            write_jobs(jobs, root)
            write_series(jobs, root, rng)
            del jobs
            print(f"generated {JOB_ROWS:,} job rows and {JOB_ROWS * SAMPLES_PER_JOB:,} samples in "
                  f"{time.perf_counter() - t0:.0f} s (not counted)")
        size = sum(p.stat().st_size for p in root.rglob("*.parquet"))
        print(f"dataset: {size / 2**30:.2f} GiB on disk; load average {os.getloadavg()[0]:.2f} "
              f"(1 min) on {os.cpu_count()} CPUs before the timed phase")
        child = subprocess.run([sys.executable, "-m", "bench.analysis", "--measure", str(root)],
                               capture_output=True, text=True, check=True)
        *lines, last = child.stdout.strip().splitlines()
        result = json.loads(last)
        print("\n".join(lines))
        timings = result["timings"]
        width = max(map(len, timings))
        for name, seconds in timings.items():
            print(f"  {name:<{width}}  {seconds:6.2f} s")
        total = sum(timings.values())
        print(f"  {'total':<{width}}  {total:6.2f} s   (goal < 30 s)")
        print(f"  peak memory of the timed process: {result['peak_bytes'] / 2**30:.2f} GiB   (goal < 4 GiB); "
              f"load average after {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
