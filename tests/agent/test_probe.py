from __future__ import annotations

import json
import subprocess

from agent.probe import check_encoder, probe_node
from ffwatt.settings import Settings
from tests.conftest import ffwatt_cli


def test_a_working_encoder_is_proven_by_encoding(ffmpeg: str):
    check = check_encoder(ffmpeg, "libx264")
    assert check.works and check.pool == "cpu" and check.error is None


def test_a_listed_encoder_without_hardware_is_refused_with_the_reason(ffmpeg: str):
    # The bundled FFmpeg lists NVENC, but this machine has no NVIDIA GPU.
    check = check_encoder(ffmpeg, "h264_nvenc")
    assert not check.works and check.pool == "nvidia" and check.error


def test_probe_derives_pools_from_working_encoders():
    probe = probe_node(Settings(), encoders=["libx264", "libx265", "h264_nvenc"])
    assert probe.working_encoders == ["libx264", "libx265"] and probe.pools == ["cpu"]
    assert probe.logical_cpus >= 1 and probe.memory_bytes and probe.ffmpeg_version


def test_cli_probe_json():
    done = subprocess.run([ffwatt_cli(), "agent", "probe", "--json"], capture_output=True, text=True, timeout=180)
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    works = {e["encoder"]: e["works"] for e in report["encoders"]}
    assert works["libx264"] and works["libsvtav1"] and not works.get("h264_nvenc", False)
