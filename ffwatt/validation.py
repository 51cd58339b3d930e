"""Reading campaigns with errors a person can act on, and checking a node can run them.

Every problem names where it is in the file, what was given and what is allowed;
an unknown field gets a "did you mean".
"""

from __future__ import annotations

import difflib
from pathlib import Path
from typing import Any, get_args

import yaml
from pydantic import BaseModel, ValidationError

from ffwatt.campaign import Campaign, FileInput, SyntheticInput
from ffwatt.errors import CampaignError, EncoderUnavailable
from ffwatt.hardware.ffmpeg import FFmpegBuild

__all__ = ["check_runnable", "describe_validation_error", "load_campaign", "parse_campaign"]


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
