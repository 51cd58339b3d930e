"""The campaign file: its model, loading with readable errors, and expansion into jobs.

A campaign is inputs x encoders x presets x rate control x output resolutions x
repetitions. :func:`expand` turns it into :class:`Job` objects in a fixed order,
each with a ``job_id`` that depends only on what the job does and its repetition,
so the same job has the same id in every run and on every machine.
"""

from __future__ import annotations

import difflib
import hashlib
import json
import re
from pathlib import Path
from typing import Annotated, Any, Literal, get_args

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Discriminator,
    Field,
    Tag,
    ValidationError,
    field_validator,
    model_validator,
)

from ffwatt.encoders import RateMode, profile_for
from ffwatt.errors import CampaignError, EncoderUnavailable
from ffwatt.ffmpeg import FFmpegBuild

__all__ = [
    "Campaign",
    "EncoderSpec",
    "FileInput",
    "InputSpec",
    "Job",
    "Matrix",
    "QualityMetric",
    "RateControl",
    "SyntheticInput",
    "check_runnable",
    "expand",
    "load_campaign",
    "parse_campaign",
]

QualityMetric = Literal["psnr", "ssim", "vmaf"]
# FFmpeg's lavfi video sources that take a size and a rate.
SyntheticSource = Literal[
    "testsrc", "testsrc2", "smptebars", "smptehdbars", "mandelbrot", "life",
    "rgbtestsrc", "yuvtestsrc", "gradients", "cellauto",
]
_SIZE = re.compile(r"^(\d{2,5})x(\d{2,5})$")
_NAME = r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$"


def _parse_size(value: str) -> tuple[int, int]:
    match = _SIZE.match(value)
    if not match:
        raise ValueError(f"{value!r} is not a size; write WIDTHxHEIGHT, e.g. 1280x720")
    width, height = int(match[1]), int(match[2])
    if width % 2 or height % 2:
        raise ValueError(f"{value!r} has an odd dimension; 4:2:0 video needs even width and height")
    return width, height


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class SyntheticInput(_Strict):
    """A clip FFmpeg generates (lavfi), so every machine encodes exactly the same frames."""

    name: str = Field(pattern=_NAME)
    source: SyntheticSource
    size: str = "1280x720"
    fps: int = Field(30, ge=1, le=240)
    duration_s: float = Field(5.0, gt=0, le=3600)

    @field_validator("size")
    @classmethod
    def _size(cls, value: str) -> str:
        _parse_size(value)
        return value

    @property
    def width(self) -> int:
        return _parse_size(self.size)[0]

    @property
    def height(self) -> int:
        return _parse_size(self.size)[1]

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

    name: str = Field(pattern=r"^[A-Za-z0-9_-]+$")
    presets: list[str] = Field(default_factory=list)
    rate_control: list[RateControl] | None = None
    extra_args: list[str] = Field(default_factory=list)

    @model_validator(mode="after")
    def _presets_known(self) -> EncoderSpec:
        profile = profile_for(self.name)
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


class Matrix(_Strict):
    """The sweep: every encoder x preset x rate-control point x output resolution."""

    encoders: list[Annotated[EncoderSpec, Field()]] = Field(min_length=1)
    rate_control: list[RateControl] = Field(default_factory=list)
    resolutions: list[str] = Field(default_factory=lambda: ["source"], min_length=1)

    @field_validator("encoders", mode="before")
    @classmethod
    def _bare_names(cls, value: Any) -> Any:
        # "- libx264" is shorthand for "- name: libx264".
        if isinstance(value, list):
            return [{"name": v} if isinstance(v, str) else v for v in value]
        return value

    @field_validator("resolutions")
    @classmethod
    def _resolutions(cls, value: list[str]) -> list[str]:
        for item in value:
            if item != "source":
                _parse_size(item)
        return value

    @model_validator(mode="after")
    def _rate_control_fits(self) -> Matrix:
        for index, encoder in enumerate(self.encoders):
            controls = encoder.rate_control if encoder.rate_control is not None else self.rate_control
            if not controls:
                raise ValueError(
                    f"encoders[{index}] ({encoder.name}) has no rate control: set matrix.rate_control "
                    "or the encoder's own rate_control"
                )
            profile = profile_for(encoder.name)
            for control in controls:
                if control.mode not in profile.rate_modes:
                    raise ValueError(
                        f"{encoder.name} doesn't support rate control {control.mode!r}; "
                        f"it supports: {', '.join(sorted(profile.rate_modes))}"
                    )
                if control.mode in ("crf", "qp"):
                    low, high = profile.quality_range
                    bad = [v for v in control.values if not low <= v <= high]
                    if bad:
                        raise ValueError(
                            f"{control.mode} value(s) {bad} out of range for {encoder.name}; "
                            f"allowed: {low}..{high}"
                        )
        return self

    def controls_for(self, encoder: EncoderSpec) -> list[RateControl]:
        return encoder.rate_control if encoder.rate_control is not None else self.rate_control


class Campaign(_Strict):
    """A benchmark campaign: what to encode, how, how often, and what to measure."""

    name: str = Field(pattern=_NAME, description="Names the results partition.")
    description: str = ""
    inputs: list[InputSpec] = Field(min_length=1)
    matrix: Matrix
    repetitions: int = Field(1, ge=1, le=100)
    quality: list[QualityMetric] = Field(
        default_factory=lambda: ["psnr", "ssim", "vmaf"],
        description="Metrics to compute; [] skips the quality step.",
    )
    keep_outputs: bool = False
    reference_format: Literal["ffv1", "y4m"] = Field(
        "ffv1", description="Lossless intermediate the reference clip is stored in."
    )
    threads: int | None = Field(None, ge=1, le=256, description="-threads for decoding and encoding each job.")
    retries: int = Field(0, ge=0, le=10, description="Extra attempts for a failed encode.")
    max_retries: int = Field(
        3, ge=0, le=20, description="Times a job lost with its worker or node is sent to the pool again."
    )
    idle_baseline_s: float = Field(
        5.0, ge=0, le=600, description="Seconds of idle power measured before the first job; 0 skips it."
    )
    job_timeout_s: float = Field(3600, gt=0, description="An encode running longer is killed.")

    @field_validator("inputs")
    @classmethod
    def _unique_input_names(cls, value: list[Any]) -> list[Any]:
        names = [item.name for item in value]
        duplicates = sorted({n for n in names if names.count(n) > 1})
        if duplicates:
            raise ValueError(f"input names must be unique; repeated: {', '.join(duplicates)}")
        return value

    def encoder_names(self) -> list[str]:
        return sorted({encoder.name for encoder in self.matrix.encoders})


class Job(_Strict):
    """One encode of one input with one configuration, at one repetition."""

    job_id: str
    config_id: str
    campaign: str
    repetition: int
    input: InputSpec
    encoder: str
    preset: str | None
    rate_control: RateMode
    value: int
    output_size: str
    extra_args: list[str]
    threads: int | None
    quality: list[QualityMetric]
    keep_output: bool
    timeout_s: float

    @property
    def crf(self) -> int | None:
        return self.value if self.rate_control == "crf" else None

    @property
    def qp(self) -> int | None:
        return self.value if self.rate_control == "qp" else None

    @property
    def target_bitrate_kbps(self) -> int | None:
        return self.value if self.rate_control in ("cbr", "vbr") else None

    @property
    def label(self) -> str:
        setting = f"{self.rate_control}={self.value}" + ("k" if self.target_bitrate_kbps else "")
        preset = f" {self.preset}" if self.preset else ""
        return f"{self.input.name} {self.encoder}{preset} {setting} {self.output_size} #{self.repetition}"


def _digest(payload: dict[str, Any]) -> str:
    text = json.dumps(payload, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def expand(campaign: Campaign) -> list[Job]:
    """All jobs of ``campaign``, repetition-major so that slow drift (heat, other load)
    spreads over every configuration instead of landing on the last ones."""
    configs: list[dict[str, Any]] = []
    for source in campaign.inputs:
        for encoder in campaign.matrix.encoders:
            for preset in encoder.effective_presets():
                for control in campaign.matrix.controls_for(encoder):
                    for value in control.points():
                        for size in campaign.matrix.resolutions:
                            configs.append({
                                "input": source.model_dump(mode="json"),
                                "encoder": encoder.name,
                                "preset": preset,
                                "rate_control": control.mode,
                                "value": value,
                                "output_size": size,
                                "extra_args": list(encoder.extra_args),
                                "threads": campaign.threads,
                            })
    jobs: list[Job] = []
    seen: set[tuple[str, int]] = set()
    for repetition in range(1, campaign.repetitions + 1):
        for config in configs:
            config_id = _digest(config)
            if (config_id, repetition) in seen:
                continue  # the same configuration listed twice runs once
            seen.add((config_id, repetition))
            jobs.append(Job(
                job_id=_digest({"config_id": config_id, "repetition": repetition}),
                config_id=config_id,
                campaign=campaign.name,
                repetition=repetition,
                quality=list(campaign.quality),
                keep_output=campaign.keep_outputs,
                timeout_s=campaign.job_timeout_s,
                **config,
            ))
    return jobs


def _field_names(model: type[BaseModel]) -> list[str]:
    return list(model.model_fields)


def _known_fields_at(loc: tuple[Any, ...]) -> list[str]:
    """Field names allowed at the parent of ``loc`` (for did-you-mean hints)."""
    model: Any = Campaign
    for part in loc[:-1]:
        if isinstance(part, int) or model is None:
            continue
        if part in ("synthetic", "file"):
            model = SyntheticInput if part == "synthetic" else FileInput
            continue
        info = getattr(model, "model_fields", {}).get(part)
        if info is None:
            return []
        model = _model_in(info.annotation)
    return _field_names(model) if model is not None and hasattr(model, "model_fields") else []


def _model_in(annotation: Any) -> Any:
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    for arg in get_args(annotation):
        found = _model_in(arg)
        if found is not None:
            return found
    return None


def _format_loc(loc: tuple[Any, ...]) -> str:
    text = ""
    for part in loc:
        if part in ("synthetic", "file"):
            continue  # the union's tag is ours, not the user's
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else str(part))
    return text or "(top level)"


def describe_validation_error(exc: ValidationError, source: str) -> str:
    """One line per problem: where it is, what was given, and what is allowed."""
    lines = [f"{source}: {exc.error_count()} problem(s):"]
    for error in exc.errors():
        loc = tuple(error["loc"])
        where = _format_loc(loc)
        if error["type"] == "extra_forbidden":
            field = str(loc[-1])
            known = _known_fields_at(loc)
            hint = difflib.get_close_matches(field, known, n=1)
            suggestion = f" (did you mean {hint[0]!r}?)" if hint else ""
            lines.append(f"  - {where}: unknown field {field!r}{suggestion}; allowed: {', '.join(known)}")
            continue
        message = error["msg"].removeprefix("Value error, ")
        given = error.get("input")
        shown = "" if isinstance(given, (dict, list)) or given is None else f" (got {given!r})"
        lines.append(f"  - {where}: {message}{shown}")
    return "\n".join(lines)


def parse_campaign(data: Any, *, source: str = "campaign") -> Campaign:
    """Validate already-loaded data as a campaign, raising :class:`CampaignError`."""
    if not isinstance(data, dict):
        raise CampaignError(f"{source}: a campaign is a mapping with name, inputs and matrix")
    try:
        return Campaign.model_validate(data)
    except ValidationError as exc:
        raise CampaignError(describe_validation_error(exc, source)) from exc


def load_campaign(path: str | Path) -> Campaign:
    """Read and validate a campaign YAML file. File inputs resolve relative to it."""
    path = Path(path)
    try:
        data = yaml.safe_load(path.read_text())
    except OSError as exc:
        raise CampaignError(f"can't read campaign file {path}: {exc.strerror}") from exc
    except yaml.YAMLError as exc:
        raise CampaignError(f"{path} is not valid YAML: {exc}") from exc
    campaign = parse_campaign(data, source=str(path))
    inputs = [
        item.model_copy(update={"path": (path.parent / item.path).resolve()})
        if isinstance(item, FileInput) and not item.path.is_absolute()
        else item
        for item in campaign.inputs
    ]
    return campaign.model_copy(update={"inputs": inputs})


def check_runnable(campaign: Campaign, build: FFmpegBuild) -> None:
    """Refuse a campaign this node's FFmpeg can't run: missing encoders, or no libvmaf for quality."""
    missing = [name for name in campaign.encoder_names() if name not in build.encoders]
    if missing:
        raise EncoderUnavailable(missing, sorted(build.encoders), build.path)
    if campaign.quality and not build.has_libvmaf:
        raise CampaignError(
            f"quality metrics {campaign.quality} need an FFmpeg with libvmaf, and {build.path} has none; "
            "unset FFWATT_FFMPEG to use the bundled build, or set quality: [] in the campaign"
        )
