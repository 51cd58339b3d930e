"""The ``ffwatt`` command: one sub-app per noun, joined in :mod:`cli.main`."""

from cli.main import app, main

__all__ = ["app", "main"]
