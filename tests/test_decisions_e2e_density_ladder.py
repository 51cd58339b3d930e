"""The three decisions on real runs: a density campaign (copies at once until the node saturates) and
``ffwatt plan`` on it; the shipped ladder campaign, ``ffwatt ladder`` on its run and a live campaign
taking the ladder it wrote; ``ffwatt recommend --views`` at one view and at a billion on that run.
Real FFmpeg, a real Prefect server, real Parquet."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from ffwatt.results import read_results
from master.ingest import private_ingest
from tests.conftest import REPO, ffwatt_cli

pytestmark = pytest.mark.e2e


def _cli(env: dict[str, str], *args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([ffwatt_cli(), *args], env={**env, "COLUMNS": "250"}, capture_output=True, text=True,
                          timeout=900, cwd=cwd)


def _env(prefect_server: dict[str, str], work: Path) -> dict[str, str]:
    return {**os.environ, **prefect_server, "FFWATT_HOME": str(work / "home"),
            "FFWATT_RESULTS_DIR": str(work / "results")}


@pytest.fixture(scope="module")
def density_run(prefect_server: dict[str, str], tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """The shipped density campaign, shortened: a 1 s clip, 1, 2 and 4 copies (no doubling past 4)."""
    work = tmp_path_factory.mktemp("density")
    spec = yaml.safe_load((REPO / "deployments/campaigns/density.yaml").read_text())
    spec["inputs"][0]["duration_s"] = 1
    spec["density"]["max_concurrency"] = 4
    spec["repetitions"] = 1
    campaign = work / "density.yaml"
    campaign.write_text(yaml.safe_dump(spec))
    env = _env(prefect_server, work)
    done = _cli(env, "campaign", "run", str(campaign))
    return {"env": env, "work": work, "run": done}


def test_a_density_run_gives_rows_at_1_2_and_4_copies_and_names_the_most_frames_per_joule(density_run):
    done = density_run["run"]
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    rows = read_results(density_run["work"] / "results", campaign="density")
    steps = {int(r.concurrency): r for r in rows.itertuples()}
    assert {1, 2, 4} <= set(steps)
    for n, row in steps.items():
        assert row.status in ("ok", "skipped"), row.error
        if row.status == "ok":  # every copy's 30 frames, one energy window
            assert row.frames == 30 * n and row.energy_j > 0
    assert "most frames/J at N" in done.stdout and "density sweep steps" in done.stdout
    plan = _cli(density_run["env"], "plan", "--hours", "10", "-o", "json")
    assert plan.returncode == 0, plan.stderr
    (node,) = json.loads(plan.stdout)["plans"]
    assert node["nodes"]["value"] >= 1 and node["aggregate_fps"]["value"] > 0 and node["kwh_per_day"]["value"] > 0
    report = _cli(density_run["env"], "report", "--out", str(density_run["work"] / "report.html"))
    assert report.returncode == 0, report.stderr
    assert "<img alt='density'" in (density_run["work"] / "report.html").read_text()


@pytest.fixture(scope="module")
def ladder_run(prefect_server: dict[str, str], tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """The shipped ladder campaign as it is: 3 resolutions x 4 CRFs x 2 encoders."""
    work = tmp_path_factory.mktemp("ladder")
    env = _env(prefect_server, work)
    done = _cli(env, "campaign", "run", str(REPO / "deployments/campaigns/ladder.yaml"))
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    return {"env": env, "work": work}


def test_the_ladder_rises_and_a_live_campaign_takes_it_as_its_ladder(ladder_run):
    work, env = ladder_run["work"], ladder_run["env"]
    done = _cli(env, "ladder", "--out", str(work / "ladder.yaml"), "-o", "json")
    assert done.returncode == 0, done.stderr
    rungs = json.loads(done.stdout)["rungs"]
    assert len(rungs) >= 3
    bitrates, vmafs = [r["bitrate_kbps"] for r in rungs], [r["vmaf"] for r in rungs]
    assert bitrates == sorted(bitrates) and len(set(bitrates)) == len(bitrates)
    assert vmafs == sorted(vmafs) and len(set(vmafs)) == len(vmafs)
    assert [r["bitrate_kbps"] for r in yaml.safe_load((work / "ladder.yaml").read_text())["ladder"]] == bitrates
    (work / "live.yaml").write_text(yaml.safe_dump({
        "name": "live-ladder", "inputs": [{"name": "clip", "source": "testsrc2", "duration_s": 10}],
        "matrix": {"encoders": [{"name": "libx264", "presets": ["veryfast"]}]},
        "live": {"ladder": "ladder.yaml", "streams": [1]}}))
    expanded = _cli(env, "campaign", "expand", str(work / "live.yaml"), "-o", "json")
    assert expanded.returncode == 0, expanded.stderr
    (job,) = json.loads(expanded.stdout)
    assert [r["bitrate_kbps"] for r in job["live"]["ladder"]] == bitrates[::-1]  # top first
    with private_ingest() as ingest:
        valid = _cli({**env, "FFWATT_INGEST_URL": ingest.url}, "campaign", "validate", str(work / "live.yaml"))
    assert valid.returncode == 0, valid.stderr
    report = _cli(env, "report", "--out", str(work / "report.html"))
    assert report.returncode == 0 and "<h2>Ladder" in (work / "report.html").read_text()


def test_a_billion_views_pick_no_larger_a_file_than_one_and_both_give_break_even_views(ladder_run):
    answers = []
    for views in ("1", "1000000000"):
        done = _cli(ladder_run["env"], "recommend", "--vmaf", "80", "--views", views, "-o", "json")
        assert done.returncode == 0, done.stderr
        data = json.loads(done.stdout)
        (answer,) = data["recommendation"]["answers"]
        assert answer["recommendation"] is not None and answer["runners_up"]
        for runner in answer["runners_up"]:
            assert runner["delivery"]["better_with"] in ("more views", "fewer views", "never", "always")
        assert [end["wh_per_gb"] for end in data["range_ends"]] == [7.0, 140.0]
        answers.append(answer["recommendation"])
    assert answers[1]["bitrate_kbps"] <= answers[0]["bitrate_kbps"]
    table = _cli(ladder_run["env"], "recommend", "--vmaf", "80", "--views", "1000000000")
    assert "against the recommendation" in table.stdout and "At the ends of the published range" in table.stdout
