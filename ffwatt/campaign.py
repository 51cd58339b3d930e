"""The campaign model: inputs x encoders x presets x rate control x output resolutions x repetitions.

It is also the campaign flow's parameter schema, so a campaign sent through the
Prefect API is validated by the same rules as a file. :mod:`ffwatt.jobs` expands
it into jobs; :mod:`ffwatt.validation` loads files with readable errors and checks
that a node can run them.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Annotated, Any, Literal, get_args

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Discriminator,
    Field,
    Tag,
    field_validator,
    model_validator,
)

from ffwatt.encoders import PixFmt, RateMode, profile_for
from ffwatt.extra_args import check_extra_args

__all__ = [
    "PATTERN_WORDS",
    "AdaptiveRepetitions",
    "Campaign",
    "DensitySpec",
    "EncoderSpec",
    "FileInput",
    "InputSpec",
    "LiveSpec",
    "Matrix",
    "QualityMetric",
    "QualityModel",
    "RateControl",
    "Rung",
    "SyntheticInput",
    "parse_size",
    "rising_ladder",
]

QualityMetric = Literal["psnr", "ssim", "vmaf"]
# VMAF models a campaign can choose: one for the vmaf column (auto: by the reference's size), and
# the extra ones that get their own columns (tasks/quality.py says which model each is).
PrimaryModel = Literal["auto", "vmaf_v0.6.1", "vmaf_4k_v0.6.1"]
QualityModel = Literal["auto", "vmaf_v0.6.1", "vmaf_4k_v0.6.1", "neg", "phone"]
PRIMARY_MODELS: tuple[str, ...] = get_args(PrimaryModel)
# FFmpeg's lavfi video sources that take a size and a rate.
SyntheticSource = Literal[
    "testsrc", "testsrc2", "smptebars", "smptehdbars", "mandelbrot", "life",
    "rgbtestsrc", "yuvtestsrc", "gradients", "cellauto",
]
_SIZE = re.compile(r"^(\d{1,6})x(\d{1,6})$")
MIN_SIDE, MAX_SIDE = 16, 8192  # FFmpeg's encoders here take up to 8192 (H.264 level 6.2, AV1's max)
_NAME = r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$"
_ENCODER_NAME = r"^[A-Za-z0-9_-]+$"
# What each name pattern allows, in words: a refused name is told this, not the regular expression.
PATTERN_WORDS: dict[str, str] = {
    _NAME: "1 to 64 letters, digits, '_', '.' and '-', starting with a letter or a digit, e.g. quick-720p",
    _ENCODER_NAME: "an FFmpeg encoder name: letters, digits, '_' and '-', e.g. libx264",
}


def parse_size(value: str) -> tuple[int, int]:
    match = _SIZE.match(value)
    if not match:
        raise ValueError(f"{value!r} is not a size; write WIDTHxHEIGHT, e.g. 1280x720")
    width, height = int(match[1]), int(match[2])
    if not (MIN_SIDE <= width <= MAX_SIDE and MIN_SIDE <= height <= MAX_SIDE):
        raise ValueError(f"{value!r} is out of range; width and height go from {MIN_SIDE} to {MAX_SIDE} px")
    if width % 2 or height % 2:
        raise ValueError(f"{value!r} has an odd dimension; 4:2:0 video needs even width and height")
    return width, height


def _size_text(value: Any) -> Any:
    """YAML reads ``0x10`` as a hexadecimal number and ``1920`` as one: say how to write a size."""
    if isinstance(value, int | float) and not isinstance(value, bool):
        raise ValueError(f"{value!r} is a number to YAML, not a size; write WIDTHxHEIGHT in quotes, "
                         'e.g. "1280x720"')
    return value


def _checked_size(value: str) -> str:
    parse_size(value)
    return value


# WIDTHxHEIGHT, even sides in range, written as text: an input's size, a live rung's.
Size = Annotated[str, BeforeValidator(_size_text), AfterValidator(_checked_size)]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class SyntheticInput(_Strict):
    """A clip FFmpeg generates (lavfi), so every machine encodes exactly the same frames."""

    name: str = Field(pattern=_NAME)
    source: SyntheticSource
    size: Size = "1280x720"
    fps: int = Field(30, ge=1, le=240)
    duration_s: float = Field(5.0, gt=0, le=3600)

    @property
    def width(self) -> int:
        return parse_size(self.size)[0]

    @property
    def height(self) -> int:
        return parse_size(self.size)[1]

    @property
    def frames(self) -> int:
        return max(1, round(self.fps * self.duration_s))


class FileInput(_Strict):
    """A user's clip; ``duration_s`` trims it. Its size and rate are read when it is prepared."""

    name: str = Field(pattern=_NAME)
    path: Path
    duration_s: float | None = Field(None, gt=0)


def _input_kind(value: Any) -> str:
    if isinstance(value, dict):
        return "file" if "path" in value else "synthetic"
    return "file" if isinstance(value, FileInput) else "synthetic"


InputSpec = Annotated[
    Annotated[SyntheticInput, Tag("synthetic")] | Annotated[FileInput, Tag("file")],
    Discriminator(_input_kind),
]


class RateControl(_Strict):
    """One rate-control mode and the values to sweep: CRF/QP ``values`` or ``bitrates_kbps``."""

    mode: RateMode
    values: list[int] = Field(default_factory=list)
    bitrates_kbps: list[Annotated[int, Field(gt=0, le=500_000)]] = Field(default_factory=list)

    @model_validator(mode="after")
    def _values_fit_mode(self) -> RateControl:
        if self.mode in ("crf", "qp"):
            if not self.values:
                raise ValueError(f"mode {self.mode} needs values, e.g. values: [23, 28]")
            if self.bitrates_kbps:
                raise ValueError(f"mode {self.mode} takes values, not bitrates_kbps")
        else:
            if not self.bitrates_kbps:
                raise ValueError(f"mode {self.mode} needs bitrates_kbps, e.g. bitrates_kbps: [2000]")
            if self.values:
                raise ValueError(f"mode {self.mode} takes bitrates_kbps, not values")
        return self

    def points(self) -> list[int]:
        return self.values or self.bitrates_kbps


class EncoderSpec(_Strict):
    """An encoder, the presets to sweep, and optionally its own rate control and flags."""

    name: str = Field(pattern=_ENCODER_NAME)
    presets: list[str] = Field(default_factory=list)
    rate_control: list[RateControl] | None = None
    pix_fmts: list[PixFmt] | None = None
    extra_args: list[str] = Field(default_factory=list)

    @field_validator("extra_args")
    @classmethod
    def _encode_options_only(cls, value: list[str]) -> list[str]:
        check_extra_args(value)
        return value

    @model_validator(mode="after")
    def _presets_known(self) -> EncoderSpec:
        profile = profile_for(self.name)
        if profile.presets == () and self.presets:
            raise ValueError(f"{self.name} has no presets (FFmpeg would ignore {self.presets[0]!r}); remove presets")
        if profile.presets is not None:
            for preset in self.presets:
                if preset not in profile.presets:
                    raise ValueError(
                        f"{preset!r} is not a preset of {self.name}; allowed: {', '.join(profile.presets)}"
                    )
        return self

    def effective_presets(self) -> list[str | None]:
        if self.presets:
            return list(self.presets)
        return [profile_for(self.name).default_preset]


class Rung(_Strict):
    """One rendition of a live ladder: its size and its constant bitrate."""

    size: Size
    bitrate_kbps: int = Field(gt=0, le=100_000)

    @property
    def label(self) -> str:
        return f"{self.size}@{self.bitrate_kbps}k"


def rising_ladder(rungs: list[Rung]) -> list[Rung]:
    """``rungs`` from the lowest bitrate to the highest, as `ffwatt ladder` writes them."""
    return sorted(rungs, key=lambda rung: (rung.bitrate_kbps, parse_size(rung.size)))


class Matrix(_Strict):
    """The sweep: every encoder x preset x rate-control point x output resolution."""

    encoders: list[Annotated[EncoderSpec, Field()]] = Field(min_length=1)
    rate_control: list[RateControl] = Field(default_factory=list)
    resolutions: list[str] = Field(default_factory=lambda: ["source"], min_length=1)
    pix_fmts: list[PixFmt] = Field(default_factory=lambda: list[PixFmt](["yuv420p"]), min_length=1,
                                   description="Output pixel formats (yuv420p, yuv420p10le), or per encoder.")
    ladder: list[Rung] | None = Field(
        None, min_length=1, max_length=16,
        description="Rungs to encode instead of rate_control x resolutions: each rung at its size and bitrate "
                    "(vbr), with every encoder and preset; `ffwatt ladder` writes one.")

    # The JSON schema says so too: `prefect deployment run --params` validates against it.
    @field_validator("encoders", mode="before", json_schema_input_type=list[str | EncoderSpec])
    @classmethod
    def _bare_names(cls, value: Any) -> Any:
        # "- libx264" is shorthand for "- name: libx264".
        if isinstance(value, list):
            return [{"name": v} if isinstance(v, str) else v for v in value]
        return value

    @field_validator("resolutions", mode="before")
    @classmethod
    def _resolutions_are_text(cls, value: Any) -> Any:
        return [_size_text(item) for item in value] if isinstance(value, list) else value

    @field_validator("resolutions")
    @classmethod
    def _resolutions(cls, value: list[str]) -> list[str]:
        for item in value:
            if item != "source":
                parse_size(item)
        return value

    @model_validator(mode="after")
    def _rate_control_fits(self) -> Matrix:
        # Whether every encoder has a rate control at all is the campaign's question (a live campaign
        # takes its bitrates from its ladder): Campaign._rate_control_or_ladder.
        for encoder in self.encoders:
            controls = encoder.rate_control if encoder.rate_control is not None else self.rate_control
            profile = profile_for(encoder.name)
            for control in controls:
                if control.mode not in profile.rate_modes:
                    raise ValueError(
                        f"{encoder.name} doesn't support rate control {control.mode!r} (FFmpeg would ignore it); "
                        f"it takes: {profile.rate_modes_text()}"
                    )
                if control.mode in ("crf", "qp"):
                    low, high = profile.quality_range
                    bad = [v for v in control.values if not low <= v <= high]
                    if bad:
                        raise ValueError(
                            f"{control.mode} value(s) {bad} out of range for {encoder.name}; "
                            f"allowed: {low}..{high}; it takes: {profile.rate_modes_text()}"
                        )
        return self

    @model_validator(mode="after")
    def _pix_fmts_fit(self) -> Matrix:
        for index, encoder in enumerate(self.encoders):
            taken = profile_for(encoder.name).pix_fmts
            bad = [f for f in self.pix_fmts_for(encoder) if taken is not None and f not in taken]
            if bad:
                where = f"matrix.encoders[{index}].pix_fmts" if encoder.pix_fmts is not None else "matrix.pix_fmts"
                raise ValueError(f"{encoder.name} can't encode {', '.join(bad)} ({where}); it takes: "
                                 f"{', '.join(taken or ())}. An encoder's own pix_fmts overrides the matrix's")
        return self

    def controls_for(self, encoder: EncoderSpec) -> list[RateControl]:
        return encoder.rate_control if encoder.rate_control is not None else self.rate_control

    def pix_fmts_for(self, encoder: EncoderSpec) -> list[PixFmt]:
        return list(dict.fromkeys(encoder.pix_fmts if encoder.pix_fmts is not None else self.pix_fmts))


# A live stream needs a few seconds after its start-up for a steady speed to be measured.
LIVE_MIN_DURATION_S = 4.0
# The ingest (nginx-rtmp 1.2) carries H.264 only: HEVC, AV1 and VP9 in FLV need enhanced RTMP.
LIVE_CODECS = ("h264",)


class LiveSpec(_Strict):
    """Live streaming: every job pushes its input in real time to the RTMP ingest, transcodes it into
    the ladder (one FFmpeg per stream) and publishes the renditions back; ``streams`` runs that many
    at once on one node (a concurrency sweep)."""

    ladder: list[Rung] = Field(min_length=1, max_length=8,
                               description="The renditions every stream is transcoded into, top first.")
    streams: list[Annotated[int, Field(ge=1, le=256)]] = Field(
        default_factory=lambda: [1], min_length=1, description="How many streams at once: one sweep step each.")
    until_realtime_breaks: bool = Field(
        False, description="After the listed steps, keep doubling the streams until real time breaks (or "
                           "max_streams); steps past the break are recorded as skipped.")
    max_streams: int = Field(64, ge=1, le=256, description="Where until_realtime_breaks stops doubling.")
    first_frame_timeout_s: float = Field(
        20.0, gt=0, le=300, description="A stream or rendition with no frame this long after it was due fails "
                                        "the job.")
    realtime_tolerance: float = Field(
        0.01, ge=0, le=0.2, description="A speed of at least 1 - this counts as real time: the source arrives at "
                                        "exactly 1.0x, so a transcoder that keeps up measures 1.0 give or take "
                                        "its measurement's jitter.")
    gop_s: float = Field(2.0, gt=0, le=10, description="Keyframe interval of every rendition, in seconds "
                                                       "(aligned across rungs, as ABR players need).")
    bisect: bool = Field(True, description="Where a gap lies between the largest N that held real time and the "
                                           "smallest that broke, measure the N halfway, until none is left: the "
                                           "exact limit, not a power of two.")

    @field_validator("ladder")
    @classmethod
    def _top_first(cls, value: list[Rung]) -> list[Rung]:
        # The row names the top rung's size and bitrate: a ladder written lowest first (as `ffwatt
        # ladder` writes it) is taken top first.
        return list(reversed(rising_ladder(value)))

    @field_validator("streams")
    @classmethod
    def _sorted_steps(cls, value: list[int]) -> list[int]:
        return sorted(set(value))

    @model_validator(mode="after")
    def _cap_above_steps(self) -> LiveSpec:
        if self.max_streams < max(self.streams):
            raise ValueError(f"max_streams ({self.max_streams}) is below the largest step in streams "
                             f"({max(self.streams)}); raise it or drop that step")
        return self

    def steps(self) -> list[int]:
        """Streams at once of each sweep step, in the order they run."""
        return _doubling(self.streams, self.until_realtime_breaks, self.max_streams)


def _doubling(listed: list[int], until: bool, cap: int) -> list[int]:
    """The listed steps, then (``until``) doubling the last up to ``cap``."""
    steps = list(listed)
    if until:
        while steps[-1] * 2 <= cap:
            steps.append(steps[-1] * 2)
    return steps


# Aggregate frames/s must grow at least this much from one step to the next for the node not to be saturated.
SATURATION_GAIN = 0.05


class DensitySpec(_Strict):
    """VOD density: every job runs ``N`` copies of its encode at once on one node, N stepping up (a sweep)
    until the node's aggregate frames/s stops growing: how many encodes at once a node should run."""

    concurrency: list[Annotated[int, Field(ge=1, le=256)]] = Field(
        default_factory=lambda: [1, 2, 4], min_length=1, description="Copies of each encode at once: one sweep "
                                                                      "step each.")
    until_saturated: bool = Field(
        False, description="After the listed steps, keep doubling until aggregate frames/s grows by less than "
                           "saturation_gain (or max_concurrency); steps past that are recorded as skipped.")
    max_concurrency: int = Field(64, ge=1, le=256, description="Where until_saturated stops doubling.")
    saturation_gain: float = Field(
        SATURATION_GAIN, gt=0, le=1, description="A step whose aggregate frames/s is less than this much above the "
                                                 "last step that grew has saturated the node.")
    bisect: bool = Field(True, description="Where a gap lies between the largest N that still grew and the smallest "
                                           "that didn't, measure the N halfway, until none is left.")

    @field_validator("concurrency")
    @classmethod
    def _sorted_steps(cls, value: list[int]) -> list[int]:
        return sorted(set(value))

    @model_validator(mode="after")
    def _cap_above_steps(self) -> DensitySpec:
        if self.max_concurrency < max(self.concurrency):
            raise ValueError(f"max_concurrency ({self.max_concurrency}) is below the largest step in concurrency "
                             f"({max(self.concurrency)}); raise it or drop that step")
        return self

    def steps(self) -> list[int]:
        """Copies at once of each sweep step, in the order they run."""
        return _doubling(self.concurrency, self.until_saturated, self.max_concurrency)


class AdaptiveRepetitions(_Strict):
    """Repeat each configuration until its figures settle: at least ``min`` and at most ``max`` times, in
    shuffled rounds over the configurations not yet settled; settled when the 95 % interval of both its
    joules per frame and its wall time is within ``ci_pct`` % of the mean (flows/repeat.py runs the rounds)."""

    min: int = Field(3, ge=2, le=100, description="Repetitions every configuration gets (an interval needs 2).")
    max: int = Field(10, ge=2, le=100, description="Where a configuration that hasn't settled stops.")
    ci_pct: float = Field(5.0, gt=0, le=100, description="Settled: 95 % interval half-width within this % of the "
                                                         "mean, for joules_per_frame and wall_s alike.")

    @model_validator(mode="after")
    def _max_at_least_min(self) -> AdaptiveRepetitions:
        if self.max < self.min:
            raise ValueError(f"repetitions.max ({self.max}) is below repetitions.min ({self.min}); raise max or "
                             "lower min")
        return self


def _repetitions_kind(value: Any) -> str:
    return "adaptive" if isinstance(value, dict | AdaptiveRepetitions) else "number"


# A number or {min, max, ci_pct}, told apart by shape: an error names the one the user meant, not both.
Repetitions = Annotated[
    Annotated[Annotated[int, Field(ge=1, le=100)], Tag("number")] | Annotated[AdaptiveRepetitions, Tag("adaptive")],
    Discriminator(_repetitions_kind),
]


class Campaign(_Strict):
    """A benchmark campaign: what to encode, how, how often, and what to measure."""

    name: str = Field(pattern=_NAME, description="Names the results partition.")
    description: str = ""
    inputs: list[InputSpec] = Field(min_length=1)
    matrix: Matrix
    repetitions: Repetitions = Field(
        1, description="Times each configuration runs: a number, or {min, max, ci_pct} to repeat until settled.")
    quality: list[QualityMetric] = Field(
        default_factory=lambda: list(get_args(QualityMetric)),
        description="Metrics to compute; [] skips the quality step.",
    )
    quality_models: list[QualityModel] = Field(
        default_factory=lambda: list[QualityModel](["auto"]),
        description="VMAF models: one for vmaf (auto: vmaf_4k_v0.6.1 for references of 2160p and above, "
                    "vmaf_v0.6.1 below; or either by name), plus neg and phone for their own columns.")
    keep_outputs: bool = False
    reference_format: Literal["ffv1", "y4m"] = Field(
        "ffv1", description="Lossless intermediate the reference clip is stored in."
    )
    threads: int | None = Field(None, ge=1, le=256, description="-threads for decoding and encoding each job.")
    encode_retries: int = Field(0, ge=0, le=10, description="Extra attempts for an encode that fails.")
    lost_job_retries: int = Field(
        3, ge=0, le=20, description="Times a job lost with its worker or node is sent to the pool again."
    )
    idle_baseline_s: float = Field(
        5.0, ge=0, le=600, description="Seconds of idle power measured before the first job; 0 skips it."
    )
    idle_baseline_reuse_s: float = Field(
        3600, ge=0, le=7 * 86400,
        description="A node reuses its own idle baseline measured at most this many seconds ago (as long as "
                    "idle_baseline_s or longer) instead of measuring again; the run names it as reused. 0 always "
                    "measures.")
    job_timeout_s: float = Field(3600, gt=0, description="An encode running longer is killed.")
    settle_max_s: float = Field(30, ge=0, le=600, description="Most seconds to wait before each job for other "
                                                              "load to drop and the CPU to cool; 0 never waits.")
    control: bool = Field(True, description="Run a fixed reference encode at the start and end of a local run, "
                                            "to tell the node's drift from differences between configurations.")
    control_drift_pct: float = Field(
        10, gt=0, le=100, description="The run is flagged unstable when the control's J/frame or fps moved more "
                                      "than this from start to end.")
    live: LiveSpec | None = Field(None, description="Makes every job a live stream (RTMP) transcoded into a "
                                                    "ladder; see docs/live.md.")
    density: DensitySpec | None = Field(None, description="Makes every job N copies of its encode at once on one "
                                                          "node, N swept; see docs/analysis.md.")

    @model_validator(mode="before")
    @classmethod
    def _live_is_not_scored(cls, data: Any) -> Any:
        # A live rendition has no frame-exact reference to be scored against: quality defaults to none.
        if isinstance(data, dict) and data.get("live") is not None and "quality" not in data:
            return {**data, "quality": []}
        return data

    @model_validator(mode="after")
    def _rate_control_or_ladder(self) -> Campaign:
        encoders = self.matrix.encoders
        if self.matrix.ladder is not None:
            if self.live is not None:
                raise ValueError("a live campaign's ladder is live.ladder; remove matrix.ladder")
            if self.matrix.rate_control or any(encoder.rate_control is not None for encoder in encoders) \
                    or self.matrix.resolutions != ["source"]:
                raise ValueError("matrix.ladder sets every job's size and bitrate; remove matrix.rate_control, "
                                 "matrix.resolutions and the encoders' rate_control")
            for encoder in encoders:
                if "vbr" not in profile_for(encoder.name).rate_modes:
                    raise ValueError(f"{encoder.name} can't encode a ladder's rungs (no vbr rate control)")
            return self
        if self.live is None:
            for index, encoder in enumerate(encoders):
                if not self.matrix.controls_for(encoder):
                    raise ValueError(f"matrix.encoders[{index}] ({encoder.name}) has no rate control: set "
                                     "matrix.rate_control or the encoder's own rate_control")
            return self
        if self.density is not None:
            raise ValueError("a campaign is live or density, not both: live.streams already sweeps streams at once; "
                             "remove density")
        if self.matrix.rate_control or any(encoder.rate_control is not None for encoder in encoders):
            raise ValueError("a live campaign takes its bitrates from live.ladder; remove matrix.rate_control "
                             "and the encoders' rate_control")
        if self.matrix.resolutions != ["source"]:
            raise ValueError("a live campaign takes its sizes from live.ladder; remove matrix.resolutions")
        if self.quality:
            raise ValueError("live renditions aren't scored for quality (there is no frame-exact reference); "
                             "remove quality or set quality: []")
        for encoder in encoders:
            if profile_for(encoder.name).codec not in LIVE_CODECS:
                raise ValueError(f"{encoder.name} can't stream live here: the RTMP ingest carries "
                                 f"{', '.join(LIVE_CODECS)} only; use libx264, h264_nvenc, h264_qsv or h264_vaapi")
        for spec in self.inputs:
            if spec.duration_s is not None and spec.duration_s < LIVE_MIN_DURATION_S:
                raise ValueError(f"input {spec.name!r} lasts {spec.duration_s:g} s; a live stream needs at least "
                                 f"{LIVE_MIN_DURATION_S:g} s to reach a steady speed")
        return self

    @field_validator("quality_models")
    @classmethod
    def _one_primary_model(cls, value: list[str]) -> list[str]:
        primary = [m for m in dict.fromkeys(value) if m in PRIMARY_MODELS]
        if len(primary) > 1:
            raise ValueError(f"{', '.join(primary)}: name one model for the vmaf column (auto, vmaf_v0.6.1 or "
                             "vmaf_4k_v0.6.1); neg and phone add their own columns")
        extras = [m for m in dict.fromkeys(value) if m not in PRIMARY_MODELS]
        return (primary or ["auto"]) + extras

    @model_validator(mode="after")
    def _models_and_formats_fit(self) -> Campaign:
        extras = [m for m in self.quality_models if m not in PRIMARY_MODELS]
        if extras and "vmaf" not in self.quality:
            raise ValueError(f"quality_models {extras} are VMAF models, and quality {self.quality} has no vmaf; "
                             "add vmaf to quality or drop them")
        if self.live is not None and any(f != "yuv420p" for e in self.matrix.encoders
                                         for f in self.matrix.pix_fmts_for(e)):
            raise ValueError("a live campaign streams 8-bit H.264: remove pix_fmts other than yuv420p")
        return self

    @field_validator("inputs")
    @classmethod
    def _unique_input_names(cls, value: list[Any]) -> list[Any]:
        names = [item.name for item in value]
        duplicates = sorted({n for n in names if names.count(n) > 1})
        if duplicates:
            raise ValueError(f"input names must be unique; repeated: {', '.join(duplicates)}")
        return value

    @model_validator(mode="after")
    def _adaptive_plain_encodes(self) -> Campaign:
        if isinstance(self.repetitions, AdaptiveRepetitions) and (self.live or self.density):
            raise ValueError("a sweep's steps run in order, not in shuffled rounds: give a live or density "
                             "campaign repetitions as a number")
        return self

    @property
    def max_repetitions(self) -> int:
        """The most times a configuration runs: the number, or the adaptive maximum."""
        spec = self.repetitions
        return spec.max if isinstance(spec, AdaptiveRepetitions) else spec

    def encoder_names(self) -> list[str]:
        return sorted({encoder.name for encoder in self.matrix.encoders})
