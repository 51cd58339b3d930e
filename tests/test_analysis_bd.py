"""Bjøntegaard deltas: both fits, against an independent implementation and invariances."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import integrate

from analysis.bd import bd_energy, bd_quality, bd_rate, bd_table
from ffwatt.errors import NotComputable

# The usual 4-point example of the public bjontegaard implementations (anchor R1, test R2).
R1 = [686.76, 309.58, 157.11, 85.95]
PSNR1 = [40.28, 37.18, 34.24, 31.42]
R2 = [893.34, 407.8, 204.93, 112.75]
PSNR2 = [40.39, 37.21, 34.17, 31.24]

# Figures for that example, obtained from analysis.bd and confirmed by the independent
# implementations below (numpy.polynomial fit + scipy.integrate.quad for the cubic; a
# hand-written Fritsch–Carlson PCHIP sampled on 200 001 points + Simpson's rule for PCHIP).
# The brief quoted "≈ 30.7 %, ≈ −1.1 dB" from memory; the cubic fit gives 31.40 %.
EXPECTED = {
    "cubic": {"rate": 31.397, "psnr": -1.1849},
    "pchip": {"rate": 31.380, "psnr": -1.1835},
}


def _ref_cubic_mean_delta(x1, y1, x2, y2) -> float:
    """Mean of (fit2 - fit1) over the overlap: Polynomial.fit (scaled domain) + adaptive quadrature."""
    f1 = np.polynomial.Polynomial.fit(x1, y1, 3)
    f2 = np.polynomial.Polynomial.fit(x2, y2, 3)
    lo, hi = max(min(x1), min(x2)), min(max(x1), max(x2))
    value, _ = integrate.quad(lambda t: f2(t) - f1(t), lo, hi)
    return value / (hi - lo)


def _fritsch_carlson(x, y):
    """Slopes of the shape-preserving PCHIP (same end conditions as SciPy/MATLAB), written out."""
    x, y = np.asarray(x, float), np.asarray(y, float)
    h, delta = np.diff(x), np.diff(y) / np.diff(x)
    d = np.zeros_like(y)
    for k in range(1, len(x) - 1):
        if delta[k - 1] * delta[k] > 0:
            w1, w2 = 2 * h[k] + h[k - 1], h[k] + 2 * h[k - 1]
            d[k] = (w1 + w2) / (w1 / delta[k - 1] + w2 / delta[k])

    def end(h0, h1, m0, m1):
        slope = ((2 * h0 + h1) * m0 - h0 * m1) / (h0 + h1)
        if np.sign(slope) != np.sign(m0):
            return 0.0
        if np.sign(m0) != np.sign(m1) and abs(slope) > abs(3 * m0):
            return 3 * m0
        return slope

    d[0] = end(h[0], h[1], delta[0], delta[1])
    d[-1] = end(h[-1], h[-2], delta[-1], delta[-2])
    return d


def _hermite(x, y, d, t):
    x, y = np.asarray(x, float), np.asarray(y, float)
    k = np.clip(np.searchsorted(x, t) - 1, 0, len(x) - 2)
    h = x[k + 1] - x[k]
    s = (t - x[k]) / h
    h00, h10, h01, h11 = 2 * s**3 - 3 * s**2 + 1, s**3 - 2 * s**2 + s, -2 * s**3 + 3 * s**2, s**3 - s**2
    return h00 * y[k] + h10 * h * d[k] + h01 * y[k + 1] + h11 * h * d[k + 1]


def _ref_pchip_mean_delta(x1, y1, x2, y2) -> float:
    lo, hi = max(min(x1), min(x2)), min(max(x1), max(x2))
    t = np.linspace(lo, hi, 200_001)
    values = []
    for x, y in ((x1, y1), (x2, y2)):
        order = np.argsort(x)
        xs, ys = np.asarray(x, float)[order], np.asarray(y, float)[order]
        values.append(_hermite(xs, ys, _fritsch_carlson(xs, ys), t))
    return integrate.simpson(values[1] - values[0], x=t) / (hi - lo)


REFERENCE = {"cubic": _ref_cubic_mean_delta, "pchip": _ref_pchip_mean_delta}


@pytest.mark.parametrize("method", ["cubic", "pchip"])
def test_worked_example_matches_published_style_figures(method: str) -> None:
    assert bd_rate(R1, PSNR1, R2, PSNR2, method=method) == pytest.approx(EXPECTED[method]["rate"], abs=0.1)
    assert bd_quality(R1, PSNR1, R2, PSNR2, method=method) == pytest.approx(EXPECTED[method]["psnr"], abs=0.01)


@pytest.mark.parametrize("method", ["cubic", "pchip"])
def test_worked_example_matches_independent_implementation(method: str) -> None:
    ref = REFERENCE[method]
    rate = (np.exp(ref(PSNR1, np.log(R1), PSNR2, np.log(R2))) - 1) * 100
    psnr = ref(np.log(R1), PSNR1, np.log(R2), PSNR2)
    assert bd_rate(R1, PSNR1, R2, PSNR2, method=method) == pytest.approx(rate, abs=1e-4)
    assert bd_quality(R1, PSNR1, R2, PSNR2, method=method) == pytest.approx(psnr, abs=1e-5)


@pytest.mark.parametrize("method", ["cubic", "pchip"])
@pytest.mark.parametrize("factor", [1.1, 0.75, 2.0])
def test_scaling_rates_by_k_gives_k_minus_one(method: str, factor: float) -> None:
    scaled = [r * factor for r in R1]
    assert bd_rate(R1, PSNR1, scaled, PSNR1, method=method) == pytest.approx((factor - 1) * 100, abs=0.1)
    assert bd_rate(R1, PSNR1, scaled, PSNR1, method=method) == pytest.approx((factor - 1) * 100, abs=1e-9)


@pytest.mark.parametrize("method", ["cubic", "pchip"])
def test_identical_curves_and_symmetry(method: str) -> None:
    assert bd_rate(R1, PSNR1, R1, PSNR1, method=method) == pytest.approx(0.0, abs=1e-12)
    forward = bd_rate(R1, PSNR1, R2, PSNR2, method=method)
    backward = bd_rate(R2, PSNR2, R1, PSNR1, method=method)
    # Mean log-ratio flips sign: (1 + f)(1 + b) = 1.
    assert (1 + forward / 100) * (1 + backward / 100) == pytest.approx(1.0, abs=1e-12)
    # Shifting quality by +0.5 dB at equal rates gives BD-PSNR = +0.5.
    assert bd_quality(R1, PSNR1, R1, [p + 0.5 for p in PSNR1], method=method) == pytest.approx(0.5, abs=1e-9)


def test_point_order_does_not_matter() -> None:
    for method in ("cubic", "pchip"):
        assert bd_rate(R1[::-1], PSNR1[::-1], R2, PSNR2, method=method) == pytest.approx(
            bd_rate(R1, PSNR1, R2, PSNR2, method=method), abs=1e-9)


def test_bd_energy_is_bd_rate_on_joules() -> None:
    joules1 = [10.0, 7.0, 5.0, 4.0]
    joules2 = [j * 0.8 for j in joules1]
    assert bd_energy(joules1, PSNR1, joules2, PSNR1) == pytest.approx(-20.0, abs=1e-9)


def test_not_computable_is_explained() -> None:
    with pytest.raises(NotComputable, match="at least 4"):
        bd_rate(R1[:3], PSNR1[:3], R2, PSNR2)
    with pytest.raises(NotComputable, match="overlap"):
        bd_rate(R1, PSNR1, R2, [p + 20 for p in PSNR2])
    with pytest.raises(ValueError, match="unknown BD method"):
        bd_rate(R1, PSNR1, R2, PSNR2, method="linear")  # type: ignore[arg-type]


def test_bd_table_between_encoders_says_why_not() -> None:
    import pandas as pd

    rows = []
    for encoder, rates, psnrs in (("a", R1, PSNR1), ("b", R2, PSNR2), ("c", R2[:3], PSNR2[:3])):
        for rate, psnr in zip(rates, psnrs):
            rows.append({"input_name": "clip", "output_width": 1280, "output_height": 720, "encoder": encoder,
                         "preset": "medium", "rate_control": "crf", "bitrate_kbps": rate, "psnr": psnr,
                         "energy_j": rate / 100, "energy_estimated": encoder == "b"})
    table = bd_table(pd.DataFrame(rows), quality="psnr", anchor="a").set_index("test")
    assert table.loc["b medium crf", "bd_rate_pct_cubic"] == pytest.approx(EXPECTED["cubic"]["rate"], abs=0.1)
    assert table.loc["b medium crf", "energy_estimated"]
    assert np.isnan(table.loc["c medium crf", "bd_rate_pct"])
    assert "at least 4" in table.loc["c medium crf", "note"]


# A second, published implementation as an oracle: the `bjontegaard` package of
# FAU-LMS (whose PCHIP variant reproduces the JCT-VC CTC Excel sheet), on the
# libx265 preset measurements from its README and on the example above.
FAU_ANCHOR = ([9487.76, 4593.60, 2486.44, 1358.24], [40.037, 38.615, 36.845, 34.851])
FAU_TEST = ([9787.80, 4469.00, 2451.52, 1356.24], [40.121, 38.651, 36.970, 34.987])


@pytest.mark.parametrize("method", ["cubic", "pchip"])
@pytest.mark.parametrize("curves", [((R1, PSNR1), (R2, PSNR2)), (FAU_ANCHOR, FAU_TEST)])
def test_matches_the_published_bjontegaard_package(method, curves):
    bjontegaard = pytest.importorskip("bjontegaard")
    (r1, q1), (r2, q2) = curves
    assert bd_rate(r1, q1, r2, q2, method=method) == pytest.approx(
        bjontegaard.bd_rate(r1, q1, r2, q2, method=method), abs=0.1)
    assert bd_quality(r1, q1, r2, q2, method=method) == pytest.approx(
        bjontegaard.bd_psnr(r1, q1, r2, q2, method=method), abs=0.01)
