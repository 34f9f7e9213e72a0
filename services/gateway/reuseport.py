"""HTTP worker processes with a listening socket each, balanced by the kernel.

uvicorn's own ``workers=N`` shares ONE listening socket among its workers, and every
worker's event loop races to accept from it. Clients that open their keep-alive
connections at once (a trading system's connection pool, a benchmark) can all land on
whichever worker was idle at that instant: measured under `bench_http.py`, 32
connections all went to one of two workers, which served all 2,095 requests of the run
while the other served none.

Here each worker binds its own socket to the same address with ``SO_REUSEPORT``; the
kernel spreads new connections over the listening sockets by a hash of the client's
address and port, so connections are shared out evenly from the first one. The parent
only supervises: it restarts a worker that exits, and on SIGINT/SIGTERM stops them all
(each finishes its requests in flight, as uvicorn does on SIGTERM). Each worker is
killed by the kernel if the parent dies without stopping it.

Available where the platform has ``SO_REUSEPORT`` (Linux); elsewhere :func:`available`
is False and the caller falls back to uvicorn's shared socket.
"""

from __future__ import annotations

import logging
import multiprocessing
import os
import signal
import socket
import threading
from multiprocessing.process import BaseProcess

__all__ = ["available", "serve"]

log = logging.getLogger("carbonx.gateway")


def available() -> bool:
    return hasattr(socket, "SO_REUSEPORT")


def serve(app_factory: str, host: str, port: int, workers: int) -> None:
    """Run `workers` uvicorn processes serving `app_factory` (an import string of a
    function that builds the app) on (`host`, `port`) until SIGINT/SIGTERM."""
    _probe(host, port)  # a port taken by another program fails here, not in a loop
    context = multiprocessing.get_context("spawn")
    parent = os.getpid()

    def start() -> BaseProcess:
        process = context.Process(
            target=_worker, args=(app_factory, host, port, parent), name="carbonx-http"
        )
        process.start()
        return process

    stop = threading.Event()
    previous = {sig: signal.signal(sig, lambda *_: stop.set()) for sig in _STOP_SIGNALS}
    processes = [start() for _ in range(workers)]
    log.info("HTTP workers %s on %s:%s (SO_REUSEPORT)", [p.pid for p in processes], host, port)
    try:
        while not stop.wait(0.5):
            for index, process in enumerate(processes):
                if not process.is_alive():
                    log.error("HTTP worker %s exited (%s); starting another", process.pid,
                              process.exitcode)  # fmt: skip
                    processes[index] = start()
    finally:
        for process in processes:
            if process.is_alive():
                process.terminate()  # uvicorn: graceful shutdown
        for process in processes:
            process.join(timeout=15)
            if process.is_alive():
                process.kill()
                process.join()
        for sig, handler in previous.items():
            signal.signal(sig, handler)


_STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)


def _socket(host: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    try:
        sock.bind((host, port))
    except OSError:
        sock.close()
        raise
    return sock


def _probe(host: str, port: int) -> None:
    """Bind (without listening, so no connection can land on it) and let go."""
    _socket(host, port).close()


def _worker(app_factory: str, host: str, port: int, parent: int) -> None:
    import uvicorn

    from infra.children import die_with

    die_with(parent)
    sock = _socket(host, port)
    sock.listen(2048)
    config = uvicorn.Config(app_factory, factory=True, log_config=None, access_log=False)
    uvicorn.Server(config).run(sockets=[sock])
