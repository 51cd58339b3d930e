"""Adaptive repetitions: the stopping rule against hand-computed intervals, the campaign key's checks, and
the rounds the flow runs (interleaved, shuffled, stopping per configuration once settled)."""

from __future__ import annotations

import math

import pytest

from analysis.stats import ci_pct, settled
from ffwatt.campaign import AdaptiveRepetitions
from ffwatt.errors import CampaignError
from ffwatt.jobs import expand
from ffwatt.schema import JobRow
from ffwatt.validation import parse_campaign
from flows.repeat import rounds, shuffle_seed

# Student's t, two-sided 95 %, from a printed table: 2 and 4 degrees of freedom.
T_2 = 4.303
T_4 = 2.776


def test_the_interval_half_width_in_percent_of_the_mean_by_hand():
    # [1.00, 1.02, 0.98]: mean 1.00, sample sd 0.02, half-width 4.303 x 0.02 / sqrt(3) = 0.04968 -> 4.97 %.
    assert ci_pct([1.00, 1.02, 0.98]) == pytest.approx(T_2 * 0.02 / math.sqrt(3) * 100, rel=1e-3)
    assert ci_pct([1.00, 1.02, 0.98]) == pytest.approx(4.968, abs=0.002)
    # [10, 10.5, 9.5]: sd 0.5, half-width 4.303 x 0.5 / sqrt(3) = 1.242 -> 12.42 % of 10.
    assert ci_pct([10.0, 10.5, 9.5]) == pytest.approx(12.42, abs=0.01)
    # Five values 2, 2.1, 1.9, 2.05, 1.95: mean 2, sd sqrt(0.025 / 4) = 0.0791, half 2.776 x 0.0791 / sqrt(5)
    # = 0.0982 -> 4.91 %.
    assert ci_pct([2.0, 2.1, 1.9, 2.05, 1.95]) == pytest.approx(T_4 * math.sqrt(0.025 / 4) / math.sqrt(5) / 2 * 100,
                                                                rel=1e-3)
    assert math.isnan(ci_pct([1.0]))  # one value: no interval


def test_settled_needs_both_joules_per_frame_and_wall_time_within_the_limit():
    steady_jpf, steady_wall, loose_wall = [1.00, 1.02, 0.98], [10.0, 10.1, 9.9], [10.0, 10.5, 9.5]
    assert settled(steady_jpf, steady_wall, 5.0)  # 4.97 % and 2.48 %
    assert not settled(steady_jpf, steady_wall, 4.9)  # joules per frame at 4.97 % is just outside
    assert not settled(steady_jpf, loose_wall, 5.0)  # wall time at 12.4 %
    assert not settled([], steady_wall, 5.0)  # no energy figure: never settles


def _spec(**repetitions: object) -> dict:
    return {"name": "t", "inputs": [{"name": "a", "source": "testsrc2", "size": "320x240", "fps": 24,
                                     "duration_s": 1}],
            "matrix": {"encoders": [{"name": "libx264", "presets": ["veryfast", "slow"]}],
                       "rate_control": [{"mode": "crf", "values": [23]}]},
            "repetitions": repetitions or 1}


def _error(data: dict) -> str:
    with pytest.raises(CampaignError) as info:
        parse_campaign(data, source="c.yaml")
    return str(info.value)


def test_the_campaign_key_takes_a_number_or_min_max_ci_pct_and_says_what_is_wrong():
    assert parse_campaign(_spec() | {"repetitions": 3}).repetitions == 3
    assert parse_campaign(_spec(min=3, max=10, ci_pct=5)).repetitions == AdaptiveRepetitions(min=3, max=10, ci_pct=5)
    # One line each, naming the field as the user wrote it (not the number form's errors as well).
    assert _error(_spec(min=3, max=2)) == ("c.yaml: repetitions: repetitions.max (2) is below repetitions.min (3); "
                                           "raise max or lower min")
    assert _error(_spec(min=1, max=4)) == "c.yaml: repetitions.min: Input should be greater than or equal to 2 (got 1)"
    assert _error(_spec(min=2, max=4, ci_pct=0)) == "c.yaml: repetitions.ci_pct: Input should be greater than 0 (got 0)"
    assert "repetitions.mx: unknown field 'mx' (did you mean 'max'?)" in _error(_spec(min=2, mx=4))
    assert _error(_spec() | {"repetitions": 0}) == ("c.yaml: repetitions: Input should be greater than or equal to "
                                                    "1 (got 0)")


def test_adaptive_jobs_have_the_ids_fixed_repetitions_give_them():
    fixed = expand(parse_campaign(_spec() | {"repetitions": 4}))
    adaptive = expand(parse_campaign(_spec(min=2, max=4, ci_pct=5)))
    assert [j.job_id for j in adaptive] == [j.job_id for j in fixed] and len(fixed) == 2 * 4


def _row(job, jpf: float, wall: float) -> JobRow:
    return JobRow(campaign=job.campaign, run_id="r", job_id=job.job_id, config_id=job.config_id,
                  repetition=job.repetition, node="n", input_name="a", encoder=job.encoder, preset=job.preset,
                  rate_control="crf", status="ok", attempts=1, joules_per_frame=jpf, wall_s=wall)


def test_rounds_interleave_shuffle_and_stop_each_configuration_once_settled():
    campaign = parse_campaign(_spec(min=2, max=4, ci_pct=5))
    jobs = expand(campaign)
    assert isinstance(campaign.repetitions, AdaptiveRepetitions)
    steady = {j.config_id for j in jobs if j.preset == "veryfast"}
    noisy = [0.5, 1.5, 0.5, 1.5]  # the slow preset's joules per frame never settles: it runs to max
    rows: list[JobRow] = []
    ran: list[list[str]] = []
    for batch in rounds(campaign.repetitions, jobs, rows, seed=7):
        ran.append([j.preset or "" for j in batch])
        assert len({j.repetition for j in batch}) == 1  # one repetition of each configuration per round
        for job in batch:
            jpf = 1.0 if job.config_id in steady else noisy[job.repetition - 1]
            rows.append(_row(job, jpf, 10.0))
    # Rounds 1 and 2 have both (min 2); veryfast settled (no spread at all), slow goes on to 4.
    assert [sorted(r) for r in ran] == [["slow", "veryfast"], ["slow", "veryfast"], ["slow"], ["slow"]]
    assert [r.repetition for r in rows if r.config_id in steady] == [1, 2]
    # The order within a round is the seed's: the same seed, the same order; a run's seed comes from its id.
    again: list[JobRow] = []
    first = next(rounds(campaign.repetitions, jobs, again, seed=7))
    assert [j.job_id for j in first] == [r.job_id for r in rows[:2]]
    assert shuffle_seed("run-1") == shuffle_seed("run-1") != shuffle_seed("run-2")


def test_a_resumed_run_skips_the_jobs_it_already_has():
    campaign = parse_campaign(_spec(min=2, max=3, ci_pct=5))
    jobs = expand(campaign)
    assert isinstance(campaign.repetitions, AdaptiveRepetitions)
    earlier = [_row(jobs[0], 1.0, 10.0)]  # repetition 1 of the first configuration ran before the cut
    first = next(rounds(campaign.repetitions, jobs, earlier, seed=1))
    assert [j.job_id for j in first] == [jobs[1].job_id]
