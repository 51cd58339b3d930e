"""``ffwatt recommend``: text for people, JSON for scripts, one-line errors."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from tests.conftest import ffwatt
from tests.test_analysis_recommend import write_ladders


@pytest.fixture(scope="module")
def results(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("recommend") / "results"
    write_ladders(root)
    return root


def run(results: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return ffwatt("recommend", *args, env={"FFWATT_RESULTS_DIR": str(results), "COLUMNS": "250"})


def test_text_answer_with_its_command(results: Path) -> None:
    done = run(results, "--vmaf", "93", "--realtime")
    assert done.returncode == 0, done.stderr
    text = done.stdout
    assert "Recommended: libx264 veryfast crf 26 1280x720 on node-a" in text
    assert "ffmpeg -threads 2 -i INPUT -map 0:v:0 -c:v libx264 -preset veryfast -crf 26" in text
    assert "not measured" in text and "crf 28" in text


def test_a_percentile_target(tmp_path: Path) -> None:
    root = tmp_path / "results"
    write_ladders(root, p5_below={"libx264": 6.0, "libx265": 1.0})
    done = run(root, "--vmaf", "93", "--vmaf-percentile", "5")
    assert done.returncode == 0, done.stderr
    assert "Recommended: libx265 medium crf 26 1280x720 on node-a" in done.stdout and "VMAF p5" in done.stdout
    refused = run(root, "--vmaf", "93", "--vmaf-percentile", "50")
    assert refused.returncode == 2 and "--vmaf-percentile 50" in refused.stderr and "choose 1 or 5" in refused.stderr


def test_json_answer(results: Path) -> None:
    done = run(results, "--vmaf", "93", "--minimize", "bitrate", "--output", "json")
    assert done.returncode == 0, done.stderr
    data = json.loads(done.stdout)
    (answer,) = data["answers"]
    assert data["target"] == {"vmaf": 93.0, "vmaf_percentile": None, "min_fps": None, "realtime": False,
                              "minimize": "bitrate"}
    assert answer["recommendation"]["config"] == "libx265 medium crf 26 1280x720"
    assert answer["recommendation"]["energy_estimated"] is True


def test_nothing_meets_says_what_failed(results: Path) -> None:
    done = run(results, "--vmaf", "96", "--min-fps", "125")
    assert done.returncode == 0, done.stderr
    assert "Nothing meets the target" in done.stdout and "below the 125 fps required" in done.stdout


@pytest.mark.parametrize(("args", "message"), [
    (["--vmaf", "93", "--minimize", "joy"], "--minimize joy: choose one of energy, cost, co2, time, bitrate"),
    (["--vmaf", "93", "--realtime", "--min-fps", "30"], "--realtime and --min-fps both set"),
    (["--vmaf", "93", "--minimize", "co2"], "FFWATT_CO2_G_PER_KWH"),
])
def test_errors_are_one_line(results: Path, args: list[str], message: str) -> None:
    done = run(results, *args)
    assert done.returncode == 2 and message in done.stderr and "Traceback" not in done.stderr
