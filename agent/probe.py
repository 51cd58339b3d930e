"""What this node is and which encoders really work on it.

An encoder counts as working only after a short real encode succeeds: FFmpeg
builds list NVENC, QSV and VAAPI encoders whatever the hardware, and NVML reports
encoder capacity 100 on an H200, which has no NVENC.
"""

from __future__ import annotations

from pydantic import BaseModel

from ffwatt.encoders import PROFILES
from ffwatt.hardware.facts import describe_node
from ffwatt.hardware.ffmpeg import EncoderCheck, check_encoder, probe_build
from ffwatt.nodefacts import NodeFacts
from ffwatt.settings import Settings

__all__ = ["EncoderCheck", "NodeProbe", "check_encoder", "probe_node"]


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


def probe_node(settings: Settings, *, encoders: list[str] | None = None) -> NodeProbe:
    """Facts about this node, and a real test encode with each encoder ffwatt knows that FFmpeg has."""
    facts = describe_node(settings)
    build = probe_build(facts.ffmpeg_path)
    candidates = encoders if encoders is not None else [name for name in PROFILES if name in build.encoders]
    return NodeProbe(facts=facts, encoders=[check_encoder(facts.ffmpeg_path, name) for name in candidates])
