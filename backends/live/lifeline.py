"""A lifeline: a server's process group ends when the process that started it ends, however
it ends (``kill -9`` included).

The servers run in their own process group (so that the whole API server / engine / worker
tree can be stopped together) and nothing else ties them to the tuner: without this, a tuner
killed with SIGKILL leaves them re-parented to init and still serving. The kernel's
parent-death signal does not fit (it fires when the *thread* that forked exits, and trials
start servers from worker threads), so each group gets a tiny watchdog process instead.

The watchdog holds the read end of a pipe whose only write end stays in the tuner. The tuner
writes the group id once the server is started, and one byte when it stops the group
itself. An end of file without that byte means the tuner is gone (the kernel closes its
descriptors when it dies): the watchdog sends the group SIGTERM, then SIGKILL after a grace
period. It ignores SIGINT, so Ctrl-C in a terminal leaves the normal stop to the tuner.

This file is also the watchdog's program: it is run by path (``python -I lifeline.py FD
GRACE_S``), standard library only, so it starts in a few milliseconds.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time

__all__ = ["Lifeline"]

#: The byte the tuner writes when it stops the group itself (the watchdog then does nothing).
RELEASED = b"."


class Lifeline:
    """The tuner's side: ``Lifeline()`` starts the watchdog, :meth:`attach` names the group
    once the server exists, :meth:`release` is called after the tuner stopped it."""

    def __init__(self, grace_s: float = 5.0) -> None:
        read_fd, self._write_fd = os.pipe()  # both non-inheritable: no other child holds them
        try:
            self._watchdog = subprocess.Popen(
                [sys.executable, "-I", os.path.abspath(__file__), str(read_fd), str(grace_s)],
                pass_fds=(read_fd,),
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
                process_group=0,  # not in the terminal's foreground group: Ctrl-C is the tuner's
            )
        finally:
            os.close(read_fd)

    @property
    def watchdog_pid(self) -> int:
        return self._watchdog.pid

    def attach(self, pgid: int) -> None:
        """Tie process group ``pgid`` to this process's life."""
        os.write(self._write_fd, f"{pgid}\n".encode())

    def release(self) -> None:
        """The group was stopped by its owner: let the watchdog exit without killing."""
        if self._write_fd < 0:
            return
        with contextlib.suppress(OSError):
            os.write(self._write_fd, RELEASED)
        os.close(self._write_fd)
        self._write_fd = -1
        with contextlib.suppress(subprocess.TimeoutExpired):
            self._watchdog.wait(timeout=5)


def _group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _end_group(pgid: int, grace_s: float) -> None:
    """SIGTERM to the group, then SIGKILL to what is left after ``grace_s``."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pgid, signal.SIGTERM)
    deadline = time.monotonic() + grace_s
    while _group_alive(pgid) and time.monotonic() < deadline:
        time.sleep(0.1)
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pgid, signal.SIGKILL)


def _watch(read_fd: int, grace_s: float) -> None:
    """The watchdog: read the group id, then wait for release or end of file."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    data = b""
    while not data.endswith(b"\n"):
        chunk = os.read(read_fd, 64)
        if not chunk:
            return  # the tuner died before naming a group: nothing was started
        data += chunk
    pgid = int(data.strip())
    rest = os.read(read_fd, 1)
    if rest == RELEASED:
        return
    _end_group(pgid, grace_s)


if __name__ == "__main__":
    _watch(int(sys.argv[1]), float(sys.argv[2]))
