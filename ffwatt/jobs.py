"""Jobs: a campaign expanded into single encodes, each with an id that is the same everywhere.

:func:`expand` turns a campaign into :class:`Job` objects in a fixed order, each
with a ``job_id`` that depends only on what the job does and its repetition, so
the same job has the same id in every run and on every machine.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

from pydantic import BaseModel, ConfigDict

from ffwatt.campaign import Campaign, InputSpec, QualityMetric
from ffwatt.encoders import RateMode
from ffwatt.schema import config_label

__all__ = ["Job", "expand"]


class Job(BaseModel):
    """One encode of one input with one configuration, at one repetition."""

    model_config = ConfigDict(extra="forbid", frozen=True)

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
        """The job in words for logs: its configuration, output size and repetition."""
        config = config_label({"input_name": self.input.name, "encoder": self.encoder, "preset": self.preset,
                               "rate_control": self.rate_control, "crf": self.crf, "qp": self.qp,
                               "target_bitrate_kbps": self.target_bitrate_kbps}, with_input=True)
        return f"{config} {self.output_size} #{self.repetition}"


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
