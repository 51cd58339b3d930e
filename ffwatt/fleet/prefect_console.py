"""Prefect's console log handler, printing messages verbatim.

Prefect prints logs through rich, which turns emoji codes into emoji: FFmpeg's
``Failed to set value '0:v:0' for option 'map'`` came out as ``0✌0``. ffwatt's
processes select this handler through Prefect's own override,
``PREFECT_LOGGING_HANDLERS_CONSOLE_CLASS`` (see :data:`ffwatt.fleet.prefect_server.PREFECT_ENV`).
"""

from __future__ import annotations

import logging

from prefect.logging.handlers import PrefectConsoleHandler

__all__ = ["VerbatimConsoleHandler"]


class VerbatimConsoleHandler(PrefectConsoleHandler):
    def emit(self, record: logging.LogRecord) -> None:
        try:
            self.console.print(self.format(record), soft_wrap=True, emoji=False)
        except RecursionError:
            raise
        except Exception:  # noqa: BLE001 - logging must never raise: report it as logging does
            self.handleError(record)
