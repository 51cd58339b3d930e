"""``ffwatt compare``: the change per configuration, and the exit status CI relies on."""

from __future__ import annotations

import json
import subprocess
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from analysis.synthetic import write_synthetic_run
from tests.conftest import ffwatt


@pytest.fixture(scope="module")
def results(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Two runs, 5 repetitions each; libx265 draws 10 % more power in the second, FFmpeg changed."""
    root = tmp_path_factory.mktemp("compare") / "results"
    write_synthetic_run(root, campaign="reg", run_id="before", repetitions=5, seed=101)
    write_synthetic_run(root, campaign="reg", run_id="after", repetitions=5, seed=201,
                        start=datetime(2026, 1, 2, tzinfo=UTC) + timedelta(hours=1), energy_factor={"libx265": 1.1},
                        facts={"ffmpeg_version": "n8.0"})
    return root


def run(results: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return ffwatt("compare", *args, env={"FFWATT_RESULTS_DIR": str(results), "COLUMNS": "250"})


def test_fail_on_regression_exits_1_only_over_the_threshold(results: Path) -> None:
    over = run(results, "before", "after", "--fail-on-regression", "5")
    assert over.returncode == 1, over.stderr
    assert "regression:" in over.stderr and "libx265 medium crf 22" in over.stderr
    assert "n7.1-synthetic" in over.stdout and "n8.0" in over.stdout  # the node change beside
    under = run(results, "before", "after", "--fail-on-regression", "50")
    assert under.returncode == 0, under.stderr
    assert "no significant regression over 50 %" in under.stdout.replace("\n", " ")
    # Only VMAF watched: libx265's joules don't count.
    assert run(results, "before", "after", "--fail-on-regression", "5", "--metric", "vmaf").returncode == 0


def test_json_output_and_errors_as_one_line(results: Path) -> None:
    done = run(results, "before", "latest", "--output", "json")
    assert done.returncode == 0, done.stderr
    data = json.loads(done.stdout)
    assert data["candidate"]["run_id"] == "after" and len(data["configs"]) == 8
    assert data["test"].startswith("Welch")
    x265 = [m for c in data["configs"] if "libx265" in c["config"] for m in c["metrics"]
            if m["metric"] == "joules_per_frame"]
    assert all(m["verdict"] == "worse" and m["estimated"] for m in x265)
    bad = run(results, "before", "nope")
    assert bad.returncode == 2 and "no run 'nope'" in bad.stderr and "Traceback" not in bad.stderr
    bad = run(results, "before", "after", "--metric", "psnr")
    assert bad.returncode == 2 and "--metric psnr" in bad.stderr


def test_latest_is_never_compared_with_itself(results: Path) -> None:
    """`compare latest` compared the latest run with itself, and said nothing."""
    done = run(results, "latest", "--output", "json")
    assert done.returncode == 0, done.stderr
    data = json.loads(done.stdout)
    assert (data["baseline"]["run_id"], data["candidate"]["run_id"]) == ("before", "after")
    assert "with its previous run before" in done.stderr
    same = run(results, "after", "after")
    assert same.returncode == 2 and "both run after of campaign reg" in same.stderr
    assert "a run compared with itself shows no change" in same.stderr


def test_latest_without_an_earlier_run_says_so(tmp_path: Path) -> None:
    root = tmp_path / "results"
    write_synthetic_run(root, campaign="once", run_id="only", repetitions=2, seed=5)
    done = run(root, "latest")
    assert done.returncode == 2 and "there is no earlier complete run of it" in done.stderr
