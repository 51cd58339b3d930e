"""ffwatt's errors: one module, its docstring draws the hierarchy as it is, and errors carrying
fields survive the pickling Prefect does between processes."""

from __future__ import annotations

import pickle
import re

from ffwatt import errors


def test_the_drawn_hierarchy_is_the_real_one():
    drawn: dict[str, str] = {}
    parents: list[tuple[int, str]] = []
    for line in (errors.__doc__ or "").splitlines():
        found = re.match(r"^[\s│├└─]*([A-Z]\w+)\s{2,}", line)
        if not found:
            continue
        depth, name = found.start(1) // 4, found.group(1)  # the tree indents four columns a level
        parents = [p for p in parents if p[0] < depth]
        if parents:
            drawn[name] = parents[-1][1]
        parents.append((depth, name))
    public = {name for name in errors.__all__ if name != "FfwattError"}
    assert set(drawn) == public, "every error of ffwatt.errors is drawn in its docstring, and only those"
    for name, parent in drawn.items():
        assert getattr(errors, name).__mro__[1] is getattr(errors, parent), (name, parent)


def test_errors_with_fields_survive_pickling():
    api = pickle.loads(pickle.dumps(errors.ApiUnavailable("away", status=503)))
    assert type(api) is errors.ApiUnavailable and api.status == 503 and str(api) == "away"
    encode = pickle.loads(pickle.dumps(errors.EncodeFailed("boom", command=["ffmpeg"], stderr_tail="t", attempt=2)))
    assert (encode.command, encode.stderr_tail, encode.attempt) == (["ffmpeg"], "t", 2)
