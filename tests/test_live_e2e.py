"""A live campaign through the real CLI: `ffwatt campaign run` of a two-rung ladder swept over 1 and 2
streams, against a real Prefect server and an nginx-rtmp ingest the test starts; the renditions the
job's players pulled back from the ingest are probed, and results show and the report draw the sweep."""

from __future__ import annotations

import json
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import yaml

from ffwatt.hardware.ffmpeg import probe_media
from ffwatt.results import read_results, read_run_summary
from master.ingest import private_ingest
from testbed.net import free_ports_env
from tests.conftest import ffwatt_cli

pytestmark = pytest.mark.e2e

LADDER = [{"size": "640x360", "bitrate_kbps": 800}, {"size": "320x180", "bitrate_kbps": 250}]
CAMPAIGN = {
    "name": "live-e2e",
    "inputs": [{"name": "pattern", "source": "testsrc2", "size": "640x360", "fps": 30, "duration_s": 8}],
    "matrix": {"encoders": [{"name": "libx264", "presets": ["ultrafast"]}]},
    # Judged loosely: the suite runs on busy machines; bench/live.py measures real time.
    "live": {"ladder": LADDER, "streams": [1, 2], "realtime_tolerance": 0.1},
    "keep_outputs": True, "idle_baseline_s": 1,
}


@pytest.fixture(scope="module")
def live_run(prefect_server: dict[str, str], tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    work = tmp_path_factory.mktemp("live-e2e")
    spec = work / "live.yaml"
    spec.write_text(yaml.safe_dump(CAMPAIGN))
    with private_ingest() as ingest:
        env = {**os.environ, **prefect_server, "FFWATT_HOME": str(work / "home"),
               "FFWATT_RESULTS_DIR": str(work / "results"), "FFWATT_INGEST_URL": ingest.url, "COLUMNS": "250"}
        done = subprocess.run([ffwatt_cli(), "campaign", "run", str(spec)], env=env, capture_output=True, text=True,
                              timeout=600)
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-4000:]
    frame = read_results(work / "results", campaign="live-e2e")
    yield {"frame": frame, "stdout": done.stdout, "env": env, "work": work, "ingest": ingest.url}


def test_a_sweep_of_one_and_two_streams_records_a_row_per_step(live_run: dict[str, Any]):
    frame = live_run["frame"].sort_values("live_streams")
    assert list(frame.live_streams) == [1, 2] and (frame.status == "ok").all(), frame.error.tolist()
    assert frame.live_sweep_id.nunique() == 1 and frame.config_id.nunique() == 2
    assert (frame.live_ladder == "640x360@800k+320x180@250k").all() and (frame.live_ingest == live_run["ingest"]).all()
    assert (frame.live_source_frames == 240).all() and (frame.frames == frame.live_streams * 240).all()
    assert (frame.dropped_frames == 0).all() and frame.speed.between(0.5, 1.1).all()
    assert frame.live_realtime.notna().all() and (frame.live_realtime_tolerance == 0.1).all()
    assert frame.live_latency_ms.between(0, 10_000).all() and (frame.live_latency_p95_ms >= frame.live_latency_ms).all()
    assert frame.live_first_frame_s.between(0, 10).all()
    # Energy: estimated on this suite's empty powercap tree, and said so; net of the idle baseline.
    assert (frame.energy_source == "estimated").all() and frame.idle_power_w.notna().all()
    # By hand: W/stream is the step's mean power less the idle power, shared by its streams (the meter's
    # window is a few ms longer than the step's wall time: within 0.2 W); J/stream-minute is the net
    # energy over the fixture's 8 s streams.
    by_hand_w = (frame.energy_j / frame.wall_s - frame.idle_power_w) / frame.live_streams
    assert np.allclose(frame.live_watts_per_stream, by_hand_w, rtol=0.01, atol=0.2)
    stream_minutes = frame.live_streams * CAMPAIGN["inputs"][0]["duration_s"] / 60
    assert np.allclose(frame.live_joules_per_stream_minute, frame.net_energy_j / stream_minutes, rtol=1e-9)
    two = json.loads(frame.live_streams_detail.iloc[1])
    assert [s["stream"] for s in two] == [1, 2] and all(s["state"] == "ok" and s["frames"] == 240 for s in two)
    summary = read_run_summary(live_run["work"] / "results", "live-e2e", frame.run_id.iloc[0])
    assert (summary.jobs, summary.ok, summary.failed, summary.skipped) == (2, 2, 0, 0)


def test_renditions_pulled_back_from_the_ingest_have_their_rung_s_size_codec_and_bitrate(live_run: dict[str, Any],
                                                                                        ffmpeg: str):
    frame = live_run["frame"]
    for row in frame.itertuples():
        kept = sorted(Path(row.output_path).glob("*.flv"))
        assert [p.name for p in kept] == [f"stream{i}-r{k}.flv" for i in range(1, row.live_streams + 1)
                                          for k in range(2)]
        measured = json.loads(row.live_rung_bitrates_kbps)
        for path in kept:
            rung = LADDER[int(path.stem[-1])]
            info = probe_media(ffmpeg, path)
            assert info.video is not None and info.error is None
            assert info.video.codec == "h264" and f"{info.video.width}x{info.video.height}" == rung["size"]
            assert info.duration_s == pytest.approx(8, abs=0.2)
            file_kbps = path.stat().st_size * 8 / info.duration_s / 1000  # FLV: a few % of overhead on top
            assert file_kbps == pytest.approx(rung["bitrate_kbps"], rel=0.25), (path, file_kbps)
            assert measured[f"{rung['size']}@{rung['bitrate_kbps']}k"] == pytest.approx(rung["bitrate_kbps"], rel=0.25)
        assert row.live_bitrate_error_pct < 25 and row.bitrate_kbps == measured["640x360@800k"]


def test_results_show_and_the_report_show_streams_per_node_and_watts_per_stream(live_run: dict[str, Any]):
    shown = subprocess.run([ffwatt_cli(), "results", "show", "--campaign", "live-e2e"], env=live_run["env"],
                           capture_output=True, text=True, timeout=120)
    assert shown.returncode == 0, shown.stderr
    assert "live sweep steps" in shown.stdout and "largest real-time N" in shown.stdout
    assert "█" in shown.stdout and "* estimated" in shown.stdout
    run_id = live_run["frame"].run_id.iloc[0]
    drawn = subprocess.run([ffwatt_cli(), "report", run_id, "--campaign", "live-e2e"], env=live_run["env"],
                           capture_output=True, text=True, timeout=300)
    assert drawn.returncode == 0, drawn.stderr
    text = (live_run["work"] / "results" / "_reports" / f"report-live-e2e-{run_id}.html").read_text()
    assert "Live streams: streams per node and watts per stream" in text and "largest real-time N" in text
    assert "alt='live sweep'" in text and "Pareto" not in text  # a live run has no encode-by-encode sections
    assert "libx264 ultrafast live 640x360@800k+320x180@250k x2" in text  # its estimated energy, named


# --- through the stack and a pool: prefect deployment run 'campaign/live' ---------------------------

PUBLISH_NODE = """
import time
from ffwatt.fleet.nodes import NodeRecord, publish_node
started = time.time()
while True:  # what an agent's heartbeat does, without its exporters (their ports are fixed)
    publish_node(NodeRecord(node="node1", address="127.0.0.1", pools=["cpu"], encoders=["libx264"], exporters={},
                            heartbeat_at=time.time(), started_at=started))
    time.sleep(2)
"""


@pytest.fixture(scope="module")
def pool_run(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    """`ffwatt stack up` (its ingest included), a Prefect worker of the cpu pool as the node `node1`,
    then the live deployment run with a small campaign: the batch on the node pulls from and
    publishes to the master's ingest over its address, and the rows come home as artifacts."""
    import signal
    import sys

    from ffwatt.fleet.prefect_server import PREFECT_ENV
    from ffwatt.settings import REPO, Settings
    from master.stack import client_env
    from tests.conftest import BIN

    work = tmp_path_factory.mktemp("live-pools")
    ports = free_ports_env()
    master = {**os.environ, "FFWATT_HOME": str(work / "master"), "FFWATT_RESULTS_DIR": str(work / "results"),
              "FFWATT_NODE": "master", **ports}
    client = client_env(Settings(home=work / "master", master_port=int(ports["FFWATT_MASTER_PORT"])))
    node = {**os.environ, **PREFECT_ENV, **client, **ports, "FFWATT_HOME": str(work / "node1"), "FFWATT_NODE": "node1",
            "FFWATT_REPO": str(REPO), "PREFECT_WORKER_QUERY_SECONDS": "1"}
    started: list[subprocess.Popen[bytes]] = []
    try:
        up = subprocess.run([ffwatt_cli(), "stack", "up"], env=master, capture_output=True, text=True, timeout=600)
        assert up.returncode == 0, up.stdout[-3000:] + up.stderr[-3000:]
        with open(work / "worker.log", "ab") as log:
            started.append(subprocess.Popen(
                [str(BIN / "prefect"), "worker", "start", "--pool", "ffwatt-cpu", "--type", "process", "--name",
                 "node1-cpu", "--limit", "1"], env=node, cwd=REPO, stdout=log, stderr=subprocess.STDOUT,
                start_new_session=True))
            started.append(subprocess.Popen([sys.executable, "-c", PUBLISH_NODE], env=node, stdout=log,
                                            stderr=subprocess.STDOUT, start_new_session=True))
        campaign = {**CAMPAIGN, "name": "live-pools", "keep_outputs": False}
        done = subprocess.run([str(BIN / "prefect"), "--no-prompt", "deployment", "run", "campaign/live", "--params",
                               json.dumps({"campaign": campaign, "dispatch": "pools"}), "--watch",
                               "--watch-timeout", "500"], env={**os.environ, **PREFECT_ENV, **client}, cwd=REPO,
                              capture_output=True, text=True, timeout=600)
        frame = read_results(work / "results", campaign="live-pools") if (work / "results").is_dir() else None
        yield {"frame": frame, "done": done, "work": work, "ingest": f"rtmp://127.0.0.1:{ports['FFWATT_RTMP_PORT']}/live"}
    finally:
        for process in started:
            os.killpg(process.pid, signal.SIGTERM)
            process.wait(30)
        subprocess.run([ffwatt_cli(), "stack", "down"], env=master, capture_output=True, text=True, timeout=300)


def test_a_live_sweep_runs_on_a_node_of_the_pool_through_the_master_s_ingest(pool_run: dict[str, Any]):
    done, frame = pool_run["done"], pool_run["frame"]
    worker_log = (pool_run["work"] / "worker.log").read_text()[-3000:]
    assert frame is not None and len(frame) == 2, done.stdout[-3000:] + done.stderr[-2000:] + worker_log
    frame = frame.sort_values("live_streams")
    assert list(frame.live_streams) == [1, 2] and (frame.status == "ok").all(), frame.error.tolist()
    assert (frame.node == "node1").all() and (frame.live_ingest == pool_run["ingest"]).all()
    assert (frame.dropped_frames == 0).all() and frame.live_latency_ms.notna().all()
    assert frame.live_watts_per_stream.notna().all() and (frame.energy_source == "estimated").all()
    assert "Completed" in done.stdout, done.stdout[-2000:]
