"""Helper processes that live and die with the process that started them.

One Python process runs Python code on one core at a time (the GIL). When `carbonx
serve --workers N` spreads HTTP over N processes, the engine and the projector would
still share the parent's one core: every projector batch then waits for the engine's
and the other way round, which shows as latency on every order. The projector is
already a process of its own in production (`carbonx projector`); :class:`ChildProcess`
runs that very command under the parent: restarted if it exits unexpectedly, stopped
with the parent, and killed by the kernel if the parent dies without stopping it
(:func:`die_with`), so that no orphan keeps writing to the store.
"""

from __future__ import annotations

import ctypes
import logging
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Mapping, Sequence

__all__ = ["ChildProcess", "die_with"]

log = logging.getLogger("carbonx.children")


def die_with(parent: int) -> None:
    """Have the kernel kill this process when process `parent` ends (Linux; elsewhere
    only the check that it has not ended already)."""
    if sys.platform.startswith("linux"):
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    if os.getppid() != parent:  # it died before that took effect
        os._exit(1)


class ChildProcess:
    """Keep `command` running until :meth:`run`'s `stop` is set.

    The child inherits stdout and stderr (its logs join the parent's) and gets `env`
    on top of the parent's environment. An exit the parent did not ask for is logged
    and followed by a restart after a backoff (0.5 s doubling to 10 s, back to 0.5 s
    after a minute of running), as :func:`infra.supervise.supervise` does for threads.
    """

    def __init__(
        self, name: str, command: Sequence[str], env: Mapping[str, str] | None = None
    ) -> None:
        self.name = name
        self.command = list(command)
        self.env = {**os.environ, **(env or {})}
        self.starts = 0
        self._process: subprocess.Popen[bytes] | None = None

    @property
    def pid(self) -> int | None:
        return None if self._process is None else self._process.pid

    def run(self, stop: threading.Event, grace: float = 5.0) -> None:
        """Start the child, restart it whenever it exits, until `stop`; then SIGTERM
        it and, after `grace` seconds, SIGKILL it."""
        backoff = 0.5
        try:
            while not stop.is_set():
                self._process = subprocess.Popen(self.command, env=self.env)
                self.starts += 1
                started = time.monotonic()
                while self._process.poll() is None and not stop.wait(0.2):
                    pass
                if stop.is_set():
                    break
                log.error(
                    "%s exited with status %s; restarting in %.1f s",
                    self.name,
                    self._process.returncode,
                    backoff,
                )
                backoff = 0.5 if time.monotonic() - started > 60 else min(backoff * 2, 10.0)
                stop.wait(backoff)
        finally:
            self._end(grace)

    def _end(self, grace: float) -> None:
        process = self._process
        if process is None or process.poll() is not None:
            return
        process.terminate()
        try:
            process.wait(timeout=grace)
        except subprocess.TimeoutExpired:
            log.warning("%s did not stop within %.0f s; killing it", self.name, grace)
            process.kill()
            process.wait()
