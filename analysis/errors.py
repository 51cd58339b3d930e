"""Errors the analysis room raises on purpose.

    FfwattError                 (ffwatt.errors)
    └── AnalysisError           the data can't answer the question asked
        ├── NotComputable       too few points / no overlap (BD, CI, model fit)
        └── ExtrapolationError  a power-model prediction outside what was fitted

Both leaves are also ``ValueError`` so plain-Python callers can catch them without
knowing ffwatt.
"""

from __future__ import annotations

from ffwatt.errors import FfwattError

__all__ = ["AnalysisError", "ExtrapolationError", "NotComputable"]


class AnalysisError(FfwattError):
    """The results can't answer the question asked."""


class NotComputable(AnalysisError, ValueError):
    """A figure can't be computed from these points; the message says why."""


class ExtrapolationError(AnalysisError, ValueError):
    """A prediction was asked for outside the range the model was fitted on."""
