"""The ``ffwatt`` command: one sub-app per noun, joined in :mod:`ffwatt.cli.main`."""

from ffwatt.cli.main import app, main

__all__ = ["app", "main"]
