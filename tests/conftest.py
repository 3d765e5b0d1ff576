"""Fixtures: an app factory, clients, and the store on SQLite and on a real PostgreSQL
server that this test session starts itself (tests/pgserver.py)."""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from flask import Flask, render_template_string
from pgserver import PostgresServer, find_pg_bin
from sqlalchemy import create_engine, select, text

from consentkit import ConsentKit
from consentkit.store import notices, records

SECRET = "test-secret-key-0123456789abcdef"
PAGE = (
    "<!doctype html><html><head>{{ consentkit_head() }}</head><body>"
    "<p id=stats>{{ consent.granted('statistics') }}</p>{{ consentkit_banner() }}</body></html>"
)


@pytest.fixture(scope="session")
def pg_server() -> Iterator[PostgresServer]:
    if find_pg_bin() is None:
        pytest.fail("PostgreSQL server binaries not found: run scripts/bootstrap.sh (make test)")
    server = PostgresServer()
    server.start()
    yield server
    server.stop()


_db_counter = itertools.count()


@pytest.fixture(params=["sqlite", "postgresql"])
def database_uri(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A fresh, empty database per test, on each backend."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path}/log.sqlite3"
    server: PostgresServer = request.getfixturevalue("pg_server")
    return server.create_database(f"t{next(_db_counter)}")


AppFactory = Callable[..., Flask]


@pytest.fixture
def make_app(tmp_path: Path) -> Iterator[AppFactory]:
    """Build an app with consentkit; keyword arguments are config keys, ``ck`` options go
    to the ``ConsentKit`` constructor."""
    built: list[Flask] = []

    def factory(ck: dict[str, Any] | None = None, **config: Any) -> Flask:
        app = Flask("testapp", instance_path=str(tmp_path / f"instance{len(built)}"))
        app.config.update(SECRET_KEY=SECRET, CONSENTKIT_COOKIE_SECURE=False, TESTING=True)
        app.config.update(config)
        ConsentKit(app, **(ck or {}))

        @app.get("/")
        def index() -> str:
            return render_template_string(PAGE)

        @app.get("/article/<int:n>")
        def article(n: int) -> str:
            return render_template_string(PAGE)

        built.append(app)
        return app

    yield factory
    for app in built:
        app.extensions["consentkit"].store.dispose()


@pytest.fixture
def app(make_app: AppFactory, database_uri: str) -> Flask:
    return make_app(CONSENTKIT_DATABASE_URI=database_uri)


@pytest.fixture
def client(app: Flask) -> Any:
    return app.test_client()


@pytest.fixture
def runner(app: Flask) -> Any:
    return app.test_cli_runner()


def log_rows(app: Flask) -> list[dict[str, Any]]:
    """The raw rows of the log, read straight from the database (not through the API)."""
    engine = create_engine(app.extensions["consentkit"].settings.database_uri)
    try:
        with engine.connect() as conn:
            exists = conn.execute(
                text(
                    "SELECT 1 FROM information_schema.tables"
                    " WHERE table_name = 'consentkit_records'"
                )
                if engine.dialect.name == "postgresql"
                else text("SELECT 1 FROM sqlite_master WHERE name = 'consentkit_records'")
            ).first()
            if exists is None:
                return []
            return [
                dict(r._mapping)
                for r in conn.execute(select(records).order_by(records.c.record_id))
            ]
    finally:
        engine.dispose()


def notice_rows(app: Flask) -> list[dict[str, Any]]:
    engine = create_engine(app.extensions["consentkit"].settings.database_uri)
    try:
        with engine.connect() as conn:
            return [dict(r._mapping) for r in conn.execute(select(notices))]
    finally:
        engine.dispose()
