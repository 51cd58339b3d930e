"""Logging inside and outside Prefect runs."""

from __future__ import annotations

import logging

__all__ = ["run_logger"]


def run_logger() -> logging.Logger | logging.LoggerAdapter[logging.Logger]:
    """Prefect's run logger inside a flow or task run, a plain logger outside one."""
    try:
        from prefect import get_run_logger

        return get_run_logger()
    except Exception:  # noqa: BLE001 - MissingContextError outside a run
        return logging.getLogger("ffwatt")
