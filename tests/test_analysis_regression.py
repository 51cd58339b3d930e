"""Run against run on generated runs with known answers: a configuration made 10 % worse is
flagged, noise within the intervals is not, one repetition can't decide, node changes show."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from analysis.regression import campaign_history, compare_runs, previous_run
from analysis.synthetic import write_synthetic_run

DAY = timedelta(days=1)
T0 = datetime(2026, 1, 1, tzinfo=UTC)


def test_ten_percent_worse_is_flagged_and_noise_is_not(tmp_path: Path) -> None:
    """Ten independent pairs of runs, 5 repetitions each, the synthetic generator's noise (about
    3.6 % on joules per frame, 3 % on fps); in the second run of each pair libx265's power is
    1.1×. Every libx265 configuration must come out a significant J/frame regression over 5 %;
    of the 40 unchanged configurations × 4 metrics, at most 2 may (about 0.7 expected by chance:
    Welch at α = 0.05 with the 5 % threshold on top)."""
    flagged, false_alarms = 0, 0
    for seed in range(10):
        root = tmp_path / str(seed)
        write_synthetic_run(root, campaign="reg", run_id="before", repetitions=5, seed=100 + seed)
        write_synthetic_run(root, campaign="reg", run_id="after", repetitions=5, seed=200 + seed, start=T0 + DAY,
                            energy_factor={"libx265": 1.1})
        comparison = compare_runs(root, "before", "after")
        assert len(comparison.configs) == 8 and not comparison.only_in_baseline and not comparison.only_in_candidate
        for change, metric in comparison.regressions(5.0):
            if change.config.split()[1] == "libx265" and metric.metric == "joules_per_frame":
                flagged += 1
                assert 3.0 < (metric.change_pct or 0) < 17.0 and metric.estimated  # libx265's energy is estimated
                assert metric.p_value is not None and metric.p_value < 0.05
            else:
                false_alarms += 1
    assert flagged == 40
    assert false_alarms <= 2


def test_noise_within_the_intervals_is_not_a_regression(tmp_path: Path) -> None:
    write_synthetic_run(tmp_path, campaign="reg", run_id="before", repetitions=3, seed=1)
    write_synthetic_run(tmp_path, campaign="reg", run_id="after", repetitions=3, seed=2, start=T0 + DAY)
    comparison = compare_runs(tmp_path, "before", "after")
    assert comparison.regressions(10.0) == []
    for change in comparison.configs:
        for metric in change.metrics:
            low, high = metric.change_pct_ci
            assert low is not None and high is not None and low <= (metric.change_pct or 0) <= high
            if low < 0 < high:  # the interval of the change holds zero: never called a change
                assert metric.verdict == "no significant change"
    assert "no significant regression over 10 %" in comparison.markdown(10.0)


def test_one_repetition_cannot_decide(tmp_path: Path) -> None:
    write_synthetic_run(tmp_path, campaign="reg", run_id="before", repetitions=1, seed=1)
    write_synthetic_run(tmp_path, campaign="reg", run_id="after", repetitions=1, seed=2, start=T0 + DAY,
                        energy_factor={"libx264": 1.5})
    comparison = compare_runs(tmp_path, "before", "after")
    verdicts = {m.verdict for c in comparison.configs for m in c.metrics}
    assert verdicts == {"cannot decide"}
    assert comparison.regressions(5.0) == [] and len(comparison.undecided()) == 8
    x264 = next(c for c in comparison.configs if "libx264" in c.config).metric("joules_per_frame")
    assert x264 is not None and x264.change_pct is not None and x264.change_pct > 30  # shown, not judged
    assert "single repetition" in comparison.headline(5.0)


def test_what_changed_on_the_node_is_shown_beside(tmp_path: Path) -> None:
    write_synthetic_run(tmp_path, campaign="reg", run_id="before", repetitions=2, seed=1,
                        facts={"ffmpeg_configuration": "--enable-gpl --enable-libx264 --enable-libvmaf",
                               "governor": "performance", "gpu_driver": "550.54"})
    write_synthetic_run(tmp_path, campaign="reg", run_id="after", repetitions=2, seed=2, start=T0 + DAY,
                        facts={"ffmpeg_version": "n8.0", "governor": "powersave", "gpu_driver": "550.54",
                               "ffmpeg_configuration": "--enable-gpl --enable-libx264 --enable-libsvtav1"})
    changes = {f.fact: (f.baseline, f.candidate) for f in compare_runs(tmp_path, "before", "after").node_changes}
    assert changes == {"ffmpeg_version": ("n7.1-synthetic", "n8.0"), "governor": ("performance", "powersave"),
                       "ffmpeg_configuration": ("--enable-libvmaf", "--enable-libsvtav1")}


def test_runs_without_a_shared_node_compare_across_nodes(tmp_path: Path) -> None:
    write_synthetic_run(tmp_path, campaign="reg", run_id="a", repetitions=2, node="box-1", seed=1)
    write_synthetic_run(tmp_path, campaign="reg", run_id="b", repetitions=2, node="box-2", seed=2,
                        facts={"cpu_model": "Other CPU"})
    comparison = compare_runs(tmp_path, "a", "b")
    assert len(comparison.configs) == 8 and {c.node for c in comparison.configs} == {"box-1 → box-2"}
    assert [(f.node_baseline, f.node_candidate, f.fact) for f in comparison.node_changes] == [
        ("box-1", "box-2", "cpu_model")]


def test_previous_run_is_the_newest_earlier_one_on_a_shared_node(tmp_path: Path) -> None:
    for run_id, node, day in (("a", "node-a", 0), ("b", "node-b", 1), ("c", "node-a", 2), ("d", "node-a", 3)):
        write_synthetic_run(tmp_path, campaign="reg", run_id=run_id, node=node, start=T0 + day * DAY, seed=day)
    write_synthetic_run(tmp_path, campaign="other", run_id="e", node="node-a", start=T0 + 2.5 * DAY)
    assert previous_run(tmp_path, "reg", "d") == "c"
    assert previous_run(tmp_path, "reg", "c") == "a"
    assert previous_run(tmp_path, "reg", "b") is None
    assert previous_run(tmp_path, "reg", "a") is None
    history = campaign_history(tmp_path, "reg")
    assert list(history.drop_duplicates("run_id")["run_id"]) == ["a", "b", "c", "d"]
    assert len(history) == 4 * 8 and history["joules_per_frame"].notna().all()


def test_the_report_compares_with_the_same_engine_and_draws_the_history(tmp_path: Path) -> None:
    from analysis.report import write_report

    root = tmp_path / "results"
    write_synthetic_run(root, campaign="reg", run_id="before", repetitions=5, seed=101)
    write_synthetic_run(root, campaign="reg", run_id="after", repetitions=5, seed=201, start=T0 + DAY,
                        energy_factor={"libx265": 1.1}, facts={"kernel": "6.9"})
    html = write_report(root, "after", "before", tmp_path / "r.html").read_text()
    expected = compare_runs(root, "before", "after")
    assert expected.headline() in html.replace("&#x27;", "'")
    for change in expected.configs:
        metric = change.metric("joules_per_frame")
        assert metric is not None and metric.cell() in html
    assert "History of campaign reg" in html and "alt='history'" in html and "6.9" in html


@pytest.mark.parametrize("threshold", [5.0, 50.0])
def test_markdown_names_the_regressions_over_the_threshold(tmp_path: Path, threshold: float) -> None:
    write_synthetic_run(tmp_path, campaign="reg", run_id="before", repetitions=5, seed=101)
    write_synthetic_run(tmp_path, campaign="reg", run_id="after", repetitions=5, seed=201, start=T0 + DAY,
                        energy_factor={"libx265": 1.1})
    text = compare_runs(tmp_path, "before", "after").markdown(threshold)
    if threshold == 5.0:
        assert "significant regression(s) over 5 %" in text and "libx265 medium crf 22" in text
    else:
        assert "no significant regression over 50 %" in text


def test_a_figure_neither_run_measured_is_left_out(tmp_path: Path) -> None:
    from analysis.synthetic import synthetic_rows
    from ffwatt.results import write_job_row

    for run_id, seed in (("before", 1), ("after", 2)):  # campaigns run with `quality: []`
        for row in synthetic_rows(campaign="reg", run_id=run_id, repetitions=3, seed=seed):
            write_job_row(tmp_path, row.model_copy(update={"vmaf": None, "psnr": None, "ssim": None}))
    comparison = compare_runs(tmp_path, "before", "after")
    assert {m.metric for c in comparison.configs for m in c.metrics} == {"joules_per_frame", "encode_fps",
                                                                       "bitrate_kbps"}
    assert comparison.undecided() == []
    assert "no _run.json" in comparison.markdown()  # and says the node facts are unknown
