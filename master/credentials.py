"""The stack's one secret: the Prefect API's basic-auth credentials (``user:password``), which
``ffwatt stack up`` creates and every party already holds, so they also open the control
endpoints (an agent's ``/wake``, discovery's ``/alerts`` and ``/nodes``, :mod:`exporters.control`)."""

from __future__ import annotations

import os
import secrets

from ffwatt.settings import Settings

__all__ = ["auth_string", "control_credentials"]


def auth_string(settings: Settings) -> str:
    """The API's basic-auth credentials, created on first use and kept private."""
    path = settings.auth_file
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(f"ffwatt:{secrets.token_urlsafe(24)}")
        path.chmod(0o600)
    return path.read_text().strip()


def control_credentials(settings: Settings) -> str:
    """What a master service accepts on its control endpoints: the credentials its environment holds
    for the API (a compose deployment's FFWATT_AUTH_STRING), else the stack's own."""
    return os.environ.get("PREFECT_API_AUTH_STRING") or auth_string(settings)
