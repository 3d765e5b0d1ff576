"""A throw-away PostgreSQL server for the test session (stdlib only).

Usage::

    with PostgresServer() as pg:
        engine = sqlalchemy.create_engine(pg.url())

``start()`` runs ``initdb`` into a fresh temporary directory and starts the server with
``pg_ctl`` on a free loopback TCP port; ``stop()`` shuts it down and deletes everything.
``pg_stop()`` / ``pg_start()`` stop and restart the same cluster on the same port, which is
what database-outage tests need.

PostgreSQL refuses to run as root, so when the tests run as root (containers, CI) the server
binaries are run as the ``postgres`` system user that Debian's ``postgresql`` package creates.
Client tools (``createdb``) always run as the current user; they connect over TCP with
``trust`` authentication, so no password is involved anywhere.
"""

from __future__ import annotations

import atexit
import contextlib
import os
import pwd
import re
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from pathlib import Path
from types import TracebackType

DEFAULT_DATABASE = "consentkit_test"
SUPERUSER = "postgres"
HOST = "127.0.0.1"

# Unprivileged account used to run initdb/postgres when we are root.
_SYSTEM_USER = "postgres"
# Name of the settings file included at the end of postgresql.conf (so it wins).
_SETTINGS_FILE = "consentkit_test.conf"
# A few attempts in case another process grabs the free port before postgres binds it.
_PORT_ATTEMPTS = 3
_START_TIMEOUT = 30  # seconds, passed to pg_ctl -t
_IDENT_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,62}$")


def find_pg_bin() -> str | None:
    """Return the directory holding ``initdb`` and ``pg_ctl``, or None when absent.

    Tries ``pg_config --bindir`` first, then the highest ``/usr/lib/postgresql/*/bin``
    (Debian does not put initdb on PATH), then PATH itself.
    """
    candidates: list[str] = []

    pg_config = shutil.which("pg_config")
    if pg_config:
        try:
            out = subprocess.run(
                [pg_config, "--bindir"],
                capture_output=True,
                text=True,
                timeout=10,
                check=True,
            ).stdout.strip()
        except (OSError, subprocess.SubprocessError):
            out = ""
        # pg_config from libpq-dev alone may point at a dir without the server tools;
        # _has_server_tools() below filters that out.
        if out:
            candidates.append(out)

    def version_key(path: Path) -> tuple[int, ...]:
        # "/usr/lib/postgresql/15/bin" -> (15,); non-numeric versions sort first.
        try:
            return tuple(int(part) for part in path.parent.name.split("."))
        except ValueError:
            return (-1,)

    debian_bins = sorted(Path("/usr/lib/postgresql").glob("*/bin"), key=version_key, reverse=True)
    candidates.extend(str(p) for p in debian_bins)

    initdb = shutil.which("initdb")
    if initdb:
        candidates.append(os.path.dirname(os.path.realpath(initdb)))
        candidates.append(os.path.dirname(initdb))

    for directory in candidates:
        if _has_server_tools(directory):
            return directory
    return None


def _has_server_tools(directory: str) -> bool:
    return all(os.access(os.path.join(directory, tool), os.X_OK) for tool in ("initdb", "pg_ctl"))


def _clean_env() -> dict[str, str]:
    """Environment for PostgreSQL programs: no PG* variables leaking in from the caller
    (PGHOST, PGDATA, PGPORT... would silently redirect the tools), C locale so that log
    messages are in English and predictable."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("PG")}
    env["LC_ALL"] = "C"
    env["LANG"] = "C"
    return env


def _conf_quote(value: str) -> str:
    """Quote a string for postgresql.conf."""
    return "'" + value.replace("\\", "\\\\").replace("'", "''") + "'"


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((HOST, 0))
        return int(sock.getsockname()[1])


class PostgresServer:
    """A private PostgreSQL cluster in a temporary directory, reachable on 127.0.0.1 only."""

    def __init__(self, *, base_dir: str | None = None, durable: bool = False) -> None:
        # base_dir: parent of the temporary directory (default: the system temp dir, i.e.
        # /tmp). When running as root it must be traversable by the postgres user, and it
        # should be short: the unix socket path is limited to ~100 bytes.
        self.base_dir = base_dir
        # durable=True keeps PostgreSQL's own fsync/synchronous_commit (benchmarks measure
        # what a production server does); tests trade durability for speed.
        self.durable = durable
        self.user = SUPERUSER
        self.port: int | None = None
        self.bin_dir: str | None = None
        self.temp_dir: str | None = None
        self._running = False
        self._owner_pid: int | None = None  # process that called start()
        self._run_as: list[str] = []  # command prefix that drops root privileges
        self._chown_to: tuple[int, int] | None = None
        self._pg_ctl_output = ""  # output of the last failed pg_ctl start, for error messages

    # ------------------------------------------------------------------ paths

    @property
    def data_dir(self) -> str:
        return os.path.join(self._require_temp_dir(), "data")

    @property
    def log_file(self) -> str:
        return os.path.join(self._require_temp_dir(), "postgres.log")

    @property
    def socket_dir(self) -> str:
        return os.path.join(self._require_temp_dir(), "sock")

    def _require_temp_dir(self) -> str:
        if self.temp_dir is None:
            raise RuntimeError("PostgresServer has not been started")
        return self.temp_dir

    # ------------------------------------------------------------- lifecycle

    def start(self) -> None:
        """Create a fresh cluster, start it on a free port and create ``consentkit_test``."""
        if self.temp_dir is not None:
            raise RuntimeError("PostgresServer.start() called twice; use pg_start() to restart")

        bin_dir = find_pg_bin()
        if bin_dir is None:
            raise RuntimeError(
                "PostgreSQL server binaries (initdb, pg_ctl) not found: tried `pg_config "
                "--bindir`, /usr/lib/postgresql/*/bin and PATH. Install them with "
                "scripts/bootstrap.sh (Debian package: postgresql)."
            )
        self.bin_dir = bin_dir
        self._setup_privileges()

        self.temp_dir = tempfile.mkdtemp(prefix="consentkit-pg-", dir=self.base_dir)
        self._owner_pid = os.getpid()
        # Registered before anything can fail, so a crash mid-start still cleans up.
        atexit.register(self._atexit_stop)
        try:
            os.mkdir(self.socket_dir, 0o700)
            if self._chown_to is not None:
                # mkdtemp makes the dir 0700 for root; hand it to postgres so that initdb can
                # create the data dir and pg_ctl the log file. root can still read everything.
                for path in (self.temp_dir, self.socket_dir):
                    os.chown(path, *self._chown_to)
            self._initdb()
            self._start_on_free_port()
            self.create_database(DEFAULT_DATABASE)
        except BaseException:
            self.stop()
            raise

    def stop(self) -> None:
        """Stop the server (``pg_ctl stop -m fast``) and delete the temp dir. Idempotent."""
        if self.temp_dir is None:
            return
        try:
            if os.path.exists(os.path.join(self.data_dir, "postmaster.pid")):
                self._stop_server(check=False)
        finally:
            shutil.rmtree(self.temp_dir, ignore_errors=True)
            self.temp_dir = None
            self._running = False
            atexit.unregister(self._atexit_stop)

    def pg_stop(self) -> None:
        """Stop the server but keep the cluster; ``pg_start()`` brings it back on the same port."""
        if not self._running:
            raise RuntimeError("PostgreSQL is not running")
        self._stop_server(check=True)

    def pg_start(self) -> None:
        """Restart the cluster stopped by ``pg_stop()``, same data dir and same port."""
        if self.temp_dir is None:
            raise RuntimeError("PostgresServer has not been started")
        if self._running:
            raise RuntimeError("PostgreSQL is already running")
        if not self._pg_ctl_start():
            raise RuntimeError(
                f"pg_ctl start failed to restart PostgreSQL on port {self.port}.\n"
                + self._log_tail()
            )

    def __enter__(self) -> PostgresServer:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    # ----------------------------------------------------------------- access

    def url(self, database: str = DEFAULT_DATABASE) -> str:
        """SQLAlchemy URL for ``database`` on this server."""
        if self.port is None:
            raise RuntimeError("PostgresServer has not been started")
        return f"postgresql+psycopg://{self.user}@{HOST}:{self.port}/{database}"

    def create_database(self, name: str) -> str:
        """Create database ``name`` and return its URL."""
        if not _IDENT_RE.match(name):
            # Keeps URLs and identifiers trivially safe; tests never need anything fancier.
            raise ValueError(f"invalid database name {name!r}: use [A-Za-z_][A-Za-z0-9_]*")
        if not self._running or self.port is None:
            raise RuntimeError("PostgreSQL is not running")
        # Client tools need no privilege drop: they talk TCP with trust auth.
        result = self._run(
            [self._tool("createdb"), "-h", HOST, "-p", str(self.port), "-U", self.user, name],
            as_server_user=False,
            timeout=30,
        )
        if result.returncode != 0:
            raise RuntimeError(
                f"createdb {name} failed (exit {result.returncode}):\n{result.stdout}\n"
                + self._log_tail()
            )
        return self.url(name)

    # --------------------------------------------------------------- internals

    def _setup_privileges(self) -> None:
        """Decide how to run server binaries: directly, or as the postgres user if we are root."""
        if os.geteuid() != 0:
            self._run_as = []
            self._chown_to = None
            return
        try:
            pw = pwd.getpwnam(_SYSTEM_USER)
        except KeyError:
            raise RuntimeError(
                "running as root, and PostgreSQL refuses to run as root, but there is no "
                f"'{_SYSTEM_USER}' system user to run it as (Debian's postgresql package "
                "creates it; or run the tests as a non-root user)"
            ) from None
        self._chown_to = (pw.pw_uid, pw.pw_gid)
        if shutil.which("runuser"):
            self._run_as = ["runuser", "-u", _SYSTEM_USER, "--"]
        elif shutil.which("setpriv"):
            self._run_as = [
                "setpriv",
                f"--reuid={pw.pw_uid}",
                f"--regid={pw.pw_gid}",
                "--init-groups",
                "--",
            ]
        else:
            raise RuntimeError(
                "running as root, but neither runuser nor setpriv is available to run "
                f"PostgreSQL as the '{_SYSTEM_USER}' user"
            )

    def _tool(self, name: str) -> str:
        assert self.bin_dir is not None
        return os.path.join(self.bin_dir, name)

    def _run(
        self, cmd: list[str], *, as_server_user: bool = True, timeout: float = 60
    ) -> subprocess.CompletedProcess[str]:
        """Run a PostgreSQL program; stdout and stderr are merged into ``.stdout``."""
        full_cmd = (self._run_as if as_server_user else []) + cmd
        try:
            return subprocess.run(
                full_cmd,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                text=True,
                env=_clean_env(),
                # The postgres user may not be able to enter the caller's cwd; pg_ctl and
                # initdb complain (or fail) when they cannot.
                cwd=self.temp_dir or "/",
                timeout=timeout,
                check=False,
            )
        except subprocess.TimeoutExpired as exc:
            raise RuntimeError(
                f"{' '.join(full_cmd)} timed out after {timeout}s\n" + self._log_tail()
            ) from exc

    def _initdb(self) -> None:
        result = self._run(
            [
                self._tool("initdb"),
                "-D",
                self.data_dir,
                "-A",
                "trust",
                "-U",
                self.user,
                "--no-sync",  # nothing here needs to survive a power cut
                "-E",
                "UTF8",
                "--locale=C",
            ],
            timeout=120,
        )
        if result.returncode != 0:
            hint = ""
            if self._chown_to is not None:
                hint = (
                    f"\n(initdb ran as '{_SYSTEM_USER}'; every parent of {self.temp_dir} must "
                    "be traversable by that user)"
                )
            raise RuntimeError(f"initdb failed (exit {result.returncode}):\n{result.stdout}{hint}")
        # Our settings go in a separate file included last, so that they override the
        # defaults and can be rewritten when we have to retry on another port.
        with open(os.path.join(self.data_dir, "postgresql.conf"), "a", encoding="utf-8") as f:
            f.write(f"\n# Added by tests/pgserver.py\ninclude = {_conf_quote(_SETTINGS_FILE)}\n")

    def _write_settings(self, port: int) -> None:
        settings = {
            "port": str(port),
            "listen_addresses": _conf_quote(HOST),
            "unix_socket_directories": _conf_quote(self.socket_dir),
            "max_connections": "100",
        }
        if not self.durable:
            # Speed over durability: the cluster is thrown away at the end of the session.
            settings.update(fsync="off", synchronous_commit="off", full_page_writes="off")
        path = os.path.join(self.data_dir, _SETTINGS_FILE)
        with open(path, "w", encoding="utf-8") as f:
            f.writelines(f"{key} = {value}\n" for key, value in settings.items())
        if self._chown_to is not None:
            os.chown(path, *self._chown_to)

    def _start_on_free_port(self) -> None:
        # The port is free when we look, but someone else may bind it before postgres does;
        # retry with a new one when the log says so.
        for attempt in range(1, _PORT_ATTEMPTS + 1):
            self.port = _free_port()
            self._write_settings(self.port)
            log_size = self._log_size()
            if self._pg_ctl_start():
                return
            new_log = self._read_log(log_size)
            port_taken = "could not bind" in new_log or "Address already in use" in new_log
            if not port_taken or attempt == _PORT_ATTEMPTS:
                raise RuntimeError(
                    f"PostgreSQL failed to start on {HOST}:{self.port}.\n" + self._log_tail()
                )

    def _pg_ctl_start(self) -> bool:
        """``pg_ctl start -w``; returns whether the server is up and accepting connections."""
        result = self._run(
            [
                self._tool("pg_ctl"),
                "start",
                "-w",
                "-t",
                str(_START_TIMEOUT),
                "-D",
                self.data_dir,
                "-l",
                self.log_file,
            ],
            timeout=_START_TIMEOUT + 30,
        )
        if result.returncode != 0:
            self._pg_ctl_output = result.stdout
            return False
        self._running = True
        # pg_ctl -w already waited for the "ready" state; double-check over TCP, the way the
        # tests will connect.
        self._wait_for_tcp(timeout=10)
        return True

    def _wait_for_tcp(self, timeout: float) -> None:
        assert self.port is not None
        deadline = time.monotonic() + timeout
        while True:
            try:
                with socket.create_connection((HOST, self.port), timeout=1):
                    return
            except OSError as exc:
                if time.monotonic() > deadline:
                    raise RuntimeError(
                        f"PostgreSQL started but {HOST}:{self.port} refuses connections: "
                        f"{exc}\n" + self._log_tail()
                    ) from exc
                time.sleep(0.05)

    def _stop_server(self, *, check: bool) -> None:
        result = self._run(
            [self._tool("pg_ctl"), "stop", "-m", "fast", "-w", "-D", self.data_dir],
            timeout=60,
        )
        if result.returncode != 0:
            # Do not leave a stray postmaster behind: SIGQUIT is an immediate shutdown.
            self._kill_postmaster()
        self._running = False
        if result.returncode != 0 and check:
            raise RuntimeError(
                f"pg_ctl stop failed (exit {result.returncode}):\n{result.stdout}\n"
                + self._log_tail()
            )

    def _kill_postmaster(self) -> None:
        pid_file = os.path.join(self.data_dir, "postmaster.pid")
        with contextlib.suppress(OSError, ValueError, IndexError):
            with open(pid_file, encoding="utf-8") as f:
                pid = int(f.readline().strip())
            os.kill(pid, signal.SIGQUIT)
            deadline = time.monotonic() + 10
            while time.monotonic() < deadline:
                os.kill(pid, 0)  # raises ProcessLookupError once it is gone
                time.sleep(0.05)

    def _atexit_stop(self) -> None:
        # Only the process that started the server may stop it (not forked children).
        if self._owner_pid == os.getpid():
            self.stop()

    def _log_size(self) -> int:
        try:
            return os.path.getsize(self.log_file)
        except OSError:
            return 0

    def _read_log(self, offset: int = 0) -> str:
        try:
            with open(self.log_file, encoding="utf-8", errors="replace") as f:
                f.seek(offset)
                return f.read()
        except OSError:
            return ""

    def _log_tail(self, lines: int = 40) -> str:
        if self.temp_dir is None:
            return ""
        text = self._read_log()
        parts: list[str] = []
        if self._pg_ctl_output:
            parts.append(f"--- pg_ctl output ---\n{self._pg_ctl_output.rstrip()}")
        tail = "\n".join(text.splitlines()[-lines:])
        parts.append(f"--- last lines of {self.log_file} ---\n{tail or '(empty)'}")
        return "\n".join(parts)
