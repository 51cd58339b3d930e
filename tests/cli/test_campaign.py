from __future__ import annotations

import subprocess
from pathlib import Path

import yaml

from tests.conftest import REPO, ffwatt


def run(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return ffwatt(*args, cwd=cwd, env={"PATH": "/usr/bin:/bin"})  # FFmpeg is found without a PATH to it


def test_validate_accepts_the_demo_campaign():
    done = run("campaign", "validate", str(REPO / "deployments/campaigns/quick.yaml"))
    assert done.returncode == 0, done.stderr
    assert "campaign 'quick': 17 jobs" in done.stdout


def test_validate_refuses_a_typo_without_a_traceback(tmp_path: Path):
    data = yaml.safe_load((REPO / "deployments/campaigns/quick.yaml").read_text())
    data["matrix"]["encoders"][0]["presets"] = ["veryfats"]
    bad = tmp_path / "bad.yaml"
    bad.write_text(yaml.safe_dump(data))
    done = run("campaign", "validate", str(bad))
    assert done.returncode == 2
    assert "'veryfats' is not a preset of libx264" in done.stderr and "Traceback" not in done.stderr


def test_validate_refuses_an_encoder_this_build_lacks(tmp_path: Path):
    data = yaml.safe_load((REPO / "deployments/campaigns/quick.yaml").read_text())
    data["matrix"]["encoders"].append({"name": "libfoo264"})
    bad = tmp_path / "bad.yaml"
    bad.write_text(yaml.safe_dump(data))
    done = run("campaign", "validate", str(bad))
    assert done.returncode == 2 and "libfoo264 not available" in done.stderr and "libx265" in done.stderr


def test_expand_lists_every_job():
    done = run("campaign", "expand", str(REPO / "deployments/campaigns/quick.yaml"))
    assert done.returncode == 0 and "17 jobs" in done.stdout
    assert done.stdout.count("libx264") == 9 and "cbr 1500k" in done.stdout


def test_results_show_without_results_says_what_to_do(tmp_path: Path):
    done = run("results", "show", cwd=tmp_path)
    assert done.returncode == 2 and "no runs under" in done.stderr
