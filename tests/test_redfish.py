"""Wall power from a BMC over Redfish: a real encode's window integrated from a Redfish server the
test starts (a constant 123 W, so the expected energy is 123 W x the encode's wall time, measured
by the encode itself), and what the row says when the BMC refuses or stops answering mid-job."""

from __future__ import annotations

import time
from pathlib import Path

import httpx
import pytest

from exporters.redfish import RedfishError, WallMeter, read_wall_power
from ffwatt.jobs import expand
from ffwatt.settings import Settings, load_settings
from ffwatt.validation import parse_campaign
from tasks.energy import energy_report
from tasks.generate import prepare_reference
from tasks.transcode import encode
from testbed.redfish import bmc

WATTS = 123.0
# An encode of a few seconds on one thread: several readings at the fastest interval the setting allows.
CAMPAIGN = {
    "name": "wall",
    "inputs": [{"name": "clip", "source": "testsrc2", "size": "1280x720", "fps": 25, "duration_s": 4}],
    "matrix": {"encoders": [{"name": "libx264", "presets": ["medium"]}],
               "rate_control": [{"mode": "crf", "values": [23]}]},
    "threads": 1,
}


def _encode_row(ffwatt_env: Path, monkeypatch: pytest.MonkeyPatch, url: str, user: str, password: str):
    for name, value in {"FFWATT_REDFISH_URL": url, "FFWATT_REDFISH_USER": user,
                        "FFWATT_REDFISH_PASSWORD": password, "FFWATT_REDFISH_INTERVAL_S": "0.5"}.items():
        monkeypatch.setenv(name, value)
    settings = load_settings()
    (job,) = expand(parse_campaign(CAMPAIGN))
    reference = prepare_reference(job.input, "ffv1", settings)
    result = encode(job, reference, "run-1", attempt=1, settings=settings)
    report = energy_report(result.energy, ffmpeg_cpu_s=result.cpu_s, frames=result.frames, idle=None,
                           settings=settings)
    return result, report


def test_a_job_s_wall_energy_is_the_bmc_s_power_over_its_window(ffwatt_env: Path, monkeypatch: pytest.MonkeyPatch):
    with bmc(WATTS) as server:
        result, report = _encode_row(ffwatt_env, monkeypatch, server.url, server.user, server.password)
    assert result.wall_s is not None and result.wall_s > 1.0, "the encode must span several readings"
    expected = WATTS * result.wall_s
    assert report.wall_energy_j == pytest.approx(expected, rel=0.03)
    assert report.wall_source == "redfish" and report.wall_missing is None
    assert server.reads >= 3  # sampled through the window, not once
    assert report.energy_j != report.wall_energy_j  # kept apart from the CPU + GPU figure
    print(f"\nwall: {report.wall_energy_j:.1f} J over {result.wall_s:.2f} s ({server.reads} readings); "
          f"123 W x window = {expected:.1f} J")


def test_refused_credentials_leave_the_wall_figure_null_with_why(ffwatt_env: Path, monkeypatch: pytest.MonkeyPatch):
    with bmc(WATTS) as server:
        result, report = _encode_row(ffwatt_env, monkeypatch, server.url, server.user, "wrong")
    assert report.wall_energy_j is None and report.wall_source is None
    assert report.wall_missing is not None and "refused the credentials (401)" in report.wall_missing
    assert result.frames == 100 and report.energy_j is not None  # the job itself is whole


def test_a_bmc_that_stops_answering_mid_job_leaves_the_wall_figure_null_with_why(
        ffwatt_env: Path, monkeypatch: pytest.MonkeyPatch):
    with bmc(WATTS, answer_reads=2) as server:
        result, report = _encode_row(ffwatt_env, monkeypatch, server.url, server.user, server.password)
        assert server.hung.is_set()
    assert report.wall_energy_j is None
    assert report.wall_missing is not None and "did not answer" in report.wall_missing, report.wall_missing
    assert result.frames == 100 and report.energy_j is not None


def test_the_wall_meter_integrates_over_its_own_window_at_the_set_rate():
    with bmc(WATTS) as server:
        settings = Settings(redfish_url=server.url, redfish_user=server.user, redfish_password=server.password,
                            redfish_interval_s=0.5)
        meter = WallMeter(settings)
        began = time.time()
        meter.start()
        time.sleep(2.2)
        ended = time.time()
        reading = meter.stop((began, ended))
        window = ended - began
    assert reading.energy_j == pytest.approx(WATTS * window, rel=0.03)
    assert 5 <= reading.samples <= 7  # at 0, 0.5, ... 2.0 s, and one at the end


def test_a_reading_says_what_is_wrong_in_one_line():
    with bmc(WATTS) as server, httpx.Client(auth=(server.user, server.password)) as client:
        assert read_wall_power(client, server.url) == WATTS
        with pytest.raises(RedfishError, match="answered 404"):
            read_wall_power(client, server.url.replace("/Power", "/Thermal"))
    with httpx.Client(timeout=1) as client, pytest.raises(RedfishError, match="did not answer"):
        read_wall_power(client, server.url)  # the server is gone


def test_redfish_settings_are_checked():
    from ffwatt.errors import SettingsError

    with pytest.raises(SettingsError, match="FFWATT_REDFISH_URL"):
        load_settings(redfish_url="bmc.example/redfish")
    with pytest.raises(SettingsError, match="FFWATT_REDFISH_INTERVAL_S"):
        load_settings(redfish_interval_s=0.01)
    assert load_settings(redfish_verify_tls="false").redfish_verify_tls is False
    assert "calvin" not in repr(load_settings(redfish_password="calvin"))


def test_the_bmc_s_certificate_is_verified_unless_told_not_to(tmp_path: Path):
    from master.tls import generate_ca_and_server_cert

    generate_ca_and_server_cert(tmp_path, ["127.0.0.1"])  # a private CA, as a BMC's self-signed one is to us
    with bmc(WATTS, tls=(tmp_path / "server.pem", tmp_path / "server-key.pem")) as server:
        assert server.url.startswith("https://")
        base = {"redfish_url": server.url, "redfish_user": server.user, "redfish_password": server.password,
                "redfish_interval_s": 0.5}
        verified = WallMeter(Settings(**base))
        verified.start()
        refused = verified.stop()
        unverified = WallMeter(Settings(**base, redfish_verify_tls=False))
        unverified.start()
        time.sleep(0.6)
        read = unverified.stop()
    assert refused.energy_j is None and refused.missing is not None and "CERTIFICATE_VERIFY_FAILED" in refused.missing
    assert read.missing is None and read.energy_j is not None and read.samples >= 2
