"""The result schema: one row per job and run, defined once.

:class:`JobRow` is the single definition of every column (name, type, unit,
meaning). It is built from column groups that the steps producing them reuse as
their own return types (:class:`EnergyColumns` is what energy accounting returns,
:class:`QualityColumns` what the quality pass returns), so no step lists columns
by hand. The Arrow schema of the Parquet files and the table in
``docs/schema.md`` are both derived from it.

Two pieces of vocabulary every room uses live here too: the configuration key of
a result (:data:`CONFIG_COLUMNS`, :func:`config_label`) and the one predicate that
says whether an energy figure was estimated (:func:`is_estimated`).
"""

from __future__ import annotations

import re
import types
from collections.abc import Mapping
from datetime import datetime
from typing import TYPE_CHECKING, Any, Literal, Union, get_args, get_origin

from pydantic import BaseModel, ConfigDict, Field

if TYPE_CHECKING:
    import pyarrow as pa

__all__ = [
    "CONFIG_COLUMNS",
    "CURVE_COLUMNS",
    "DEFAULT_PIX_FMT",
    "DENSITY_SWEEP_COLUMNS",
    "LIVE_SWEEP_COLUMNS",
    "RATE_POINT_COLUMNS",
    "SCHEMA_VERSION",
    "ConditionsColumns",
    "ConfigColumns",
    "DensityColumns",
    "EnergyColumns",
    "JobRow",
    "JobStatus",
    "LiveColumns",
    "QualityColumns",
    "RowKind",
    "SeriesColumns",
    "SeriesSource",
    "SweepPhase",
    "arrow_schema",
    "config_label",
    "failure_reason",
    "is_estimated",
    "is_missing",
    "schema_markdown",
]

SCHEMA_VERSION = 10
JobStatus = Literal["ok", "failed", "skipped"]
RowKind = Literal["job", "control"]
SeriesSource = Literal["store", "local"]
# How a sweep step's N was reached: listed in the campaign, doubling past the list, or bisection between
# the largest N that held and the smallest that broke.
SweepPhase = Literal["listed", "doubling", "bisection"]
ESTIMATED = "estimated"
DEFAULT_PIX_FMT = "yuv420p"  # what every job encoded before the format could be chosen


def _col(description: str, unit: str = "", **kwargs: Any) -> Any:
    return Field(description=description, json_schema_extra={"unit": unit}, **kwargs)


class _Columns(BaseModel):
    model_config = ConfigDict(extra="forbid")


class IdentityColumns(_Columns):
    campaign: str = _col("Campaign name (also the partition directory).")
    run_id: str = _col("Prefect flow run id of the campaign run.")
    job_id: str = _col("Stable id of this configuration and repetition.")
    config_id: str = _col("Stable id of the configuration (same for every repetition).")
    repetition: int = _col("Repetition number, from 1.")
    node: str = _col("Node that ran the job.")


class ConfigColumns(_Columns):
    """What makes a configuration: the key results are grouped and compared by."""

    input_name: str = _col("Input name from the campaign.")
    encoder: str = _col("FFmpeg encoder name.")
    preset: str | None = _col("Encoder preset (or -cpu-used for libvpx/libaom).", default=None)
    rate_control: str = _col("crf, qp, cbr or vbr.")
    crf: int | None = _col("CRF (or NVENC CQ / QSV global_quality) value.", default=None)
    qp: int | None = _col("Constant QP value.", default=None)
    target_bitrate_kbps: int | None = _col("Target bitrate of cbr/vbr jobs.", "kbit/s", default=None)
    output_width: int | None = _col("Encoded width.", "px", default=None)
    output_height: int | None = _col("Encoded height.", "px", default=None)
    pix_fmt: str | None = _col("Output pixel format: yuv420p (8-bit 4:2:0) or yuv420p10le (10-bit). Rows from "
                               "before schema 7 read back as yuv420p, what they encoded.", default=None)


class ReferenceColumns(_Columns):
    input_width: int | None = _col("Reference width.", "px", default=None)
    input_height: int | None = _col("Reference height.", "px", default=None)
    input_fps: float | None = _col("Reference frame rate.", "frames/s", default=None)
    input_frames: int | None = _col("Frames in the reference clip.", "frames", default=None)
    reference_path: str | None = _col("Reference clip the job encoded.", default=None)


class OutcomeColumns(_Columns):
    status: JobStatus = _col("ok, failed, or skipped (a sweep step past the one where real time broke or the node "
                             "saturated).")
    error: str | None = _col("Why the job failed (the step, the message, FFmpeg's stderr tail), or why it was "
                             "skipped.", default=None)
    attempts: int = _col("Encode attempts made (1 when the first succeeded).")
    same_output_as: str | None = _col(
        "Other configurations of this run whose encode of the same input is identical to this one's (the same "
        "output_hash): what differs between them had no effect (a setting the encoder ignores). Their labels, "
        "joined with '; '; null when there are none.", default=None)


class EncodeColumns(_Columns):
    """What the encode itself did: filled from the transcode step's result."""

    started_at: datetime | None = _col("Encode start (UTC).", default=None)
    ended_at: datetime | None = _col("Encode end (UTC).", default=None)
    wall_s: float | None = _col("Encode wall time.", "s", default=None)
    cpu_user_s: float | None = _col("FFmpeg process user CPU time.", "s", default=None)
    cpu_sys_s: float | None = _col("FFmpeg process system CPU time.", "s", default=None)
    max_rss_bytes: int | None = _col("FFmpeg process peak resident memory.", "bytes", default=None)
    cgroup_cpu_s: float | None = _col(
        "CPU time of everything the encode ran (FFmpeg and what it started): the job's own cgroup v2 (cpu.stat), "
        "or FFmpeg's rusage where resource_source says so.", "s", default=None)
    cgroup_io_bytes: int | None = _col(
        "Bytes the encode read from and wrote to storage: the job cgroup's io.stat (rbytes + wbytes), or FFmpeg's "
        "rusage block I/O (page-cache hits count in neither) where resource_source says so.", "bytes", default=None)
    resource_source: str | None = _col(
        "Where cgroup_cpu_s and cgroup_io_bytes come from: cgroup (the job's cgroup v2), rusage (FFmpeg's wait4 "
        "rusage: no cgroup could be made here), cgroup+rusage (CPU from the cgroup, I/O from rusage: the io "
        "controller isn't enabled for it).", default=None)
    frames: int | None = _col("Frames encoded (FFmpeg's final progress report).", "frames", default=None)
    encode_fps: float | None = _col("frames / wall_s.", "frames/s", default=None)
    speed: float | None = _col("FFmpeg's speed: media time / wall time.", "x", default=None)
    output_bytes: int | None = _col("Size of the encoded file.", "bytes", default=None)
    bitrate_kbps: float | None = _col("output_bytes over the clip's duration.", "kbit/s", default=None)
    output_hash: str | None = _col("MD5 of the encoded video stream's packets (FFmpeg's streamhash muxer, so the "
                                   "container's random ids don't count): equal only for identical encodes.",
                                   default=None)
    dropped_frames: int | None = _col("Frames FFmpeg dropped.", "frames", default=None)
    duplicated_frames: int | None = _col("Frames FFmpeg duplicated.", "frames", default=None)
    ffmpeg_version: str | None = _col("FFmpeg version string.", default=None)
    ffmpeg_cmd: str | None = _col("The exact encode command (shell-quoted).", default=None)
    threads: int | None = _col("-threads the encode ran with (the campaign's threads); null: FFmpeg's default.",
                               default=None)
    extra_args: str | None = _col("Encoder options the campaign added (shell-quoted; empty when none; null in rows "
                                  "from before ffwatt recorded them).", default=None)
    output_path: str | None = _col("Encoded file, when the campaign keeps outputs.", default=None)


def _lowest(what: str, unit: str = "") -> Any:
    return _col(f"Lowest per-frame {what}.", unit, default=None)


def _percentile(p: int, what: str, unit: str = "") -> Any:
    # numpy's default (linear) method: what np.percentile gives on the frames file's column.
    ordinal = f"{p}{'st' if p == 1 else 'th'}"
    return _col(f"{ordinal} percentile of the per-frame {what} (numpy's linear method): the worst {p} % of "
                "frames lie at or below it.", unit, default=None)


class QualityColumns(_Columns):
    """The quality pass's scores: what :func:`tasks.quality.measure_quality` returns. Each job scored
    has its per-frame scores in results/_frames (:mod:`ffwatt.frames`); the pooled figures here are
    computed from exactly those."""

    psnr: float | None = _col("Mean luma PSNR against the reference.", "dB", default=None)
    psnr_min: float | None = _lowest("luma PSNR", "dB")
    psnr_p1: float | None = _percentile(1, "luma PSNR", "dB")
    psnr_p5: float | None = _percentile(5, "luma PSNR", "dB")
    ssim: float | None = _col(
        "Mean luma SSIM against the reference (0..1): libvmaf's float_ssim, Wang et al.'s method with "
        "automatic downscaling; it differs from FFmpeg's ssim filter by up to 0.03 on the same pair.",
        default=None)
    ssim_min: float | None = _lowest("luma SSIM")
    ssim_p1: float | None = _percentile(1, "luma SSIM")
    ssim_p5: float | None = _percentile(5, "luma SSIM")
    vmaf: float | None = _col("Mean VMAF against the reference (0..100), with the model vmaf_model names.",
                              default=None)
    vmaf_hmean: float | None = _col(
        "Harmonic mean of the per-frame VMAF as libvmaf pools it: n / sum(1 / (vmaf + 1)) - 1 (the +1 keeps a "
        "frame of 0 from zeroing it); it leans towards the worst frames.", default=None)
    vmaf_min: float | None = _lowest("VMAF")
    vmaf_p1: float | None = _percentile(1, "VMAF")
    vmaf_p5: float | None = _percentile(5, "VMAF")
    vmaf_model: str | None = _col(
        "VMAF model behind vmaf: the campaign's quality_models, by default vmaf_4k_v0.6.1 for references of "
        "2160p (or 3840 wide) and above, vmaf_v0.6.1 below.", default=None)
    vmaf_neg: float | None = _col(
        "Mean VMAF NEG (no enhancement gain: sharpening can't raise it), the NEG model of vmaf_model's family "
        "(vmaf_v0.6.1neg, or vmaf_4k_v0.6.1neg with the 4K model); null unless quality_models has neg.",
        default=None)
    vmaf_phone: float | None = _col(
        "Mean VMAF for phone viewing: vmaf_v0.6.1 with its phone transform, whatever vmaf_model is; null unless "
        "quality_models has phone.", default=None)
    quality_scaler: str | None = _col(
        "How an encode of another size than its reference was scaled to the reference's size to be scored "
        "(bicubic, as Netflix scores renditions); null when it was scored at its own size.", default=None)
    quality_pix_fmt: str | None = _col(
        "Pixel format both clips were compared in: the deeper of the reference's and the encode's, so a 10-bit "
        "encode is scored at 10 bits.", default=None)
    quality_frames: int | None = _col(
        "Frames scored: rows in the job's frames file, results/_frames/campaign=<name>/run_id=<run>/"
        "job-<job_id>.parquet; null when the job wasn't scored.", "frames", default=None)


class EnergyColumns(_Columns):
    """A job's energy figures: what energy accounting returns (:func:`tasks.energy.energy_report`)."""

    cpu_energy_j: float | None = _col(
        "Whole-CPU energy over the encode window (RAPL packages, or the estimate).", "J", default=None)
    gpu_energy_j: float | None = _col(
        "Energy of the node's NVIDIA GPUs over the window (NVML energy counters).", "J", default=None)
    dram_energy_j: float | None = _col(
        "Memory energy over the window: RAPL's DRAM zones, where the node has them (null elsewhere); part of "
        "energy_j.", "J", default=None)
    energy_j: float | None = _col("cpu_energy_j + dram_energy_j + gpu_energy_j: the node's gross energy over the "
                                  "window.", "J", default=None)
    platform_energy_j: float | None = _col(
        "The whole platform's energy over the window: RAPL's psys zone, where the node has one (null elsewhere). "
        "It already holds the packages and DRAM, so it is reported beside energy_j, never added to it.",
        "J", default=None)
    energy_source: str | None = _col(
        "Sources of energy_j: rapl (measured), estimated (CPU power model x /proc/stat busy time), "
        "nvml (measured); joined with + when several. Any part estimated makes the figure estimated.",
        default=None)
    energy_basis: str | None = _col("How the energy figures were obtained, in words.", default=None)
    avg_power_w: float | None = _col("energy_j / window length.", "W", default=None)
    idle_power_w: float | None = _col("The node's idle power (idle_baseline in the run summary says when "
                                      "and how it was measured).", "W", default=None)
    net_energy_j: float | None = _col("energy_j minus idle_power_w x window length.", "J", default=None)
    cpu_share: float | None = _col(
        "FFmpeg's CPU time over the machine's busy CPU time in the window (0..1).", default=None)
    others_cpu_s: float | None = _col(
        "CPU time other processes used in the window: the machine's busy CPU time (/proc/stat) less the job's "
        "FFmpeg's and ffwatt's own (the campaign process and its children).", "s", default=None)
    background_busy: float | None = _col(
        "Share of the machine's CPU capacity other processes used in the window: others_cpu_s / (window x "
        "logical CPUs), 0..1.", "ratio", default=None)
    observer_cpu_s: float | None = _col(
        "CPU time ffwatt itself (the campaign process and its children but FFmpeg) used in the window: the "
        "measurement's own cost.", "s", default=None)
    attributed_energy_j: float | None = _col(
        "Energy above idle attributed to this job: CPU (and DRAM) net energy x cpu_share, plus GPU net energy "
        "(all of it when the job used the GPU alone, else x its share of NVENC/NVDEC use).",
        "J", default=None)
    joules_per_frame: float | None = _col("energy_j / frames.", "J/frame", default=None)
    energy_flags: str | None = _col(
        "Caveats, comma-separated: short_window (shorter than two sensor updates), busy_machine "
        "(others_cpu_s over 10 % of the machine's busy CPU time, and over 0.05 s), shared_gpu (others used the "
        "video engines), no_idle_baseline, idle_baseline_other_source.", default=None)
    cost: float | None = _col("energy_j x FFWATT_PRICE_PER_KWH of the node.", "currency", default=None)
    co2_g: float | None = _col("energy_j x FFWATT_CO2_G_PER_KWH of the node.", "g", default=None)
    wall_energy_j: float | None = _col(
        "The node's energy at the plug over the encode window: its BMC's Redfish power readings (every "
        "FFWATT_REDFISH_INTERVAL_S) integrated over it. Apart from energy_j, never added to it: it includes fans, "
        "memory, disks and the power supply's losses. Null without a BMC (FFWATT_REDFISH_URL), or see wall_missing.",
        "J", default=None)
    wall_source: str | None = _col("Source of wall_energy_j: redfish; null when there is none.", default=None)
    wall_missing: str | None = _col(
        "Why wall_energy_j is null though a BMC is configured: refused credentials, a BMC that stopped answering "
        "in the window (a figure for part of the window is not the job's).", default=None)


class SeriesColumns(_Columns):
    """Where the job's series went, and whether their energy agrees with the row's: filled when the
    row is written (:mod:`ffwatt.series`)."""

    series_source: SeriesSource | None = _col(
        "Where the job's series (results/_series) came from: store (the metrics store's export API) or local "
        "(the campaign sampled the node's exporters in-process at 1 Hz); null when it has none.", default=None)
    series_samples: int | None = _col("Samples written for the job's window (start - 2 s to end + 2 s).",
                                      "samples", default=None)
    series_missing: str | None = _col(
        "Why the job's series are missing or incomplete (store unreachable, no samples, a counter that doesn't "
        "cover the encode); null when they are complete.", default=None)
    series_energy_j: float | None = _col(
        "Energy over the encode window from the series' counters (the same sources as energy_j, read at the "
        "time each value was sampled, interpolated at the window's ends): a cross-check of energy_j.",
        "J", default=None)
    series_energy_source: str | None = _col(
        "Counters behind series_energy_j, in energy_source's words (rapl, estimated, nvml, joined with +); "
        "estimated stays estimated.", default=None)
    series_energy_gap: float | None = _col(
        "(series_energy_j - energy_j) / energy_j. For jobs of 30 s or more it should be within +-0.02; the "
        "report lists every job beyond that.", "ratio", default=None)


class LiveColumns(_Columns):
    """A live job's figures (null for other jobs): one sweep step, N streams at once, each pushed in real
    time to the RTMP ingest, transcoded into the ladder and pulled back (docs/live.md). The encode columns
    hold the step: ``speed`` the lowest steady speed of its streams, ``dropped_frames`` every source frame
    that never reached a rendition's player, ``frames`` the frames transcoded by all streams,
    ``bitrate_kbps`` and the output size the top rung's, ``wall_s`` the step's window."""

    live_streams: int | None = _col("Streams transcoded at once in this sweep step.", "streams", default=None)
    live_ladder: str | None = _col("The ladder, top rung first: WIDTHxHEIGHT@TARGETk joined with +.", default=None)
    live_sweep_id: str | None = _col("The sweep this step belongs to (input, encoder, preset, ladder): the same "
                                     "for every number of streams.", default=None)
    live_realtime: bool | None = _col(
        "Whether the step held real time: every stream's speed at least 1 - live_realtime_tolerance, and no "
        "source frame missing from any rendition.", default=None)
    live_realtime_tolerance: float | None = _col("How far below 1.0 a speed still counted as real time.",
                                                 default=None)
    live_source_frames: int | None = _col("Frames each stream's publisher pushed.", "frames", default=None)
    live_rung_bitrates_kbps: str | None = _col(
        "Bitrate of each rung measured on the published rendition as a player pulled it (video payload over "
        "its duration), mean over streams: a JSON object, rung label -> kbit/s.", default=None)
    live_bitrate_error_pct: float | None = _col(
        "The largest deviation of a rung's measured bitrate from its target, in percent of the target.", "%",
        default=None)
    live_first_frame_s: float | None = _col(
        "From the first source frame at the ingest to the first frame of a rendition there, both as players "
        "pulling them see it; the slowest rendition of the step.", "s", default=None)
    live_latency_ms: float | None = _col(
        "Source frame to rendition frame: when a rendition frame reached its player minus when the source "
        "frame with the same timestamp reached the source's player; median over every frame of every "
        "rendition.", "ms", default=None)
    live_latency_p95_ms: float | None = _col("95th percentile of the same latencies.", "ms", default=None)
    live_watts_per_stream: float | None = _col(
        "Power above idle per stream: (avg_power_w - idle_power_w) / live_streams. Estimated when "
        "energy_source is.", "W", default=None)
    live_joules_per_stream_minute: float | None = _col(
        "Energy above idle per minute of one stream delivered: net_energy_j over the stream-minutes transcoded. "
        "Estimated when energy_source is.", "J/min", default=None)
    live_streams_detail: str | None = _col(
        "Each stream of the step: a JSON list of {stream, speed, frames, dropped_frames, state}, state ok, "
        "failed (with why) or stopped (because another stream failed).", default=None)
    live_ingest: str | None = _col("The RTMP application the step published to and pulled from.", default=None)


class DensityColumns(_Columns):
    """A density sweep step's figures (null for other jobs): ``concurrency`` copies of one encode at once
    on one node. The encode columns hold the step: ``frames`` every copy's frames, ``encode_fps`` the
    aggregate frames/s (frames / wall_s), ``wall_s`` the window from the first copy's start to the last
    one's end, CPU times summed, ``speed`` the slowest copy's, ``output_bytes`` and ``bitrate_kbps`` the
    first copy's (every copy encodes the same); the energy columns are the node's over that window, so
    ``joules_per_frame`` is per frame of every copy."""

    concurrency: int | None = _col("Copies of the encode run at once in this density sweep step.", "copies",
                                   default=None)
    density_sweep_id: str | None = _col("The density sweep this step belongs to (the encode without its "
                                        "concurrency): the same for every number of copies.", default=None)
    density_saturation_gain: float | None = _col(
        "How much the aggregate frames/s had to grow over the last step that grew for the node not to count as "
        "saturated (the campaign's density.saturation_gain).", "ratio", default=None)
    sweep_phase: SweepPhase | None = _col(
        "How a sweep step's N (live_streams or concurrency) was reached: listed in the campaign, doubling past the "
        "list, or bisection between the largest N that held and the smallest that broke.", default=None)


class ConditionsColumns(_Columns):
    """The conditions a job ran in (:mod:`tasks.conditions`): null where this node can't read them, never
    guessed."""

    kind: RowKind | None = _col(
        "job, or control: the run's fixed reference encode at its start and end, which tells drift of the node "
        "from differences between configurations; null in rows from before schema 10 (jobs).", default="job")
    cpu_temp_c_start: float | None = _col(
        "CPU temperature when the encode started: the hottest sensor of the CPU's hwmon chip (k10temp, "
        "coretemp, zenpower) or thermal zone (x86_pkg_temp, cpu).", "degC", default=None)
    cpu_freq_mhz_mean: float | None = _col(
        "Mean clock of the logical CPUs over the encode (scaling_cur_freq, else /proc/cpuinfo), sampled with "
        "the energy meter.", "MHz", default=None)
    throttled: bool | None = _col(
        "Whether the CPU's thermal throttle counters (core or package) rose during the encode.", default=None)
    settle_s: float | None = _col(
        "Seconds waited before the encode for the other processes' load to drop and the CPU to cool back "
        "towards the run's coolest reading (at most the campaign's settle_max_s).", "s", default=None)


# Pydantic puts inherited fields in reverse order of the bases, so the columns read
# identity, configuration, reference, outcome, encode, quality, energy, series, live, density, conditions.
class JobRow(ConditionsColumns, DensityColumns, LiveColumns, SeriesColumns, EnergyColumns, QualityColumns,
             EncodeColumns, OutcomeColumns, ReferenceColumns, ConfigColumns, IdentityColumns):
    """A job's outcome. Failed jobs have ``status='failed'`` and ``error``; measurements they
    never reached are null. Live jobs fill :class:`LiveColumns` too, density steps :class:`DensityColumns`."""


CONFIG_COLUMNS: tuple[str, ...] = tuple(ConfigColumns.model_fields)
# A live sweep: one input, encoder, preset and ladder over several numbers of streams at once (its
# rows share live_sweep_id). Analysis tells sweeps apart by node too.
LIVE_SWEEP_COLUMNS: tuple[str, ...] = ("input_name", "encoder", "preset", "live_ladder")
# A density sweep: one encode over several numbers of copies at once (its rows share density_sweep_id).
DENSITY_SWEEP_COLUMNS: tuple[str, ...] = ("density_sweep_id",)
# A rate–quality curve is a configuration without its rate point: its points differ only in these.
RATE_POINT_COLUMNS: tuple[str, ...] = ("crf", "qp", "target_bitrate_kbps")
CURVE_COLUMNS: tuple[str, ...] = tuple(c for c in CONFIG_COLUMNS if c not in RATE_POINT_COLUMNS)


def is_missing(value: Any) -> bool:
    """None, NaN or pandas' NA: a value a row doesn't have."""
    if value is None:
        return True
    try:
        return bool(value != value)  # noqa: PLR0124 - NaN is the one value unequal to itself
    except TypeError:  # pandas.NA refuses to be a bool
        return True


def config_label(row: Mapping[str, Any] | BaseModel, *, with_input: bool = False) -> str:
    """A configuration in words, e.g. ``libx264 veryfast crf 24 1280x720``.

    ``row`` is anything with the configuration columns: a :class:`JobRow`, a dict or a pandas
    row; ``with_input`` puts the input's name first. Columns it lacks are left out, so a
    curve's key (no rate point, no size) reads ``libx264 veryfast crf``.
    """
    get = (row.model_dump() if isinstance(row, BaseModel) else row).get
    parts = [str(get("input_name"))] if with_input else []
    parts.append(str(get("encoder", "")))
    if not is_missing(get("preset")):
        parts.append(str(get("preset")))
    if not is_missing(get("live_ladder")):  # a live sweep step: the ladder sets rates and sizes
        parts.append(f"live {get('live_ladder')}")
        if not is_missing(get("live_streams")):
            parts.append(f"x{int(get('live_streams'))}")  # type: ignore[arg-type]
        return " ".join(parts)
    mode = str(get("rate_control"))
    value = {"crf": get("crf"), "qp": get("qp")}.get(mode, get("target_bitrate_kbps"))
    if not is_missing(value):
        parts.append(f"{mode} {int(value)}" + ("k" if mode in ("cbr", "vbr") else ""))  # type: ignore[arg-type]
    elif not is_missing(get("rate_control")):
        parts.append(mode)
    if not is_missing(get("output_width")) and not is_missing(get("output_height")):
        parts.append(f"{int(get('output_width'))}x{int(get('output_height'))}")  # type: ignore[arg-type]
    if not is_missing(get("pix_fmt")) and get("pix_fmt") != DEFAULT_PIX_FMT:
        parts.append(str(get("pix_fmt")))
    if not is_missing(get("concurrency")):  # a density sweep step: copies at once
        parts.append(f"x{int(get('concurrency'))}")  # type: ignore[arg-type]
    return " ".join(parts)


_ADDRESS = re.compile(r" @ 0x[0-9a-f]+")


def failure_reason(error: str | None) -> str:
    """A failed job's error in one short line, the same for every job that failed the same way
    (FFmpeg's per-process addresses dropped), for tables and for grouping failures."""
    if not error:
        return ""
    first = _ADDRESS.sub("", error.strip().splitlines()[0])
    return first if len(first) <= 100 else first[:99] + "…"


def is_estimated(energy_source: str | None) -> bool:
    """Whether an energy figure with this ``energy_source`` rests, in any part, on an estimate
    (``estimated``, ``estimated+nvml``, ...): such a figure is never shown as measured."""
    if not isinstance(energy_source, str):
        return False
    return ESTIMATED in energy_source.split("+")


def _arrow_type(annotation: Any) -> pa.DataType:
    import pyarrow as pa

    origin = get_origin(annotation)
    if origin in (Union, types.UnionType):
        (inner,) = [arg for arg in get_args(annotation) if arg is not type(None)]
        return _arrow_type(inner)
    if origin is Literal or annotation is str:
        return pa.string()
    if annotation is bool:
        return pa.bool_()
    if annotation is int:
        return pa.int64()
    if annotation is float:
        return pa.float64()
    if annotation is datetime:
        return pa.timestamp("us", tz="UTC")
    raise TypeError(f"no Arrow type for {annotation!r}")


def arrow_schema() -> pa.Schema:
    """The Arrow schema of a results file, in column order."""
    import pyarrow as pa

    fields = []
    for name, info in JobRow.model_fields.items():
        extra = info.json_schema_extra if isinstance(info.json_schema_extra, dict) else {}
        metadata = {"unit": str(extra.get("unit", "")), "description": info.description or ""}
        fields.append(pa.field(name, _arrow_type(info.annotation), nullable=not info.is_required(),
                               metadata=metadata))
    return pa.schema(fields, metadata={"ffwatt_schema_version": str(SCHEMA_VERSION)})


def schema_markdown() -> str:
    """The schema as the Markdown table kept in docs/schema.md."""
    lines = [
        "| column | type | unit | description |",
        "| --- | --- | --- | --- |",
    ]
    for field in arrow_schema():
        meta = {k.decode(): v.decode() for k, v in (field.metadata or {}).items()}
        lines.append(f"| `{field.name}` | {field.type} | {meta['unit'] or '-'} | {meta['description']} |")
    return "\n".join(lines) + "\n"
