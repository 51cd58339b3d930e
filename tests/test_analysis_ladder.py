"""The energy-aware per-title ladder: the rate–quality hull on points whose hull is known, rungs and their
encodes worked by hand on made-up rows, and the ladder YAML taken as it is by a live and a VOD campaign.

The made-up input (30 fps) has eight encodes, (kbit/s, VMAF, J/frame):

    1280x720  libx264 veryfast: (3000, 95, 0.10)  (1500, 89, 0.08)
              libx265 medium:   (2000, 95.5, 0.30)  (1000, 88.5, 0.25)
    640x360   libx264 veryfast: (800, 81, 0.03)   (400, 71, 0.02)
              libx265 medium:   (500, 80.5, 0.09)  (250, 70.5, 0.07)

The upper hull runs 250/70.5 -> 500/80.5 (slope 0.04) -> 1000/88.5 (0.016) -> 2000/95.5 (0.007), all x265;
3000/95 lies past the best VMAF, and every x264 point lies under it (at 400 the line is at 76.5, at 800
at 85.3, at 1500 at 92). Rungs every 6 VMAF from 95.5: targets 95.5, 89.5, 83.5, 77.5, 71.5, nearest
free hull points 2000, 1000, 500, 250 (the fifth finds none left). Each rung then takes the cheapest
encode at its size reaching the hull point's VMAF that keeps the ladder rising: x264 400 (71 >= 70.5),
x264 800 (81 >= 80.5), x264 1500 (89 >= 88.5), and at the top the hull point itself (x264 3000 has 95).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import yaml

from analysis.ladder import ladder
from analysis.pareto import rate_quality_hull
from ffwatt.errors import ResultsError
from ffwatt.jobs import expand
from ffwatt.results import write_job_row
from ffwatt.schema import JobRow
from ffwatt.validation import load_campaign
from tests.conftest import ffwatt

ENCODES = [  # size, encoder, preset, crf, kbit/s, VMAF, J/frame
    ("1280x720", "libx264", "veryfast", 22, 3000.0, 95.0, 0.10),
    ("1280x720", "libx264", "veryfast", 28, 1500.0, 89.0, 0.08),
    ("1280x720", "libx265", "medium", 24, 2000.0, 95.5, 0.30),
    ("1280x720", "libx265", "medium", 30, 1000.0, 88.5, 0.25),
    ("640x360", "libx264", "veryfast", 28, 800.0, 81.0, 0.03),
    ("640x360", "libx264", "veryfast", 34, 400.0, 71.0, 0.02),
    ("640x360", "libx265", "medium", 30, 500.0, 80.5, 0.09),
    ("640x360", "libx265", "medium", 36, 250.0, 70.5, 0.07),
]


def write_rows(root: Path) -> None:
    for i, (size, encoder, preset, crf, kbps, vmaf, jpf) in enumerate(ENCODES):
        width, height = (int(side) for side in size.split("x"))
        write_job_row(root, JobRow(
            campaign="ladder", run_id="run-1", job_id=f"j{i}", config_id=f"c{i}", repetition=1, node="node-a",
            input_name="clip", input_fps=30.0, input_width=1280, input_height=720, encoder=encoder, preset=preset,
            rate_control="crf", crf=crf, output_width=width, output_height=height, status="ok", attempts=1,
            wall_s=1.0, frames=60, encode_fps=60.0, bitrate_kbps=kbps, vmaf=vmaf, energy_j=jpf * 60,
            joules_per_frame=jpf, energy_source="estimated" if encoder == "libx265" else "rapl"))


def test_the_hull_of_points_whose_hull_is_known():
    # A concave chain (1,10) (2,20) (4,25) (8,27); under it (2,12) (3,21) (4,22); past the top (10,26).
    rate = [1, 2, 4, 8, 2, 3, 4, 10]
    quality = [10, 20, 25, 27, 12, 21, 22, 26]
    assert list(rate_quality_hull(rate, quality)) == [0, 1, 2, 3]
    # Collinear points: the middle one is not a vertex; NaN never is.
    assert list(rate_quality_hull([1, 2, 3, np.nan], [1, 2, 3, 9])) == [0, 2]
    # A point above the chord of its neighbours is on it.
    assert list(rate_quality_hull([1, 2, 3], [0, 5, 6])) == [0, 1, 2]


def test_rungs_on_the_hull_each_at_its_least_energy_encode(tmp_path: Path):
    root = tmp_path / "results"
    write_rows(root)
    answer = ladder(root)
    assert [(h.bitrate_kbps, h.vmaf) for h in answer.hull] == [(250, 70.5), (500, 80.5), (1000, 88.5), (2000, 95.5)]
    got = [(r.size, r.bitrate_kbps, r.vmaf, r.encoder, r.rate_value) for r in answer.rungs]
    assert got == [("640x360", 400, 71.0, "libx264", 34), ("640x360", 800, 81.0, "libx264", 28),
                   ("1280x720", 1500, 89.0, "libx264", 28), ("1280x720", 2000, 95.5, "libx265", 24)]
    # Against the hull point's own encode: 0.02 vs 0.07 J/frame saves 71.4 %.
    assert answer.rungs[0].saves_pct == pytest.approx((1 - 0.02 / 0.07) * 100)
    assert answer.rungs[3].energy_estimated and not answer.rungs[0].energy_estimated
    # Three rungs evenly spaced: VMAF 95.5, 83, 70.5 -> hull points 2000, 500 (80.5), 250.
    assert [r.target_vmaf for r in ladder(root, rungs=3).rungs] == [70.5, 80.5, 95.5]


def test_with_many_views_each_rung_takes_the_smaller_file(tmp_path: Path):
    """At a million views, delivery (kbit/s × 1000/8/30 bytes a frame × 30 Wh/GB × 3600 J/Wh per view:
    0.18 J at 400 kbit/s against 0.1125 at 250) outweighs any encode: the ladder is the hull's x265."""
    root = tmp_path / "results"
    write_rows(root)
    answer = ladder(root, views=1e6)
    assert [(r.bitrate_kbps, r.encoder) for r in answer.rungs] == [(250, "libx265"), (500, "libx265"),
                                                                    (1000, "libx265"), (2000, "libx265")]
    assert answer.rungs[0].total_j_per_frame == pytest.approx(0.07 + 1e6 * 250 * 1000 / 8 / 30 * 1e-9 * 30 * 3600)


def test_the_ladder_yaml_is_taken_by_a_live_and_a_vod_campaign_as_it_is(tmp_path: Path):
    root = tmp_path / "results"
    write_rows(root)
    path = tmp_path / "ladder.yaml"
    path.write_text(ladder(root).yaml())
    rungs = yaml.safe_load(path.read_text())["ladder"]
    assert [r["bitrate_kbps"] for r in rungs] == [400, 800, 1500, 2000]  # rising, as are their VMAFs
    live = tmp_path / "live.yaml"
    live.write_text(yaml.safe_dump({"name": "live", "inputs": [{"name": "clip", "source": "testsrc2",
                                                                 "duration_s": 10}],
                                    "matrix": {"encoders": ["libx264"]}, "live": {"ladder": "ladder.yaml"}}))
    campaign = load_campaign(live)
    assert campaign.live is not None
    assert [r.label for r in campaign.live.ladder] == ["1280x720@2000k", "1280x720@1500k", "640x360@800k",
                                                       "640x360@400k"]  # top first, as a live step reads it
    vod = tmp_path / "vod.yaml"
    vod.write_text(yaml.safe_dump({"name": "vod", "inputs": [{"name": "clip", "source": "testsrc2"}],
                                   "matrix": {"encoders": ["libx264"], "ladder": "ladder.yaml"}}))
    jobs = expand(load_campaign(vod))
    assert [(j.output_size, j.rate_control, j.value) for j in jobs] == [
        ("640x360", "vbr", 400), ("640x360", "vbr", 800), ("1280x720", "vbr", 1500), ("1280x720", "vbr", 2000)]
    # Pasted in rather than named, the same list is the same ladder.
    pasted = yaml.safe_load(vod.read_text())
    pasted["matrix"]["ladder"] = rungs
    vod.write_text(yaml.safe_dump(pasted))
    assert [j.job_id for j in expand(load_campaign(vod))] == [j.job_id for j in jobs]


def test_the_command_writes_the_yaml_and_says_what_each_rung_rests_on(tmp_path: Path):
    root = tmp_path / "results"
    write_rows(root)
    out = tmp_path / "mine.yaml"
    done = ffwatt("ladder", "--out", str(out), env={"FFWATT_RESULTS_DIR": str(root)})
    assert done.returncode == 0, done.stderr
    assert "libx264 veryfast crf 34 640x360" in done.stdout and str(out) in done.stdout.replace("\n", "")
    assert "# rung 4: libx265 medium crf 24 1280x720: VMAF 95.50, 2000 kbit/s, 0.3 J/frame (estimated)" \
        in out.read_text()
    data = json.loads(ffwatt("ladder", "-o", "json", env={"FFWATT_RESULTS_DIR": str(root)}).stdout)
    assert [r["bitrate_kbps"] for r in data["rungs"]] == [400, 800, 1500, 2000] and Path(data["path"]).exists()
    with pytest.raises(ResultsError, match="--input other: run run-1 has clip"):
        ladder(root, input_name="other")
    missing = ffwatt("ladder", "--input", "other", env={"FFWATT_RESULTS_DIR": str(root)})
    assert missing.returncode == 2 and "run run-1 has clip" in missing.stderr


def test_a_ladder_file_that_holds_no_ladder_is_refused_by_name(tmp_path: Path):
    from ffwatt.errors import CampaignError

    (tmp_path / "ladder.yaml").write_text("rungs: []\n")
    vod = tmp_path / "vod.yaml"
    vod.write_text(yaml.safe_dump({"name": "vod", "inputs": [{"name": "clip", "source": "testsrc2"}],
                                   "matrix": {"encoders": ["libx264"], "ladder": "ladder.yaml"}}))
    with pytest.raises(CampaignError, match=r"matrix.ladder names .*ladder.yaml, which holds no ladder"):
        load_campaign(vod)
    both = yaml.safe_load(vod.read_text())
    both["matrix"] |= {"ladder": [{"size": "640x360", "bitrate_kbps": 400}], "resolutions": ["640x360"]}
    vod.write_text(yaml.safe_dump(both))
    with pytest.raises(CampaignError, match=r"matrix\.ladder sets every job's size and bitrate"):
        load_campaign(vod)


def test_the_report_has_the_ladder_s_chart_and_table(tmp_path: Path):
    # The section alone: the whole report is drawn by tests/test_analysis_report.py and the e2e test.
    from analysis.report import _ladder_section
    from ffwatt.results import read_results

    root = tmp_path / "results"
    write_rows(root)
    section = _ladder_section(read_results(root), "ladder", "run-1")
    assert "<img alt='ladder clip'" in section
    assert section.index("libx264 veryfast crf 34 640x360") < section.index("libx265 medium crf 24 1280x720")
