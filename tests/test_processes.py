"""What ffwatt asks about a process by pid: a look never takes a child from the code that owns it."""

from __future__ import annotations

import os
import subprocess
import sys
import time

from ffwatt.processes import identity


def test_a_zombie_counts_as_gone_and_stays_its_owner_s_to_reap():
    """The in-process FFmpeg exporter looks at the pid a transcode is about to ``wait4`` on; a look
    that reaped it failed the job with "[Errno 10] No child processes"."""
    child = subprocess.Popen([sys.executable, "-c", "import sys; sys.exit(3)"])
    deadline = time.monotonic() + 10
    while identity(child.pid) is not None:  # running, then a zombie: gone either way
        assert time.monotonic() < deadline, "the child neither exited nor was seen as gone"
        time.sleep(0.02)
    assert identity(child.pid) is None
    pid, status, usage = os.wait4(child.pid, 0)  # ECHILD if the look had reaped it
    child.returncode = os.waitstatus_to_exitcode(status)
    assert (pid, child.returncode) == (child.pid, 3)
    assert usage.ru_utime + usage.ru_stime > 0


def test_a_running_process_is_named_by_its_pid_and_start_time():
    found = identity(os.getpid())
    assert found is not None and found.pid == os.getpid()
    assert found.same_process(identity(os.getpid()))
    assert found.cmdline and "python" in found.cmdline[0]
