"""How fast the analysis room turns a large results set into figures.

Generates, in a temporary directory (not timed):

* 100 000 synthetic job rows (5 nodes × 10 inputs × 3 encoders × 3 presets × 8 CRFs ×
  3 resolutions, ~10 repetitions) as Parquet in the results layout, and
* 10 000 000 metric samples in long format (timestamp, node, metric, value), like
  scraped Prometheus series: 1 Hz ``power_w`` and ``cpu_util`` per node.

Then times, side by side in one run: loading + summarising the job rows (per-job
efficiency, per-configuration repetition stats, 3-D Pareto fronts per input) and
loading + aggregating the samples per job window (mean watts per job). Goal: under
5 s in total on a 2-core machine. Prints figures only; asserts nothing about time.

    .venv/bin/python -m bench.analysis
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from analysis.efficiency import config_efficiency, job_efficiency
from analysis.load import load_results
from analysis.pareto import pareto_front
from analysis.samples import window_means
from ffwatt.schema import arrow_schema

JOB_ROWS = 100_000
SAMPLES = 10_000_000
NODES = [f"node-{i}" for i in range(5)]
METRICS = ["power_w", "cpu_util"]
EPOCH = np.datetime64("2026-01-01T00:00:00", "s")


def synthetic_jobs(rng: np.random.Generator, span_s: int) -> pd.DataFrame:
    """JOB_ROWS rows; each node's jobs run back to back within [0, span_s) seconds."""
    encoders = np.array(["libx264", "libx265", "libsvtav1"])
    presets = {"libx264": ["veryfast", "medium", "slow"], "libx265": ["ultrafast", "medium", "slow"],
               "libsvtav1": ["10", "8", "6"]}
    sizes = np.array([[640, 360], [1280, 720], [1920, 1080]])
    n = JOB_ROWS
    enc_i = rng.integers(0, 3, n)
    preset_i = rng.integers(0, 3, n)
    size_i = rng.integers(0, 3, n)
    crf = rng.choice(np.arange(20, 44, 3), n)
    inputs = rng.integers(0, 10, n)
    node = np.array(NODES)[np.arange(n) % len(NODES)]
    encoder = encoders[enc_i]
    preset = np.array([presets[e][p] for e, p in zip(encoder, preset_i)])
    width, height = sizes[size_i, 0], sizes[size_i, 1]
    pixels = width * height
    frames = np.full(n, 300)
    effort = (1 + enc_i) * (1 + preset_i)
    fps = 3e7 / pixels / effort * rng.normal(1, 0.05, n)
    wall = frames / fps
    kbps = 4000 * pixels / 921600 * 2 ** (-(crf - 23) / 6) / (1 + 0.2 * enc_i) * rng.normal(1, 0.02, n)
    watts = 15 + 5 * enc_i + 3 * preset_i + rng.normal(0, 0.5, n)
    energy = watts * wall
    # Place each node's jobs back to back, scaled to fit the sample span.
    start = np.zeros(n)
    for name in NODES:
        idx = np.flatnonzero(node == name)
        gaps = wall[idx] + 1.0
        scale = min(1.0, (span_s - 10) / gaps.sum())
        wall[idx] *= scale
        energy[idx] *= scale
        start[idx] = np.concatenate([[0.0], np.cumsum(gaps * scale)[:-1]])
    started = EPOCH + (start * 1e6).astype("timedelta64[us]")
    config = pd.Series(encoder).str.cat([pd.Series(preset), pd.Series(crf.astype(str)),
                                         pd.Series(size_i.astype(str)), pd.Series(inputs.astype(str))], sep="-")
    return pd.DataFrame({
        "job_id": np.char.add("job-", np.arange(n).astype(str)), "config_id": config.to_numpy(),
        "repetition": np.arange(n) // 1000 + 1, "node": node,
        "input_name": np.char.add("clip-", inputs.astype(str)), "input_width": width, "input_height": height,
        "input_fps": np.full(n, 30.0), "input_frames": frames, "encoder": encoder, "preset": preset,
        "rate_control": "crf", "crf": crf, "output_width": width, "output_height": height, "status": "ok",
        "attempts": 1, "started_at": pd.to_datetime(started, utc=True),
        "ended_at": pd.to_datetime(started + (wall * 1e6).astype("timedelta64[us]"), utc=True),
        "wall_s": wall, "frames": frames, "encode_fps": frames / wall, "bitrate_kbps": kbps,
        "psnr": 20 + 3.2 * np.log(kbps), "vmaf": np.clip(100 - 600 / np.sqrt(kbps), 0, 100),
        "energy_j": energy, "energy_source": np.where(enc_i == 2, "estimated", "rapl"),
        "joules_per_frame": energy / frames,
    })


def write_jobs(frame: pd.DataFrame, root: Path) -> None:
    schema = arrow_schema()
    fields = [f for f in schema if f.name in frame.columns]
    table = pa.Table.from_pandas(frame[[f.name for f in fields]], schema=pa.schema(fields), preserve_index=False)
    directory = root / "campaign=bench" / "run_id=bench-run"
    directory.mkdir(parents=True)
    for i, start in enumerate(range(0, len(frame), 10_000)):  # a few files, as a real run's tree has many
        pq.write_table(table.slice(start, 10_000), directory / f"job-part{i:03d}.parquet")


def write_samples(path: Path, span_s: int, rng: np.random.Generator) -> None:
    per_series = span_s
    ts = EPOCH + np.arange(per_series).astype("timedelta64[s]")
    writer = None
    for node in NODES:
        for metric in METRICS:
            value = rng.normal(25 if metric == "power_w" else 0.6, 3 if metric == "power_w" else 0.1, per_series)
            table = pa.table({
                "timestamp": pa.array(ts.astype("datetime64[ms]"), pa.timestamp("ms", tz="UTC")),
                "node": pa.array([node] * per_series).dictionary_encode(),
                "metric": pa.array([metric] * per_series).dictionary_encode(),
                "value": pa.array(value),
            })
            writer = writer or pq.ParquetWriter(path, table.schema)
            writer.write_table(table, row_group_size=1_000_000)
    assert writer is not None
    writer.close()


def main() -> None:
    rng = np.random.default_rng(0)
    span_s = SAMPLES // (len(NODES) * len(METRICS))
    with tempfile.TemporaryDirectory(prefix="ffwatt-bench-") as tmp:
        root = Path(tmp) / "results"
        t0 = time.perf_counter()
        write_jobs(synthetic_jobs(rng, span_s), root)
        samples_path = Path(tmp) / "samples.parquet"
        write_samples(samples_path, span_s, rng)
        print(f"generated {JOB_ROWS:,} job rows and {SAMPLES:,} samples in {time.perf_counter() - t0:.1f} s "
              "(not counted)")

        timings: dict[str, float] = {}
        t = time.perf_counter()
        raw = load_results(root, run_id="bench-run")
        timings["load job rows"] = time.perf_counter() - t
        t = time.perf_counter()
        jobs = job_efficiency(raw)
        configs = config_efficiency(jobs)
        timings["efficiency + repetition stats"] = time.perf_counter() - t
        t = time.perf_counter()
        front = pareto_front(configs, {"energy_j": "min", "vmaf": "max", "encode_fps": "max"})
        timings["3-D Pareto per input"] = time.perf_counter() - t
        t = time.perf_counter()
        samples = pq.read_table(samples_path, filters=[("metric", "==", "power_w")]).to_pandas()
        timings["load power samples"] = time.perf_counter() - t
        t = time.perf_counter()
        per_job = window_means(jobs, samples, metric="power_w")
        timings["mean watts per job window"] = time.perf_counter() - t

        print(f"{len(raw):,} rows -> {len(configs):,} configurations (node × config), "
              f"{int(front['pareto'].sum())} on the 3-D fronts; {len(samples):,} power samples of {SAMPLES:,}, "
              f"{int((per_job['power_w_samples'] > 0).sum()):,} jobs with samples")
        width = max(map(len, timings))
        for name, seconds in timings.items():
            print(f"  {name:<{width}}  {seconds:6.2f} s")
        total = sum(timings.values())
        print(f"  {'total':<{width}}  {total:6.2f} s   (goal < 5 s)")


if __name__ == "__main__":
    main()
