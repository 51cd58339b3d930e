"""NVIDIA GPUs through NVML, behind one seam.

Everything goes through an ``nvml`` object with pynvml's function names: the real
``pynvml`` module in production, a fake fed from recorded readings in tests.
:func:`open_nvml` never raises for a missing driver: it returns the reason, so a
node without NVIDIA GPUs reports "0 GPUs, because ..." and carries on.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pynvml

__all__ = ["GpuInfo", "GpuReading", "NvmlSession", "ReplayNvml", "describe_gpus", "open_gpus", "open_nvml",
           "read_gpu"]


@dataclass(frozen=True)
class GpuInfo:
    index: int
    uuid: str
    name: str


@dataclass(frozen=True)
class GpuReading:
    """One sample of one GPU. Values NVML refused are None."""

    energy_j: float | None
    power_w: float | None
    power_limit_w: float | None
    utilization: float | None  # 0..1
    memory_utilization: float | None
    encoder_utilization: float | None
    decoder_utilization: float | None
    sm_clock_hz: float | None
    video_clock_hz: float | None
    memory_used_bytes: float | None
    memory_total_bytes: float | None
    temperature_c: float | None
    encoder_sessions: int | None


class NvmlSession:
    """An initialised NVML with the node's GPUs. Close it when done."""

    def __init__(self, nvml: Any) -> None:
        self.nvml = nvml
        self.driver_version = _text(nvml.nvmlSystemGetDriverVersion())
        self.handles: list[Any] = []
        self.gpus: list[GpuInfo] = []
        for index in range(nvml.nvmlDeviceGetCount()):
            handle = nvml.nvmlDeviceGetHandleByIndex(index)
            self.handles.append(handle)
            self.gpus.append(GpuInfo(index, _text(nvml.nvmlDeviceGetUUID(handle)),
                                     _text(nvml.nvmlDeviceGetName(handle))))

    def energy_j(self) -> dict[int, float]:
        """Each GPU's total-energy counter (J since driver load), the cheap read for job windows."""
        readings = {}
        for gpu, handle in zip(self.gpus, self.handles):
            value = _try(self.nvml.nvmlDeviceGetTotalEnergyConsumption, handle)
            if value is not None:
                readings[gpu.index] = value / 1000.0
        return readings

    def video_share(self, pid: int, since_us: int) -> dict[int, float | None]:
        """Per GPU, the share of encoder + decoder utilisation since ``since_us`` (unix µs) that
        belongs to ``pid``; None where NVML has no per-process samples for the window (the
        driver reports none when no process used the GPU)."""
        shares: dict[int, float | None] = {}
        for gpu, handle in zip(self.gpus, self.handles):
            samples = _try(self.nvml.nvmlDeviceGetProcessUtilization, handle, since_us) or []
            total = sum(s.encUtil + s.decUtil for s in samples)
            ours = sum(s.encUtil + s.decUtil for s in samples if s.pid == pid)
            shares[gpu.index] = ours / total if total > 0 else None
        return shares

    def close(self) -> None:
        _try(self.nvml.nvmlShutdown)


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def _try(call: Any, *args: Any) -> Any:
    try:
        return call(*args)
    except pynvml.NVMLError:  # NVMLError_NotSupported and friends: the value is just absent
        return None


def open_nvml(nvml: Any | None = None) -> NvmlSession | str:
    """An NVML session, or the reason there is none (no library, no driver, no GPU)."""
    nvml = pynvml if nvml is None else nvml
    try:
        nvml.nvmlInit()
    except pynvml.NVMLError as exc:
        return f"NVML unavailable: {exc} (no NVIDIA driver on this node?)"
    try:
        return NvmlSession(nvml)
    except pynvml.NVMLError as exc:
        _try(nvml.nvmlShutdown)
        return f"NVML initialised but listing GPUs failed: {exc}"


def open_gpus(enabled: bool, nvml: Any | None = None) -> NvmlSession | str:
    """:func:`open_nvml` unless GPU metering is turned off (``FFWATT_GPU=false``)."""
    if not enabled:
        return "GPU metering off (FFWATT_GPU=false)"
    return open_nvml(nvml)


def describe_gpus(enabled: bool, nvml: Any | None = None) -> tuple[list[GpuInfo], str | None, str | None]:
    """This node's GPUs, the driver version, and why there are none (when there are none)."""
    session = open_gpus(enabled, nvml)
    if isinstance(session, str):
        return [], None, session
    try:
        return list(session.gpus), session.driver_version, None
    finally:
        session.close()


def _ratio(value: Any) -> float | None:
    return None if value is None else float(value) / 100.0


def read_gpu(session: NvmlSession, position: int) -> GpuReading:
    """Everything the GPU exporter publishes about one GPU (about 10 ms of NVML calls)."""
    nvml, handle = session.nvml, session.handles[position]
    energy = _try(nvml.nvmlDeviceGetTotalEnergyConsumption, handle)
    power = _try(nvml.nvmlDeviceGetPowerUsage, handle)
    limit = _try(nvml.nvmlDeviceGetEnforcedPowerLimit, handle)
    util = _try(nvml.nvmlDeviceGetUtilizationRates, handle)
    encoder = _try(nvml.nvmlDeviceGetEncoderUtilization, handle)
    decoder = _try(nvml.nvmlDeviceGetDecoderUtilization, handle)
    memory = _try(nvml.nvmlDeviceGetMemoryInfo, handle)
    sm_clock = _try(nvml.nvmlDeviceGetClockInfo, handle, nvml.NVML_CLOCK_SM)
    video_clock = _try(nvml.nvmlDeviceGetClockInfo, handle, nvml.NVML_CLOCK_VIDEO)
    temperature = _try(nvml.nvmlDeviceGetTemperature, handle, nvml.NVML_TEMPERATURE_GPU)
    sessions = _try(nvml.nvmlDeviceGetEncoderSessions, handle)
    return GpuReading(
        energy_j=None if energy is None else energy / 1000.0,
        power_w=None if power is None else power / 1000.0,
        power_limit_w=None if limit is None else limit / 1000.0,
        utilization=_ratio(getattr(util, "gpu", None)),
        memory_utilization=_ratio(getattr(util, "memory", None)),
        encoder_utilization=_ratio(encoder[0] if encoder else None),
        decoder_utilization=_ratio(decoder[0] if decoder else None),
        sm_clock_hz=None if sm_clock is None else sm_clock * 1e6,
        video_clock_hz=None if video_clock is None else video_clock * 1e6,
        memory_used_bytes=None if memory is None else float(memory.used),
        memory_total_bytes=None if memory is None else float(memory.total),
        temperature_c=None if temperature is None else float(temperature),
        encoder_sessions=None if sessions is None else len(sessions),
    )


class _Struct:
    def __init__(self, **fields: Any) -> None:
        self.__dict__.update(fields)


class ReplayNvml:
    """An NVML that replays readings recorded on a real GPU (``ffwatt exporter gpu --replay``).

    It answers the calls :class:`NvmlSession` and :func:`read_gpu` make, with the
    probe file's constant values and its time series of power, energy and
    utilisation played back against ``clock`` (seconds since start; looping).
    It lets the GPU code path run, for tests and demos, where no GPU is.
    """

    NVML_CLOCK_SM = 1
    NVML_CLOCK_VIDEO = 3
    NVML_TEMPERATURE_GPU = 0

    def __init__(self, probe: dict[str, Any], clock: Any, *, driver_loaded: bool = True) -> None:
        summary = probe["summary"]
        self._calls = {k: v["value"] for k, v in summary["calls"].items()}
        self._driver = summary["driver"]
        self._samples = probe["samples"]
        self._period = self._samples[-1][0]
        self._clock = clock
        self._driver_loaded = driver_loaded
        self.calls = 0

    def _sample(self) -> list[float]:
        self.calls += 1
        t = self._clock()
        loops, offset = divmod(t, self._period) if self._period > 0 else (0, 0)
        chosen = self._samples[0]
        for sample in self._samples:
            if sample[0] > offset:
                break
            chosen = sample
        # Energy keeps counting across loops, as the real counter would.
        span = self._samples[-1][2] - self._samples[0][2]
        return [chosen[0], chosen[1], chosen[2] + loops * span, chosen[3]]

    def nvmlInit(self) -> None:
        if not self._driver_loaded:
            raise pynvml.NVMLError(pynvml.NVML_ERROR_DRIVER_NOT_LOADED)

    def nvmlShutdown(self) -> None:
        pass

    def nvmlSystemGetDriverVersion(self) -> str:
        return str(self._driver)

    def nvmlDeviceGetCount(self) -> int:
        return 1

    def nvmlDeviceGetHandleByIndex(self, index: int) -> int:
        return index

    def nvmlDeviceGetUUID(self, handle: int) -> str:
        return str(self._calls["uuid"])

    def nvmlDeviceGetName(self, handle: int) -> str:
        return str(self._calls["name"])

    def nvmlDeviceGetTotalEnergyConsumption(self, handle: int) -> int:
        return int(self._sample()[2])

    def nvmlDeviceGetPowerUsage(self, handle: int) -> int:
        return int(self._sample()[1])

    def nvmlDeviceGetEnforcedPowerLimit(self, handle: int) -> int:
        return int(self._calls["power_limit_mW"])

    def nvmlDeviceGetUtilizationRates(self, handle: int) -> _Struct:
        return _Struct(gpu=int(self._sample()[3]), memory=0)

    def nvmlDeviceGetEncoderUtilization(self, handle: int) -> list[int]:
        return [0, 100000]

    def nvmlDeviceGetDecoderUtilization(self, handle: int) -> list[int]:
        return [0, 100000]

    def nvmlDeviceGetMemoryInfo(self, handle: int) -> _Struct:
        used, total = (int(v) for v in str(self._calls["mem"]).strip("()").split(","))
        return _Struct(used=used, total=total, free=total - used)

    def nvmlDeviceGetClockInfo(self, handle: int, clock: int) -> int:
        return int(self._calls["clock_sm" if clock == self.NVML_CLOCK_SM else "clock_video"])

    def nvmlDeviceGetTemperature(self, handle: int, sensor: int) -> int:
        return int(self._calls["temp"])

    def nvmlDeviceGetEncoderSessions(self, handle: int) -> list[Any]:
        return []

    def nvmlDeviceGetProcessUtilization(self, handle: int, since_us: int) -> list[Any]:
        raise pynvml.NVMLError(pynvml.NVML_ERROR_NOT_FOUND)  # as recorded: no process used the GPU
