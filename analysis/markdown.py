"""Markdown for the Prefect UI's artifacts (and anyone who pastes a result into an issue).

Plain text, no Prefect: the tasks that publish artifacts call these, tests read them.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from ffwatt.schema import is_missing

if TYPE_CHECKING:
    import pandas as pd

__all__ = ["md_number", "md_table", "md_text", "shown"]


def md_text(value: Any) -> str:
    """``value`` as one table cell: pipes escaped, line breaks folded."""
    return "-" if is_missing(value) else str(value).replace("|", "\\|").replace("\n", " ")


def md_number(value: Any, digits: int = 3, *, estimated: bool = False) -> str:
    """A number to ``digits`` significant figures (``-`` when missing); ``*`` when estimated."""
    if is_missing(value):
        return "-"
    number = float(value)
    if math.isinf(number):
        return "∞" if number > 0 else "-∞"
    text = f"{number:.{digits}g}" if abs(number) < 10 ** digits else f"{number:.0f}"
    return text + ("*" if estimated else "")


def md_table(headers: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    """A Markdown table; cells are used as given (format them with :func:`md_number`/:func:`md_text`)."""
    lines = ["| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines) + "\n"


def shown(frame: pd.DataFrame, digits: int = 3) -> pd.DataFrame:
    """``frame`` for people to read (a notebook's display): numbers to ``digits`` significant figures, and
    ``-`` where a figure is missing, never NaN."""
    return frame.astype(object).map(lambda value: md_number(value, digits) if isinstance(value, float)
                                    else md_text(value))
