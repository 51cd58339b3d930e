"""A tiny campaign through the real flow: `ffwatt campaign run` against a real Prefect
server started by the test, real FFmpeg, real Parquet."""

from __future__ import annotations

import json
import os
import re
import subprocess
from pathlib import Path

import httpx
import pytest

from ffwatt.results import read_results, read_run_summary
from tests.conftest import REPO, ffwatt_cli

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def campaign_run(prefect_server: dict[str, str], tmp_path_factory: pytest.TempPathFactory):
    work = tmp_path_factory.mktemp("e2e")
    env = {**os.environ, **prefect_server, "FFWATT_HOME": str(work / "home"),
           "FFWATT_RESULTS_DIR": str(work / "results"), "COLUMNS": "200"}
    done = subprocess.run([ffwatt_cli(), "campaign", "run", str(REPO / "tests/data/e2e.yaml")],
                          env=env, capture_output=True, text=True, timeout=600)
    # One job is broken on purpose: the run exits 1, the rows are all written.
    assert done.returncode == 1, done.stdout[-3000:] + done.stderr[-3000:]
    frame = read_results(work / "results", campaign="e2e")
    return frame, done.stdout, done.stderr, env, work


def test_every_job_has_one_row_and_the_broken_one_failed(campaign_run):
    frame, stdout, stderr, _, _ = campaign_run
    assert len(frame) == 5 and frame["job_id"].is_unique and frame["run_id"].nunique() == 1
    failed = frame[frame.status == "failed"]
    assert len(failed) == 1
    (error,) = failed["error"]
    assert error.startswith("transcode:") and "no-such-profile" in error
    assert failed["attempts"].iloc[0] == 2  # encode_retries: 1
    assert (frame.max_rss_bytes > 0).all()  # the failed encode's FFmpeg ran too: its peak memory is there
    assert (frame[frame.status == "ok"]["attempts"] == 1).all()
    assert "4 ok, 1 failed" in stdout
    assert ("1 of 5 jobs failed (rows written; `error` says why):\n"
            "  1 x transcode: FFmpeg exited 234: x264 [error]: invalid profile: no-such-profile") in stderr


def test_measurements_are_real_and_sane(campaign_run, ffmpeg: str):
    frame, _, _, _, _ = campaign_run
    ok = frame[frame.status == "ok"]
    assert (ok.frames == 96).all() and (ok.input_frames == 96).all()
    assert ok.psnr.between(20, 70).all() and ok.ssim.between(0.5, 1).all() and ok.vmaf.between(0, 100).all()
    assert (ok.wall_s > 0).all() and (ok.cpu_user_s > 0).all() and (ok.max_rss_bytes > 0).all()
    # CPU time of the job's cgroup (or, labelled, rusage): at least what FFmpeg itself used, less a tick.
    assert ok.resource_source.isin(["cgroup", "cgroup+rusage", "rusage"]).all() and (ok.cgroup_io_bytes >= 0).all()
    assert (ok.cgroup_cpu_s >= 0.95 * (ok.cpu_user_s + ok.cpu_sys_s) - 0.02).all()
    assert (ok.output_bytes > 0).all() and ok.output_path.map(lambda p: Path(p).is_file()).all()
    assert ok.ffmpeg_cmd.str.contains("-progress pipe:1").all()
    assert ok.energy_source.isin(["rapl", "estimated"]).all() and (ok.energy_j > 0).all()
    # Joules per frame over the frames FFmpeg counts when it decodes each output (4 s at 24 fps).
    for job in ok.itertuples():
        decoded = subprocess.run([ffmpeg, "-v", "error", "-nostats", "-i", job.output_path, "-map", "0:v:0",
                                  "-f", "null", "-", "-progress", "pipe:1"], capture_output=True, text=True, check=True)
        counted = int(re.findall(r"^frame=(\d+)$", decoded.stdout, re.MULTILINE)[-1])
        assert counted == 96 and job.joules_per_frame == pytest.approx(job.energy_j / counted, rel=1e-9)


def test_energy_is_labelled_with_idle_baseline_and_attribution(campaign_run):
    frame, _, _, env, work = campaign_run
    ok = frame[frame.status == "ok"]
    # The suite's powercap root is empty (tests/conftest.py), on every host: the estimate, and why.
    assert (ok.energy_source == "estimated").all()
    assert ok.energy_basis.str.contains(f"no RAPL zones under {env['FFWATT_POWERCAP_ROOT']}").all()
    assert (ok.idle_power_w > 0).all() and ok.net_energy_j.notna().all()
    assert ok.cpu_share.between(0, 1).all() and ok.attributed_energy_j.notna().all()
    # The meter's window brackets the encode, a few ms longer than FFmpeg's own wall time.
    assert ((ok.avg_power_w - ok.energy_j / ok.wall_s).abs() / ok.avg_power_w < 0.2).all()
    summary = read_run_summary(work / "results", "e2e", ok.run_id.iloc[0])
    (node,) = summary.nodes.values()
    assert summary.idle_baselines[node.name].seconds >= 1
    assert (ok.idle_power_w == summary.idle_baselines[node.name].cpu_w).all()
    assert node.gpu_unavailable == "GPU metering off (FFWATT_GPU=false)" and node.gpus == []
    assert node.cpu_model and node.kernel and node.cpu_energy.startswith("estimated: no RAPL zones under")


def test_higher_crf_gives_lower_quality(campaign_run):
    frame, _, _, _, _ = campaign_run
    x264 = frame[(frame.encoder == "libx264") & (frame.rate_control == "crf") & (frame.status == "ok")]
    by_crf = x264.set_index("crf")
    assert by_crf.loc[18, "vmaf"] > by_crf.loc[40, "vmaf"] + 10
    assert by_crf.loc[18, "psnr"] > by_crf.loc[40, "psnr"]
    assert by_crf.loc[18, "bitrate_kbps"] > by_crf.loc[40, "bitrate_kbps"]


def test_cbr_hits_its_target(campaign_run):
    frame, _, _, _, _ = campaign_run
    (cbr,) = frame[frame.rate_control == "cbr"].itertuples()
    assert abs(cbr.bitrate_kbps - 400) / 400 < 0.15


def test_run_is_a_real_prefect_flow_run_with_a_summary(campaign_run):
    frame, _, _, env, work = campaign_run
    run_id = frame.run_id.iloc[0]
    response = httpx.get(f"{env['PREFECT_API_URL']}/flow_runs/{run_id}", timeout=10)
    flow_run = response.json()
    # A job failed, so the flow run did: Failed, saying how many and why.
    assert response.status_code == 200 and flow_run["state_type"] == "FAILED"
    assert flow_run["state"]["message"].startswith("1 of 5 jobs failed: 1 x transcode: FFmpeg exited 234")
    summary = read_run_summary(work / "results", "e2e", run_id)
    assert (summary.jobs, summary.ok, summary.failed, summary.state) == (5, 4, 1, "complete")
    assert summary.failures == {"transcode: FFmpeg exited 234: x264 [error]: invalid profile: no-such-profile": 1}
    (node,) = summary.nodes.values()
    assert node.ffmpeg_version == frame.ffmpeg_version.dropna().iloc[0]


def test_results_show_reads_the_run_back(campaign_run):
    frame, _, _, env, _ = campaign_run
    shown = subprocess.run([ffwatt_cli(), "results", "show", "--campaign", "e2e", "--output", "json"],
                           env=env, capture_output=True, text=True, timeout=120, check=True)
    rows = json.loads(shown.stdout)
    assert sorted(r["job_id"] for r in rows) == sorted(frame.job_id)
