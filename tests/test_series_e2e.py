"""Every job's series beside its row, end to end: ``ffwatt campaign run`` on a real Prefect server with
real FFmpeg, sampling its own node without a store, and reading a real VictoriaMetrics that is
stopped and started again mid-campaign. Each has a job of 30 s or more, whose series energy must
agree with its row's within 2 %: the suite's empty powercap makes both the CPU estimate over the
machine's real /proc/stat, so the series see the same load the meter does."""

from __future__ import annotations

import math
import os
import re
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
import yaml

from analysis import load_series, power_over_time
from analysis.report import write_report
from ffwatt.fleet.services import start_service, stop_service
from ffwatt.results import read_results
from ffwatt.series import AGREEMENT, read_series, series_path
from ffwatt.settings import Settings
from master.monitoring import monitoring_services
from testbed.fleet import wait_for
from tests.conftest import ffwatt_cli, free_port, stop_process_group, wait_http
from tests.monitoring import Publisher, Store, ffwatt_service, monitoring, start_discovery

pytestmark = pytest.mark.e2e

FPS = 24


@pytest.fixture(scope="module")
def long_clip_s(ffmpeg: str) -> int:
    """How long a 640x360 clip must be for libx264 placebo on one thread to take about 38 s here, so the
    long job is long on any machine: timed on one second of the same pattern, the fastest of three
    (a busy moment would make the clip too short)."""
    timings = []
    for _ in range(3):
        started = time.perf_counter()
        subprocess.run([ffmpeg, "-hide_banner", "-loglevel", "error", "-f", "lavfi", "-i",
                        f"testsrc2=size=640x360:rate={FPS}:duration=1", "-c:v", "libx264", "-preset", "placebo",
                        "-threads", "1", "-f", "null", "-"], check=True, timeout=300)
        timings.append(time.perf_counter() - started)
    return max(4, math.ceil(38 / min(timings)))


def campaign(name: str, seconds: int, short: list[int], preset: str = "medium") -> dict[str, Any]:
    """Short libx264 jobs (``preset``) at CRFs ``short``, then one libx264 placebo job: the long one."""
    return {
        "name": name,
        "inputs": [{"name": "pattern", "source": "testsrc2", "size": "640x360", "fps": FPS, "duration_s": seconds}],
        "matrix": {"encoders": [{"name": "libx264", "presets": [preset],
                                 "rate_control": [{"mode": "crf", "values": short}]},
                                {"name": "libx264", "presets": ["placebo"],
                                 "rate_control": [{"mode": "crf", "values": [30]}]}]},
        "threads": 1, "quality": [], "idle_baseline_s": 1,
    }


def assert_long_job_agrees(results: Path, frame: pd.DataFrame, source: str) -> pd.Series:
    long = frame[frame.preset == "placebo"].iloc[0]
    assert long.wall_s >= 30, f"the long job took {long.wall_s:.1f} s: lengthen it (long_clip_s)"
    assert long.series_source == source and pd.isna(long.series_missing), long.series_missing
    assert long.series_energy_source == long.energy_source == "estimated"
    assert abs(long.series_energy_gap) < AGREEMENT, (long.series_energy_j, long.energy_j)
    # The series energy by hand from the file's samples: the estimated counter as scraped, read
    # linearly at the encode's start and end (t_s 0 and wall_s), without the sampler-age correction
    # the product applies; a constant load over 30 s puts the two within a few per cent.
    samples = load_series(results, job_id=long.job_id)
    counter = samples[samples.metric == "ffwatt_cpu_estimated_energy_joules_total"].sort_values("t_s")
    by_hand = float(np.interp(long.wall_s, counter.t_s, counter.value) - np.interp(0.0, counter.t_s, counter.value))
    assert by_hand == pytest.approx(long.series_energy_j, rel=0.03)
    print(f"\n{source}: {long.wall_s:.1f} s job, row {long.energy_j:.1f} J, series {long.series_energy_j:.1f} J, "
          f"gap {long.series_energy_gap:+.2%}")
    return long


def test_a_local_campaign_samples_its_own_node(prefect_server: dict[str, str], long_clip_s: int, tmp_path: Path):
    spec = tmp_path / "local.yaml"
    spec.write_text(yaml.safe_dump(campaign("series-local", long_clip_s, [36])))
    results = tmp_path / "results"
    done = subprocess.run([ffwatt_cli(), "campaign", "run", str(spec)], capture_output=True, text=True, timeout=600,
                          env={**os.environ, **prefect_server, "FFWATT_HOME": str(tmp_path / "home"),
                               "FFWATT_RESULTS_DIR": str(results), "FFWATT_NODE": "n1"})
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]

    jobs = pd.read_parquet(results)  # the job table, exactly: the series sit under _series
    # The two jobs and the run's control encode at its start and end (kind=control).
    assert sorted(jobs.kind) == ["control", "control", "job", "job"] and "metric" not in jobs.columns
    frame = read_results(results)
    long = assert_long_job_agrees(results, frame, "local")
    for job in frame.itertuples():
        assert series_path(results, "series-local", job.run_id, job.job_id).is_file()
        table = read_series(results, job_id=job.job_id)
        assert set(table.column("source").to_pylist()) == {"local"} and table.num_rows == job.series_samples
        stamps = table.column("timestamp").to_pandas()
        # The window: the encode and 2 s either side, once a second (the first job's may begin as the
        # sampler does: with a reused idle baseline it starts a second after the campaign).
        assert job.started_at - pd.Timedelta(seconds=2.5) <= stamps.min() < job.started_at
        assert stamps.max() >= job.ended_at + pd.Timedelta(seconds=1)
    samples = load_series(results, job_id=long.job_id)
    metrics = set(samples.metric)
    assert {"ffwatt_cpu_estimated_energy_joules_total", "ffwatt_cpu_estimated_power_watts",
            "ffwatt_cpu_utilization_ratio", "ffwatt_ffmpeg_frames_total", "ffwatt_ffmpeg_fps"} <= metrics
    own = samples[samples.metric.str.startswith("ffwatt_ffmpeg_")]
    assert own.labels.str.contains(f'"job_id":"{long.job_id}"').all()  # its own FFmpeg, no other job's
    assert (samples.preset == "placebo").all() and samples.t_s.between(-3, long.wall_s + 3).all()
    frames = own[own.metric == "ffwatt_ffmpeg_frames_total"].value
    assert frames.max() > 0.9 * long.frames  # its progress, as FFmpeg reported it
    power = power_over_time(samples)
    assert set(power.part) == {"cpu"} and power.estimated.all() and (power.watts > 0).all()

    text = write_report(results, "latest").read_text(encoding="utf-8")
    assert "Power over time, per job" in text and "node timeline" in text
    assert "The 1 job of 30 s or more agrees within 2%" in text


@pytest.fixture
def store(prefect_server: dict[str, str], tmp_path: Path) -> Iterator[tuple[Settings, Store, dict[str, str]]]:
    """The master's store, scraping node n1's cpu and ffmpeg exporters found through discovery."""
    settings = Settings(home=tmp_path / "master", results_dir=tmp_path / "results", node="master",
                        master_host="127.0.0.1", store_port=free_port(), vmalert_port=free_port(),
                        alertmanager_port=free_port(), discovery_port=free_port())
    run_dir, env = tmp_path / "run", {**os.environ, **prefect_server}
    n1 = {**env, "FFWATT_NODE": "n1", "FFWATT_HOME": str(tmp_path / "n1")}
    ports = {"cpu": free_port(), "ffmpeg": free_port()}
    publisher = Publisher(env)
    with pytest.MonkeyPatch.context() as patch:
        for key, value in prefect_server.items():
            patch.setenv(key, value)
        try:
            start_discovery(run_dir, settings, env)
            for kind, port in ports.items():
                ffwatt_service(run_dir, f"n1-{kind}", ["exporter", kind, "--listen", f"127.0.0.1:{port}"], n1)
                wait_http(f"http://127.0.0.1:{port}/metrics", 60)
            publisher.add("n1", ["cpu"], {kind: f"127.0.0.1:{port}" for kind, port in ports.items()})
            threading.Thread(target=publisher.run, daemon=True).start()
            with monitoring(settings) as found:
                assert wait_for(lambda: sum(t["health"] == "up" for t in found.targets()) == 3, 30), found.targets()
                yield settings, found, n1
        finally:
            publisher.stop.set()
            for name in ("n1-ffmpeg", "n1-cpu", "discovery"):
                stop_service(run_dir, name)


def test_store_down_mid_campaign_costs_jobs_their_series_not_their_rows(
        store: tuple[Settings, Store, dict[str, str]], long_clip_s: int, tmp_path: Path):
    settings, found, n1 = store
    spec = tmp_path / "store.yaml"
    # Short jobs of a few seconds each: the store is stopped after the first, started again after a row
    # says it was missing, and comes back (start, discovery, first scrape: up to ~5 s here) while the
    # rest run, before the long one.
    spec.write_text(yaml.safe_dump(campaign("series-store", long_clip_s, [30, 34, 38, 42, 46], preset="slow")))
    results, run_dir = settings.results_dir, settings.run_dir
    env = {**n1, "FFWATT_RESULTS_DIR": str(results), "FFWATT_STORE_URL": found.url}
    process = subprocess.Popen([ffwatt_cli(), "campaign", "run", str(spec)], env=env, stdout=subprocess.PIPE,
                               stderr=subprocess.STDOUT, start_new_session=True)

    def rows() -> pd.DataFrame:
        return read_results(results) if list(results.glob("campaign=*/run_id=*/job-*.parquet")) else pd.DataFrame()

    def said_missing() -> bool:
        written = rows()
        return not written.empty and written.series_missing.fillna("").str.contains(found.url).any()

    def has_series() -> bool:  # a row is written when its job ends, and again once its series are in
        written = rows()
        return not written.empty and (written.series_source == "store").any()

    try:
        # The first row with its series in: stop the store (a real process, SIGTERM). A row that says
        # its series are missing in: start it again, on the same data, as `ffwatt stack up` would.
        assert wait_for(has_series, 300, every_s=0.1)
        stop_service(run_dir, "metrics-store")
        assert wait_for(said_missing, 300, every_s=0.2)
        start_service(run_dir, monitoring_services(settings)[0])
        assert wait_for(lambda: httpx_ok(f"{found.url}/health"), 30)
        output, _ = process.communicate(timeout=600)
    finally:
        stop_process_group(process)
    assert process.returncode == 0, output.decode()[-3000:]

    frame = read_results(results).sort_values("started_at").reset_index(drop=True)
    assert len(frame) == 6 and (frame.status == "ok").all() and frame.energy_j.notna().all()
    first = frame.iloc[0]
    assert first.series_source == "store" and pd.isna(first.series_missing) and first.series_energy_j > 0
    # Store down: those jobs have their direct readings, and their rows say why they have no series
    # (unreachable when asked, or gone while it exported).
    down = frame[frame.series_source.isna()]
    assert len(down) >= 1 and (down.energy_j > 0).all()
    assert down.series_missing.str.match(rf"the metrics store at {re.escape(found.url)} "
                                         r"(is unreachable|didn't export the series)").all(), down.series_missing
    for job in down.itertuples():
        assert not series_path(results, "series-store", job.run_id, job.job_id).exists()
    # Back again: later jobs get their series (the one right after the restart may be incomplete).
    long = assert_long_job_agrees(results, frame, "store")
    assert long.job_id == frame.iloc[-1].job_id
    table = read_series(results, job_id=long.job_id)
    assert set(table.column("source").to_pylist()) == {"store"} and set(table.column("node").to_pylist()) == {"n1"}
    metrics = set(table.column("metric").to_pylist())
    assert {"ffwatt_cpu_estimated_energy_joules_total", "ffwatt_sampler_last_success_age_seconds",
            "ffwatt_ffmpeg_frames_total"} <= metrics
    print(f"store down for jobs {', '.join(str(i + 1) for i in down.index)} of {len(frame)}")


def httpx_ok(url: str) -> bool:
    import httpx

    try:
        return httpx.get(url, timeout=1).status_code == 200
    except httpx.HTTPError:
        return False
