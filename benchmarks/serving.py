"""Real servers for the outage test, the load test and the many-instances test.

- ``create_app()`` is the WSGI app gunicorn runs (``serving:create_app()``), configured the
  way docs/production.md tells a site to: from ``FLASK_*`` environment variables.
- :class:`Gunicorn` starts and stops a real gunicorn on a free loopback port.
- :func:`durable_postgres` starts a private PostgreSQL (tests/pgserver.py) with its
  durability settings back on (the test cluster turns fsync off for speed).
- :func:`run_visitors` drives N concurrent visitors (aiohttp) posting decisions and records
  every answer; :func:`check_log` compares the answers with the rows in the database.

Everything listens on 127.0.0.1 only and is bounded in time.
"""

from __future__ import annotations

import asyncio
import json
import os
import platform
import random
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, cast

ROOT = Path(__file__).resolve().parent.parent
BENCH = Path(__file__).resolve().parent
sys.path.insert(0, str(ROOT / "tests"))  # pgserver

VENV_BIN = Path(sys.executable).parent
SECRET = "serving-secret-key-0123456789abcdef"
SUBJECT_KEY = "serving-subject-key-0123456789abcdef"
COOKIE = "eu-consent"
DECISIONS: list[dict[str, Any]] = [
    {"action": "accept_all"},
    {"action": "reject_all"},
    {"action": "custom", "granted": ["statistics"]},
    {"action": "custom", "granted": ["preferences", "marketing"], "surface": "preferences"},
    {"action": "close"},
]


# -- the app gunicorn serves -------------------------------------------------------------


def create_app() -> Any:
    """The site: consentkit configured from the environment (FLASK_SECRET_KEY,
    FLASK_CONSENTKIT_DATABASE_URI, ...) and an instance folder from CONSENTKIT_INSTANCE."""
    from flask import Flask, render_template_string

    from consentkit import ConsentKit

    app = Flask("consentkit_site", instance_path=os.environ["CONSENTKIT_INSTANCE"])
    app.config.from_prefixed_env()
    ConsentKit(app)

    @app.get("/")
    def index() -> str:
        return render_template_string(
            "<!doctype html><html><head>{{ consentkit_head() }}</head>"
            "<body><h1>Home</h1>{{ consentkit_banner() }}</body></html>"
        )

    return app


def app_env(database_uri: str, instance: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("FLASK_", "PG"))}
    env.update(
        FLASK_SECRET_KEY=SECRET,
        FLASK_CONSENTKIT_SUBJECT_KEY=SUBJECT_KEY,
        FLASK_CONSENTKIT_DATABASE_URI=database_uri,
        FLASK_CONSENTKIT_COOKIE_SECURE="false",  # plain http on loopback
        CONSENTKIT_INSTANCE=str(instance),
        PYTHONPATH=os.pathsep.join([str(BENCH), str(ROOT / "src")]),
        PYTHONUNBUFFERED="1",
    )
    env.update(extra)
    return env


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class Gunicorn:
    """``gunicorn serving:create_app()`` with N workers on 127.0.0.1, as a context manager."""

    def __init__(
        self,
        database_uri: str,
        instance: Path,
        *,
        workers: int = 4,
        threads: int = 1,
        log: Path | None = None,
        env: dict[str, str] | None = None,
    ) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.instance = instance
        self.workers = workers
        self.threads = threads
        self.log = log or instance.parent / f"gunicorn-{self.port}.log"
        self.env = app_env(database_uri, instance, **(env or {}))
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self, timeout: float = 30) -> Gunicorn:
        self.instance.mkdir(parents=True, exist_ok=True)
        command = [
            str(VENV_BIN / "gunicorn"),
            "--workers",
            str(self.workers),
            "--threads",
            str(self.threads),
            "--bind",
            f"127.0.0.1:{self.port}",
            "--backlog",
            "512",
            "--timeout",
            "60",
            "--graceful-timeout",
            "10",
            "--log-level",
            "warning",
            "serving:create_app()",
        ]
        with open(self.log, "ab") as log:
            self.proc = subprocess.Popen(
                command,
                cwd=str(BENCH),
                env=self.env,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        deadline = time.monotonic() + timeout
        while True:
            if self.proc.poll() is not None:
                raise RuntimeError(f"gunicorn exited at start:\n{self.log_tail()}")
            try:
                with urllib.request.urlopen(self.url + "/consent/health", timeout=2) as r:
                    if r.status == 200:
                        return self
            except OSError:
                pass
            if time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"gunicorn did not answer in {timeout} s:\n{self.log_tail()}")
            time.sleep(0.1)

    def stop(self) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(timeout=10)

    def log_tail(self, lines: int = 30) -> str:
        try:
            return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""

    def __enter__(self) -> Gunicorn:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def flask_cli(database_uri: str, instance: Path, *args: str, timeout: float = 120) -> Any:
    """``flask consentkit ARGS`` against the same app, as an operator would run it."""
    env = app_env(database_uri, instance)
    return subprocess.run(
        [str(VENV_BIN / "flask"), "--app", "serving:create_app()", "consentkit", *args],
        cwd=str(BENCH),
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def durable_postgres() -> Any:
    """A private PostgreSQL server with fsync, synchronous_commit and full_page_writes on."""
    from pgserver import PostgresServer
    from sqlalchemy import create_engine, text

    server = PostgresServer()
    server.start()
    engine = create_engine(server.url("postgres"), isolation_level="AUTOCOMMIT")
    try:
        with engine.connect() as conn:
            for setting in ("fsync", "synchronous_commit", "full_page_writes"):
                conn.execute(text(f"ALTER SYSTEM SET {setting} = on"))
    finally:
        engine.dispose()
    server.pg_stop()
    server.pg_start()
    return server


def postgres_facts(url: str) -> dict[str, str]:
    from sqlalchemy import create_engine, text

    engine = create_engine(url)
    try:
        with engine.connect() as conn:
            facts = {"version": conn.execute(text("SHOW server_version")).scalar_one()}
            for setting in ("fsync", "synchronous_commit", "full_page_writes"):
                facts[setting] = conn.execute(text(f"SHOW {setting}")).scalar_one()
    finally:
        engine.dispose()
    return facts


def machine() -> dict[str, str]:
    memory = "?"
    cpu = platform.processor() or "?"
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                memory = f"{int(line.split()[1]) / 1024 / 1024:.1f} GiB"
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    import gunicorn

    return {
        "cpus": str(os.cpu_count()),
        "cpu": cpu,
        "memory": memory,
        "os": f"{platform.system()} {platform.release()}",
        "python": platform.python_version(),
        "gunicorn": gunicorn.__version__,
    }


# -- visitors ----------------------------------------------------------------------------


@dataclass(slots=True)
class Answer:
    visitor: int
    started: float  # wall clock (time.time()), seconds
    latency: float  # seconds
    status: int  # 0: no HTTP answer (connection error)
    consent_id: str | None = None
    error: str | None = None


@dataclass
class Run:
    answers: list[Answer] = field(default_factory=list)
    started: float = 0.0
    ended: float = 0.0

    @property
    def acknowledged(self) -> list[Answer]:
        return [a for a in self.answers if 200 <= a.status < 300]

    def statuses(self) -> Counter[int]:
        return Counter(a.status for a in self.answers)

    def latency_ms(self, q: float, answers: list[Answer] | None = None) -> float:
        values = sorted(a.latency for a in (answers if answers is not None else self.answers))
        if not values:
            return float("nan")
        index = min(len(values) - 1, max(0, round(q * (len(values) - 1))))
        return values[index] * 1000


async def _visitor(
    session: Any,
    url: str,
    number: int,
    stop_at: float,
    run: Run,
    rng: random.Random,
    decisions_per_visitor: int,
    pause: float,
) -> None:
    import aiohttp

    cookie: str | None = None
    made = 0
    while time.monotonic() < stop_at:
        if made >= decisions_per_visitor:  # a new visitor on this connection slot
            cookie, made = None, 0
        body = rng.choice(DECISIONS)
        headers = {"Accept": "application/json", "Origin": url}
        if cookie:
            headers["Cookie"] = f"{COOKIE}={cookie}"
        started, t0 = time.time(), time.perf_counter()
        try:
            async with session.post(url + "/consent", json=body, headers=headers) as response:
                payload = await response.read()
                latency = time.perf_counter() - t0
                answer = Answer(number, started, latency, response.status)
                if 200 <= response.status < 300:
                    answer.consent_id = json.loads(payload)["consent_id"]
                    morsel = response.cookies.get(COOKIE)
                    if morsel is not None:
                        cookie = morsel.value
                    made += 1
                elif response.status >= 500:
                    answer.error = payload[:200].decode(errors="replace")
        except (TimeoutError, aiohttp.ClientError, OSError) as exc:
            answer = Answer(number, started, time.perf_counter() - t0, 0, error=repr(exc))
        run.answers.append(answer)
        if pause:
            await asyncio.sleep(pause)


async def _run_visitors(
    url: str,
    concurrency: int,
    duration: float,
    decisions_per_visitor: int,
    pause: float,
    seed: int,
    during: Callable[[], Any] | None,
) -> Run:
    import aiohttp

    run = Run(started=time.time())
    stop_at = time.monotonic() + duration
    connector = aiohttp.TCPConnector(limit=concurrency, force_close=True)
    timeout = aiohttp.ClientTimeout(total=60)
    async with aiohttp.ClientSession(
        connector=connector, timeout=timeout, cookie_jar=aiohttp.DummyCookieJar()
    ) as session:
        rng = random.Random(seed)
        tasks = [
            asyncio.create_task(
                _visitor(
                    session,
                    url,
                    n,
                    stop_at,
                    run,
                    random.Random(rng.random()),
                    decisions_per_visitor,
                    pause,
                )
            )
            for n in range(concurrency)
        ]
        if during is not None:
            # The scenario (stop the database, ...) runs in a thread beside the visitors.
            await asyncio.get_running_loop().run_in_executor(None, during)
        await asyncio.gather(*tasks)
    run.ended = time.time()
    return run


def run_visitors(
    url: str,
    *,
    concurrency: int,
    duration: float,
    decisions_per_visitor: int = 3,
    pause: float = 0.0,
    seed: int = 1,
    during: Callable[[], Any] | None = None,
) -> Run:
    """``concurrency`` visitors post decisions for ``duration`` seconds; each keeps its
    cookie for ``decisions_per_visitor`` decisions (a returning visitor changing their mind),
    then a new visitor takes its place. ``during`` runs in a thread meanwhile."""
    outcome: dict[str, Any] = {}

    def loop() -> None:
        # Its own thread and event loop: the caller's thread may already run one (a test
        # session that drives a browser through Playwright's sync API does).
        try:
            outcome["run"] = asyncio.run(
                _run_visitors(
                    url, concurrency, duration, decisions_per_visitor, pause, seed, during
                )
            )
        except BaseException as exc:
            outcome["error"] = exc

    thread = threading.Thread(target=loop, name="visitors")
    thread.start()
    thread.join()
    if "error" in outcome:
        raise outcome["error"]
    return cast(Run, outcome["run"])


def subject_of(consent_id: str) -> str:
    from consentkit.keys import subject_hash

    return subject_hash(SUBJECT_KEY.encode(), consent_id)


@dataclass
class LogCheck:
    acknowledged: int
    stored: int
    missing: int  # acknowledged decisions without a row
    duplicates: int  # rows beyond the acknowledged count
    unexpected: int  # rows of subjects nobody acknowledged
    rows: list[dict[str, Any]]


def check_log(database_uri: str, run: Run) -> LogCheck:
    """Every acknowledged decision has exactly one row: per visitor (subject), the number of
    rows equals the number of 2xx answers it got."""
    from sqlalchemy import create_engine, select

    from consentkit.store import records

    engine = create_engine(database_uri)
    try:
        with engine.connect() as conn:
            rows = [dict(r._mapping) for r in conn.execute(select(records))]
    finally:
        engine.dispose()
    expected = Counter(subject_of(a.consent_id) for a in run.acknowledged if a.consent_id)
    stored = Counter(r["subject"] for r in rows)
    missing = sum(max(0, n - stored.get(s, 0)) for s, n in expected.items())
    duplicates = sum(max(0, n - expected.get(s, 0)) for s, n in stored.items() if s in expected)
    unexpected = sum(n for s, n in stored.items() if s not in expected)
    return LogCheck(
        acknowledged=sum(expected.values()),
        stored=len(rows),
        missing=missing,
        duplicates=duplicates,
        unexpected=unexpected,
        rows=rows,
    )


def replace_section(path: Path, marker: str, body: str) -> None:
    """Write ``body`` between ``<!-- marker:start -->`` and ``<!-- marker:end -->`` in a
    Markdown file (appending the section when missing), leaving other sections alone."""
    start, end = f"<!-- {marker}:start -->", f"<!-- {marker}:end -->"
    text = path.read_text(encoding="utf-8") if path.exists() else "# Benchmark results\n"
    block = f"{start}\n{body.rstrip()}\n{end}"
    if start in text and end in text:
        before, rest = text.split(start, 1)
        after = rest.split(end, 1)[1]
        text = before + block + after
    else:
        text = text.rstrip() + "\n\n" + block + "\n"
    path.write_text(text, encoding="utf-8")
