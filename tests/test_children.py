"""Helper processes under `carbonx serve`: restarted when they exit, stopped with the
server, and never left behind by a server that dies."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

from infra.children import ChildProcess

ROOT = Path(__file__).resolve().parents[1]


def _wait(condition, timeout: float = 10.0) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.02)


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().split()[2]
    except FileNotFoundError:
        return False
    return state != "Z"  # a zombie has ended; only its parent has not reaped it yet


def test_a_child_that_exits_is_started_again_and_one_that_runs_is_stopped(
    tmp_path: Path,
) -> None:
    marks = tmp_path / "starts"
    # Exits at once on its first two starts, then stays up (ignoring SIGTERM).
    script = (
        "import os, signal, sys, time\n"
        f"path = {str(marks)!r}\n"
        "open(path, 'a').write('x')\n"
        "if len(open(path).read()) < 3: sys.exit(3)\n"
        "signal.signal(signal.SIGTERM, signal.SIG_IGN)\n"
        "time.sleep(60)\n"
    )
    child = ChildProcess("test child", [sys.executable, "-c", script])
    stop = threading.Event()
    thread = threading.Thread(target=child.run, args=(stop,), kwargs={"grace": 0.5})
    thread.start()
    try:
        _wait(lambda: child.starts == 3 and marks.read_text() == "xxx")
        pid = child.pid
        assert pid is not None
        time.sleep(0.3)
        assert _alive(pid) and child.starts == 3  # a running child is left running
    finally:
        stop.set()
        thread.join(timeout=10)
    assert not thread.is_alive()
    assert not _alive(pid)  # SIGTERM ignored: killed after the grace period


def test_a_child_dies_with_its_parent(tmp_path: Path) -> None:
    """A parent killed outright (no chance to stop its children) takes them along."""
    out = tmp_path / "child.pid"
    parent_code = (
        "import subprocess, sys, time\n"
        "child = subprocess.Popen([sys.executable, '-c', "
        "'import os, sys, time; sys.path.insert(0, sys.argv[1]); "
        "from infra.children import die_with; die_with(int(sys.argv[2])); "
        'open(sys.argv[3], "w").write(str(os.getpid())); time.sleep(60)\', '
        f"{str(ROOT)!r}, str(__import__('os').getpid()), {str(out)!r}])\n"
        "time.sleep(60)\n"
    )
    parent = subprocess.Popen([sys.executable, "-c", parent_code])
    try:
        _wait(lambda: out.exists() and out.read_text() != "")
        child = int(out.read_text())
        assert _alive(child)
        os.kill(parent.pid, signal.SIGKILL)
        parent.wait()
        _wait(lambda: not _alive(child))
    finally:
        if parent.poll() is None:
            parent.kill()
            parent.wait()
