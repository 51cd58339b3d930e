"""Live steps with real parts: a private nginx-rtmp on loopback, real FFmpeg publishers, transcoders
and players. A step that runs well is seen by both exporters while it runs; the bad conditions (the
ingest unreachable or stopped mid-job, a publisher dying, a rendition that never appears) end the
step within bounded time with a reason, stop every stream, and leave no FFmpeg behind.

Streams are short and small (a few seconds of 640x360), so the tests hold on a busy two-core
machine; the real-time figures of bench/live.py need a quiet one."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from exporters.ffmpeg import FFmpegCollector
from exporters.rtmp import RtmpCollector
from ffwatt.fleet.services import stop_service
from ffwatt.jobs import Job, expand
from ffwatt.settings import load_settings
from ffwatt.validation import parse_campaign
from master.ingest import PrivateIngest, private_ingest
from tasks.generate import prepare_reference
from tasks.live import Contribution, LiveStepResult, prepare_contribution, run_live_step
from testbed.redfish import Bmc, bmc
from tests.conftest import ffwatt

DURATION_S = 6.0
LADDER = [{"size": "640x360", "bitrate_kbps": 800}, {"size": "320x180", "bitrate_kbps": 250}]


def live_spec(**live: object) -> dict:
    return {"name": "live-test", "inputs": [{"name": "pattern", "source": "testsrc2", "size": "640x360", "fps": 30,
                                            "duration_s": DURATION_S}],
            "matrix": {"encoders": [{"name": "libx264", "presets": ["ultrafast"]}]},
            # A busy shared machine: judged loosely here, the real-time figure is bench/live.py's.
            "live": {"ladder": LADDER, "streams": [1], "first_frame_timeout_s": 8, "realtime_tolerance": 0.1,
                     **live}}


def step(streams: int = 1, **live: object) -> tuple[Job, Contribution]:
    """The job of a step with ``streams`` at once, and its input's contribution clip."""
    campaign = parse_campaign(live_spec(streams=[streams], **live))
    settings = load_settings()
    reference = prepare_reference(campaign.inputs[0], "ffv1", settings)
    return expand(campaign)[0], prepare_contribution(reference, settings)


def ffmpeg_of(job: Job) -> list[str]:
    """Command lines of processes still running for ``job``'s streams (their names carry its id)."""
    marker = f"ffwatt-{job.job_id[:12]}-"
    found = []
    for cmdline in Path("/proc").glob("[0-9]*/cmdline"):
        try:
            text = cmdline.read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if marker in text and "pytest" not in text:
            found.append(text)
    return found


@pytest.fixture(scope="module")
def home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One FFWATT_HOME for the module: the reference and contribution clips are made once."""
    return tmp_path_factory.mktemp("live-home")


@pytest.fixture
def ingest(home: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[PrivateIngest]:
    with private_ingest() as found:
        monkeypatch.setenv("FFWATT_HOME", str(home))
        monkeypatch.setenv("FFWATT_INGEST_URL", found.url)
        yield found


@pytest.fixture
def wall_bmc(monkeypatch: pytest.MonkeyPatch) -> Iterator[Bmc]:
    """The node's BMC, drawing a constant 123 W, as FFWATT_REDFISH_URL names it."""
    with bmc(123.0) as server:
        for name, value in {"FFWATT_REDFISH_URL": server.url, "FFWATT_REDFISH_USER": server.user,
                            "FFWATT_REDFISH_PASSWORD": server.password, "FFWATT_REDFISH_INTERVAL_S": "0.5"}.items():
            monkeypatch.setenv(name, value)
        yield server


def run_in_thread(job: Job, contribution: Contribution) -> tuple[threading.Thread, dict[str, object]]:
    out: dict[str, object] = {}

    def target() -> None:
        start = time.monotonic()
        out["result"] = run_live_step(job, contribution, "run-test", settings=load_settings())
        out["seconds"] = time.monotonic() - start

    thread = threading.Thread(target=target)
    thread.start()
    return thread, out


@pytest.mark.e2e  # a private nginx-rtmp ingest or a Prefect server
def test_two_streams_transcode_every_rung_and_the_exporters_show_them_while_they_run(
        ingest: PrivateIngest, wall_bmc: Bmc):
    job, contribution = step(2)
    settings = load_settings()
    thread, out = run_in_thread(job, contribution)
    seen_streams: set[str] = set()
    seen_rtmp: dict[str, float] = {}
    while thread.is_alive():
        for family in FFmpegCollector(settings.progress_dir).collect():
            if family.name == "ffwatt_ffmpeg_running":
                seen_streams |= {s.labels["stream"] for s in family.samples
                                 if s.labels["job_id"] == job.job_id and s.value == 1.0}
        for family in RtmpCollector(ingest.stats_url).collect():
            for sample in family.samples:
                if sample.name in ("ffwatt_rtmp_publishers", "ffwatt_rtmp_players", "ffwatt_rtmp_up"):
                    seen_rtmp[sample.name] = max(seen_rtmp.get(sample.name, 0.0), sample.value)
        time.sleep(0.3)
    thread.join()
    result = out["result"]
    assert isinstance(result, LiveStepResult)
    assert result.error is None, result.error
    assert seen_streams == {"1", "2"}  # one series set per stream, while it ran
    # 2 sources and 2 x 2 renditions published; per stream 1 + 2 players and the transcoder pulling.
    assert seen_rtmp == {"ffwatt_rtmp_up": 1.0, "ffwatt_rtmp_publishers": 6.0, "ffwatt_rtmp_players": 8.0}
    for stream in result.streams:
        assert stream.state == "ok" and stream.source_frames == contribution.frames
        assert stream.rendition_frames == [contribution.frames] * 2 and stream.dropped_frames == 0
        assert stream.speed is not None and 0.5 < stream.speed < 1.1
        assert len(stream.latencies_ms) > contribution.frames and stream.first_frame_s is not None
        assert all(kbps is not None for kbps in stream.rung_kbps)
    assert result.energy is not None and result.wall_s is not None and result.cpu_user_s > 0
    # The plug's energy over the step's window, from the BMC's constant 123 W.
    assert result.energy.wall_j == pytest.approx(123.0 * result.wall_s, rel=0.03), result.energy.wall_missing
    assert ffmpeg_of(job) == []


def test_an_unreachable_ingest_fails_the_step_at_once_and_preflight_says_so(home: Path, tmp_path: Path,
                                                                             monkeypatch: pytest.MonkeyPatch):
    from ffwatt.fleet.prefect_server import free_port

    monkeypatch.setenv("FFWATT_HOME", str(home))
    nowhere = f"rtmp://127.0.0.1:{free_port()}/live"
    monkeypatch.setenv("FFWATT_INGEST_URL", nowhere)
    job, contribution = step(1)
    start = time.monotonic()
    result = run_live_step(job, contribution, "run-test", settings=load_settings())
    assert time.monotonic() - start < 5
    assert result.error == (f"ingest {nowhere} unreachable (Connection refused): start it on the master "
                            "(ffwatt stack up), or point FFWATT_INGEST_URL at it")
    spec = tmp_path / "live.yaml"
    spec.write_text(json.dumps(live_spec()))
    done = ffwatt("campaign", "validate", str(spec), env={"FFWATT_RESULTS_DIR": str(tmp_path / "results")})
    assert done.returncode == 2 and "Traceback" not in done.stderr
    assert f"streams live, and the ingest {nowhere} doesn't answer (Connection refused)" in done.stderr


@pytest.mark.e2e  # a private nginx-rtmp ingest or a Prefect server
def test_the_ingest_stopped_mid_job_ends_it_with_the_reason(ingest: PrivateIngest):
    job, contribution = step(2)
    stopper = threading.Timer(3.0, lambda: stop_service(ingest.prefix / "run", "rtmp-ingest", timeout_s=5))
    stopper.start()
    start = time.monotonic()
    result = run_live_step(job, contribution, "run-test", settings=load_settings())
    seconds = time.monotonic() - start
    stopper.join()
    assert seconds < DURATION_S + 5, seconds  # it ended when the ingest went, not at a timeout
    assert result.error is not None and result.error.startswith(
        f"the ingest {ingest.url} went away (Connection refused); stream "), result.error
    assert {s.state for s in result.streams} == {"failed", "stopped"}
    assert all(s.source_frames < contribution.frames for s in result.streams)
    assert ffmpeg_of(job) == []


@pytest.mark.e2e  # a private nginx-rtmp ingest or a Prefect server
def test_a_publisher_dying_mid_stream_stops_and_records_the_other_stream(ingest: PrivateIngest):
    job, contribution = step(2)

    def kill_second_publisher() -> None:
        for cmdline in Path("/proc").glob("[0-9]*/cmdline"):
            with open(cmdline, "rb") as handle:
                text = handle.read().replace(b"\0", b" ").decode(errors="replace")
            if " -re " in text and f"ffwatt-{job.job_id[:12]}-" in text and text.rstrip().endswith("-s2"):
                os.kill(int(cmdline.parent.name), signal.SIGKILL)

    killer = threading.Timer(3.0, kill_second_publisher)
    killer.start()
    start = time.monotonic()
    result = run_live_step(job, contribution, "run-test", settings=load_settings())
    seconds = time.monotonic() - start
    killer.join()
    assert seconds < DURATION_S + 5, seconds
    assert result.error is not None
    assert result.error.startswith("stream 2: publisher died after "), result.error
    assert result.error.endswith("frames (FFmpeg was killed by signal SIGKILL)"), result.error
    first, second = result.streams
    assert (first.state, second.state) == ("stopped", "failed") and second.error == result.error
    assert 0 < first.frames < contribution.frames  # stream 1 was running, and was stopped
    assert ffmpeg_of(job) == []


@pytest.mark.e2e  # a private nginx-rtmp ingest or a Prefect server
def test_a_rendition_that_never_appears_fails_the_step_at_its_first_frame_timeout(ingest: PrivateIngest,
                                                                                  tmp_path: Path, ffmpeg: str,
                                                                                  monkeypatch: pytest.MonkeyPatch):
    """The transcoder publishes its renditions to another ingest (an FFWATT_FFMPEG wrapper rewrites its
    outputs), so the players on the step's ingest wait for renditions that never come."""
    with private_ingest() as decoy:
        wrapper = tmp_path / "ffmpeg"
        wrapper.write_text(f"""#!{sys.executable}
import os, sys
args = sys.argv[1:]
if "-filter_complex" in args:
    args = [a.replace({ingest.url!r}, {decoy.url!r}) if i and args[i - 1] != "-i" else a for i, a in enumerate(args)]
os.execv({ffmpeg!r}, [{ffmpeg!r}, *args])
""")
        wrapper.chmod(0o755)
        job, contribution = step(1, first_frame_timeout_s=4)
        monkeypatch.setenv("FFWATT_FFMPEG", str(wrapper))
        start = time.monotonic()
        result = run_live_step(job, contribution, "run-test", settings=load_settings())
        seconds = time.monotonic() - start
    assert seconds < 4 + 4, seconds  # the timeout after the publish, plus joining and stopping
    assert result.error == "stream 1: r0 (640x360@800k) never appeared on the ingest within 4.0 s of the publish"
    assert result.streams[0].state == "failed" and result.streams[0].rendition_frames == [0, 0]
    assert ffmpeg_of(job) == []


@pytest.mark.e2e  # a private nginx-rtmp ingest or a Prefect server
def test_a_failed_step_skips_the_larger_steps_of_its_sweep(home: Path, prefect_server: dict[str, str],
                                                          monkeypatch: pytest.MonkeyPatch):
    """until_realtime_breaks: once a step breaks (here: it fails, the ingest being down), the larger
    steps of the sweep on this node are recorded as skipped, with the reason, and never run."""
    from prefect.settings import PREFECT_API_URL, PREFECT_LOGGING_TO_API_WHEN_MISSING_FLOW, temporary_settings

    from ffwatt.fleet.prefect_server import free_port
    from flows.live import run_live_job

    monkeypatch.setenv("FFWATT_HOME", str(home))
    monkeypatch.setenv("FFWATT_INGEST_URL", f"rtmp://127.0.0.1:{free_port()}/live")
    campaign = parse_campaign(live_spec(streams=[1], until_realtime_breaks=True, max_streams=4))
    settings = load_settings()
    reference = prepare_reference(campaign.inputs[0], "ffv1", settings)
    # The suite's server; the tasks run here outside a flow run, so their logs stay local.
    with temporary_settings(updates={PREFECT_API_URL: prefect_server["PREFECT_API_URL"],
                                     PREFECT_LOGGING_TO_API_WHEN_MISSING_FLOW: "ignore"}):
        rows = [run_live_job(job, reference, None, "run-skips", "here") for job in expand(campaign)]
    assert [(r.live_streams, r.status) for r in rows] == [(1, "failed"), (2, "skipped"), (4, "skipped")]
    assert rows[0].error is not None and rows[0].error.startswith("live-step: ingest rtmp://127.0.0.1:")
    assert rows[1].error is not None and rows[1].error.startswith("skipped: real time broke at 1 stream(s) (ingest ")
    assert rows[2].error == rows[1].error
    assert all(r.live_sweep_id == rows[0].live_sweep_id and r.live_ladder == "640x360@800k+320x180@250k"
               for r in rows)


@pytest.mark.e2e  # a private nginx-rtmp ingest or a Prefect server
def test_the_rtmp_exporter_emits_what_docs_metrics_md_lists_and_says_when_the_ingest_is_down(
        ingest: PrivateIngest, ffmpeg: str):
    import re

    from exporters.server import ExporterOptions
    from ffwatt.settings import REPO
    from tests.test_exporters import Served

    _, contribution = step(1)
    url = f"{ingest.url}/ffwatt-exporter-check"
    player = subprocess.Popen([ffmpeg, "-nostdin", "-loglevel", "error", "-rw_timeout", "10000000", "-i", url,
                               "-c", "copy", "-f", "null", "-"], start_new_session=True)
    publisher = subprocess.Popen([ffmpeg, "-nostdin", "-loglevel", "error", "-re", "-i", contribution.path, "-c",
                                  "copy", "-f", "flv", url], start_new_session=True)
    served = Served("rtmp", load_settings(), ExporterOptions(stats_url=ingest.stats_url))
    try:
        time.sleep(2)
        samples = served.scrape()
        stream = {"application": "live", "stream": "ffwatt-exporter-check"}
        assert [s.value for s in samples["ffwatt_rtmp_stream_publishing"] if s.labels == stream] == [1.0]
        assert [s.value for s in samples["ffwatt_rtmp_stream_players"] if s.labels == stream] == [1.0]
        (received,) = [s.value for s in samples["ffwatt_rtmp_stream_received_bytes_total"] if s.labels == stream]
        assert received > 100_000
        emitted = {name for name in samples if not name.endswith("_created")}
        rows = re.findall(r"^\| `(ffwatt_[a-z_]+)` \| ([a-z, ]+) \|", (REPO / "docs/metrics.md").read_text(),
                          re.MULTILINE)
        assert emitted == {name for name, where in rows if where in ("rtmp", "all")}
        down = Served("rtmp", load_settings(), ExporterOptions(stats_url="http://127.0.0.1:9/stat"))
        try:
            assert [s.value for s in down.scrape()["ffwatt_rtmp_up"]] == [0.0]
        finally:
            down.close()
    finally:
        served.close()
        for process in (publisher, player):
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()


def test_the_stack_s_ingest_configuration_is_one_nginx_accepts(tmp_path: Path):
    from master.ingest import render_config

    (tmp_path / "logs").mkdir()
    conf = tmp_path / "nginx.conf"
    conf.write_text(render_config(tmp_path, listen="127.0.0.1:1", stats_listen="127.0.0.1:2",
                                  allow="127.0.0.1,10.0.0.0/8,::1"))
    done = subprocess.run(["nginx", "-t", "-e", "stderr", "-p", str(tmp_path), "-c", str(conf)],
                          capture_output=True, text=True, timeout=30)
    assert done.returncode == 0, done.stderr
    text = conf.read_text()
    assert "allow publish 10.0.0.0/8;" in text and "deny publish all;" in text and "record off;" in text
