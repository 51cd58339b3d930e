"""The CLI is thin: importing it loads no room (flows, tasks, agent, exporters, analysis) and none
of the heavy libraries behind them; each command imports what it uses when it runs."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

ROOMS = ("flows", "tasks", "agent", "master", "exporters", "analysis", "ffwatt.fleet", "ffwatt.hardware")
HEAVY = ("prefect", "pandas", "pyarrow", "matplotlib", "scipy")


def test_importing_the_cli_loads_no_room_and_nothing_heavy():
    code = ("import json, sys; import cli.main; "
            "print(json.dumps(sorted(m for m in sys.modules)))")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    loaded = json.loads(done.stdout)
    offenders = [m for m in loaded if any(m == r or m.startswith(r + ".") for r in ROOMS + HEAVY)]
    assert offenders == []
    assert "cli.campaign" in loaded and "cli.stack" in loaded  # the commands themselves are


@pytest.mark.parametrize("command", [["results", "show"], ["results", "runs"], ["campaign", "expand", "x.yaml"],
                                     ["recommend", "--vmaf", "90"], ["compare", "a", "b"], ["agent", "probe"]])
def test_output_is_one_choice_everywhere_and_anything_else_exits_2(command: list[str]):
    """-o yaml, xml and csv were taken with exit 0 and the table printed; agent probe said --json."""
    from tests.conftest import ffwatt

    done = ffwatt(*command, "-o", "yaml")
    assert done.returncode == 2 and "'yaml' is not one of 'table', 'json'" in done.stderr


def test_debug_is_taken_after_the_subcommand_too(tmp_path):
    """`--debug` after a subcommand was "No such option"; anywhere on the line it lets the error
    through with its traceback (``main`` re-raises it), as before the subcommand."""
    from ffwatt.errors import CampaignError
    from tests.conftest import ffwatt

    missing = str(tmp_path / "missing.yaml")
    plain = ffwatt("campaign", "validate", missing)
    assert plain.returncode == 2 and "can't read campaign file" in plain.stderr and "Traceback" not in plain.stderr
    for args in (("--debug", "campaign", "validate", missing), ("campaign", "validate", missing, "--debug"),
                 ("campaign", "validate", "--debug", missing)):
        with pytest.raises(CampaignError, match="can't read campaign file"):
            ffwatt(*args)
