"""What this node is and which encoders really work on it.

An encoder counts as working only after a short real encode succeeds: FFmpeg
builds list NVENC, QSV and VAAPI encoders whatever the hardware, and NVML reports
encoder capacity 100 on an H200, which has no NVENC.
"""

from __future__ import annotations

import subprocess
import time

from pydantic import BaseModel

from ffwatt.encoders import PROFILES, Pool, profile_for
from ffwatt.hardware.facts import describe_node
from ffwatt.hardware.ffmpeg import probe_build
from ffwatt.nodefacts import NodeFacts
from ffwatt.settings import Settings

__all__ = ["EncoderCheck", "NodeProbe", "check_encoder", "probe_node"]


class EncoderCheck(BaseModel):
    encoder: str
    pool: Pool
    works: bool
    seconds: float
    error: str | None = None


class NodeProbe(BaseModel):
    """The node's facts and which of its encoders really work."""

    facts: NodeFacts
    encoders: list[EncoderCheck]

    @property
    def working_encoders(self) -> list[str]:
        return [check.encoder for check in self.encoders if check.works]

    @property
    def pools(self) -> list[str]:
        """The work pools this node can serve: one per kind of hardware with a working encoder."""
        return sorted({check.pool for check in self.encoders if check.works})


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
    facts = describe_node(settings)
    build = probe_build(facts.ffmpeg_path)
    candidates = encoders if encoders is not None else [name for name in PROFILES if name in build.encoders]
    return NodeProbe(facts=facts, encoders=[check_encoder(facts.ffmpeg_path, name) for name in candidates])
