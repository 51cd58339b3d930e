"""What a node is: the facts a reader of its energy figures needs, stored with every run.

Gathered by :func:`ffwatt.hardware.facts.describe_node` on the node that encodes,
sent home with its batch on a fleet, and kept per node in the run's ``_run.json``.
"""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import BaseModel

__all__ = ["GpuDevice", "IdleBaseline", "NodeFacts"]


class GpuDevice(BaseModel):
    index: int
    uuid: str
    name: str


class NodeFacts(BaseModel):
    name: str
    cpu_model: str
    logical_cpus: int
    memory_bytes: int | None = None
    governor: str | None = None
    turbo: bool | None = None
    max_frequency_hz: int | None = None
    kernel: str
    cpu_energy: str  # "rapl", or why the CPU's energy is estimated here
    gpus: list[GpuDevice] = []
    gpu_driver: str | None = None
    gpu_unavailable: str | None = None  # why there are no GPUs, when there are none
    ffmpeg_path: str
    ffmpeg_version: str
    ffmpeg_configuration: str
    price_per_kwh: float | None = None
    co2_g_per_kwh: float | None = None


class IdleBaseline(BaseModel):
    """A node's power while idle, and when and how it was measured."""

    seconds: float
    cpu_w: float | None
    cpu_source: Literal["rapl", "estimated"] | None
    gpu_w: float | None
    basis: str
    dram_w: float | None = None  # RAPL's DRAM zones, where the node has them
    node: str = ""
    measured_at: datetime | None = None
    reused: bool = False  # measured before this run, within the campaign's idle_baseline_reuse_s

    def describe(self, now: datetime | None = None) -> str:
        """One line for people: the power, how it was measured, and when when it wasn't this run."""
        watts = (self.cpu_w or 0) + (self.dram_w or 0) + (self.gpu_w or 0)
        text = f"{watts:.1f} W over {self.seconds:.1f} s ({self.cpu_source or 'no CPU reading'}); {self.basis}"
        if self.reused and self.measured_at is not None:
            age = ((now or datetime.now(self.measured_at.tzinfo)) - self.measured_at).total_seconds()
            text += f"; reused, measured {age / 60:.0f} min earlier"
        return text
