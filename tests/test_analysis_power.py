"""The power model: fits, reports cross-validated error, refuses to extrapolate silently."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from analysis.power import fit_power_model
from ffwatt.errors import ExtrapolationError, NotComputable


def _jobs(n: int = 120, seed: int = 0) -> pd.DataFrame:
    """Watts depend on encoder, preset and log pixels; J/frame on the same, multiplicatively."""
    rng = np.random.default_rng(seed)
    encoder = rng.choice(["libx264", "libx265"], n)
    preset = rng.choice(["fast", "slow"], n)
    size = rng.choice([0, 1, 2], n)
    width, height = np.array([640, 1280, 1920])[size], np.array([360, 720, 1080])[size]
    kbps = rng.uniform(500, 8000, n)
    watts = 10 + 5 * (encoder == "libx265") + 4 * (preset == "slow") + 2 * np.log(width * height / 230400)
    watts = watts * rng.normal(1, 0.01, n)
    jpf = 0.01 * (width * height / 230400) * (1 + (preset == "slow")) * rng.normal(1, 0.01, n)
    frames = 300
    energy = jpf * frames
    return pd.DataFrame({
        "status": "ok", "node": "n1", "encoder": encoder, "preset": preset, "output_width": width,
        "output_height": height, "input_fps": 30.0, "bitrate_kbps": kbps, "frames": frames,
        "energy_j": energy, "wall_s": energy / watts, "energy_source": "rapl",
    })


def test_fit_reports_cross_validated_error() -> None:
    model = fit_power_model(_jobs(), k=5)
    scores = {s.target: s for s in model.cv}
    assert set(scores) == {"avg_power_w", "joules_per_frame"}
    assert all(s.folds == 5 for s in model.cv)
    assert scores["avg_power_w"].mape_pct < 5 and scores["avg_power_w"].rmse < 1.5
    assert scores["joules_per_frame"].mape_pct < 5
    assert model.n_rows == 120 and not model.energy_estimated and model.nodes == ("n1",)
    assert "encoder=libx265" in set(model.coefficients()["feature"])


def test_predicts_inside_the_fitted_range() -> None:
    model = fit_power_model(_jobs())
    out = model.predict({"encoder": "libx265", "preset": "slow", "output_width": 1280, "output_height": 720,
                         "input_fps": 30.0, "bitrate_kbps": 3000.0, "frames": 300})
    expected_watts = 10 + 5 + 4 + 2 * np.log(4)
    assert out["avg_power_w"].iloc[0] == pytest.approx(expected_watts, rel=0.05)
    assert out["energy_j"].iloc[0] == pytest.approx(0.01 * 4 * 2 * 300, rel=0.05)
    assert not out["extrapolated"].iloc[0]


@pytest.mark.parametrize("change, reason", [
    ({"encoder": "libsvtav1"}, "encoder 'libsvtav1' never seen"),
    ({"preset": "veryslow"}, "preset 'libx264/veryslow' never seen"),
    ({"output_width": 3840, "output_height": 2160}, "output_pixels"),
    ({"bitrate_kbps": 50_000.0}, "bitrate_kbps"),
    ({"input_fps": 60.0}, "input_fps"),
])
def test_refuses_to_extrapolate(change: dict[str, object], reason: str) -> None:
    model = fit_power_model(_jobs())
    job = {"encoder": "libx264", "preset": "fast", "output_width": 1280, "output_height": 720,
           "input_fps": 30.0, "bitrate_kbps": 3000.0, **change}
    with pytest.raises(ExtrapolationError, match=reason):
        model.predict(job)
    flagged = model.predict(job, allow_extrapolation=True)
    assert flagged["extrapolated"].iloc[0] and reason in flagged["extrapolation_reason"].iloc[0]


def test_estimated_training_energy_is_flagged_and_can_be_excluded() -> None:
    jobs = _jobs()
    jobs.loc[:9, "energy_source"] = "estimated"
    model = fit_power_model(jobs)
    assert model.energy_estimated
    assert model.predict(jobs.iloc[[20]])["energy_estimated"].iloc[0]
    measured_only = fit_power_model(jobs, exclude_estimated=True)
    assert not measured_only.energy_estimated and measured_only.n_rows == 110


def test_too_few_rows_is_not_computable() -> None:
    with pytest.raises(NotComputable, match="at least 3"):
        fit_power_model(_jobs().head(2))
