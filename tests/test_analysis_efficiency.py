"""Efficiency math, estimated labelling, repetition statistics, Pareto fronts, sample windows."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
from scipy import stats as scipy_stats

from analysis.efficiency import config_efficiency, job_efficiency
from analysis.pareto import pareto_front, pareto_mask
from analysis.samples import window_means
from analysis.stats import compare, mean_ci, repetition_stats, t_critical, welch

BASE = dict(input_name="clip", encoder="libx264", preset="medium", rate_control="crf", crf=23, qp=None,
            target_bitrate_kbps=None, output_width=100, output_height=100, input_fps=25.0, node="n1")


def _frame(**extra_columns: list[object]) -> pd.DataFrame:
    rows = [
        dict(BASE, config_id="c1", repetition=1, status="ok", energy_j=10.0, frames=100, wall_s=2.0,
             vmaf=90.0, bitrate_kbps=1000.0, encode_fps=50.0, energy_source="rapl"),
        dict(BASE, config_id="c1", repetition=2, status="ok", energy_j=12.0, frames=100, wall_s=2.0,
             vmaf=90.0, bitrate_kbps=1000.0, encode_fps=50.0, energy_source="estimated"),
        dict(BASE, config_id="c2", crf=30, repetition=1, status="failed", energy_j=5.0, frames=None,
             wall_s=None, vmaf=None, bitrate_kbps=None, encode_fps=None, energy_source=None),
    ]
    frame = pd.DataFrame(rows)
    for name, values in extra_columns.items():
        frame[name] = values
    # read_results hands out nullable integers; the analysis must cope with them.
    frame["frames"] = frame["frames"].astype("Int64")
    return frame


def test_job_efficiency_exact_numbers() -> None:
    jobs = job_efficiency(_frame())
    first = jobs.iloc[0]
    assert first["joules_per_frame"] == pytest.approx(0.1)
    assert first["frames_per_joule"] == pytest.approx(10.0)
    assert first["output_pixels"] == pytest.approx(1e6)
    assert first["pixels_per_joule"] == pytest.approx(1e5)
    assert first["avg_power_w"] == pytest.approx(5.0)
    assert first["vmaf_per_joule"] == pytest.approx(9.0)
    assert first["qoe_pixels_per_joule"] == pytest.approx(9e4)
    assert first["kbps_per_watt"] == pytest.approx(200.0)
    assert first["video_hours"] == pytest.approx(100 / 25 / 3600)
    assert list(jobs["energy_estimated"]) == [False, True, False]
    # A failed job's partial energy reading feeds no figure.
    assert math.isnan(jobs.iloc[2]["energy_j"])
    # Optional columns absent -> their figures absent, no crash.
    for column in ("net_power_w", "cost_per_video_hour", "co2_g_per_video_hour"):
        assert column not in jobs.columns


def test_optional_columns_when_present() -> None:
    jobs = job_efficiency(_frame(idle_power_w=[1.0, 1.0, None], cost=[0.01, 0.01, None],
                                 co2_g=[2.0, 2.0, None]))
    assert jobs.iloc[0]["net_power_w"] == pytest.approx(4.0)
    assert jobs.iloc[0]["cost_per_video_hour"] == pytest.approx(9.0)
    assert jobs.iloc[0]["co2_g_per_video_hour"] == pytest.approx(1800.0)
    with_net = job_efficiency(_frame(net_energy_j=[6.0, 8.0, None]))
    assert with_net.iloc[0]["net_power_w"] == pytest.approx(3.0)


def test_config_efficiency_carries_estimated_label_and_ci() -> None:
    configs = config_efficiency(_frame()).set_index("config_id")
    c1 = configs.loc["c1"]
    assert c1["n"] == 2 and c1["n_failed"] == 0
    assert c1["energy_j"] == pytest.approx(11.0)
    assert c1["energy_j_std"] == pytest.approx(math.sqrt(2))
    half = 12.706204736174698 * math.sqrt(2) / math.sqrt(2)  # t(0.975, 1 dof)
    assert c1["energy_j_ci_low"] == pytest.approx(11.0 - half)
    assert c1["energy_j_ci_high"] == pytest.approx(11.0 + half)
    assert c1["joules_per_frame"] == pytest.approx(0.11)
    assert bool(c1["energy_estimated"]) is True
    assert c1["energy_sources"] == "estimated+rapl"
    c2 = configs.loc["c2"]
    assert c2["n"] == 0 and c2["n_failed"] == 1 and not c2["energy_estimated"]


def test_measured_only_config_is_not_labelled_estimated() -> None:
    frame = _frame()
    frame.loc[1, "energy_source"] = "rapl"
    configs = config_efficiency(frame).set_index("config_id")
    assert not configs.loc["c1", "energy_estimated"]
    assert configs.loc["c1", "energy_sources"] == "rapl"


def test_mean_ci_and_t_values() -> None:
    assert t_critical(2) == pytest.approx(12.7062, abs=1e-4)
    assert t_critical(10) == pytest.approx(2.2622, abs=1e-4)
    mean, std, low, high, n = mean_ci([1.0, 2.0, 3.0])
    assert (mean, std, n) == (2.0, 1.0, 3)
    assert (low, high) == pytest.approx((2 - 4.302653 / math.sqrt(3), 2 + 4.302653 / math.sqrt(3)), abs=1e-6)
    mean, std, low, high, n = mean_ci([5.0, float("nan")])
    assert mean == 5.0 and n == 1 and math.isnan(low)


def _stats(groups: dict[str, list[float]]) -> pd.DataFrame:
    frame = pd.DataFrame([{"config_id": k, "x": v} for k, values in groups.items() for v in values])
    return repetition_stats(frame, ["x"], keys=["config_id"]).set_index("config_id")


def test_compare_is_welchs_test() -> None:
    groups = {"a": [1.0, 1.1, 0.9], "b": [5.0, 5.1, 4.9], "c": [1.0, 3.0, 2.0], "d": [7.0],
              "e": [1.0, 1.2, 1.1, 0.95, 1.05], "f": [1.3, 1.25, 1.4, 1.2]}
    stats = _stats(groups)
    result = compare(stats.loc["a"], stats.loc["b"], "x")
    assert result.different and result.verdict == "a lower"
    assert compare(stats.loc["b"], stats.loc["a"], "x").verdict == "a higher"
    overlapping = compare(stats.loc["a"], stats.loc["c"], "x")
    assert not overlapping.different and overlapping.verdict == "not different"
    single = compare(stats.loc["b"], stats.loc["d"], "x")
    assert not single.different and single.test is None and single.verdict.startswith("cannot decide")
    # Against scipy's own Welch test on the raw values (an independent implementation).
    for x, y in (("e", "f"), ("a", "c"), ("b", "e")):
        reference = scipy_stats.ttest_ind(groups[x], groups[y], equal_var=False)
        mine = compare(stats.loc[x], stats.loc[y], "x")
        assert mine.test is not None
        assert mine.test.p_value == pytest.approx(reference.pvalue, rel=1e-9)
        assert mine.test.t == pytest.approx(reference.statistic, rel=1e-9)
        low, high = reference.confidence_interval(0.95)
        assert mine.test.ci == pytest.approx((low, high), rel=1e-9)
    # Intervals that overlap while the difference is significant: Welch says different.
    e, f = compare(stats.loc["e"], stats.loc["f"], "x"), stats.loc["f"]
    assert e.a_ci[1] > f["x_ci_low"] and e.different and e.verdict == "a lower"
    assert e.change_pct == pytest.approx((1.06 - 1.2875) / 1.2875 * 100)


def test_welch_without_spread_is_certain() -> None:
    assert welch(10.0, 0.0, 3, 10.0, 0.0, 3).p_value == 1.0  # type: ignore[union-attr]
    assert welch(10.0, 0.0, 3, 11.0, 0.0, 3).p_value == 0.0  # type: ignore[union-attr]
    assert welch(10.0, 1.0, 1, 11.0, 1.0, 3) is None


def test_pareto_2d_exact_front() -> None:
    points = pd.DataFrame({
        "name": ["p0", "p1", "p2", "p3", "p4", "p5", "p6"],
        "energy_j": [1.0, 2.0, 2.0, 3.0, 4.0, 1.0, np.nan],
        "vmaf": [80.0, 90.0, 85.0, 90.0, 95.0, 80.0, 99.0],
        "input_name": "clip",
    })
    front = pareto_front(points, {"energy_j": "min", "vmaf": "max"})
    # p2 and p3 are dominated by p1; p0/p5 tie (both kept); p6 has no energy (never on a front).
    assert sorted(front.loc[front["pareto"], "name"]) == ["p0", "p1", "p4", "p5"]


def test_pareto_3d_and_per_input() -> None:
    points = pd.DataFrame({
        "name": ["a", "b", "c", "d", "e"],
        "input_name": ["x", "x", "x", "x", "y"],
        "energy_j": [1.0, 2.0, 2.0, 3.0, 9.0],
        "vmaf": [80.0, 90.0, 90.0, 85.0, 10.0],
        "encode_fps": [10.0, 10.0, 20.0, 30.0, 1.0],
    })
    front = pareto_front(points)  # energy min, vmaf max, fps max, per input
    # b is dominated by c (same energy and VMAF, slower); d is fastest so it stays in 3-D;
    # e is alone on its input, so it is on that input's front however bad it is.
    assert sorted(front.loc[front["pareto"], "name"]) == ["a", "c", "d", "e"]
    across = pareto_front(points, {"energy_j": "min", "vmaf": "max"}, by=())
    assert sorted(across.loc[across["pareto"], "name"]) == ["a", "b", "c"]


def test_pareto_mask_chunking_matches_brute_force() -> None:
    rng = np.random.default_rng(1)
    values = rng.random((700, 3))
    mask = pareto_mask(values, ["min", "max", "max"])
    signed = values * np.array([-1, 1, 1])
    brute = [not any(np.all(o >= p) and np.any(o > p) for o in signed) for p in signed]
    assert mask.tolist() == brute


def test_window_means_per_job_and_node() -> None:
    t0 = pd.Timestamp("2026-01-01", tz="UTC")
    samples = pd.DataFrame({
        "timestamp": [t0 + pd.Timedelta(seconds=s) for s in range(10)] * 2,
        "node": ["n1"] * 10 + ["n2"] * 10,
        "metric": "power_w",
        "value": [float(s) for s in range(10)] + [100.0] * 10,
    })
    jobs = pd.DataFrame({
        "node": ["n1", "n2", "n1", "n3"],
        "started_at": [t0 + pd.Timedelta(seconds=2), t0, t0 + pd.Timedelta(seconds=20), t0],
        "ended_at": [t0 + pd.Timedelta(seconds=4), t0 + pd.Timedelta(seconds=3),
                     t0 + pd.Timedelta(seconds=30), t0 + pd.Timedelta(seconds=5)],
    })
    out = window_means(jobs, samples, metric="power_w")
    assert out["power_w_mean"].iloc[0] == pytest.approx(3.0)  # samples 2, 3, 4 (inclusive)
    assert out["power_w_mean"].iloc[1] == pytest.approx(100.0)
    assert out["power_w_samples"].tolist() == [3, 4, 0, 0]
    assert np.isnan(out["power_w_mean"].iloc[2]) and np.isnan(out["power_w_mean"].iloc[3])
