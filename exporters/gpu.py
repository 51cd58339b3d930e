"""NVIDIA GPUs through NVML: energy counter, power, utilisation (encoder and decoder
too), clocks, memory, temperature and encoder sessions, per GPU.

NVML calls cost ~3.5 ms each on an H200, so a background sampler reads every GPU
once per interval and scrapes serve its latest values. Without an NVIDIA driver
the exporter reports 0 GPUs and why, and keeps running.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterable
from typing import Any

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric

from exporters._collector import NAMESPACE, Sampler
from ffwatt.hardware.nvml import GpuReading, NvmlSession, open_gpus, read_gpu

__all__ = ["GpuCollector"]

log = logging.getLogger("ffwatt.exporters.gpu")
_LABELS = ["index", "uuid", "name"]
# (field of GpuReading, metric suffix, help, is counter)
_SERIES: tuple[tuple[str, str, str, bool], ...] = (
    ("energy_j", "energy_joules", "Energy since the driver loaded (NVML total-energy counter).", True),
    ("power_w", "power_watts", "Power draw (NVML power usage).", False),
    ("power_limit_w", "power_limit_watts", "Enforced power limit.", False),
    ("utilization", "utilization_ratio", "Share of time a kernel ran (0..1).", False),
    ("memory_utilization", "memory_utilization_ratio", "Share of time memory was read or written (0..1).",
     False),
    ("encoder_utilization", "encoder_utilization_ratio", "NVENC utilisation (0..1). GPUs without NVENC "
     "(H100, H200) still answer 0.", False),
    ("decoder_utilization", "decoder_utilization_ratio", "NVDEC utilisation (0..1).", False),
    ("sm_clock_hz", "sm_clock_hertz", "SM clock.", False),
    ("video_clock_hz", "video_clock_hertz", "Video engine clock.", False),
    ("memory_used_bytes", "memory_used_bytes", "Memory in use.", False),
    ("memory_total_bytes", "memory_total_bytes", "Memory installed.", False),
    ("temperature_c", "temperature_celsius", "GPU temperature.", False),
    ("encoder_sessions", "encoder_sessions", "Active NVENC sessions.", False),
)


class GpuCollector:
    name = "gpu"

    def __init__(self, *, nvml: Any | None = None, enabled: bool = True, interval_s: float = 1.0) -> None:
        self._lock = threading.Lock()
        opened = open_gpus(enabled, nvml)
        self.session: NvmlSession | None = None if isinstance(opened, str) else opened
        self.unavailable: str | None = opened if isinstance(opened, str) else None
        self._readings: list[GpuReading] = []
        self.sampler = Sampler(self.name, interval_s, self.sample) if self.session else None

    def start(self) -> GpuCollector:
        if self.session is None:
            log.warning("no GPUs: %s", self.unavailable)
        else:
            log.info("NVML driver %s, GPUs: %s", self.session.driver_version,
                     ", ".join(f"{g.index}:{g.name}" for g in self.session.gpus))
        if self.sampler:
            self.sampler.start()
        return self

    def stop(self) -> None:
        if self.sampler:
            self.sampler.stop()
        if self.session:
            self.session.close()

    def sample(self) -> None:
        assert self.session is not None
        readings = [read_gpu(self.session, position) for position in range(len(self.session.gpus))]
        with self._lock:
            self._readings = readings

    def collect(self) -> Iterable[Metric]:
        count = GaugeMetricFamily(f"{NAMESPACE}_gpu_count", "NVIDIA GPUs visible through NVML.")
        info = GaugeMetricFamily(f"{NAMESPACE}_gpu_nvml_info",
                                 "NVML state: the driver version, or why NVML is unavailable.",
                                 labels=["driver_version", "reason"])
        if self.session is None:
            count.add_metric([], 0.0)
            info.add_metric(["", self.unavailable or ""], 1.0)
            yield count
            yield info
            return
        if self.sampler:
            self.sampler.check()
        count.add_metric([], float(len(self.session.gpus)))
        info.add_metric([self.session.driver_version, ""], 1.0)
        yield count
        yield info
        with self._lock:
            readings = list(self._readings)
        for field, suffix, help_text, is_counter in _SERIES:
            family_type = CounterMetricFamily if is_counter else GaugeMetricFamily
            family = family_type(f"{NAMESPACE}_gpu_{suffix}", help_text, labels=_LABELS)
            for gpu, reading in zip(self.session.gpus, readings):
                value = getattr(reading, field)
                if value is not None:
                    family.add_metric([str(gpu.index), gpu.uuid, gpu.name], float(value))
            yield family
