"""Many instances on one PostgreSQL: two separate gunicorn servers (own processes, own
instance folders, same secrets) share the log; any instance verifies any cookie and finds any
visitor's history; concurrent traffic on both keeps one row per acknowledged decision.
"""

from __future__ import annotations

import http.client
import json
import sys
import threading
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "benchmarks"))

from serving import COOKIE, Gunicorn, Run, check_log, run_visitors, subject_of

pytestmark = [pytest.mark.postgres, pytest.mark.slow]


def request(
    base: str, method: str, path: str, body: Any = None, cookie: str | None = None
) -> tuple[int, dict[str, str], Any]:
    parts = urlsplit(base)
    conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=30)
    headers = {"Accept": "application/json"}
    payload = None
    if body is not None:
        payload = json.dumps(body).encode()
        headers["Content-Type"] = "application/json"
    if cookie:
        headers["Cookie"] = f"{COOKIE}={cookie}"
    try:
        conn.request(method, path, body=payload, headers=headers)
        response = conn.getresponse()
        data = response.read()
        return response.status, dict(response.getheaders()), json.loads(data) if data else None
    finally:
        conn.close()


def cookie_from(headers: dict[str, str]) -> str:
    value = headers["Set-Cookie"]
    assert value.startswith(COOKIE + "=")
    return value.split(";", 1)[0].split("=", 1)[1]


@pytest.fixture(scope="module")
def two_instances(pg_server: Any, tmp_path_factory: pytest.TempPathFactory) -> Any:
    uri = pg_server.create_database("instances")
    base = tmp_path_factory.mktemp("instances")
    first = Gunicorn(uri, base / "a" / "instance", workers=2).start()
    try:
        second = Gunicorn(uri, base / "b" / "instance", workers=2).start()
    except BaseException:
        first.stop()
        raise
    yield uri, first, second
    first.stop()
    second.stop()


def test_a_cookie_from_one_instance_is_honoured_by_the_other(two_instances):
    _uri, first, second = two_instances
    status, headers, state = request(first.url, "POST", "/consent", {"action": "accept_all"})
    assert status == 200
    cookie = cookie_from(headers)

    status, _, seen = request(second.url, "GET", "/consent", cookie=cookie)
    assert status == 200
    assert seen["decided"] is True
    assert seen["consent_id"] == state["consent_id"]
    assert seen["granted"] == state["granted"]

    status, _, receipt = request(second.url, "GET", "/consent/receipt", cookie=cookie)
    assert [r["action"] for r in receipt["records"]] == ["accept_all"]

    # The visitor changes their mind on the other instance: same subject, and the
    # withdrawal is computed from the decision the first instance wrote.
    status, headers, _ = request(
        second.url, "POST", "/consent", {"action": "custom", "granted": ["preferences"]}, cookie
    )
    assert status == 200
    status, _, receipt = request(first.url, "GET", "/consent/receipt", cookie=cookie_from(headers))
    records = receipt["records"]
    assert [r["action"] for r in records] == ["accept_all", "custom"]
    assert records[1]["withdrawn"] == ["statistics", "marketing"]
    assert {r["subject"] for r in records} == {subject_of(state["consent_id"])}


def test_both_instances_under_concurrent_traffic_keep_one_row_per_decision(two_instances):
    uri, first, second = two_instances
    runs: list[Run] = []

    def drive(url: str, seed: int) -> None:
        runs.append(run_visitors(url, concurrency=6, duration=3, seed=seed))

    threads = [
        threading.Thread(target=drive, args=(first.url, 11)),
        threading.Thread(target=drive, args=(second.url, 12)),
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert len(runs) == 2
    combined = Run(answers=runs[0].answers + runs[1].answers)
    assert combined.statuses().keys() == {200}, combined.statuses()
    check = check_log(uri, combined)
    assert check.acknowledged == len(combined.answers) > 50
    assert check.missing == 0
    assert check.duplicates == 0
    # The rows of the first test are the only ones nobody acknowledged here.
    assert check.unexpected == 2


def test_a_chunked_body_over_the_limit_is_413_through_gunicorn(two_instances):
    """No Content-Length to refuse early: the limit still holds while the body is read."""
    uri, first, _ = two_instances
    parts = urlsplit(first.url)
    before = len(check_log(uri, Run()).rows)
    chunks = [b'{"action": "accept_all", "pad": "'] + [b"x" * 1024] * 64 + [b'"}']
    conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=30)
    try:
        conn.request(
            "POST",
            "/consent",
            body=iter(chunks),
            headers={"Content-Type": "application/json", "Accept": "application/json"},
            encode_chunked=True,
        )
        response = conn.getresponse()
        status, body = response.status, response.read()
    finally:
        conn.close()
    assert status == 413, body
    assert "larger than" in json.loads(body)["error"]
    assert "Set-Cookie" not in dict(response.getheaders())
    assert len(check_log(uri, Run()).rows) == before
