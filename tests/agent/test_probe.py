"""An encoder works only when a real encode proves it. The suite hides CUDA devices
(``CUDA_VISIBLE_DEVICES=""``, set in conftest), so NVENC is absent here by the seam,
whatever GPU the host has."""

from __future__ import annotations

import json

from agent.probe import check_encoder, probe_node
from ffwatt.settings import Settings
from tests.conftest import ffwatt


def test_a_working_encoder_is_proven_by_encoding(ffmpeg: str):
    check = check_encoder(ffmpeg, "libx264")
    assert check.works and check.pool == "cpu" and check.error is None


def test_a_listed_encoder_without_its_device_is_refused_with_the_reason(ffmpeg: str):
    check = check_encoder(ffmpeg, "h264_nvenc")  # listed by the bundled build; no CUDA device visible
    assert not check.works and check.pool == "nvidia" and check.error


def test_probe_derives_pools_from_working_encoders():
    probe = probe_node(Settings(), encoders=["libx264", "libx265", "h264_nvenc"])
    assert probe.working_encoders == ["libx264", "libx265"] and probe.pools == ["cpu"]
    assert probe.facts.logical_cpus >= 1 and probe.facts.memory_bytes and probe.facts.ffmpeg_version
    assert probe.facts.gpu_unavailable == "GPU metering off (FFWATT_GPU=false)"


def test_cli_probe_json():
    done = ffwatt("agent", "probe", "-o", "json")
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    works = {e["encoder"]: e["works"] for e in report["encoders"]}
    assert works["libx264"] and works["libsvtav1"] and not works.get("h264_nvenc", False)
    assert report["facts"]["cpu_energy"].startswith("estimated: no RAPL zones under")
