"""Live streaming's rules and arithmetic, checked against hand-worked figures: the campaign's live
section, sweep steps and their ids, keeping a sweep on one node, what players' packet lines mean
(bitrate, latency, speed), the ingest's statistics page, and a sweep's outcome."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import pandas as pd
import pytest

from analysis.live import live_steps, sweep_outcomes
from exporters.rtmp import parse_stats
from ffwatt.errors import CampaignError
from ffwatt.jobs import expand, sweep_groups
from ffwatt.live import ingest_url
from ffwatt.schema import JobRow, config_label
from ffwatt.settings import Settings
from ffwatt.validation import parse_campaign
from flows.dispatch import plan_batches
from tasks._streams import FrameLog, latencies_ms, rung_bitrate_kbps, steady_speed
from tests.test_dispatch import node

LADDER = [{"size": "1280x720", "bitrate_kbps": 3000}, {"size": "640x360", "bitrate_kbps": 800}]


def live_campaign(**changes: object) -> dict:
    spec: dict = {"name": "live", "inputs": [{"name": "clip", "source": "testsrc2", "size": "1280x720",
                                              "duration_s": 20}],
                  "matrix": {"encoders": [{"name": "libx264", "presets": ["veryfast"]}]},
                  "live": {"ladder": LADDER, "streams": [1, 2, 4]}}
    spec.update(changes)
    return spec


# --- the campaign's live section ------------------------------------------------------------------

def test_the_issue_s_example_is_a_valid_live_campaign_without_rate_control_or_quality():
    campaign = parse_campaign(live_campaign())
    assert campaign.quality == [] and campaign.live is not None
    assert campaign.live.steps() == [1, 2, 4]


def test_until_realtime_breaks_doubles_up_to_max_streams():
    live = {"ladder": LADDER, "streams": [3, 1], "until_realtime_breaks": True, "max_streams": 30}
    assert parse_campaign(live_campaign(live=live)).live.steps() == [1, 3, 6, 12, 24]  # type: ignore[union-attr]


@pytest.mark.parametrize(("changes", "message"), [
    ({"matrix": {"encoders": ["libx265"]}}, "libx265 can't stream live here: the RTMP ingest carries h264 only"),
    ({"matrix": {"encoders": ["libx264"], "rate_control": [{"mode": "crf", "values": [23]}]}},
     "a live campaign takes its bitrates from live.ladder; remove matrix.rate_control"),
    ({"matrix": {"encoders": ["libx264"], "resolutions": ["640x360"]}},
     "a live campaign takes its sizes from live.ladder; remove matrix.resolutions"),
    ({"quality": ["vmaf"]}, "live renditions aren't scored for quality"),
    ({"inputs": [{"name": "clip", "source": "testsrc2", "duration_s": 2}]}, "input 'clip' lasts 2 s; a live stream"),
    ({"live": {"ladder": LADDER, "streams": [8], "max_streams": 4}}, "max_streams (4) is below the largest step"),
    ({"live": {"ladder": [{"size": "1280x721", "bitrate_kbps": 100}]}}, "live.ladder[0].size: '1280x721' has an odd"),
    ({"live": {"ladder": [], "streams": [1]}}, "live.ladder: List should have at least 1 item"),
])
def test_a_live_section_that_can_t_run_says_what_to_change(changes: dict, message: str):
    with pytest.raises(CampaignError) as caught:
        parse_campaign(live_campaign(**changes))
    assert message in str(caught.value)


def test_a_vod_campaign_without_rate_control_is_still_refused_by_name():
    with pytest.raises(CampaignError, match=r"campaign: matrix.encoders\[0\] \(libx264\) has no rate control"):
        parse_campaign({"name": "c", "inputs": [{"name": "a", "source": "testsrc2"}],
                        "matrix": {"encoders": ["libx264"]}})


# --- sweep steps, their ids, and one node per sweep ------------------------------------------------

def test_each_step_is_a_job_in_ascending_order_with_stable_ids_and_one_sweep_id():
    campaign = parse_campaign(live_campaign(repetitions=2))
    jobs = expand(campaign)
    assert [(j.repetition, j.live.streams) for j in jobs] == [(1, 1), (1, 2), (1, 4), (2, 1), (2, 2), (2, 4)]
    assert len({j.job_id for j in jobs}) == 6 and len({j.config_id for j in jobs}) == 3
    assert len({j.live.sweep_id for j in jobs}) == 1
    assert [j.job_id for j in jobs] == [j.job_id for j in expand(campaign)]
    # How a step is judged is not what it does: a tolerance or a timeout changes no id.
    judged = dict(live_campaign(repetitions=2))
    judged["live"] = {**judged["live"], "realtime_tolerance": 0.05, "first_frame_timeout_s": 5}
    assert [j.job_id for j in expand(parse_campaign(judged))] == [j.job_id for j in jobs]
    assert jobs[1].label == "clip libx264 veryfast live 1280x720@3000k+640x360@800k x2 #1"
    assert (jobs[0].rate_control, jobs[0].value, jobs[0].output_size) == ("cbr", 3000, "1280x720")


def test_a_sweep_s_steps_stay_on_one_node_in_order():
    campaign = live_campaign(matrix={"encoders": [{"name": "libx264", "presets": ["veryfast", "fast", "medium"]}]})
    jobs = expand(parse_campaign(campaign))
    assert [len(group) for group in sweep_groups(jobs)] == [3, 3, 3]
    plan, _ = plan_batches(jobs, [node("a", ["cpu"], ["libx264"]), node("b", ["cpu"], ["libx264"])])
    (pool_a, node_a, first), (pool_b, node_b, second) = plan
    assert (pool_a, node_a.node, pool_b, node_b.node) == ("cpu", "a", "cpu", "b")
    assert [(j.preset, j.live.streams) for j in first] == [("veryfast", 1), ("veryfast", 2), ("veryfast", 4),
                                                           ("medium", 1), ("medium", 2), ("medium", 4)]
    assert [(j.preset, j.live.streams) for j in second] == [("fast", 1), ("fast", 2), ("fast", 4)]


def test_a_live_row_s_label_names_its_ladder_and_streams():
    row = {"input_name": "clip", "encoder": "libx264", "preset": "veryfast", "rate_control": "cbr",
           "target_bitrate_kbps": 3000, "output_width": 1280, "output_height": 720,
           "live_ladder": "1280x720@3000k+640x360@800k", "live_streams": 4}
    assert config_label(row) == "libx264 veryfast live 1280x720@3000k+640x360@800k x4"


def test_the_ingest_is_the_setting_else_the_prefect_api_s_host_else_the_master_s():
    assert ingest_url(Settings(ingest_url="rtmp://ingest.example:1940/live")) == "rtmp://ingest.example:1940/live"
    worker = {"PREFECT_API_URL": "https://master.example:4443/api"}
    assert ingest_url(Settings(), worker) == "rtmp://master.example:1935/live"
    assert ingest_url(Settings(master_host="0.0.0.0", rtmp_port=1950), {}) == "rtmp://127.0.0.1:1950/live"


# --- what players' packet lines mean ---------------------------------------------------------------

# FFmpeg's framecrc of a rendition as a player printed it (B-frames: pts out of order), with a
# progress block on the same pipe.
FRAMECRC = """#extradata 0:       45, 0x24420ec9
#tb 0: 1/1000
#codec_id 0: h264
0,        -67,          0,       33,    40075, 0x76c821b9
0,        -33,         33,       33,    19046, 0x0b060e3e, F=0x0
frame=2
progress=continue
0,          0,         67,       33,    21180, 0x0ee91f83, F=0x0
"""


def test_a_player_s_lines_are_packets_with_timestamp_and_size():
    log = FrameLog()
    for index, line in enumerate(FRAMECRC.splitlines()):
        log.feed(line, 100.0 + index)
    assert log.pts_ms == [0, 33, 67] and log.sizes == [40075, 19046, 21180] and log.duration_ms == 33
    assert log.arrivals == [103.0, 104.0, 107.0] and log.first_arrival == 103.0


def test_bitrate_is_payload_over_the_rendition_s_duration():
    log = FrameLog()
    for k in range(30):  # one second at 30 fps, 4000 bytes a frame: 960 kbit/s
        log.feed(f"0, {k * 33}, {round(k * 1000 / 30)}, 33, 4000, 0x0", 0.0)
    assert rung_bitrate_kbps(log, 30.0) == pytest.approx(960, rel=0.01)


def test_latency_matches_frames_by_timestamp_from_each_stream_s_first_frame():
    source, rendition = FrameLog(), FrameLog()
    for k in range(60):
        source.feed(f"0, 0, {round(k * 1000 / 30)}, 33, 1000, 0x0", 10 + k / 30)
    # The rendition's timestamps start 67 ms later (the encoder's B-frame delay) and arrive 0.7 s later;
    # its packets come in decode order, and its last two frames never came.
    order = [0, 2, 1, 3, 5, 4, *range(6, 58)]
    for k in order:
        rendition.feed(f"0, 0, {67 + round(k * 1000 / 30)}, 33, 500, 0x0", 10.7 + k / 30)
    found = latencies_ms(source, rendition, 30.0)
    assert len(found) == 58 and all(value == pytest.approx(700, abs=1e-6) for value in found)


def test_steady_speed_is_one_for_a_transcoder_that_keeps_up_whatever_its_latency():
    keeps_up = [(t / 2, max(0.0, t / 2 - 1.3)) for t in range(0, 40)]  # 1.3 s behind, all the way
    assert steady_speed(keeps_up, until=None) == pytest.approx(1.0)
    falls_behind = [(t / 2, 0.8 * t / 2) for t in range(1, 40)]
    assert steady_speed(falls_behind, until=None) == pytest.approx(0.8)
    # A burst at the start (the publisher's first half second) is inside the warm-up, and what comes
    # after the publisher left (the encoders' flush) is past ``until``.
    burst = [(0.0, 0.0), (0.2, 0.6), *[(0.5 + t / 2, 0.6 + t / 2) for t in range(1, 16)], (8.6, 9.5)]
    assert steady_speed(burst, until=8.2) == pytest.approx(1.0)
    assert steady_speed([(0.0, 0.1), (0.5, 0.6)], until=None) is None


# --- the ingest's statistics page ------------------------------------------------------------------

STATS = """<?xml version="1.0" encoding="utf-8" ?>
<rtmp><nginx_version>1.22.1</nginx_version><uptime>151</uptime><naccepted>44</naccepted>
<bytes_in>131221838</bytes_in><bytes_out>227533354</bytes_out>
<server><application><name>live</name><live>
<stream><name>x1</name><time>2806</time><bytes_in>5281081</bytes_in><bytes_out>5281037</bytes_out>
<client><id>44</id><address>127.0.0.1</address><dropped>0</dropped><publishing/><active/></client>
<client><id>43</id><address>127.0.0.1</address><dropped>3</dropped><active/></client>
<client><id>45</id><address>127.0.0.1</address><dropped>2</dropped><active/></client>
<nclients>3</nclients><publishing/><active/></stream>
<stream><name>waiting</name><time>100</time><bytes_in>0</bytes_in><bytes_out>0</bytes_out>
<client><id>46</id><address>127.0.0.1</address><dropped>0</dropped></client><nclients>1</nclients></stream>
<nclients>4</nclients></live></application></server></rtmp>"""


def test_the_statistics_page_gives_streams_publishers_players_and_bytes():
    stats = parse_stats(STATS)
    assert (stats.accepted, stats.bytes_in, stats.bytes_out, stats.uptime_s) == (44, 131221838, 227533354, 151)
    published, waiting = stats.streams
    assert (published.name, published.publishing, published.players, published.dropped) == ("x1", True, 2, 5)
    assert (published.bytes_in, published.bytes_out, published.uptime_s) == (5281081, 5281037, 2.806)
    assert (waiting.name, waiting.publishing, waiting.players) == ("waiting", False, 1)


# --- a sweep's outcome -----------------------------------------------------------------------------

def step_row(streams: int, repetition: int = 1, *, held: bool | None = True, status: str = "ok",
             watts: float | None = 10.0, estimated: bool = False) -> dict:
    return JobRow(
        campaign="c", run_id="r", job_id=f"j{streams}-{repetition}", config_id=f"c{streams}", repetition=repetition,
        node="n1", input_name="clip", encoder="libx264", preset="veryfast", rate_control="cbr",
        target_bitrate_kbps=3000, status=status, attempts=1, error=None if status == "ok" else f"{status}: why",
        speed=1.0 if held else 0.8, dropped_frames=0, energy_j=100.0, wall_s=10.0,
        energy_source="estimated" if estimated else "rapl", live_streams=streams,
        live_ladder="1280x720@3000k", live_sweep_id="s", live_realtime=held if status == "ok" else None,
        live_watts_per_stream=watts if status == "ok" else None).model_dump()


def test_the_largest_n_that_held_and_its_watts_per_stream():
    frame = pd.DataFrame([step_row(1, watts=20.0), step_row(2, watts=12.0), step_row(4, held=False, watts=9.0),
                          step_row(8, status="skipped")])
    (outcome,) = sweep_outcomes(frame).itertuples()
    assert (outcome.max_realtime_streams, outcome.watts_per_stream, outcome.broke_at, outcome.steps) == \
        (2, 12.0, 4, "1,2,4")
    steps = live_steps(frame).set_index("live_streams")
    assert steps.loc[8, "n_skipped"] == 1 and not steps.loc[8, "held"] and steps.loc[2, "held"]


def test_a_step_holds_only_when_every_repetition_did_and_estimates_stay_labelled():
    frame = pd.DataFrame([step_row(1, 1, estimated=True), step_row(1, 2, estimated=True),
                          step_row(2, 1, estimated=True), step_row(2, 2, held=False, estimated=True)])
    (outcome,) = sweep_outcomes(frame).itertuples()
    assert (outcome.max_realtime_streams, outcome.broke_at, outcome.energy_estimated) == (1, 2, True)


def test_a_sweep_where_nothing_held_has_no_n_and_no_watts():
    (outcome,) = sweep_outcomes(pd.DataFrame([step_row(1, held=False)])).itertuples()
    assert outcome.max_realtime_streams == 0 and outcome.watts_per_stream is None and outcome.broke_at == 1


def test_two_inputs_sweeps_are_two_outcomes_and_two_lines():
    """The plot grouped sweeps without the input: two clips' sweeps were drawn as one line."""
    from analysis.plots import live_sweep_plot

    other = [{**step_row(n), "input_name": "other-clip", "job_id": f"o{n}"} for n in (1, 2)]
    frame = pd.DataFrame([step_row(1), step_row(2), *other])
    assert sorted(sweep_outcomes(frame).input_name) == ["clip", "other-clip"]
    speed_axes = live_sweep_plot(live_steps(frame), title="t").axes[0]
    assert sorted(line.get_label() for line in speed_axes.lines if line.get_label() != "real time") == [
        "n1 clip libx264 veryfast 1280x720@3000k", "n1 other-clip libx264 veryfast 1280x720@3000k"]


def test_live_rows_round_trip_through_parquet(tmp_path):
    from ffwatt.results import read_results, write_job_row

    row = JobRow.model_validate({**step_row(2), "live_streams_detail": json.dumps([{"stream": 1}]),
                                 "started_at": datetime.now(UTC)})
    write_job_row(tmp_path, row)
    back = read_results(tmp_path).iloc[0]
    assert back.live_streams == 2 and bool(back.live_realtime) and json.loads(back.live_streams_detail) == [
        {"stream": 1}]


def test_prefect_yaml_runs_the_live_campaign_on_the_pools():
    import yaml

    from ffwatt.settings import REPO
    from ffwatt.validation import load_campaign

    deployments = {d["name"]: d for d in yaml.safe_load((REPO / "deployments/prefect.yaml").read_text())
                   ["deployments"]}
    live = deployments["live"]
    assert live["entrypoint"] == "flows/campaign.py:campaign_flow" and live["parameters"]["dispatch"] == "pools"
    campaign = load_campaign(REPO / "deployments/campaigns/live.yaml")
    assert parse_campaign(live["parameters"]["campaign"]) == campaign
    assert campaign.live is not None and campaign.live.until_realtime_breaks
