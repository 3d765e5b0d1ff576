"""B1 and B2: what consentkit adds to a page request.

B1: a returning visitor (valid cookie, banner hidden), through the Flask test client and
through gunicorn + an HTTP client; median time with consentkit / the same page without it,
interleaved. B2: a first visit (banner rendered) / the same page without consentkit.
"""

from __future__ import annotations

import http.client
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

from common import ROOT, Result, interleave, make_app, median_ratio, report

N = int(os.environ.get("BENCH_REQUESTS", "2000"))


def _returning_cookie(app) -> str:
    client = app.test_client()
    response = client.post("/consent", json={"action": "accept_all"})
    header = response.headers["Set-Cookie"]
    return header.split(";", 1)[0].split("=", 1)[1]


def test_client_benchmarks() -> None:
    with_ck = make_app(with_consentkit=True)
    without = make_app(with_consentkit=False)
    cookie = _returning_cookie(with_ck)
    a = with_ck.test_client()
    a.set_cookie("eu-consent", cookie)
    first = with_ck.test_client()
    # The same request to both: a returning visitor's browser sends its cookie to any page.
    b = without.test_client()
    b.set_cookie("eu-consent", cookie)
    for client in (a, first, b):  # warm up templates and caches
        for _ in range(50):
            assert client.get("/article").status_code == 200
    assert b'id="ck-banner"' not in a.get("/article").data
    assert b'id="ck-banner"' in first.get("/article").data

    ta, tb = interleave(lambda: a.get("/article"), lambda: b.get("/article"), N)
    ratio = median_ratio(ta, tb)
    report(
        Result(
            "B1",
            f"returning visitor / no consentkit, test client ({N} req. each)",
            ratio,
            "<= 1.05",
            ratio <= 1.05,
            "x",
        )
    )
    # The harness's own error: two copies of the app without consentkit.
    twin = make_app(with_consentkit=False).test_client()
    twin.set_cookie("eu-consent", cookie)
    for _ in range(50):
        twin.get("/article")
    tc, td = interleave(lambda: twin.get("/article"), lambda: b.get("/article"), N)
    report(
        Result(
            "B1",
            "  control: no consentkit / no consentkit, test client (same harness)",
            median_ratio(tc, td),
            "reported",
            None,
            "x",
        )
    )
    tf, tb2 = interleave(lambda: first.get("/article"), lambda: b.get("/article"), N)
    ratio = median_ratio(tf, tb2)
    report(
        Result(
            "B2",
            f"first visit (banner) / no consentkit, test client ({N} req. each)",
            ratio,
            "<= 1.25",
            ratio <= 1.25,
            "x",
        )
    )


_APP_MODULE = textwrap.dedent(
    """
    import sys
    sys.path.insert(0, {bench!r})
    from common import make_app
    with_ck = make_app(with_consentkit=True, database_uri={uri!r})
    without = make_app(with_consentkit=False)
    also_without = make_app(with_consentkit=False)
    """
)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _wait(port: int) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.1)
    raise RuntimeError(f"gunicorn did not listen on {port}")


def _cpus() -> tuple[set[int] | None, set[int] | None]:
    """The CPU for the servers and the CPUs for the client. With one server process per app
    and requests alternated, both servers on the same CPU and the client on another
    give neither server a better seat (measured: the same app twice then differs by about
    1 %, against 3 % when the scheduler places them)."""
    try:
        cpus = sorted(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return None, None
    if len(cpus) < 2:
        return None, None
    return {cpus[-1]}, set(cpus[:-1])


def _pinned(command: list[str], cpus: set[int] | None) -> list[str]:
    if cpus is None:
        return command
    return ["taskset", "-c", ",".join(map(str, sorted(cpus))), *command]


def gunicorn_benchmark() -> None:
    workdir = Path(tempfile.mkdtemp(prefix="ck-bench-gunicorn-"))
    uri = f"sqlite:///{workdir}/log.sqlite3"
    (workdir / "benchapp.py").write_text(
        _APP_MODULE.format(bench=str(ROOT / "benchmarks"), uri=uri)
    )
    gunicorn = Path(sys.executable).parent / "gunicorn"
    server_cpus, client_cpus = _cpus()
    if shutil.which("taskset") is None:
        server_cpus = client_cpus = None
    procs = []
    ports = {}
    for name in ("with_ck", "without", "also_without"):
        port = _free_port()
        ports[name] = port
        procs.append(
            subprocess.Popen(
                _pinned(
                    [
                        str(gunicorn),
                        "-w",
                        "1",
                        "-b",
                        f"127.0.0.1:{port}",
                        "--log-level",
                        "warning",
                        f"benchapp:{name}",
                    ],
                    server_cpus,
                ),
                cwd=workdir,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
        )
    own_cpus = os.sched_getaffinity(0) if client_cpus is not None else None
    try:
        if client_cpus is not None:
            os.sched_setaffinity(0, client_cpus)
        for port in ports.values():
            _wait(port)
        # A returning visitor's cookie, issued by the server under test.
        conn = http.client.HTTPConnection("127.0.0.1", ports["with_ck"])
        conn.request(
            "POST",
            "/consent",
            body='{"action": "accept_all"}',
            headers={"Content-Type": "application/json"},
        )
        response = conn.getresponse()
        response.read()
        cookie = response.getheader("Set-Cookie").split(";", 1)[0]
        conn.close()

        def get(port: int, headers: dict[str, str]):
            def call() -> None:
                c = http.client.HTTPConnection("127.0.0.1", port)
                c.request("GET", "/article", headers=headers)
                r = c.getresponse()
                body = r.read()
                assert r.status == 200
                assert body
                c.close()

            return call

        a = get(ports["with_ck"], {"Cookie": cookie})
        b = get(ports["without"], {"Cookie": cookie})
        b2 = get(ports["also_without"], {"Cookie": cookie})
        for _ in range(100):
            a()
            b()
            b2()
        ta, tb = interleave(a, b, N)
        ratio = median_ratio(ta, tb)
        seat = "servers on one CPU, client on another" if server_cpus else "unpinned"
        report(
            Result(
                "B1",
                f"returning visitor / no consentkit, gunicorn + HTTP ({N} req. each, {seat})",
                ratio,
                "<= 1.05",
                ratio <= 1.05,
                "x",
            )
        )
        # The harness's own error: the same app without consentkit on two servers.
        tc, td = interleave(b2, b, N)
        report(
            Result(
                "B1",
                "  control: no consentkit / no consentkit, gunicorn + HTTP (same harness)",
                median_ratio(tc, td),
                "reported",
                None,
                "x",
            )
        )
    finally:
        if own_cpus is not None:
            os.sched_setaffinity(0, own_cpus)
        for proc in procs:
            proc.send_signal(signal.SIGTERM)
        for proc in procs:
            proc.wait(timeout=10)


def main() -> None:
    test_client_benchmarks()
    gunicorn_benchmark()


if __name__ == "__main__":
    main()
