"""Encode energy against delivery energy: is a slower, more efficient encode worth its extra joules?

A file encoded once is delivered many times. Per frame of video, an encode costs its measured
J/frame once, and each view costs the frame's bytes times the network's energy per byte:

    delivery J/frame = bitrate_kbps × 1000 / 8 / fps  [bytes/frame]  × 1e-9  [GB/byte]  × Wh/GB × 3600  [J/Wh]
    total J/frame    = encode J/frame + views × delivery J/frame

For a runner-up r against the recommendation b the totals are equal at

    break-even views = (encode_r − encode_b) / (delivery_b − delivery_r)

past which (when r's file is smaller: delivery_r < delivery_b) r is the better choice, or below
which (r's file larger but its encode cheaper) it was. Where repetitions give intervals of the
encode J/frame, the break-even's interval takes their ends (r's low against b's high, and the other
way). Delivery energy per GB is an estimate from the literature, never a measurement: every figure
that rests on it says so, and the answer is given at both ends of the published range.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any, Literal

import pandas as pd
from pydantic import BaseModel

__all__ = [
    "DELIVERY_RANGE",
    "DELIVERY_SOURCE",
    "DELIVERY_WH_PER_GB",
    "DeliveryFigures",
    "RangeEnd",
    "add_delivery",
    "breakeven_views",
    "delivery_figures",
    "delivery_j_per_frame",
    "delivery_markdown",
    "range_markdown",
]

# The default: fixed networks in 2020 (core and fixed access), as the European Commission's ICT impact
# study put it; the range: from the academic estimate for fixed-line networks in 2020 (Aslan et al.'s
# trend) to mobile networks' in the same study. Estimates outside it exist (The Shift Project's 2019
# figures, which the IEA found 50-fold too high for networks); docs/analysis.md lists the sources.
DELIVERY_WH_PER_GB = 30.0
DELIVERY_SOURCE = ("0.03 kWh/GB, fixed networks in 2020: European Commission, ICT impact study (2020), as summarised "
                   "in Scope3's data transfer methodology")
DELIVERY_RANGE: tuple[tuple[float, str], tuple[float, str]] = (
    (7.0, "0.007 kWh/GB, fixed-line transmission in 2020: Aslan, Mayers, Koomey & France, J. Industrial Ecology "
          "22(4) (2018), 0.06 kWh/GB in 2015 halving every two years, as cited by Coroamă (SFOE, 2021)"),
    (140.0, "0.14 kWh/GB, mobile networks in 2020: European Commission, ICT impact study (2020)"),
)
_J_PER_WH = 3600.0


def delivery_j_per_frame(bitrate_kbps: Any, fps: Any, wh_per_gb: float) -> Any:
    """Network energy to deliver one frame once (numbers or pandas Series)."""
    bytes_per_frame = bitrate_kbps * 1000.0 / 8.0 / fps
    return bytes_per_frame * 1e-9 * wh_per_gb * _J_PER_WH


def add_delivery(configs: pd.DataFrame, views: float, wh_per_gb: float) -> pd.DataFrame:
    """``configs`` (one row per configuration, with ``joules_per_frame``, ``bitrate_kbps`` and ``input_fps``)
    with ``delivery_j_per_frame`` and ``total_j_per_frame`` = encode + ``views`` × delivery (its spread,
    repetitions and interval the encode's, moved by the delivery, so Welch's test judges runners-up)."""
    out = configs.copy()
    out["delivery_j_per_frame"] = delivery_j_per_frame(out["bitrate_kbps"], out["input_fps"], wh_per_gb)
    out["total_j_per_frame"] = out["joules_per_frame"] + views * out["delivery_j_per_frame"]
    # Delivery is a constant per configuration (its bitrate repeats): the total's spread is the encode's.
    shift = out["total_j_per_frame"] - out["joules_per_frame"]
    for suffix in ("_std", "_n"):
        if f"joules_per_frame{suffix}" in out.columns:
            out[f"total_j_per_frame{suffix}"] = out[f"joules_per_frame{suffix}"]
    for suffix in ("_ci_low", "_ci_high"):
        if f"joules_per_frame{suffix}" in out.columns:
            out[f"total_j_per_frame{suffix}"] = out[f"joules_per_frame{suffix}"] + shift
    return out


BetterWith = Literal["more views", "fewer views", "never", "always"]


def breakeven_views(encode: float, delivery: float, best_encode: float, best_delivery: float
                    ) -> tuple[float | None, BetterWith]:
    """Views at which a configuration (``encode``, ``delivery`` J/frame) costs as much in total as the
    best one, and on which side of that it is the better choice."""
    d_delivery = best_delivery - delivery
    d_encode = encode - best_encode
    if d_delivery == 0:
        return None, "always" if d_encode < 0 else "never"
    views = d_encode / d_delivery
    if views <= 0:  # cheaper to encode and to deliver, or dearer at both: no crossing at positive views
        return None, "always" if d_encode <= 0 and d_delivery >= 0 else "never"
    return views, "more views" if d_delivery > 0 else "fewer views"


class DeliveryFigures(BaseModel):
    """A candidate's encode and delivery energy per frame, and where it breaks even with the recommendation."""

    views: float
    wh_per_gb: float
    encode_j_per_frame: float | None
    encode_j_per_frame_ci: tuple[float, float] | None = None  # 95 % interval over the repetitions
    delivery_j_per_frame: float | None  # estimated: from the literature's Wh/GB
    total_j_per_frame: float | None
    breakeven_views: float | None = None  # against the recommendation (runners-up only)
    breakeven_views_ci: tuple[float, float] | None = None  # from the encode J/frame intervals
    better_with: BetterWith | None = None


def _num(row: pd.Series, name: str) -> float | None:
    value = row.get(name)
    return None if value is None or pd.isna(value) else float(value)


def _ci(row: pd.Series) -> tuple[float, float] | None:
    low, high = _num(row, "joules_per_frame_ci_low"), _num(row, "joules_per_frame_ci_high")
    return (low, high) if low is not None and high is not None else None


def delivery_figures(row: pd.Series, best: pd.Series | None, views: float, wh_per_gb: float) -> DeliveryFigures:
    """``row``'s figures (a configuration with :func:`add_delivery`'s columns), and against ``best`` (the
    recommendation's row) its break-even views; None for the recommendation itself."""
    figures = DeliveryFigures(views=views, wh_per_gb=wh_per_gb, encode_j_per_frame=_num(row, "joules_per_frame"),
                              encode_j_per_frame_ci=_ci(row), delivery_j_per_frame=_num(row, "delivery_j_per_frame"),
                              total_j_per_frame=_num(row, "total_j_per_frame"))
    if best is None:
        return figures
    mine = (figures.encode_j_per_frame, figures.delivery_j_per_frame)
    theirs = (_num(best, "joules_per_frame"), _num(best, "delivery_j_per_frame"))
    if None in mine or None in theirs:
        return figures
    assert mine[0] is not None and mine[1] is not None and theirs[0] is not None and theirs[1] is not None
    figures.breakeven_views, figures.better_with = breakeven_views(mine[0], mine[1], theirs[0], theirs[1])
    own, other = _ci(row), _ci(best)
    if figures.breakeven_views is not None and own is not None and other is not None:
        ends = [breakeven_views(encode, mine[1], best_encode, theirs[1])[0]
                for encode, best_encode in ((own[0], other[1]), (own[1], other[0]))]
        low, high = (0.0 if e is None else e for e in ends)
        figures.breakeven_views_ci = (min(low, high), max(low, high))
    return figures


class RangeEnd(BaseModel):
    """The recommendation at one end of the published range of delivery energy per GB."""

    wh_per_gb: float
    source: str
    input_name: str
    config: str | None
    node: str | None
    total_j_per_frame: float | None
    bitrate_kbps: float | None


def _views_words(views: float | None) -> str:
    if views is None:
        return "-"
    if views >= 1e6:
        return f"{views:.3g}"
    return f"{math.ceil(views):,}"


def delivery_markdown(views: float, wh_per_gb: float, source: str,
                      candidates: Sequence[tuple[str, str, DeliveryFigures | None, bool]]) -> str:
    """Encode + delivery of the recommendation and each runner-up (config, node, figures, whether its
    encode energy is estimated), and each runner-up's break-even views."""
    from analysis.markdown import md_number, md_table, md_text

    rows = []
    for config, node, figures, estimated in candidates:
        if figures is None:
            continue
        ci = figures.encode_j_per_frame_ci
        interval = f" ({md_number(ci[0], estimated=estimated)}–{md_number(ci[1], estimated=estimated)})" if ci else ""
        if figures.breakeven_views is None:
            breakeven = {"always": "better at any views", "never": "never better", None: "(recommended)"}.get(
                figures.better_with, "-")
        else:
            span = figures.breakeven_views_ci
            around = f" ({_views_words(span[0])}–{_views_words(span[1])})" if span else ""
            side = "beyond" if figures.better_with == "more views" else "below"
            breakeven = f"better {side} {_views_words(figures.breakeven_views)} views{around}"
        encode = md_number(figures.encode_j_per_frame, estimated=estimated) + interval
        rows.append([md_text(config), md_text(node), encode, md_number(figures.delivery_j_per_frame, estimated=True),
                     md_number(figures.total_j_per_frame, estimated=True), md_text(breakeven)])
    return (f"\nEncode + delivery to {_views_words(views)} views at {wh_per_gb:g} Wh/GB ({md_text(source)}):\n\n"
            + md_table(["configuration", "node", "encode J/frame (95 % interval)", "delivery J/frame per view",
                        "total J/frame", "against the recommendation"], rows)
            + "\nDelivery energy is estimated (\\*): bytes per frame × Wh/GB from the literature, not a "
              "measurement.\n")


def range_markdown(range_ends: Sequence[RangeEnd]) -> str:
    """The recommendation at each end of the published range of delivery energy per GB."""
    from analysis.markdown import md_number, md_table, md_text

    return "\nAt the ends of the published range of delivery energy:\n\n" + md_table(
        ["Wh/GB", "source", "input", "recommended", "kbit/s", "total J/frame"],
        [[f"{end.wh_per_gb:g}", md_text(end.source), md_text(end.input_name), md_text(end.config or "none"),
          md_number(end.bitrate_kbps), md_number(end.total_j_per_frame, estimated=True)] for end in range_ends])
