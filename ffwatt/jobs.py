"""Jobs: a campaign expanded into single encodes, each with an id that is the same everywhere.

:func:`expand` turns a campaign into :class:`Job` objects in a fixed order, each
with a ``job_id`` that depends only on what the job does and its repetition, so
the same job has the same id in every run and on every machine.

A live campaign's job is one step of a concurrency sweep (:class:`LiveStep`): N
streams at once of one input, encoder, preset and ladder; a density campaign's, N
copies of one encode at once (:class:`DensityStep`). A sweep's steps follow each
other in the order they run (ascending N) and share a ``sweep_id``, so the
dispatcher keeps them on one node and a step past a break can be skipped. Where a
gap is left between the largest N that held and the smallest that broke, the N
halfway is measured next (:func:`next_bisection`, :func:`sweep_step`), until none is left.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from typing import Any

from pydantic import BaseModel, ConfigDict

from ffwatt.campaign import Campaign, InputSpec, QualityMetric, QualityModel, Rung
from ffwatt.encoders import PixFmt, RateMode
from ffwatt.schema import SweepPhase, config_label

__all__ = ["DensityStep", "Job", "LiveStep", "expand", "grew", "next_bisection", "sweep_groups", "sweep_step"]


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


class DensityStep(BaseModel):
    """What makes a job a density sweep step: copies of the encode at once, and how saturation is judged."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    sweep_id: str  # the same for every step of one sweep (the configuration without its concurrency)
    concurrency: int
    saturation_gain: float


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
    settle_max_s: float = 30.0  # how the job is run, not what it is: outside its id
    live: LiveStep | None = None
    density: DensityStep | None = None
    sweep_phase: SweepPhase | None = None  # a sweep step's: listed, doubling or bisection

    @property
    def sweep(self) -> tuple[str, int] | None:
        """(sweep id, repetition) of a sweep step: the steps that run in order on one node."""
        step = self.live or self.density
        return (step.sweep_id, self.repetition) if step is not None else None

    @property
    def step_n(self) -> int | None:
        """A sweep step's N: streams or copies at once."""
        return self.live.streams if self.live else self.density.concurrency if self.density else None

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
                               "live_streams": self.live.streams if self.live else None,
                               "concurrency": self.density.concurrency if self.density else None}, with_input=True)
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


def _vod_configs(campaign: Campaign) -> list[dict[str, Any]]:
    """Every encode: input x encoder x preset x rate point x size, or x rung of ``matrix.ladder``."""
    configs: list[dict[str, Any]] = []
    for source in campaign.inputs:
        for encoder in campaign.matrix.encoders:
            for preset in encoder.effective_presets():
                if campaign.matrix.ladder is not None:
                    points = [("vbr", rung.bitrate_kbps, rung.size) for rung in campaign.matrix.ladder]
                else:
                    points = [(control.mode, value, size) for control in campaign.matrix.controls_for(encoder)
                              for value in control.points() for size in campaign.matrix.resolutions]
                for mode, value, size in points:
                    for pix_fmt in campaign.matrix.pix_fmts_for(encoder):
                        config = {
                            "input": source.model_dump(mode="json"),
                            "encoder": encoder.name,
                            "preset": preset,
                            "rate_control": mode,
                            "value": value,
                            "output_size": size,
                            "extra_args": list(encoder.extra_args),
                            "threads": campaign.threads,
                        }
                        # 8-bit 4:2:0 is what every job encoded before formats could be chosen: left
                        # out of the key, so those configurations keep their ids.
                        if pix_fmt != "yuv420p":
                            config["pix_fmt"] = pix_fmt
                        configs.append(config)
    return configs


def _density_configs(campaign: Campaign) -> list[dict[str, Any]]:
    """Each encode once per density step, a sweep's steps in a row; the copies at once are in ``density``
    (and so in the configuration's id), the sweep's id is the encode's own."""
    density = campaign.density
    assert density is not None
    return [{**base, "density": {"sweep_id": _digest(base), "concurrency": n}}
            for base in _vod_configs(campaign) for n in density.steps()]


def _step_fields(config: dict[str, Any], campaign: Campaign) -> dict[str, Any]:
    """A sweep step's job fields: how it is judged and how it was reached travel with it, outside its id."""
    if "live" in config:
        live = campaign.live
        assert live is not None
        judged = {"first_frame_timeout_s": live.first_frame_timeout_s, "realtime_tolerance": live.realtime_tolerance}
        step = LiveStep(**config["live"], **judged)
        phase = "listed" if step.streams in live.streams else "doubling"
        return {**config, "live": step, "sweep_phase": phase}
    if "density" in config:
        density = campaign.density
        assert density is not None
        copies = DensityStep(**config["density"], saturation_gain=density.saturation_gain)
        phase = "listed" if copies.concurrency in density.concurrency else "doubling"
        return {**config, "density": copies, "sweep_phase": phase}
    return config


def _configs(campaign: Campaign) -> list[dict[str, Any]]:
    if campaign.live is not None:
        return _live_configs(campaign)
    return _density_configs(campaign) if campaign.density is not None else _vod_configs(campaign)


def _job(campaign: Campaign, config: dict[str, Any], repetition: int, config_id: str) -> Job:
    return Job(job_id=_digest({"config_id": config_id, "repetition": repetition}), config_id=config_id,
               campaign=campaign.name, repetition=repetition, quality=list(campaign.quality),
               quality_models=list(campaign.quality_models), keep_output=campaign.keep_outputs,
               timeout_s=campaign.job_timeout_s, settle_max_s=campaign.settle_max_s,
               **_step_fields(config, campaign))


def expand(campaign: Campaign) -> list[Job]:
    """All jobs of ``campaign``, repetition-major so that slow drift (heat, other load)
    spreads over every configuration instead of landing on the last ones. With adaptive repetitions,
    every one up to the maximum: the run's rounds pick those it needs (flows/repeat.py)."""
    configs = _configs(campaign)
    jobs: list[Job] = []
    seen: set[tuple[str, int]] = set()
    for repetition in range(1, campaign.max_repetitions + 1):
        for config in configs:
            config_id = _digest(config)
            if (config_id, repetition) in seen:
                continue  # the same configuration listed twice runs once
            seen.add((config_id, repetition))
            jobs.append(_job(campaign, config, repetition, config_id))
    return jobs


def sweep_step(campaign: Campaign, job: Job, n: int) -> Job:
    """The step of ``job``'s sweep (and repetition) at ``n`` streams or copies at once, reached by
    bisection: the same id it would have had had it been listed."""
    key = "live" if job.live is not None else "density"
    step = job.live or job.density
    if step is None:
        raise ValueError(f"job {job.job_id} is no sweep step")
    count = "streams" if key == "live" else "concurrency"
    for config in _configs(campaign):
        if config.get(key, {}).get("sweep_id") == step.sweep_id:
            at_n = {**config, key: {**config[key], count: n}}
            bisected = _job(campaign, at_n, job.repetition, _digest(at_n))
            return bisected.model_copy(update={"sweep_phase": "bisection"})
    raise ValueError(f"campaign {campaign.name!r} has no sweep {step.sweep_id}")


def sweep_groups(jobs: list[Job]) -> list[list[Job]]:
    """``jobs`` in units that must run on one node, in order: each sweep's steps of one repetition
    together (ascending N), every other job alone."""
    groups: dict[object, list[Job]] = {}
    for job in jobs:
        groups.setdefault(job.sweep or job.job_id, []).append(job)
    return [sorted(group, key=lambda job: job.step_n or 0) for group in groups.values()]


def grew(fps_by_n: Mapping[int, float | None], gain: float) -> dict[int, bool]:
    """Which steps of a density sweep still grew: in ascending N, a step grew when its aggregate frames/s
    is at least ``1 + gain`` times that of the last step that grew (the first step grows when it ran at
    all); a step without a figure (failed) didn't. Bisection keeps this consistent: a step halfway that
    grew is above its lower neighbour by the gain, so the step above it that didn't grow still doesn't."""
    out: dict[int, bool] = {}
    base: float | None = None
    for n in sorted(fps_by_n):
        fps = fps_by_n[n]
        out[n] = fps is not None and (base is None or fps >= (1 + gain) * base)
        if out[n]:
            base = fps
    return out


def next_bisection(held: Mapping[int, bool]) -> int | None:
    """The N to measure next in a sweep whose measured steps ``held`` (True) or broke: halfway between
    the largest N that held below the smallest that broke (0 when none did: no streams always hold)
    and that smallest; None when they are neighbours or nothing broke."""
    broke = [n for n, ok in held.items() if not ok]
    if not broke:
        return None
    first_broken = min(broke)
    below = [n for n, ok in held.items() if ok and n < first_broken]
    last_held = max(below, default=0)
    return (last_held + first_broken) // 2 if first_broken - last_held > 1 else None
