"""Reading campaigns with errors a person can act on, and checking a node can run them.

Every problem names where it is in the file, what was given and what is allowed;
an unknown field gets a "did you mean".
"""

from __future__ import annotations

import difflib
import os
import shutil
from pathlib import Path
from typing import Any, get_args

import yaml
from pydantic import BaseModel, ValidationError

from ffwatt.campaign import PATTERN_WORDS, Campaign, FileInput, SyntheticInput
from ffwatt.encoders import PROFILES, profile_for
from ffwatt.errors import CampaignError, EncoderUnavailable
from ffwatt.files import owned_name
from ffwatt.hardware.ffmpeg import (
    FFmpegBuild,
    check_encoder,
    encoder_options,
    ffmpeg_path,
    probe_build,
    probe_media,
)
from ffwatt.settings import Settings

__all__ = [
    "MAX_PARAMETERS_BYTES",
    "check_encoder_options",
    "check_hardware_encoders",
    "check_ingest",
    "check_input_paths",
    "check_inputs",
    "check_parameters_size",
    "check_runnable",
    "check_writable",
    "describe_validation_error",
    "input_path_refusal",
    "load_campaign",
    "parse_campaign",
    "preflight",
]

# Prefect's API takes requests up to 512 KB; a campaign's parameters leave room for the rest.
MAX_PARAMETERS_BYTES = 400 * 1024
MIN_FREE_BYTES = 16 * 2**20


def _field_names(model: type[BaseModel]) -> list[str]:
    return list(model.model_fields)


_TAGS = ("number", "adaptive")  # repetitions' shapes


def _known_fields_at(loc: tuple[Any, ...]) -> list[str]:
    """Field names allowed at the parent of ``loc`` (for did-you-mean hints)."""
    model: Any = Campaign
    for part in loc[:-1]:
        if isinstance(part, int) or model is None:
            continue
        if part in ("synthetic", "file"):
            model = SyntheticInput if part == "synthetic" else FileInput
            continue
        if part in _TAGS:
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
        if part in ("synthetic", "file", *_TAGS):
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
        if error["type"] == "string_pattern_mismatch":  # say what is allowed, not the regular expression
            pattern = str(error.get("ctx", {}).get("pattern", ""))
            message = f"not a valid name; use {PATTERN_WORDS.get(pattern, f'text matching {pattern}')}"
        given = error.get("input")
        shown = "" if isinstance(given, (dict, list)) or given is None else f" (got {given!r})"
        # A whole-campaign rule names its own fields in its message.
        lines.append(f"  - {message}{shown}" if not loc else f"  - {where}: {message}{shown}")
    if len(lines) == 2:  # one problem: one line
        return f"{source}: {lines[1].removeprefix('  - ')}"
    return "\n".join(lines)


def parse_campaign(data: Any, *, source: str = "campaign") -> Campaign:
    """Validate already-loaded data as a campaign, raising :class:`CampaignError`."""
    if not isinstance(data, dict):
        raise CampaignError(f"{source}: a campaign is a mapping with name, inputs and matrix")
    try:
        return Campaign.model_validate(data)
    except ValidationError as exc:
        raise CampaignError(describe_validation_error(exc, source)) from exc


def _yaml_problem(path: Path, exc: yaml.YAMLError) -> str:
    """A YAML syntax error in one line that names the file and where in it (PyYAML's own text names
    ``"<unicode string>"``, the string it was handed)."""
    if not isinstance(exc, yaml.MarkedYAMLError) or exc.problem_mark is None:
        return f"{path} is not valid YAML: {' '.join(str(exc).split())}"
    mark = exc.problem_mark
    text = f"{path}, line {mark.line + 1}, column {mark.column + 1}: not valid YAML: {exc.problem}"
    if exc.context and exc.context_mark is not None:
        start = exc.context_mark
        text += f" ({exc.context} that starts at line {start.line + 1}, column {start.column + 1})"
    return text


def _read_yaml(path: Path, what: str) -> Any:
    try:
        return yaml.safe_load(path.read_text())
    except OSError as exc:
        raise CampaignError(f"can't read {what} {path}: {exc.strerror}") from exc
    except yaml.YAMLError as exc:
        raise CampaignError(_yaml_problem(path, exc)) from exc


def _ladder_files(data: Any, base: Path, source: str) -> Any:
    """``live.ladder`` or ``matrix.ladder`` given as a file name (a ladder YAML such as `ffwatt ladder`
    writes: a ``ladder:`` list, or the list alone), read relative to the campaign file."""
    if not isinstance(data, dict):
        return data
    data = dict(data)
    for section in ("live", "matrix"):
        part = data.get(section)
        if isinstance(part, dict) and isinstance(part.get("ladder"), str):
            path = base / part["ladder"]
            ladder = _read_yaml(path, f"the ladder file named by {section}.ladder in {source},")
            if isinstance(ladder, dict):
                ladder = ladder.get("ladder")
            if not isinstance(ladder, list):
                raise CampaignError(f"{source}: {section}.ladder names {path}, which holds no ladder; it should hold "
                                    "`ladder:` and a list of {size, bitrate_kbps} (ffwatt ladder writes one)")
            data[section] = {**part, "ladder": ladder}
    return data


def load_campaign(path: str | Path) -> Campaign:
    """Read and validate a campaign YAML file. File inputs and ladder files resolve relative to it."""
    path = Path(path)
    data = _ladder_files(_read_yaml(path, "campaign file"), path.parent, str(path))
    campaign = parse_campaign(data, source=str(path))
    inputs = [
        item.model_copy(update={"path": (path.parent / item.path).resolve()})
        if isinstance(item, FileInput) and not item.path.is_absolute()
        else item
        for item in campaign.inputs
    ]
    return campaign.model_copy(update={"inputs": inputs})


def check_runnable(campaign: Campaign, build: FFmpegBuild) -> None:
    """Refuse a campaign this node's FFmpeg can't run: missing encoders, or no libvmaf for quality.
    (:func:`preflight` does this and everything else that can be known before the first job.)"""
    missing = [name for name in campaign.encoder_names() if name not in build.encoders]
    if missing:
        raise EncoderUnavailable(missing, sorted(build.encoders), build.path)
    if campaign.quality and not build.has_libvmaf:
        raise CampaignError(
            f"quality metrics {campaign.quality} need an FFmpeg with libvmaf, and {build.path} has none; "
            "unset FFWATT_FFMPEG to use the bundled build, or set quality: [] in the campaign"
        )


def check_encoder_options(campaign: Campaign, ffmpeg: str) -> None:
    """An encoder ffwatt has no profile for gets FFmpeg's generic ``-crf``, ``-qp`` and ``-preset``, which an
    encoder without those options ignores (``mpeg4`` at CRF 2 and CRF 200 made the same video): refuse what
    this FFmpeg's ``-h encoder=NAME`` doesn't list, or a value outside the range it gives."""
    problems = []
    for encoder in campaign.matrix.encoders:
        if encoder.name in PROFILES:
            continue  # its profile says how it takes each mode; the model checked them
        options = encoder_options(ffmpeg, encoder.name)
        takes = ", ".join([mode for mode in ("crf", "qp") if mode in options] + ["cbr (bitrates_kbps)", "vbr"])
        for control in campaign.matrix.controls_for(encoder):
            if control.mode not in ("crf", "qp"):
                continue
            if control.mode not in options:
                problems.append(f"{encoder.name} has no -{control.mode} option (FFmpeg's `-h encoder={encoder.name}` "
                                f"lists none), so rate control {control.mode!r} would be ignored; it takes: {takes}")
                continue
            low, high = options[control.mode] or (float("-inf"), float("inf"))
            bad = [value for value in control.values if not low <= value <= high]
            if bad:
                problems.append(f"{control.mode} value(s) {bad} out of range for {encoder.name}; this FFmpeg allows "
                                f"{low:g}..{high:g}")
        if encoder.presets and "preset" not in options:
            problems.append(f"{encoder.name} has no -preset option, so presets {encoder.presets} would be ignored; "
                            "remove presets")
    if problems:
        raise CampaignError("; ".join(problems))


def check_parameters_size(campaign: Campaign) -> None:
    """A campaign travels as flow-run parameters; Prefect's API refuses requests over 512 KB."""
    size = len(campaign.model_dump_json())
    if size > MAX_PARAMETERS_BYTES:
        raise CampaignError(
            f"campaign {campaign.name!r} is {size / 1024:.0f} KiB as flow parameters, over the "
            f"{MAX_PARAMETERS_BYTES // 1024} KiB that fit a Prefect API request; split it into smaller campaigns")


def check_hardware_encoders(campaign: Campaign, ffmpeg: str) -> None:
    """Hardware encoders need their device: a short test encode proves each works on this node."""
    failing = []
    for name in campaign.encoder_names():
        if profile_for(name).pool != "cpu":
            check = check_encoder(ffmpeg, name)
            if not check.works:
                failing.append(f"{name} ({check.error})")
    if failing:
        raise CampaignError(f"encoder(s) that can't encode on this node: {'; '.join(failing)}. Run the campaign "
                            "on a node with that hardware (dispatch to pools), or remove them from matrix.encoders")


def check_inputs(campaign: Campaign, ffmpeg: str) -> None:
    """Every file input exists, is a file, and holds a video stream FFmpeg can read."""
    problems = []
    for spec in campaign.inputs:
        if not isinstance(spec, FileInput):
            continue
        info = probe_media(ffmpeg, spec.path)
        if info.error is not None:
            hint = {"No such file or directory": "does not exist", "Is a directory": "is a directory"}.get(
                info.error, f"can't be read as media ({info.error})")
            problems.append(f"input {spec.name!r}: {spec.path} {hint}")
        elif info.video is None:
            audio = f" (it has {info.audio_streams} audio stream(s))" if info.audio_streams else ""
            problems.append(f"input {spec.name!r}: {spec.path} has no video stream{audio}; give a video file")
    if problems:
        raise CampaignError("; ".join(problems))


def input_path_refusal(spec: FileInput, settings: Settings) -> str | None:
    """Why this node won't read ``spec`` for a campaign that came through the API, or None: its path,
    and the file it leads to through links, must lie under FFWATT_INPUT_DIRS. The path is judged as
    written first, so a path outside is refused without being looked at."""
    allowed = settings.allowed_input_dirs
    path = Path(os.path.abspath(spec.path))
    inside = any(path.is_relative_to(os.path.abspath(directory)) for directory in allowed)
    if inside:  # a link under an allowed directory may still lead out of it
        path_real = Path(os.path.realpath(path))
        inside = any(path_real.is_relative_to(os.path.realpath(directory)) for directory in allowed)
    if inside:
        return None
    return (f"input {spec.name!r}: {spec.path} is not under a directory node {settings.node} reads campaign inputs "
            f"from ({':'.join(str(d) for d in allowed)}); put the clip there, or add its directory to "
            "FFWATT_INPUT_DIRS on that node")


def check_input_paths(campaign: Campaign, settings: Settings) -> None:
    """Refuse a campaign from the API whose file inputs aren't where this node's settings allow."""
    problems = [why for spec in campaign.inputs
                if isinstance(spec, FileInput) and (why := input_path_refusal(spec, settings)) is not None]
    if problems:
        raise CampaignError("; ".join(problems))


def check_writable(directory: Path, what: str) -> None:
    """Write and remove a probe file in ``directory``; refuse it when that fails or space is short."""
    try:
        directory.mkdir(parents=True, exist_ok=True)
        probe = owned_name(directory / "write-probe", ".tmp")
        probe.write_bytes(b"ffwatt")
        probe.unlink()
    except OSError as exc:
        raise CampaignError(f"{what} {directory} can't be written ({exc.strerror}; "
                            f"{_free_space(directory)}); fix its permissions or point it elsewhere") from exc
    free = shutil.disk_usage(directory).free
    if free < MIN_FREE_BYTES:
        raise CampaignError(f"{what} {directory} has {_free_space(directory)}; ffwatt needs at least "
                            f"{MIN_FREE_BYTES // 2**20} MiB there. Free some space or point it elsewhere")


def _free_space(directory: Path) -> str:
    for candidate in (directory, *directory.parents):
        if candidate.exists():
            return f"{shutil.disk_usage(candidate).free / 2**20:.1f} MiB free"
    return "free space unknown"


def check_ingest(campaign: Campaign, settings: Settings) -> None:
    """A live campaign needs the RTMP ingest to answer, here on the master as on its workers."""
    if campaign.live is None:
        return
    from ffwatt.live import ingest_url, unreachable

    url = ingest_url(settings)
    reason = unreachable(url)
    if reason is not None:
        raise CampaignError(f"campaign {campaign.name!r} streams live, and the ingest {url} doesn't answer "
                            f"({reason}): start it on the master with `ffwatt stack up`, or point "
                            "FFWATT_INGEST_URL at one")


def preflight(campaign: Campaign, settings: Settings, *, local: bool = True, from_api: bool = False) -> FFmpegBuild:
    """Everything that can be known before the first job, with the same messages wherever it runs
    (``campaign validate``, ``campaign run``, the flow's start): the FFmpeg build, the request size,
    where results and state go, a live campaign's ingest, and for a run on this node (``local``) its
    encoders and inputs; for a campaign that came through the API (``from_api``), before any input is
    opened, that its file inputs are where this node's settings allow."""
    check_parameters_size(campaign)
    check_writable(settings.results_dir, "the results directory (FFWATT_RESULTS_DIR)")
    build = probe_build(ffmpeg_path(settings))
    check_ingest(campaign, settings)
    if local:
        if from_api:
            check_input_paths(campaign, settings)
        check_runnable(campaign, build)
        check_encoder_options(campaign, build.path)
        check_hardware_encoders(campaign, build.path)
        check_inputs(campaign, build.path)
        check_writable(settings.home, "this node's state directory (FFWATT_HOME)")
    return build
