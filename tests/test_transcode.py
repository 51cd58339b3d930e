"""The encode step against real FFmpeg on a tiny clip."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from ffwatt.errors import EncodeFailed
from ffwatt.jobs import expand
from ffwatt.settings import load_settings
from ffwatt.validation import parse_campaign
from tasks.generate import prepare_reference
from tasks.quality import score
from tasks.transcode import encode, encode_args
from testbed.powercap import intel_two_sockets, set_energy


def campaign(**matrix) -> dict:
    return {
        "name": "unit",
        "inputs": [{"name": "tiny", "source": "testsrc2", "size": "160x120", "fps": 25, "duration_s": 1}],
        "matrix": {"encoders": ["libx264"], "rate_control": [{"mode": "crf", "values": [23]}]} | matrix,
        "keep_outputs": True,
    }


def test_args_follow_the_encoder_profile(tmp_path: Path):
    jobs = expand(parse_campaign(campaign(
        encoders=[{"name": "libvpx-vp9", "presets": ["5"]}, {"name": "h264_nvenc", "presets": ["p1"]}],
        rate_control=[{"mode": "crf", "values": [30]}], resolutions=["80x60"])))
    from tasks.generate import Reference

    ref = Reference(name="r", path="/ref.mkv", width=160, height=120, fps=25, frames=25)
    vp9 = encode_args(jobs[0], ref, tmp_path / "o.mkv")
    assert vp9[vp9.index("-c:v") + 1] == "libvpx-vp9"
    assert "-cpu-used" in vp9 and vp9[vp9.index("-crf") + 1] == "30" and vp9[vp9.index("-b:v") + 1] == "0"
    assert vp9[vp9.index("-vf") + 1] == "scale=80:60:flags=bicubic"
    nvenc = encode_args(jobs[1], ref, tmp_path / "o.mkv")
    assert nvenc[nvenc.index("-cq") + 1] == "30" and nvenc[nvenc.index("-preset") + 1] == "p1"


@contextlib.contextmanager
def moving_counters(zones: dict[str, Path], uj_per_tick: int = 5_000) -> Iterator[None]:
    """The synthetic "hardware": both package counters moving every millisecond, like RAPL's."""
    stop = threading.Event()

    def tick() -> None:
        value = 0
        while not stop.is_set():
            value += uj_per_tick
            for key in ("package-0", "package-1"):
                set_energy(zones[key], value)
            time.sleep(0.001)

    thread = threading.Thread(target=tick, daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join()


def test_real_encode_is_measured_and_cached_reference_reused(ffwatt_env: Path, monkeypatch):
    zones = intel_two_sockets(ffwatt_env / "powercap")
    monkeypatch.setenv("FFWATT_POWERCAP_ROOT", str(ffwatt_env / "powercap"))
    settings = load_settings()
    (job,) = expand(parse_campaign(campaign()))
    reference = prepare_reference(job.input, "ffv1", settings)
    assert (reference.width, reference.height, reference.frames) == (160, 120, 25)
    mtime = Path(reference.path).stat().st_mtime_ns
    assert prepare_reference(job.input, "ffv1", settings) == reference
    assert Path(reference.path).stat().st_mtime_ns == mtime  # not regenerated

    with moving_counters(zones):
        result = encode(job, reference, "run1", attempt=1, settings=settings)
    assert result.frames == 25 and result.output_bytes == Path(result.output_path).stat().st_size
    assert result.cpu_user_s + result.cpu_sys_s > 0 and result.max_rss_bytes > 1_000_000
    assert result.wall_s > 0 and result.encode_fps == pytest.approx(25 / result.wall_s)
    assert "-crf 23" in result.ffmpeg_cmd
    # The meter read the synthetic package counters around and during the encode.
    assert result.energy.cpu_source == "rapl" and set(result.energy.cpu_zones_j or {}) == {"package-0", "package-1"}
    assert result.energy.cpu_j and result.energy.cpu_j > 0

    scores = score(job, reference, Path(result.output_path), settings)
    assert 30 < scores.psnr < 60 and 0.9 < scores.ssim <= 1 and 50 < scores.vmaf <= 100
    assert scores.quality_frames == 25 and scores.frames is not None and len(scores.frames) == 25


def test_counters_that_stand_still_during_a_real_encode_are_not_believed(ffwatt_env: Path, monkeypatch):
    """A tree whose counters never move (as some VMs expose) gave jobs of 0 J labelled rapl."""
    intel_two_sockets(ffwatt_env / "powercap")
    monkeypatch.setenv("FFWATT_POWERCAP_ROOT", str(ffwatt_env / "powercap"))
    settings = load_settings()
    spec = campaign(resolutions=["source"]) | {"inputs": [{"name": "still", "source": "testsrc2", "size": "1280x720",
                                                          "fps": 30, "duration_s": 2}]}
    (job,) = expand(parse_campaign(spec | {"quality": []}))
    reference = prepare_reference(job.input, "ffv1", settings)
    result = encode(job, reference, "run1", attempt=1, settings=settings)
    assert result.wall_s > 0.6  # longer than FROZEN_AFTER_S
    assert result.energy.cpu_source == "estimated" and result.energy.cpu_zones_j is None
    assert "did not advance" in result.energy.cpu_basis and (result.energy.cpu_j or 0) > 0


def test_y4m_reference(ffwatt_env: Path):
    (job,) = expand(parse_campaign(campaign() | {"reference_format": "y4m"}))
    reference = prepare_reference(job.input, "y4m", load_settings())
    assert reference.path.endswith(".y4m") and reference.frames == 25


def test_file_input_is_prepared_with_its_own_size_and_rate(ffwatt_env: Path, ffmpeg: str):
    import subprocess

    clip = ffwatt_env / "clip.mp4"
    subprocess.run([ffmpeg, "-v", "error", "-f", "lavfi", "-i", "testsrc=size=192x108:rate=12", "-frames:v", "30",
                    "-pix_fmt", "yuv420p", str(clip)], check=True)
    data = campaign()
    data["inputs"] = [{"name": "clip", "path": str(clip), "duration_s": 2}]
    (job,) = expand(parse_campaign(data))
    reference = prepare_reference(job.input, "ffv1", load_settings())
    assert (reference.width, reference.height, reference.fps, reference.frames) == (192, 108, 12.0, 24)


def test_ffmpeg_failure_carries_the_reason_and_leaves_no_output(ffwatt_env: Path):
    settings = load_settings()
    data = campaign()
    data["matrix"]["encoders"] = [{"name": "libx264", "extra_args": ["-profile:v", "no-such-profile"]}]
    (job,) = expand(parse_campaign(data))
    reference = prepare_reference(job.input, "ffv1", settings)
    with pytest.raises(EncodeFailed) as info:
        encode(job, reference, "run1", attempt=2, settings=settings)
    assert "no-such-profile" in str(info.value) and info.value.attempt == 2
    assert "FFmpeg exited 234" in str(info.value) and "-profile:v no-such-profile" in str(info.value)
    assert not list((settings.outputs_dir).rglob("*.mkv"))


def test_a_hung_encode_is_killed_at_the_deadline_with_everything_it_started(ffwatt_env: Path, ffmpeg: str,
                                                                            monkeypatch):
    """An FFWATT_FFMPEG wrapper that doesn't exec: the real encoder is its child, looping its input
    forever. The deadline must kill both, not only the wrapper."""
    wrapper = ffwatt_env / "ffmpeg-wrapper"
    wrapper.write_text(f'#!/bin/sh\n"{ffmpeg}" -stream_loop -1 "$@"\necho "wrapper done"\n')
    wrapper.chmod(0o755)
    settings = load_settings()
    (job,) = expand(parse_campaign(campaign() | {"job_timeout_s": 2}))
    reference = prepare_reference(job.input, "ffv1", settings)
    monkeypatch.setenv("FFWATT_FFMPEG", str(wrapper))
    started = time.monotonic()
    with pytest.raises(EncodeFailed, match="killed after"):
        encode(job, reference, "run1", attempt=1, settings=load_settings())
    assert time.monotonic() - started < 10
    still_running = [pid for pid in os.listdir("/proc") if pid.isdigit() and reference.path.encode() in
                     _cmdline(pid)]
    assert still_running == []


def test_ffmpeg_dies_with_the_process_that_ran_it(tmp_path: Path, ffmpeg: str):
    """An agent SIGKILLed mid-encode can't kill its FFmpeg, and FFmpeg doesn't stop when its progress
    pipe breaks: the kernel must kill it (PR_SET_PDEATHSIG), or it encodes on, unseen, beside the
    batch that replaces it."""
    marker = str(tmp_path / "orphan.mkv")  # names this test's FFmpeg in /proc, and nothing else
    runner = subprocess.Popen([sys.executable, "-c", f"""
import sys
from ffwatt.hardware.ffmpeg import run_ffmpeg
run_ffmpeg({ffmpeg!r}, ["-re", "-f", "lavfi", "-i", "testsrc2=size=160x120:rate=10", "-t", "120",
                        "-c:v", "libx264", "-preset", "ultrafast", {marker!r}], timeout_s=300,
           on_start=lambda pid: print(pid, flush=True))
"""], stdout=subprocess.PIPE, text=True)
    assert runner.stdout is not None
    encoder = runner.stdout.readline().strip()
    try:
        assert marker.encode() in _cmdline(encoder)
        runner.kill()  # as the agent is killed: no handler, no finally
        runner.wait()
        deadline = time.monotonic() + 10
        while marker.encode() in _cmdline(encoder) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert marker.encode() not in _cmdline(encoder), "FFmpeg outlived the process that ran it"
    finally:
        if marker.encode() in _cmdline(encoder):  # still this test's FFmpeg: ours to stop
            os.kill(int(encoder), signal.SIGKILL)


def _cmdline(pid: str) -> bytes:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return b""


def test_mpeg4_quality_is_its_quantiser_scale(ffwatt_env: Path):
    """mpeg4 ignores -crf and -qp: its profile spells a constant quantiser -q:v, and the points differ."""
    settings = load_settings()
    jobs = expand(parse_campaign(campaign(encoders=["mpeg4"], rate_control=[{"mode": "qp", "values": [2, 31]}])
                                 | {"quality": []}))
    reference = prepare_reference(jobs[0].input, "ffv1", settings)
    fine, coarse = (encode(job, reference, "run1", attempt=1, settings=settings) for job in jobs)
    assert "-q:v 2" in (fine.ffmpeg_cmd or "") and "-crf" not in (fine.ffmpeg_cmd or "")
    assert fine.output_hash and coarse.output_hash and fine.output_hash != coarse.output_hash
    assert (fine.output_bytes or 0) > 2 * (coarse.output_bytes or 0)


def test_identical_video_for_different_settings_is_marked_in_the_rows(ffwatt_env: Path):
    """A setting that has no effect (here a CRF overridden by extra_args) made two rows that read as two
    points of a curve; their output_hash shows the videos are the same, and same_output_as says so."""
    from ffwatt.results import read_results, write_job_row
    from tasks.record import build_row, record_same_outputs

    settings = load_settings()
    data = campaign(encoders=[{"name": "libx264", "presets": ["ultrafast"], "extra_args": ["-crf", "30"]},
                              {"name": "libx264", "presets": ["veryfast"]}],
                    rate_control=[{"mode": "crf", "values": [20, 40]}])
    jobs = expand(parse_campaign(data | {"quality": [], "repetitions": 2}))
    reference = prepare_reference(jobs[0].input, "ffv1", settings)
    for job in jobs:
        encoded = encode(job, reference, "run1", attempt=1, settings=settings)
        write_job_row(settings.results_dir, build_row(job=job, run_id="run1", node="n", reference=reference,
                                                       encoded=encoded))
    marked = record_same_outputs("unit", "run1")
    rows = read_results(settings.results_dir, campaign="unit", run_id="run1")
    overridden = rows[rows.preset == "ultrafast"]
    assert len(marked) == 4 and overridden.output_hash.nunique() == 1  # both CRFs, both repetitions
    assert set(overridden.same_output_as) == {"libx264 ultrafast crf 20 160x120", "libx264 ultrafast crf 40 160x120"}
    assert rows[rows.preset == "veryfast"].same_output_as.isna().all()  # repetitions alike are no finding
    assert rows[rows.preset == "veryfast"].output_hash.nunique() == 2
