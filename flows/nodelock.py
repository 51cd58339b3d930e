"""One measured thing at a time on a node: the node lock every flow that measures holds.

Energy is read for the whole machine, so two encodes at once would each be billed for both (the
same campaign run twice at once measured 20.9 J a job instead of 9.5 J, at half the fps). Every run
that measures on a node holds this lock while it does: a local campaign run for all of its jobs
(references, idle baseline, encodes), a fleet batch for each job. A second run waits for it, or is
refused at once naming who holds it.

The lock is an ``flock`` on ``FFWATT_HOME/node.lock``: the kernel drops it when its holder dies, so
a killed run never leaves the node locked. Its holder writes who it is into the file, for the
refusal to name; the words are only read while the lock is held by someone, so they are current.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import socket
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path

from ffwatt.errors import NodeBusy

__all__ = ["NodeBusy", "lock_path", "node_holder", "node_lock"]


def lock_path(home: Path) -> Path:
    """The node's lock file: one per ``FFWATT_HOME``, which is one per node (docs/fleet.md)."""
    return home / "node.lock"


def node_holder(home: Path) -> str | None:
    """Who holds this node's lock now (as its holder described itself), or None when it is free."""
    path = lock_path(home)
    if not path.exists():
        return None
    with path.open("r") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except BlockingIOError:
            return path.read_text().strip() or "another process (it didn't say which)"
        fcntl.flock(handle, fcntl.LOCK_UN)
    return None


@contextlib.contextmanager
def node_lock(home: Path, what: str, *, wait: bool = True,
              on_wait: Callable[[str], None] | None = None) -> Iterator[None]:
    """Hold this node's lock while the block measures ``what`` (e.g. ``campaign quick run 1a2b``). When
    another holds it: ``wait`` waits for it (telling ``on_wait`` who, once), else :class:`NodeBusy` is
    raised at once, naming the holder."""
    path = lock_path(home)
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a+") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = path.read_text().strip() or "another process (it didn't say which)"
            if not wait:
                raise NodeBusy(holder) from None
            if on_wait is not None:
                on_wait(holder)
            fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            handle.seek(0)
            handle.truncate()
            handle.write(f"{what} (pid {os.getpid()} on {socket.gethostname()}, since "
                         f"{datetime.now(UTC):%Y-%m-%d %H:%M:%S} UTC)\n")
            handle.flush()
            yield
        finally:
            handle.truncate(0)
            handle.flush()
            fcntl.flock(handle, fcntl.LOCK_UN)
