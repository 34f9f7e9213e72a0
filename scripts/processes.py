"""Start `carbonx` commands as child processes of this checkout (tests, benchmarks)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

__all__ = ["ROOT", "carbonx"]

ROOT = Path(__file__).resolve().parents[1]


def carbonx(*args: str, stderr: int | None = subprocess.PIPE) -> subprocess.Popen[bytes]:
    """`carbonx ARGS…` with this interpreter and this checkout's code, output discarded
    (stderr kept by default, for the failure message of a process that died)."""
    return subprocess.Popen(
        [sys.executable, "-m", "services.cli", *args],
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        stdout=subprocess.DEVNULL,
        stderr=stderr,
    )
