"""The per-request and per-process memos of the page helpers (benchmark B1) never show one
visitor another's state, nor a stale one."""

from __future__ import annotations

import json
import re
import time
from typing import Any

from flask import Flask

CONFIG = re.compile(r'<script type="application/json" id="consentkit-config">(.*?)</script>')


def page_state(response: Any) -> dict[str, Any]:
    found = CONFIG.search(response.get_data(as_text=True))
    assert found is not None
    return dict(json.loads(found.group(1))["state"])


def test_each_visitor_sees_their_own_state(make_app: Any) -> None:
    app: Flask = make_app(CONSENTKIT_DATABASE_URI="sqlite://")
    first, second = app.test_client(), app.test_client()
    first.post("/consent", json={"action": "accept_all"})
    second.post("/consent", json={"action": "reject_all"})
    for _ in range(3):  # the second view of a page comes from the memos
        a, b = page_state(first.get("/")), page_state(second.get("/"))
        assert a["granted"] == ["functional", "preferences", "statistics", "marketing"]
        assert b["granted"] == ["functional"]
        assert a["consent_id"] != b["consent_id"]
        assert "Cookie" in first.get("/").vary


def test_a_new_decision_shows_on_the_next_page(make_app: Any) -> None:
    app: Flask = make_app(CONSENTKIT_DATABASE_URI="sqlite://")
    client = app.test_client()
    client.post("/consent", json={"action": "accept_all"})
    assert "statistics" in page_state(client.get("/"))["granted"]
    client.post("/consent", json={"action": "reject_all"})
    state = page_state(client.get("/"))
    assert state["granted"] == ["functional"]
    assert b">False<" in client.get("/").data  # consent.granted('statistics')


def test_the_same_cookie_header_expires_in_time(make_app: Any, monkeypatch: Any) -> None:
    app: Flask = make_app(CONSENTKIT_DATABASE_URI="sqlite://", CONSENTKIT_COOKIE_MAX_AGE=3600)
    client = app.test_client()
    client.post("/consent", json={"action": "accept_all"})
    assert page_state(client.get("/"))["decided"] is True
    later = time.time() + 3601
    monkeypatch.setattr(time, "time", lambda: later)
    state = page_state(client.get("/"))
    assert state["decided"] is False
    assert state["consent_id"] is None
    assert b'id="ck-banner"' in client.get("/").data


def test_gpc_is_read_per_request(make_app: Any) -> None:
    app: Flask = make_app(CONSENTKIT_DATABASE_URI="sqlite://")
    client = app.test_client()
    client.post("/consent", json={"action": "reject_all"})
    assert page_state(client.get("/"))["gpc"] is False
    assert page_state(client.get("/", headers={"Sec-GPC": "1"}))["gpc"] is True
    assert page_state(client.get("/"))["gpc"] is False


def test_a_long_cookie_header_is_read_but_not_remembered(make_app: Any) -> None:
    app: Flask = make_app(CONSENTKIT_DATABASE_URI="sqlite://")
    client = app.test_client()
    client.post("/consent", json={"action": "accept_all"})
    assert page_state(client.get("/"))["decided"] is True
    memo = app.extensions["consentkit"].cookie_values
    assert len(memo) == 1
    client.set_cookie("bulky", "x" * 3000)
    assert page_state(client.get("/"))["decided"] is True
    assert len(memo) == 1
