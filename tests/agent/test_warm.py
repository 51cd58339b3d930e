"""A flow run that raised in the warm worker is marked Crashed, however long the API is away: its node,
alive and beating, would otherwise hold the campaign on a batch the API still calls Running."""

from __future__ import annotations

import asyncio
from uuid import uuid4

import httpx
from prefect.exceptions import Abort, PrefectHTTPStatusError

from agent.warm import report_crashed


def _status(code: int) -> PrefectHTTPStatusError:
    request = httpx.Request("POST", "http://master:4200/api/flow_runs/x/set_state")
    return PrefectHTTPStatusError(f"{code}", request=request, response=httpx.Response(code, request=request))


def _report(outcomes: list[BaseException | None]) -> tuple[bool, list[float], int]:
    """report_crashed against an API answering ``outcomes`` in turn (None: it takes the state)."""
    waits: list[float] = []
    calls = 0

    async def propose() -> None:
        nonlocal calls
        outcome = outcomes[calls]
        calls += 1
        if outcome is not None:
            raise outcome

    async def sleep(seconds: float) -> None:
        waits.append(seconds)

    taken = asyncio.run(report_crashed(propose, uuid4(), sleep=sleep, first_wait_s=5, longest_wait_s=20))
    return taken, waits, calls


def test_it_is_proposed_again_while_the_api_is_away_backing_off_to_a_ceiling():
    away = [_status(500), httpx.ConnectError("refused"), _status(503), _status(500), None]
    assert _report(away) == (True, [5, 10, 20, 20], 5)


def test_a_run_the_api_has_already_ended_is_left_as_it_is():
    assert _report([Abort("already Failed")]) == (False, [], 1)


def test_a_proposal_the_api_refuses_for_good_is_not_sent_again():
    assert _report([_status(422)]) == (False, [], 1)
