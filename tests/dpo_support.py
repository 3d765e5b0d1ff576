"""Helpers for the DPO tools' tests: raw SQL on the log, records with chosen times, bulk
rows, and the same app run as a real ``flask`` process."""

from __future__ import annotations

import hashlib
import os
import secrets
import subprocess
import sys
import uuid
from collections.abc import Iterable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from flask import Flask
from sqlalchemy import create_engine, insert, text

from consentkit.columns import CONTRACT_COLUMNS, INTEGRITY_COLUMNS
from consentkit.integrity import LogKeys, record_message
from consentkit.notice import canonical_json
from consentkit.store import NewRecord, NoticeCopy, notices
from consentkit.store.dpo import verify

FLASK = Path(sys.executable).parent / "flask"

APP_MODULE = """
from datetime import timedelta
from flask import Flask
from consentkit import ConsentKit

app = Flask(__name__, instance_path={instance!r})
app.config.update(SECRET_KEY={secret!r}, CONSENTKIT_DATABASE_URI={uri!r})
app.config.update({extra})
ConsentKit(app)
"""


def state(app: Flask) -> Any:
    return app.extensions["consentkit"]


def keys(app: Flask) -> LogKeys:
    return LogKeys(state(app).settings.log_keys)


def report(app: Flask) -> Any:
    return verify(state(app).store, keys(app))


def sql(app: Flask, statement: str, **params: Any) -> list[Any]:
    """Raw SQL on the app's database, outside consentkit (what an attacker could do)."""
    engine = create_engine(state(app).settings.database_uri)
    try:
        with engine.begin() as conn:
            result = conn.execute(text(statement), params)
            return list(result) if result.returns_rows else []
    finally:
        engine.dispose()


def sql_without_foreign_keys(app: Flask, statement: str, **params: Any) -> None:
    """Raw SQL with foreign keys not enforced (SQLite enforces them only when asked;
    PostgreSQL skips them for a superuser session in replica mode)."""
    engine = create_engine(state(app).settings.database_uri)
    try:
        with engine.begin() as conn:
            if engine.dialect.name == "postgresql":
                conn.execute(text("SET LOCAL session_replication_role = replica"))
            conn.execute(text(statement), params)
    finally:
        engine.dispose()


def record_ids(app: Flask) -> list[int]:
    return [r[0] for r in sql(app, "SELECT record_id FROM consentkit_records ORDER BY record_id")]


def post(client: Any, action: str, **extra: Any) -> Any:
    response = client.post("/consent", json={"action": action, **extra})
    assert response.status_code == 200, response.get_data(as_text=True)
    return response


def notice_copy(texts: dict[str, Any] | None = None) -> NoticeCopy:
    body = canonical_json(texts or {"format": 1, "locale": "en", "title": "Cookies"})
    return NoticeCopy(hashlib.sha256(body.encode()).hexdigest(), "en", "1", body)


def add_record(
    app: Flask,
    *,
    subject: str | None = None,
    occurred_at: datetime,
    expires_at: datetime | None = None,
    action: str = "accept_all",
    site: str = "default",
    policy_version: str = "1",
    locale: str = "en",
    surface: str = "banner",
    granted: tuple[str, ...] = ("functional", "preferences", "statistics", "marketing"),
    notice: NoticeCopy | None = None,
) -> int:
    """Append a record through the store API (signed like a live decision)."""
    notice = notice or notice_copy()
    return int(
        state(app).store.record(
            NewRecord(
                event_id=uuid.uuid4().hex,
                occurred_at=occurred_at,
                site=site,
                subject=subject or secrets.token_hex(32),
                action=action,
                surface=surface,
                granted=granted,
                denied=tuple(
                    c
                    for c in ("functional", "preferences", "statistics", "marketing")
                    if c not in granted
                ),
                withdrawn=(),
                policy_version=policy_version,
                locale=locale,
                notice_hash=notice.notice_hash,
                gpc=False,
                expires_at=expires_at or occurred_at + timedelta(days=183),
            ),
            notice,
        )
    )


# The raw INSERT below fills these in this order (record_id is left to the database).
_BULK_COLUMNS = ("event_id", *CONTRACT_COLUMNS[1:], *INTEGRITY_COLUMNS)


def bulk_insert(app: Flask, count: int, *, start: datetime, batch: int = 20_000) -> None:
    """``count`` signed records inserted straight into the tables through the driver (fast),
    in one stream, as consentkit itself would have written them."""
    st = state(app)
    st.store.create_all()
    notice = notice_copy()
    lk = keys(app)
    stream_id = "bulk-" + secrets.token_hex(6)
    categories = ("functional", "preferences", "statistics", "marketing")
    engine = create_engine(st.settings.database_uri)
    sqlite = engine.dialect.name == "sqlite"
    mark = "?" if sqlite else "%s"
    statement = (
        f"INSERT INTO consentkit_records ({', '.join(_BULK_COLUMNS)}) "
        f"VALUES ({', '.join([mark] * len(_BULK_COLUMNS))})"
    )

    def db_time(value: datetime) -> Any:
        # SQLite stores what SQLAlchemy would write for a DateTime; psycopg adapts datetimes.
        return value.strftime("%Y-%m-%d %H:%M:%S.%f") if sqlite else value

    granted_all, granted_none = list(categories), ["functional"]
    subjects = [hashlib.sha256(str(n).encode()).hexdigest() for n in range(5000)]
    batch_id = secrets.token_hex(10)  # ids in insertion order keep the unique index cheap
    try:
        with engine.begin() as conn:
            if sqlite:
                # Room for the random-keyed indexes (event_id, subject) in one transaction.
                conn.exec_driver_sql("PRAGMA cache_size = -262144")
            conn.execute(
                insert(notices).values(
                    notice_hash=notice.notice_hash,
                    locale="en",
                    policy_version="1",
                    created_at=start,
                    texts=notice.texts,
                )
            )
            rows: list[tuple[Any, ...]] = []
            for i in range(1, count + 1):
                when = start + timedelta(seconds=i)
                expires = when + timedelta(days=183)
                granted = granted_none if i % 3 else granted_all
                record = {
                    "occurred_at": when,
                    # Text a site can influence, with formula-like starts, on some rows.
                    "site": "-site" if i % 7 == 0 else "site,a",
                    "subject": subjects[i % 5000],
                    "action": "reject_all" if i % 3 else "accept_all",
                    "surface": "banner",
                    "granted": granted,
                    "denied": [c for c in categories if c not in granted],
                    "withdrawn": [],
                    "policy_version": "=1+1" if i % 11 == 0 else "1",
                    "locale": "fr" if i % 2 else "en",
                    "notice_hash": notice.notice_hash,
                    "gpc": False,
                    "expires_at": expires,
                }
                kid, mac = lk.sign(record_message(stream_id, i, record))
                rows.append(
                    (
                        f"{batch_id}{i:012x}",
                        db_time(when),
                        record["site"],
                        record["subject"],
                        record["action"],
                        "banner",
                        ",".join(granted),
                        ",".join(record["denied"]),
                        "",
                        record["policy_version"],
                        record["locale"],
                        notice.notice_hash,
                        False,
                        db_time(expires),
                        stream_id,
                        i,
                        kid,
                        mac,
                    )
                )
                if len(rows) == batch:
                    conn.exec_driver_sql(statement, rows)
                    rows = []
            if rows:
                conn.exec_driver_sql(statement, rows)
    finally:
        engine.dispose()


def write_app(tmp_path: Path, app: Flask, **extra: Any) -> Path:
    """A module serving the same log as ``app`` (same secret, database and ``extra``
    config, given as Python source for each value)."""
    module = tmp_path / "dpoapp.py"
    module.write_text(
        APP_MODULE.format(
            instance=str(tmp_path / "subprocess-instance"),
            secret=app.config["SECRET_KEY"],
            uri=state(app).settings.database_uri,
            extra=", ".join(f"{k}={v}" for k, v in extra.items()),
        )
    )
    return module


def run_flask(
    tmp_path: Path, *args: str, stdin: str | None = None
) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "FLASK_APP": "dpoapp"}
    env.pop("FLASK_RUN_FROM_CLI", None)
    return subprocess.run(
        [str(FLASK), "consentkit", *args],
        cwd=tmp_path,
        env=env,
        input=stdin,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def days_ago(days: float, now: datetime | None = None) -> datetime:
    return (now or datetime.now(UTC)) - timedelta(days=days)


def kinds(rep: Any) -> dict[str, int]:
    return dict(rep.counts)


def listed(rep: Any, kind: str) -> list[Any]:
    return [p for p in rep.problems if p.kind == kind]


def ids_of(problems: Iterable[Any]) -> set[int]:
    return {p.record_id for p in problems if p.record_id is not None}
