"""Jobs: a campaign expanded into single encodes, each with an id that is the same everywhere.

:func:`expand` turns a campaign into :class:`Job` objects in a fixed order, each
with a ``job_id`` that depends only on what the job does and its repetition, so
the same job has the same id in every run and on every machine.

A live campaign's job is one step of a concurrency sweep (:class:`LiveStep`): N
streams at once of one input, encoder, preset and ladder. A sweep's steps follow
each other in the order they run (ascending N) and share a ``sweep_id``, so the
dispatcher keeps them on one node and a step past a real-time break can be skipped.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

from pydantic import BaseModel, ConfigDict

from ffwatt.campaign import Campaign, InputSpec, QualityMetric, QualityModel, Rung
from ffwatt.encoders import PixFmt, RateMode
from ffwatt.schema import config_label

__all__ = ["Job", "LiveStep", "expand", "sweep_groups"]


class LiveStep(BaseModel):
    """What makes a job a live sweep step: streams at once, the ladder, and how it is judged."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    sweep_id: str  # the same for every step of one sweep (input, encoder, preset, ladder)
    streams: int
    ladder: list[Rung]
    gop_s: float
    first_frame_timeout_s: float
    realtime_tolerance: float

    @property
    def ladder_label(self) -> str:
        """The ladder in one word, top rung first: ``1280x720@3000k+640x360@800k``."""
        return "+".join(rung.label for rung in self.ladder)


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
    pix_fmt: PixFmt = "yuv420p"
    quality_models: list[QualityModel] = ["auto"]
    keep_output: bool
    timeout_s: float
    live: LiveStep | None = None

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
                               "target_bitrate_kbps": self.target_bitrate_kbps, "pix_fmt": self.pix_fmt,
                               "live_ladder": self.live.ladder_label if self.live else None,
                               "live_streams": self.live.streams if self.live else None}, with_input=True)
        return f"{config}{'' if self.live else ' ' + self.output_size} #{self.repetition}"


def _digest(payload: dict[str, Any]) -> str:
    text = json.dumps(payload, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def _live_configs(campaign: Campaign) -> list[dict[str, Any]]:
    """One configuration per sweep step, a sweep's steps in a row. The rate point and size are the
    top rung's; the ladder and streams at once are in ``live`` (and so in the configuration's id)."""
    live = campaign.live
    assert live is not None
    configs = []
    for source in campaign.inputs:
        for encoder in campaign.matrix.encoders:
            for preset in encoder.effective_presets():
                step: dict[str, Any] = {"ladder": [rung.model_dump() for rung in live.ladder], "gop_s": live.gop_s}
                base = {"input": source.model_dump(mode="json"), "encoder": encoder.name, "preset": preset,
                        "rate_control": "cbr", "value": live.ladder[0].bitrate_kbps,
                        "output_size": live.ladder[0].size, "extra_args": list(encoder.extra_args),
                        "threads": campaign.threads,
                        "live": step}
                sweep_id = _digest(base)
                for streams in live.steps():
                    configs.append({**base, "live": {**step, "streams": streams, "sweep_id": sweep_id}})
    return configs


def _live_step(config: dict[str, Any], campaign: Campaign) -> dict[str, Any]:
    """A live configuration's job fields: how its step is judged travels with it, outside its id."""
    assert campaign.live is not None
    judged = {"first_frame_timeout_s": campaign.live.first_frame_timeout_s,
              "realtime_tolerance": campaign.live.realtime_tolerance}
    return {**config, "live": LiveStep(**config["live"], **judged)}


def expand(campaign: Campaign) -> list[Job]:
    """All jobs of ``campaign``, repetition-major so that slow drift (heat, other load)
    spreads over every configuration instead of landing on the last ones."""
    configs: list[dict[str, Any]] = _live_configs(campaign) if campaign.live is not None else []
    for source in campaign.inputs if campaign.live is None else []:
        for encoder in campaign.matrix.encoders:
            for preset in encoder.effective_presets():
                for control in campaign.matrix.controls_for(encoder):
                    for value in control.points():
                        for size in campaign.matrix.resolutions:
                            for pix_fmt in campaign.matrix.pix_fmts_for(encoder):
                                config = {
                                    "input": source.model_dump(mode="json"),
                                    "encoder": encoder.name,
                                    "preset": preset,
                                    "rate_control": control.mode,
                                    "value": value,
                                    "output_size": size,
                                    "extra_args": list(encoder.extra_args),
                                    "threads": campaign.threads,
                                }
                                # 8-bit 4:2:0 is what every job encoded before formats could be chosen:
                                # left out of the key, so those configurations keep their ids.
                                if pix_fmt != "yuv420p":
                                    config["pix_fmt"] = pix_fmt
                                configs.append(config)
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
                quality_models=list(campaign.quality_models),
                keep_output=campaign.keep_outputs,
                timeout_s=campaign.job_timeout_s,
                **(_live_step(config, campaign) if "live" in config else config),
            ))
    return jobs


def sweep_groups(jobs: list[Job]) -> list[list[Job]]:
    """``jobs`` in units that must run on one node, in order: each live sweep's steps of one repetition
    together (ascending streams), every other job alone."""
    groups: dict[object, list[Job]] = {}
    for job in jobs:
        key = (job.live.sweep_id, job.repetition) if job.live is not None else job.job_id
        groups.setdefault(key, []).append(job)
    return [sorted(group, key=lambda job: job.live.streams if job.live else 0) for group in groups.values()]
