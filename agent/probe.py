"""What this node is and which encoders really work on it.

An encoder counts as working only after a short real encode succeeds: FFmpeg
builds list NVENC, QSV and VAAPI encoders whatever the hardware, and NVML reports
encoder capacity 100 on an H200, which has no NVENC.
"""

from __future__ import annotations

import os
import platform
import subprocess
import time
from pathlib import Path

from pydantic import BaseModel

from ffwatt.encoders import PROFILES, Pool, profile_for
from ffwatt.ffmpeg import ffmpeg_path, probe_build
from ffwatt.hardware import cpu_facts
from ffwatt.nvml import open_nvml
from ffwatt.settings import Settings

__all__ = ["EncoderCheck", "NodeProbe", "check_encoder", "probe_node"]


class EncoderCheck(BaseModel):
    encoder: str
    pool: Pool
    works: bool
    seconds: float
    error: str | None = None


class NodeProbe(BaseModel):
    node: str
    cpu_model: str
    logical_cpus: int
    memory_bytes: int | None
    kernel: str
    gpus: list[dict[str, object]]
    gpu_unavailable: str | None
    ffmpeg: str
    ffmpeg_version: str
    encoders: list[EncoderCheck]

    @property
    def working_encoders(self) -> list[str]:
        return [check.encoder for check in self.encoders if check.works]

    @property
    def pools(self) -> list[str]:
        """The work pools this node can serve: one per kind of hardware with a working encoder."""
        return sorted({check.pool for check in self.encoders if check.works})


def _memory_bytes(proc_root: Path) -> int | None:
    try:
        for line in (proc_root / "meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return None


def check_encoder(ffmpeg: str, encoder: str, *, timeout_s: float = 30) -> EncoderCheck:
    """Encode ten small frames with ``encoder`` and report whether it worked."""
    profile = profile_for(encoder)
    filters = [profile.upload_filter] if profile.upload_filter else []
    command = [ffmpeg, "-hide_banner", "-nostdin", "-loglevel", "error", *profile.input_args,
               "-f", "lavfi", "-i", "testsrc2=size=320x240:rate=30", "-frames:v", "10",
               *(["-vf", ",".join(filters)] if filters else []),
               "-c:v", encoder, *profile.preset_args(profile.default_preset), "-f", "null", "-"]
    start = time.perf_counter()
    try:
        done = subprocess.run(command, capture_output=True, text=True, timeout=timeout_s)
        error = None if done.returncode == 0 else (done.stderr.strip().splitlines() or ["failed"])[0]
    except subprocess.TimeoutExpired:
        error = f"no answer within {timeout_s:g} s"
    return EncoderCheck(encoder=encoder, pool=profile.pool, works=error is None,
                        seconds=time.perf_counter() - start, error=error)


def probe_node(settings: Settings, *, encoders: list[str] | None = None) -> NodeProbe:
    """Facts about this node, and a real test encode with each encoder ffwatt knows that FFmpeg has."""
    ffmpeg = ffmpeg_path(settings)
    build = probe_build(ffmpeg)
    candidates = encoders if encoders is not None else [name for name in PROFILES if name in build.encoders]
    session = open_nvml() if settings.gpu else "GPU metering off (FFWATT_GPU=false)"
    if isinstance(session, str):
        gpus: list[dict[str, object]] = []
        gpu_unavailable: str | None = session
    else:
        gpus = [{"index": g.index, "uuid": g.uuid, "name": g.name, "driver": session.driver_version}
                for g in session.gpus]
        gpu_unavailable = None
        session.close()
    facts = cpu_facts(settings.proc_root)
    return NodeProbe(
        node=settings.node,
        cpu_model=str(facts["cpu_model"]),
        logical_cpus=int(facts["logical_cpus"] or os.cpu_count() or 1),  # type: ignore[call-overload]
        memory_bytes=_memory_bytes(settings.proc_root),
        kernel=platform.release(),
        gpus=gpus,
        gpu_unavailable=gpu_unavailable,
        ffmpeg=ffmpeg,
        ffmpeg_version=build.version,
        encoders=[check_encoder(ffmpeg, name) for name in candidates],
    )
