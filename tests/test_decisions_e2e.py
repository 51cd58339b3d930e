"""Decisions on real runs: the regression flow twice over a tiny real campaign (real FFmpeg, a
real Prefect server), its artifacts, its Failed state on a regression, and ``ffwatt compare`` and
``ffwatt recommend`` on the two real runs, whose printed FFmpeg command is run for real."""

from __future__ import annotations

import json
import os
import shlex
import subprocess
import sys
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from ffwatt.fleet.client import ensure_pools
from ffwatt.results import list_runs, read_results, read_run_summary, write_job_row, write_run_summary
from ffwatt.schema import JobRow, is_missing
from master.stack import prefect_cli
from tests.conftest import REPO, ffwatt_cli

pytestmark = pytest.mark.e2e

CAMPAIGN = REPO / "tests/data/nightly.yaml"


def _flow(env: dict[str, str], threshold: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "flows.regression", str(CAMPAIGN), threshold], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=600)


def _artifacts(env: dict[str, str], key: str) -> list[dict[str, Any]]:
    done = prefect_cli(env, "artifact", "inspect", key, "--output", "json")
    assert done.returncode == 0, done.stdout + done.stderr
    return list(json.loads(done.stdout))


def _cli(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([ffwatt_cli(), *args], env={**env, "COLUMNS": "250"}, capture_output=True, text=True,
                          timeout=120)


@pytest.fixture(scope="module")
def nightly(prefect_server: dict[str, str], tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """Two real runs of the regression flow; then a fabricated baseline with half the bits and a
    third real run, which must end Failed. Bitrate, because a CRF encode's size repeats exactly on
    the same node and FFmpeg (zero spread: the test is certain), whereas joules over the tenth of
    a second these encodes take swing by tens of percent on a shared 2-core machine."""
    work = tmp_path_factory.mktemp("nightly")
    results = work / "results"
    env = {**os.environ, **prefect_server, "FFWATT_HOME": str(work / "home"), "FFWATT_RESULTS_DIR": str(results)}
    first = _flow(env, "5")
    assert first.returncode == 0, first.stdout[-3000:] + first.stderr[-3000:]
    # A threshold no real run-to-run noise reaches: the comparison is published, nothing fails.
    second = _flow(env, "1000")
    assert second.returncode == 0, second.stdout[-3000:] + second.stderr[-3000:]
    real_runs = [run.run_id for run in list_runs(results, "nightly-e2e")]
    # The second run's rows, at half the bits (an encoder that got worse at the same CRF, seen from
    # the future), as a run that started just after it.
    summary = read_run_summary(results, "nightly-e2e", real_runs[1])
    assert summary is not None
    rows = read_results(results, campaign="nightly-e2e", run_id=real_runs[1])
    for raw in rows.to_dict("records"):
        record = {k: None if is_missing(v) else getattr(v, "item", lambda v=v: v)() for k, v in raw.items()}
        record.update(run_id="lean-baseline", bitrate_kbps=record["bitrate_kbps"] / 2,
                      output_bytes=record["output_bytes"] // 2)
        write_job_row(results, JobRow(**{k: v for k, v in record.items() if k in JobRow.model_fields}))
    write_run_summary(results, summary.model_copy(update={
        "run_id": "lean-baseline", "started_at": summary.started_at + timedelta(seconds=1)}))
    third = _flow(env, "5")
    return {"env": env, "results": results, "runs": real_runs, "first": first, "second": second, "third": third}


def test_the_first_run_is_a_baseline_and_the_second_is_compared(nightly: dict[str, Any]) -> None:
    assert "is the first of campaign nightly-e2e here" in nightly["first"].stdout
    assert nightly["second"].stdout.startswith("Completed: 2 configurations compared")
    versions = _artifacts(nightly["env"], "regression-nightly-e2e")
    texts = [v["data"] for v in versions]
    assert any("No earlier run of this campaign" in t for t in texts)
    first, second = nightly["runs"]
    compared = next(t for t in texts if f"Run {second} (nightly-e2e) against {first}" in t)
    assert "Welch's two-sided t-test" in compared and "pattern libx264 ultrafast crf 18 320x240" in compared
    assert "Nothing recorded differs" in compared  # same node, same FFmpeg, same kernel


def summary_node(nightly: dict[str, Any]) -> str:
    summary = read_run_summary(nightly["results"], "nightly-e2e", nightly["runs"][0])
    assert summary is not None
    (node,) = summary.nodes
    return node


def test_a_regression_ends_the_flow_run_failed(nightly: dict[str, Any]) -> None:
    third = nightly["third"]
    assert third.returncode == 1, third.stdout[-3000:] + third.stderr[-3000:]
    assert third.stdout.startswith("Failed: 2 configurations compared: ")
    node = summary_node(nightly)
    for crf in (18, 40):  # both configurations: twice the baseline's bits
        assert f"pattern libx264 ultrafast crf {crf} 320x240 on {node}: kbit/s +100.0 %" in third.stdout
    latest = _artifacts(nightly["env"], "regression-nightly-e2e")[0]["data"]
    assert "against lean-baseline" in latest and "+100.0 % [+100.0, +100.0] worse" in latest
    done = prefect_cli(nightly["env"], "flow-run", "ls", "--flow-name", "regression", "--output", "json")
    assert done.returncode == 0, done.stderr
    states = sorted(run["state"]["type"] for run in json.loads(done.stdout))
    assert states == ["COMPLETED", "COMPLETED", "FAILED"]


def test_every_campaign_run_publishes_its_outcome(nightly: dict[str, Any]) -> None:
    versions = _artifacts(nightly["env"], "campaign-nightly-e2e")
    assert len(versions) == 3  # one per campaign flow run
    text = versions[0]["data"]
    assert "**4 of 4 jobs ok, 0 failed**" in text
    for part in ("### Per configuration", "### Pareto front", "### Recommendation for VMAF ≥ 93",
                 "### Where the results are", "- Parquet: `", "- HTML report: `"):
        assert part in text
    command = text.split("- HTML report: `")[1].split("`")[0].split()  # the command the artifact names works
    assert command[:2] == ["ffwatt", "report"]
    done = _cli(nightly["env"], *command[1:])
    assert done.returncode == 0, done.stderr
    report = Path(done.stdout.strip())
    assert report.is_file() and report.stat().st_size > 10_000


def test_compare_two_real_runs(nightly: dict[str, Any]) -> None:
    first, second = nightly["runs"]
    done = _cli(nightly["env"], "compare", first, second, "--output", "json")
    assert done.returncode == 0, done.stderr
    data = json.loads(done.stdout)
    assert len(data["configs"]) == 2 and data["node_changes"] == []
    for change in data["configs"]:
        assert (change["n_baseline"], change["n_candidate"]) == (2, 2)
        # Real repetitions: every metric judged by the test, none left undecided.
        assert all(m["verdict"] != "cannot decide" and m["p_value"] is not None for m in change["metrics"])
        assert all(m["estimated"] for m in change["metrics"] if m["metric"] == "joules_per_frame")


def test_recommended_commands_run_and_land_where_measured(nightly: dict[str, Any], ffmpeg: str,
                                                          tmp_path: Path) -> None:
    first, second = nightly["runs"]
    rows = read_results(nightly["results"], campaign="nightly-e2e", run_id=first)
    vmaf = rows.groupby("crf")["vmaf"].mean()
    kbps = rows.groupby("crf")["bitrate_kbps"].mean()
    target = round((vmaf[18] + vmaf[40]) / 2, 1)  # bracketed by the ladder: an in-between setting exists
    # Least bitrate: strictly falling along the ladder, so the in-between setting is always cheaper.
    done = _cli(nightly["env"], "recommend", "--vmaf", str(target), "--minimize", "bitrate", "--run", first,
                "--run", second, "--output", "json")
    assert done.returncode == 0, done.stderr
    (answer,) = json.loads(done.stdout)["answers"]
    best = answer["recommendation"]
    assert best["config"] == "libx264 ultrafast crf 18 320x240" and best["repetitions"] == 4  # pooled runs
    assert best["energy_estimated"] is True
    (between,) = answer["interpolated"]
    assert 18 < between["rate_value"] < 40 and between["between"] == ["crf 18", "crf 40"]
    reference = str(rows["reference_path"].iloc[0])
    for candidate, low, high in ((best, 0.9 * kbps[18], 1.1 * kbps[18]), (between, kbps[40], kbps[18])):
        out = tmp_path / f"crf{candidate['rate_value']}.mkv"
        args = shlex.split(candidate["command"])
        assert args[0] == "ffmpeg" and "INPUT" in args and args[-1] == "OUTPUT.mkv"
        args = [ffmpeg, *(reference if a == "INPUT" else str(out) if a == "OUTPUT.mkv" else a for a in args[1:])]
        encoded = subprocess.run(args, capture_output=True, text=True, timeout=120, stdin=subprocess.DEVNULL)
        assert encoded.returncode == 0, encoded.stderr[-2000:]
        duration_s = float(rows["input_frames"].iloc[0]) / float(rows["input_fps"].iloc[0])
        bitrate = out.stat().st_size * 8 / duration_s / 1000
        assert low < bitrate < high, (candidate["command"], bitrate, low, high)


def test_the_nightly_deployment_registers_with_its_schedule_off(prefect_server: dict[str, str]) -> None:
    env = {**os.environ, **prefect_server, "FFWATT_REPO": str(REPO)}
    ensure_pools(env, ["master"])
    done = prefect_cli(env, "deploy", "--name", "nightly", "--prefect-file", str(REPO / "deployments/prefect.yaml"))
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    done = prefect_cli(env, "deployment", "inspect", "regression/nightly", "--output", "json")
    assert done.returncode == 0, done.stderr
    deployment = json.loads(done.stdout)
    (schedule,) = deployment["schedules"]
    assert schedule["active"] is False and schedule["schedule"]["cron"] == "0 3 * * *"
    assert deployment["parameters"]["threshold_pct"] == 5 and deployment["parameters"]["campaign"]["repetitions"] == 3
