"""The HTML report, the walkthrough notebook and the CLI command, on a small real results tree."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

import analysis
from analysis.report import write_report
from analysis.synthetic import synthetic_rows, write_synthetic_run
from ffwatt.errors import ResultsError
from ffwatt.results import write_job_row
from ffwatt.schema import JobRow
from ffwatt.settings import REPO

NOTEBOOK = REPO / "analysis" / "notebooks" / "walkthrough.ipynb"


@pytest.fixture
def results_dir(tmp_path: Path) -> Path:
    """2 encoders × 4 CRFs × 2 repetitions (libx265's energy estimated), one 3-point curve,
    one failed job and a second run to compare with: JobRows through write_job_row."""
    root = tmp_path / "results"
    write_synthetic_run(root, campaign="demo", run_id="run-old", seed=1)
    write_synthetic_run(root, campaign="demo", run_id="run-new", seed=2)
    for row in synthetic_rows(campaign="demo", run_id="run-new", encoders={"libsvtav1": "8"},
                              crfs=(25, 32, 39), repetitions=1, seed=3):
        write_job_row(root, row)
    started = datetime(2026, 1, 2, tzinfo=UTC)
    write_job_row(root, JobRow(
        campaign="demo", run_id="run-new", job_id="failed-1", config_id="cfg-failed", repetition=1, node="node-a",
        input_name="clip-720p", encoder="libx264", preset="medium", rate_control="cbr", target_bitrate_kbps=1500,
        status="failed", error="transcode: exit 1", attempts=1, started_at=started,
        ended_at=started + timedelta(seconds=1),
    ))
    return root


def _text(html: str) -> str:
    return re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", re.sub(r"src='data:[^']*'", "", html)))


def test_report_is_one_self_contained_html_file(results_dir: Path, tmp_path: Path) -> None:
    path = write_report(results_dir, "run-new", compare_run_id="run-old", out=tmp_path / "r.html")
    html = path.read_text(encoding="utf-8")
    assert path == tmp_path / "r.html"
    images = re.findall(r"src='data:image/png;base64,([A-Za-z0-9+/=]+)'", html)
    assert len(images) >= 5
    assert not re.search(r"(src|href)=['\"]https?:", html)  # nothing fetched from a server
    text = _text(html)
    assert "Bjøntegaard" in text and "BD-rate % (PCHIP)" in text and "BD-rate % (cubic)" in text
    assert "BD-energy" in text
    assert "libx264 medium crf" in text and "libx265 medium crf" in text
    assert "has 3 usable points; BD needs at least 4" in text  # the 3-point svtav1 curve, with why
    assert "estimated" in text and "have estimated energy" in text
    assert "Synthetic CPU 9000" in text  # node facts from _run.json
    assert "CV MAPE %" in text
    assert "Compared with run run-old" in text


def test_report_latest_and_default_path(results_dir: Path) -> None:
    path = write_report(results_dir, "latest")
    assert path == results_dir / "_reports" / "report-demo-run-new.html" and path.exists()
    # The report inside the tree must not break reading it, nor change which run is latest.
    assert len(analysis.load_results(results_dir)) > 0
    assert analysis.resolve_run(results_dir) == ("demo", "run-new")
    assert write_report(results_dir, "latest").exists()


def test_cli_report_command(results_dir: Path, tmp_path: Path) -> None:
    from tests.conftest import ffwatt

    out = tmp_path / "cli.html"
    done = ffwatt("report", "run-new", "--compare", "run-old", "--out", str(out),
                  env={"FFWATT_RESULTS_DIR": str(results_dir), "COLUMNS": "300"})
    assert done.returncode == 0, done.stderr
    assert str(out) in done.stdout.replace("\n", "") and out.exists()


def test_walkthrough_notebook_executes(results_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    nbformat = pytest.importorskip("nbformat")
    nbclient = pytest.importorskip("nbclient")
    pytest.importorskip("ipykernel")
    # A kernelspec named python3 that runs THIS interpreter, first on JUPYTER_PATH, so a
    # user-level python3 kernel elsewhere can't be picked instead.
    spec = tmp_path / "jupyter" / "kernels" / "python3"
    spec.mkdir(parents=True)
    (spec / "kernel.json").write_text(json.dumps({
        "argv": [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"],
        "display_name": "Python 3 (ffwatt tests)", "language": "python",
    }))
    monkeypatch.setenv("JUPYTER_PATH", str(tmp_path / "jupyter"))
    monkeypatch.setenv("FFWATT_RESULTS_DIR", str(results_dir))
    monkeypatch.setenv("PYTHONPATH", str(REPO))
    monkeypatch.setenv("MPLBACKEND", "Agg")
    nb = nbformat.read(NOTEBOOK, as_version=4)
    (parameters,) = [c for c in nb.cells if "parameters" in c.metadata.get("tags", [])]
    parameters.source = "campaign = 'demo'\nrun = 'latest'"  # as a reader, or `papermill -p campaign demo`
    nbclient.NotebookClient(nb, kernel_name="python3", timeout=180,
                            resources={"metadata": {"path": str(tmp_path)}}).execute()
    errors = [o for c in nb.cells if c.cell_type == "code" for o in c.outputs if o.output_type == "error"]
    assert not errors
    printed = "".join(o.get("text", "") for c in nb.cells if c.cell_type == "code" for o in c.outputs)
    assert "campaign demo, run run-new" in printed and "estimated energy" in printed
    assert "samples (source: local)" in printed  # one job's series, beside its row
    assert _nan_in(nb) == []  # a figure a run lacks reads "-", never NaN


def _nan_in(nb: Any) -> list[str]:
    """Every text a notebook's cells show (printed, or a table's text and HTML) that has NaN in it."""
    shown = [o.get("text", "") for c in nb.cells if c.cell_type == "code" for o in c.outputs]
    shown += [o.get("data", {}).get(kind, "") for c in nb.cells if c.cell_type == "code" for o in c.outputs
              for kind in ("text/plain", "text/html")]
    return [text[:200] for text in shown if re.search(r"\bnan\b", text, re.IGNORECASE)]


def test_walkthrough_runs_with_jupyter_nbconvert_from_a_fresh_clone(tmp_path: Path) -> None:
    """`jupyter nbconvert --execute` wasn't there after `make deps`; the notebook looked for results/ beside
    itself, took the newest run of any campaign and printed "nan J ... gap +nan %". Here: the real command,
    started elsewhere, with no results at all (a fresh clone): it walks through a labelled synthetic run."""
    jupyter = Path(sys.executable).with_name("jupyter")
    empty = tmp_path / "no-results"
    out = tmp_path / "executed.ipynb"
    env = {k: v for k, v in os.environ.items() if k != "FFWATT_RESULTS_DIR"} | {
        "FFWATT_RESULTS_DIR": str(empty), "MPLBACKEND": "Agg"}
    done = subprocess.run([str(jupyter), "nbconvert", "--to", "notebook", "--execute", str(NOTEBOOK),
                           "--output", out.name, "--output-dir", str(tmp_path)],
                          cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    import nbformat

    nb = nbformat.read(out, as_version=4)
    printed = "".join(o.get("text", "") for c in nb.cells if c.cell_type == "code" for o in c.outputs)
    assert f"No run of campaign 'quick' under {empty} (make demo makes one)" in printed
    assert "SHOWING A SYNTHETIC EXAMPLE RUN: made-up rows to walk through, not measurements." in printed
    assert "samples (source: local)" in printed and _nan_in(nb) == []


def test_a_notebook_finds_the_repositorys_results_wherever_its_kernel_starts(tmp_path: Path,
                                                                              monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("FFWATT_RESULTS_DIR", raising=False)
    monkeypatch.chdir(tmp_path)  # Jupyter starts the kernel in the notebook's folder, not the repository's
    assert analysis.notebook_results_dir() == REPO / "results"
    monkeypatch.setenv("FFWATT_RESULTS_DIR", str(tmp_path / "mine"))
    assert analysis.notebook_results_dir() == tmp_path / "mine"


def test_notebook_is_what_the_generator_writes() -> None:
    sys.path.insert(0, str(NOTEBOOK.parent))
    try:
        import make_walkthrough
    finally:
        sys.path.pop(0)
    import nbformat

    stored = nbformat.read(NOTEBOOK, as_version=4)
    assert [c.source for c in stored.cells] == [c.source for c in make_walkthrough.build().cells]


def test_public_surface_and_no_prefect() -> None:
    assert sorted(analysis._WHERE) == sorted(analysis.__all__)
    for name in analysis.__all__:
        assert hasattr(analysis, name), name
    code = ("import sys, analysis, analysis.report, analysis.synthetic; "
            "bad = sorted(m for m in sys.modules if m.split('.')[0] in ('prefect', 'flows', 'tasks')); "
            "print(bad); sys.exit(1 if bad else 0)")
    result = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr


def test_the_report_shows_every_job_whose_series_disagree_with_its_row(tmp_path: Path) -> None:
    from analysis.synthetic import synthetic_series
    from ffwatt.series import cross_check, series_table, write_series

    root = tmp_path / "results"
    rows = synthetic_rows(campaign="long", run_id="r-long", encoders={"libx264": "medium"}, crfs=(22, 27, 32),
                          frames=3000, repetitions=1, estimated_encoders=())
    assert all(row.wall_s >= 30 for row in rows)
    series = synthetic_series(rows)
    for i, row in enumerate(rows):
        if i == 1:  # the row says 5 % more than its node's counters gained
            row = row.model_copy(update={"energy_j": row.energy_j * 1.05})  # noqa: PLW2901
        write_series(root, row.campaign, series_table(series[row.job_id], run_id=row.run_id, job_id=row.job_id,
                                                      node=row.node, source="local"))
        write_job_row(root, row.model_copy(update=cross_check(row, series[row.job_id], "local").model_dump()))
    text = _text(write_report(root, "latest", out=tmp_path / "long.html").read_text(encoding="utf-8"))
    assert "1 of 3 jobs of 30 s or more: series energy and row energy differ by more than 2%" in text
    warning = text[text.index("1 of 3 jobs"):text.index("Series energy: what")]
    assert "libx264 medium crf 27 1280x720" in warning
    (gap,) = re.findall(r"(-?\d+\.\d+) local", warning)
    assert -5.5 < float(gap) < -4.5  # 1/1.05 - 1, give or take the 1 Hz samples' interpolation
    assert "libx264 medium crf 22" not in warning
    assert "Power over time, per job" in write_report(root, "latest", out=tmp_path / "l2.html").read_text()


def test_quality_over_time_draws_one_jobs_frames_on_its_power_axis(tmp_path: Path) -> None:
    """Frames written for two synthetic jobs, one with a dip: the report picks the job whose 5th percentile
    is lowest (or the one asked for) and draws its frames over the encode, beside its 1 Hz power."""
    import numpy as np

    from analysis.frames import load_frames
    from analysis.synthetic import synthetic_rows, synthetic_series
    from ffwatt.frames import FrameScores, frames_table, write_frames
    from ffwatt.series import series_table, write_series

    root = tmp_path / "results"
    rows = synthetic_rows(campaign="q", run_id="run-q", crfs=(24, 34), repetitions=1, encoders={"libx264": "medium"})
    series = synthetic_series(rows)
    dips = {rows[0].job_id: 0.0, rows[1].job_id: 40.0}
    for row in rows:
        count = int(row.frames or 0)
        vmaf = np.full(count, 90.0)
        vmaf[count // 2: count // 2 + 10] -= dips[row.job_id]  # ten bad frames mid-clip
        frames = FrameScores(frame=list(range(count)), pts_s=list(np.arange(count) / 30.0), vmaf=list(vmaf))
        write_frames(root, row.campaign, row.run_id, frames_table(frames, job_id=row.job_id))
        write_series(root, row.campaign, series_table(series[row.job_id], run_id=row.run_id, job_id=row.job_id,
                                                      node=row.node, source="local"))
        write_job_row(root, row.model_copy(update={
            "vmaf": float(vmaf.mean()), "vmaf_p5": float(np.percentile(vmaf, 5)), "vmaf_min": float(vmaf.min()),
            "vmaf_model": "vmaf_v0.6.1", "quality_frames": count}))
    worst = rows[1]
    placed = load_frames(root, run_id="run-q", job_id=worst.job_id)
    # 90 frames at 30 fps are 3 s of video encoded in wall_s: the frame at 1.5 s sits halfway through the encode.
    halfway = placed[placed["frame"] == 45]["t_s"].iloc[0]
    assert halfway == pytest.approx(1.5 * (worst.wall_s or 0) / 3.0)

    html = write_report(root, "run-q", out=tmp_path / "q.html").read_text(encoding="utf-8")
    text = _text(html)
    assert "Quality as viewers see it" in text
    assert f"Job {worst.job_id} (the run's lowest 5th-percentile vmaf" in text
    assert re.search(r"<img alt='clip-720p libx264 medium crf 34 1280x720 #1: vmaf per frame and node power' "
                     r"src='data:image/png;base64,", html)
    chosen = _text(write_report(root, "run-q", out=tmp_path / "c.html", job_id=rows[0].job_id).read_text())
    assert f"Job {rows[0].job_id} (chosen;" in chosen
    with pytest.raises(ResultsError, match="job 'nope' isn't in run run-q"):
        write_report(root, "run-q", out=tmp_path / "n.html", job_id="nope")


@pytest.mark.skipif(not (shutil.which("chromium") and shutil.which("chromedriver")),
                    reason="needs Debian's chromium and chromium-driver (make test installs them as root)")
def test_the_summary_fits_the_page_at_800_and_1400_px(results_dir: Path, tmp_path: Path) -> None:
    """The summary table was 1277 px wide in an 1100 px column: cut off at 1400 px, half off-screen at 800."""
    from selenium import webdriver
    from selenium.webdriver.chrome.options import Options
    from selenium.webdriver.chrome.service import Service

    path = write_report(results_dir, "run-new", out=tmp_path / "r.html")
    options = Options()
    options.binary_location = shutil.which("chromium") or "chromium"
    for argument in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                     "--no-first-run", f"--user-data-dir={tmp_path / 'profile'}"):
        options.add_argument(argument)
    browser = webdriver.Chrome(options=options, service=Service(shutil.which("chromedriver")))
    measure = """
        const heading = [...document.querySelectorAll('h2')].find(h => h.textContent === 'Summary per configuration');
        const tables = [];
        for (let e = heading.nextElementSibling; e && e.tagName !== 'H2'; e = e.nextElementSibling) {
            e.querySelectorAll('table').forEach(t => tables.push({right: t.getBoundingClientRect().right,
                                                                  columns: t.rows[0].cells.length}));
        }
        return {page: document.documentElement.scrollWidth, view: document.documentElement.clientWidth, tables};"""
    try:
        for width in (800, 1400):
            browser.set_window_size(width, 1000)
            browser.get(path.as_uri())
            seen = browser.execute_script(measure)
            assert seen["page"] <= seen["view"], (width, seen)  # nothing runs off the page
            assert len(seen["tables"]) == 2, seen  # what each configuration did, and what it cost
            assert all(t["right"] <= seen["view"] for t in seen["tables"]), (width, seen)  # each in full
            browser.save_screenshot(str(tmp_path / f"report-{width}.png"))
    finally:
        browser.quit()
