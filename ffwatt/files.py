"""Writing files so that readers and other processes never see them half done.

:func:`write_atomic` writes to a unique hidden name beside the target and renames
it into place, creating it with the mode the umask allows (not mkstemp's 0600), so
results can be shared read-only. :func:`file_lock` serializes work across
processes (two runs generating the same reference clip, measured jobs on a node), and
:func:`made_once` is the two together for a cached clip and its description.
:func:`owner_is_gone` tells leftovers of a dead process from work in progress.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import secrets
import shutil
import socket
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TypeVar

from pydantic import BaseModel

__all__ = ["file_lock", "made_once", "owned_name", "owner_is_gone", "scratch_dir", "sweep_scratch", "write_atomic"]

Described = TypeVar("Described", bound=BaseModel)


def _host() -> str:
    return socket.gethostname().replace(".", "-")


def _gone(host: str, pid: str) -> bool:
    """Whether process ``pid`` of ``host`` has exited; only this host's processes can be judged."""
    if host != _host():
        return False
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return True
    except (ValueError, PermissionError):
        return False
    return False


def owned_name(path: Path, suffix: str) -> Path:
    """A unique hidden name beside ``path`` that records this process as its owner:
    ``.<name>.<host>.<pid>.<random><suffix>``."""
    return path.with_name(f".{path.name}.{_host()}.{os.getpid()}.{secrets.token_hex(4)}{suffix}")


def owner_is_gone(leftover: Path) -> bool:
    """Whether the process named in an :func:`owned_name` on this host has exited."""
    parts = leftover.name.split(".")
    return len(parts) >= 5 and _gone(parts[-4], parts[-3])


def write_atomic(path: Path, write: Callable[[Path], object]) -> None:
    """Call ``write(tmp_path)``, then rename the temporary file onto ``path``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = owned_name(path, ".tmp")
    # Created here with 0666 & ~umask, as open() would: mkstemp's 0600 would hide shared results.
    os.close(os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666))
    try:
        write(tmp)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


@contextlib.contextmanager
def file_lock(path: Path) -> Iterator[None]:
    """Hold an exclusive lock on ``path`` (created if needed); others wait for it."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def made_once(media: Path, meta: Path, model: type[Described], make: Callable[[Path], Described]) -> Described:
    """The description of the cached file ``media`` (``meta``, a ``model`` as JSON), after making both
    with ``make`` if needed. Across processes one makes them while the others wait for its lock,
    then reuse what it made. ``make(tmp)`` writes the file to a unique name this process owns; it
    is renamed onto ``media`` when ``make`` returns and removed when it raises. A leftover of a
    maker that died is removed once its process is gone."""
    if media.is_file() and meta.is_file():
        return model.model_validate_json(meta.read_text())
    with file_lock(media.with_name(f".{media.name}.lock")):
        if media.is_file() and meta.is_file():
            return model.model_validate_json(meta.read_text())
        for leftover in media.parent.glob(f".{media.name}.*.partial"):
            if owner_is_gone(leftover):
                leftover.unlink(missing_ok=True)
        tmp = owned_name(media, ".partial")
        try:
            made = make(tmp)
            tmp.replace(media)
        finally:
            tmp.unlink(missing_ok=True)  # after an error or an interrupt: no partial file stays behind
        write_atomic(meta, lambda path: path.write_text(made.model_dump_json(indent=2)))
    return made


def scratch_dir(home: Path) -> Path:
    """This process's scratch space under ``home/tmp`` (``<host>.<pid>``): encodes no one keeps,
    between the encode and the quality pass. One per process, so its owner removes all of it."""
    return home / "tmp" / f"{_host()}.{os.getpid()}"


def sweep_scratch(home: Path, *, own: bool = False) -> list[Path]:
    """Remove the scratch directories of this host's processes that are gone (an interrupted or
    killed run's), and with ``own`` this process's; returns what was removed."""
    root = home / "tmp"
    removed: list[Path] = []
    if not root.is_dir():
        return removed
    mine = scratch_dir(home)
    for directory in root.iterdir():
        host, _, pid = directory.name.rpartition(".")
        if (directory == mine and own) or (directory != mine and _gone(host, pid)):
            shutil.rmtree(directory, ignore_errors=True)
            removed.append(directory)
    return removed
