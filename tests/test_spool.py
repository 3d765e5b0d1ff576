"""The outage spool: acknowledged decisions survive an unreachable database, reach the log
exactly once when it answers again, with the time the visitor decided.

The outage here is real but local to one test: on PostgreSQL the test's database stops
accepting connections (ALLOW_CONNECTIONS false, sessions terminated); on SQLite the
database's folder disappears. tests/test_outage.py stops a whole server under gunicorn.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import multiprocessing
import os
import shutil
import socket
import stat
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from conftest import SECRET, log_rows, notice_rows
from flask import Flask
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

from consentkit.config import ConfigError
from consentkit.store import ConsentStore, NewRecord, NoticeCopy
from consentkit.store import store as store_module
from consentkit.store.spool import (
    LOCK_NAME,
    QUARANTINE,
    STALE_TMP_SECONDS,
    TMP_PREFIX,
    Spool,
    SpoolError,
    decode,
    encode,
    record_once,
)
from test_http import cookie_of, cookie_value
from test_http import decode as decode_cookie

JSON = {"Accept": "application/json"}


class Outage:
    """Make one app's database unreachable and bring it back."""

    def __init__(self, app: Flask, tmp_path: Path) -> None:
        self.app = app
        self.state = app.extensions["consentkit"]
        self.url = make_url(self.state.settings.database_uri)
        self.tmp_path = tmp_path
        # Tables first: a store that never reached its database would create the SQLite
        # file (and its folder) again on first use.
        self.state.store.create_all()

    def _admin(self, *statements: str) -> None:
        admin = create_engine(
            self.url.set(database="postgres"), isolation_level="AUTOCOMMIT", poolclass=None
        )
        try:
            with admin.connect() as conn:
                for statement in statements:
                    conn.execute(text(statement))
        finally:
            admin.dispose()

    def down(self) -> None:
        if self.url.get_backend_name() == "postgresql":
            name = self.url.database
            self._admin(
                f'ALTER DATABASE "{name}" ALLOW_CONNECTIONS false',
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
                f" WHERE datname = '{name}' AND pid <> pg_backend_pid()",
            )
        else:
            folder = Path(self.url.database).parent
            folder.rename(folder.with_name(folder.name + ".away"))
        self.state.store.engine.dispose()

    def up(self) -> None:
        if self.url.get_backend_name() == "postgresql":
            self._admin(f'ALTER DATABASE "{self.url.database}" ALLOW_CONNECTIONS true')
        else:
            folder = Path(self.url.database).parent
            folder.with_name(folder.name + ".away").rename(folder)
        self.state.store.engine.dispose()


@pytest.fixture
def db_uri(request: pytest.FixtureRequest, tmp_path: Path, database_uri: str) -> str:
    """The test's database, on SQLite in a folder of its own (so it can disappear)."""
    if database_uri.startswith("sqlite"):
        (tmp_path / "db").mkdir()
        return f"sqlite:///{tmp_path}/db/log.sqlite3"
    return database_uri


@pytest.fixture
def ck_app(make_app: Any, db_uri: str) -> Flask:
    return make_app(CONSENTKIT_DATABASE_URI=db_uri)


@pytest.fixture
def outage(ck_app: Flask, tmp_path: Path) -> Any:
    o = Outage(ck_app, tmp_path)
    yield o
    with contextlib.suppress(Exception):  # already up
        o.up()


def spool_of(app: Flask) -> Spool:
    spool = app.extensions["consentkit"].spool
    assert spool is not None
    return spool


def sample(event_id: str = "e" * 32, **changes: Any) -> tuple[NewRecord, NoticeCopy]:
    now = datetime(2026, 3, 1, 12, 30, 15, 123456, tzinfo=UTC)
    values: dict[str, Any] = dict(
        event_id=event_id,
        occurred_at=now,
        site="default",
        subject="a" * 64,
        action="custom",
        surface="preferences",
        granted=("functional", "statistics"),
        denied=("preferences", "marketing"),
        withdrawn=("marketing",),
        policy_version="3",
        locale="fr",
        notice_hash="b" * 64,
        gpc=True,
        expires_at=now + timedelta(days=183),
    )
    values.update(changes)
    return NewRecord(**values), NoticeCopy("b" * 64, "fr", "3", '{"texte":"é"}')


# -- the file format ---------------------------------------------------------------------


def test_encode_decode_round_trip():
    new, notice = sample()
    data = encode(new, notice)
    assert data.endswith(b"\n")
    assert data.count(b"\n") == 1
    assert decode(data) == (new, notice)


@pytest.mark.parametrize(
    "data",
    [
        b"",
        b"{",
        b"[]",
        b"\xff\xfe",
        b'{"format": 2, "record": {}, "notice": {}}',
        b'{"format": 1, "record": {}, "notice": {}}',
    ],
)
def test_decode_refuses_what_is_not_a_spooled_decision(data):
    with pytest.raises(SpoolError):
        decode(data)


def test_decode_refuses_truncated_files():
    data = encode(*sample())
    for cut in (1, len(data) // 2, len(data) - 3):
        with pytest.raises(SpoolError):
            decode(data[:cut])


def test_decode_refuses_a_record_and_notice_that_disagree():
    document = json.loads(encode(*sample()))
    document["notice"]["notice_hash"] = "c" * 64
    with pytest.raises(SpoolError):
        decode(json.dumps(document).encode())


def test_write_is_one_private_file_named_by_time(tmp_path):
    spool = Spool(str(tmp_path / "spool"))
    new, notice = sample()
    path = spool.write(new, notice)
    assert os.path.dirname(path) == spool.directory
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    assert stat.S_IMODE(os.stat(spool.directory).st_mode) == 0o700
    assert spool.files() == [os.path.basename(path)]
    assert spool.read(os.path.basename(path)) == (new, notice)
    later, _ = sample("f" * 32, occurred_at=new.occurred_at + timedelta(microseconds=1))
    earlier, _ = sample("0" * 32, occurred_at=new.occurred_at - timedelta(days=1))
    spool.write(later, notice)
    spool.write(earlier, notice)
    assert [spool.read(n)[0].event_id for n in spool.files()] == ["0" * 32, "e" * 32, "f" * 32]
    assert not [n for n in os.listdir(spool.directory) if n.startswith(TMP_PREFIX)]


def test_write_failure_raises_and_leaves_nothing(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    with pytest.raises(OSError):
        Spool(str(blocker / "spool")).write(*sample())


# -- acknowledged during an outage, replayed after -------------------------------------------


def test_outage_acknowledges_and_flush_writes_the_decision(ck_app, outage):
    client = ck_app.test_client()
    assert client.post("/consent", json={"action": "reject_all"}).status_code == 200
    outage.down()
    before = datetime.now(UTC)
    response = client.post(
        "/consent", json={"action": "custom", "granted": ["statistics"], "locale": "fr"}
    )
    after = datetime.now(UTC)
    assert response.status_code == 200
    header = cookie_of(response)
    assert header is not None  # acknowledged: the visitor's choice is in force
    state = decode_cookie(ck_app, header)
    assert state.granted("statistics")
    assert not state.granted("marketing")
    spool = spool_of(ck_app)
    assert spool.pending() == 1
    spooled, notice = spool.read(spool.files()[0])
    time.sleep(0.05)

    outage.up()
    result = ck_app.test_cli_runner().invoke(args=["consentkit", "flush"])
    assert result.exit_code == 0, result.output
    assert "flushed 1 decision(s)" in result.output
    assert spool.pending() == 0
    rows = log_rows(ck_app)
    assert len(rows) == 2
    row = rows[1]
    assert row["event_id"] == spooled.event_id
    occurred = (
        row["occurred_at"].replace(tzinfo=UTC)
        if row["occurred_at"].tzinfo is None
        else row["occurred_at"]
    )
    # The time the visitor decided, not the time of the flush.
    assert before <= occurred <= after
    assert (row["action"], row["granted"], row["locale"]) == (
        "custom",
        "functional,statistics",
        "fr",
    )
    assert row["subject"] == rows[0]["subject"]  # same visitor, same subject
    assert notice.notice_hash in {n["notice_hash"] for n in notice_rows(ck_app)}
    # A second flush finds nothing and writes nothing.
    again = ck_app.test_cli_runner().invoke(args=["consentkit", "flush"])
    assert again.exit_code == 0
    assert "flushed 0 decision(s)" in again.output
    assert len(log_rows(ck_app)) == 2


def test_withdrawal_during_outage_is_computed_from_the_cookie(ck_app, outage):
    client = ck_app.test_client()
    client.post("/consent", json={"action": "accept_all"})
    outage.down()
    assert (
        client.post("/consent", json={"action": "custom", "granted": ["preferences"]}).status_code
        == 200
    )
    outage.up()
    assert ck_app.test_cli_runner().invoke(args=["consentkit", "flush"]).exit_code == 0
    last = log_rows(ck_app)[-1]
    assert last["withdrawn"] == "statistics,marketing"


def test_next_decision_replays_the_spool_first(ck_app, outage):
    visitor = ck_app.test_client()
    visitor.post("/consent", json={"action": "reject_all"})
    outage.down()
    others = [ck_app.test_client() for _ in range(3)]
    for other in others:
        assert other.post("/consent", json={"action": "accept_all"}).status_code == 200
    # The visitor grants statistics during the outage, then withdraws it once it is over.
    assert (
        visitor.post("/consent", json={"action": "custom", "granted": ["statistics"]}).status_code
        == 200
    )
    assert spool_of(ck_app).pending() == 4
    outage.up()
    assert visitor.post("/consent", json={"action": "reject_all"}).status_code == 200
    assert spool_of(ck_app).pending() == 0
    rows = log_rows(ck_app)
    assert [r["action"] for r in rows] == ["reject_all"] + ["accept_all"] * 3 + [
        "custom",
        "reject_all",
    ]
    # Replayed in decision order, before the decision that followed them.
    occurred = [r["occurred_at"] for r in rows]
    assert occurred == sorted(occurred)
    assert rows[-1]["withdrawn"] == "statistics"


def test_a_decision_logged_and_spooled_is_one_row(ck_app):
    """A commit that succeeded but whose answer was lost is spooled too: one row."""
    client = ck_app.test_client()
    client.post("/consent", json={"action": "accept_all"})
    st = ck_app.extensions["consentkit"]
    row = log_rows(ck_app)[0]
    new, notice = sample(
        row["event_id"],
        subject=row["subject"],
        notice_hash=row["notice_hash"],
    )
    notice = st.store.notice(row["notice_hash"])
    spool = spool_of(ck_app)
    spool.write(new, notice)
    result = spool.replay(st.store)
    assert (result.inserted, result.duplicates, result.remaining) == (0, 1, 0)
    assert len(log_rows(ck_app)) == 1


def test_replay_twice_inserts_once(ck_app):
    st = ck_app.extensions["consentkit"]
    new, notice = sample()
    first = Spool(os.path.join(ck_app.instance_path, "copy-a"))
    second = Spool(os.path.join(ck_app.instance_path, "copy-b"))
    first.write(new, notice)
    second.write(new, notice)  # the same decision in two spools (a restored backup, say)
    assert first.replay(st.store).inserted == 1
    result = second.replay(st.store)
    assert (result.inserted, result.duplicates) == (0, 1)
    assert record_once(st.store, new, notice) is None
    rows = log_rows(ck_app)
    assert [r["event_id"] for r in rows] == [new.event_id]
    occurred = rows[0]["occurred_at"]
    occurred = occurred if occurred.tzinfo else occurred.replace(tzinfo=UTC)
    assert occurred == new.occurred_at


def test_outage_without_spool_is_503(make_app, db_uri, tmp_path):
    app = make_app(CONSENTKIT_DATABASE_URI=db_uri, CONSENTKIT_SPOOL_DIR=False)
    assert app.extensions["consentkit"].spool is None
    client = app.test_client()
    client.post("/consent", json={"action": "reject_all"})
    o = Outage(app, tmp_path)
    o.down()
    try:
        response = client.post("/consent", json={"action": "accept_all"})
        assert response.status_code == 503
        assert cookie_of(response) is None
        assert "try again" in response.get_json()["error"]
        health = client.get("/consent/health")
        assert health.status_code == 503
        assert health.get_json()["status"] == "down"
    finally:
        o.up()
    assert len(log_rows(app)) == 1


def test_outage_with_an_unwritable_spool_is_503(ck_app, outage):
    client = ck_app.test_client()
    client.post("/consent", json={"action": "reject_all"})
    spool = spool_of(ck_app)
    shutil.rmtree(spool.directory, ignore_errors=True)
    os.makedirs(os.path.dirname(spool.directory), exist_ok=True)
    Path(spool.directory).write_text("a file where the spool folder should be")
    outage.down()
    response = client.post("/consent", data={"action": "accept_all"})
    assert response.status_code == 503
    assert cookie_of(response) is None
    outage.up()
    assert len(log_rows(ck_app)) == 1


def test_health(ck_app, outage):
    client = ck_app.test_client()
    body = client.get("/consent/health").get_json()
    assert body == {"status": "ok", "database": "ok", "spool": {"writable": True, "pending": 0}}
    outage.down()
    client.post("/consent", json={"action": "accept_all"})
    response = client.get("/consent/health")
    assert response.status_code == 200  # still acknowledging, into the spool
    assert response.get_json() == {
        "status": "degraded",
        "database": "unreachable",
        "spool": {"writable": True, "pending": 1},
    }
    assert response.headers["Cache-Control"] == "no-store"
    outage.up()
    assert client.get("/consent/health").get_json()["status"] == "degraded"  # pending
    ck_app.test_cli_runner().invoke(args=["consentkit", "flush"])
    assert client.get("/consent/health").get_json()["status"] == "ok"


def test_flush_while_the_database_is_down_fails_and_keeps_the_spool(ck_app, outage):
    ck_app.test_client().post("/consent", json={"action": "accept_all"})
    outage.down()
    ck_app.test_client().post("/consent", json={"action": "accept_all"})
    result = ck_app.test_cli_runner().invoke(args=["consentkit", "flush"])
    assert result.exit_code != 0
    assert "unreachable" in result.output
    assert spool_of(ck_app).pending() == 1


# -- damaged and stray files -----------------------------------------------------------------


def test_unreadable_file_is_quarantined_not_lost(ck_app):
    spool = spool_of(ck_app)
    good_new, notice = sample()
    st = ck_app.extensions["consentkit"]
    st.store.store_notice(notice)
    spool.write(good_new, notice)
    os.makedirs(spool.directory, exist_ok=True)
    bad = Path(spool.directory) / "00000000000000000001-garbage.json"
    bad.write_bytes(b'{"format": 1, "rec')
    result = ck_app.test_cli_runner().invoke(args=["consentkit", "flush"])
    assert result.exit_code != 0
    assert "could not be read" in result.output
    assert spool.quarantined() == [bad.name]
    assert (Path(spool.directory) / QUARANTINE / bad.name).read_bytes() == b'{"format": 1, "rec'
    assert [r["event_id"] for r in log_rows(ck_app)] == [good_new.event_id]


def test_temporary_files_are_ignored_and_stale_ones_removed(ck_app):
    spool = spool_of(ck_app)
    spool.write(*sample())
    fresh = Path(spool.directory) / f"{TMP_PREFIX}123-x.json"
    stale = Path(spool.directory) / f"{TMP_PREFIX}456-y.json"
    fresh.write_bytes(b'{"format": 1, "torn')
    stale.write_bytes(b'{"format": 1, "torn')
    old = time.time() - STALE_TMP_SECONDS - 10
    os.utime(stale, (old, old))
    assert spool.pending() == 1
    result = spool.replay(ck_app.extensions["consentkit"].store)
    assert (result.inserted, result.quarantined) == (1, 0)
    assert fresh.exists()
    assert not stale.exists()


def test_replay_skips_when_another_process_replays(ck_app):
    spool = spool_of(ck_app)
    spool.write(*sample())
    fd = os.open(os.path.join(spool.directory, LOCK_NAME), os.O_RDWR | os.O_CREAT)
    try:
        # Another open file description: flock excludes it like another process.
        fcntl.flock(fd, fcntl.LOCK_EX)
        result = spool.replay(ck_app.extensions["consentkit"].store)
        assert result.busy
        assert result.remaining == 1
        assert result.inserted == 0
    finally:
        os.close(fd)
    assert spool.replay(ck_app.extensions["consentkit"].store).inserted == 1


# -- many processes ----------------------------------------------------------------------


def _write_many(directory: str, worker: int, count: int) -> None:
    spool = Spool(directory)
    for n in range(count):
        new, notice = sample(f"{worker:04d}{n:028d}", subject=f"{worker:064d}")
        spool.write(new, notice)


def _replay(directory: str, uri: str, rounds: int) -> tuple[int, int]:
    store = ConsentStore.from_uri(uri)
    inserted = duplicates = 0
    try:
        for _ in range(rounds):
            result = Spool(directory).replay(store, wait=True)
            inserted += result.inserted
            duplicates += result.duplicates
            time.sleep(0.01)
    finally:
        store.dispose()
    return inserted, duplicates


def test_several_processes_spool_and_replay_at_once(ck_app):
    """Writers in three processes and replayers in two, at the same time: every decision
    ends up in the log exactly once and no file is lost or torn."""
    st = ck_app.extensions["consentkit"]
    st.store.store_notice(sample()[1])
    directory = spool_of(ck_app).directory
    uri = st.settings.database_uri
    ctx = multiprocessing.get_context("spawn")
    with ctx.Pool(5) as pool:
        writers = [pool.apply_async(_write_many, (directory, w, 40)) for w in range(3)]
        replayers = [pool.apply_async(_replay, (directory, uri, 10)) for _ in range(2)]
        for job in writers:
            job.get(timeout=120)
        replayed = [job.get(timeout=120) for job in replayers]
    final = Spool(directory).replay(st.store, wait=True)
    assert final.quarantined == 0
    assert final.remaining == 0
    total_inserted = sum(i for i, _ in replayed) + final.inserted
    assert total_inserted == 120
    event_ids = [r["event_id"] for r in log_rows(ck_app)]
    assert len(event_ids) == len(set(event_ids)) == 120


# -- configuration -----------------------------------------------------------------------


def test_spool_dir_defaults_to_the_instance_folder(make_app, db_uri):
    app = make_app(CONSENTKIT_DATABASE_URI=db_uri)
    assert spool_of(app).directory == os.path.join(app.instance_path, "consentkit-spool")
    relative = make_app(CONSENTKIT_DATABASE_URI=db_uri, CONSENTKIT_SPOOL_DIR="sp")
    assert spool_of(relative).directory == os.path.join(relative.instance_path, "sp")


@pytest.mark.parametrize("value", ["", "  ", 3, True, ["x"], "a\0b"])
def test_bad_spool_dir_fails_at_start(make_app, value):
    with pytest.raises(ConfigError, match="CONSENTKIT_SPOOL_DIR"):
        make_app(CONSENTKIT_SPOOL_DIR=value)


def test_spool_holds_no_secret_and_no_raw_consent_id(ck_app, outage):
    outage.down()
    response = ck_app.test_client().post("/consent", json={"action": "accept_all"})
    consent_id = response.get_json()["consent_id"]
    spool = spool_of(ck_app)
    raw = Path(spool.directory, spool.files()[0]).read_text()
    assert SECRET not in raw
    assert consent_id not in raw
    st = ck_app.extensions["consentkit"]
    assert json.loads(raw)["record"]["subject"] == st.subjects(consent_id)[0]
    header = cookie_of(response)
    assert header is not None
    assert cookie_value(header) not in raw


def test_a_late_replayed_decision_is_not_taken_for_the_latest(app: Flask) -> None:
    """A decision spooled during an outage is appended when replayed, possibly after the
    same visitor's later decision: the previous choice is the latest by time, not by
    position in the log."""
    from dpo_support import add_record, state

    subject = "ab" * 32
    now = datetime.now(UTC)
    add_record(app, subject=subject, occurred_at=now - timedelta(minutes=10))  # accept all
    later = add_record(
        app, subject=subject, occurred_at=now - timedelta(minutes=1), granted=("functional",)
    )
    replayed = add_record(
        app,
        subject=subject,
        occurred_at=now - timedelta(minutes=5),
        granted=("functional", "statistics"),
    )
    assert replayed > later  # appended last
    assert state(app).store.last_granted([subject]) == ["functional"]


# -- the request path's "anything waiting?" check -----------------------------------------


def test_has_pending_looks_again_once_the_folder_changes(tmp_path, monkeypatch):
    directory = tmp_path / "spool"
    directory.mkdir()
    spool, other_worker = Spool(str(directory)), Spool(str(directory))
    scans = []
    real_scandir = os.scandir
    monkeypatch.setattr(os, "scandir", lambda path: scans.append(path) or real_scandir(path))
    assert spool.has_pending() is False
    assert spool.has_pending() is False
    assert len(scans) == 2  # just modified: not trusted yet, scanned each time
    settled = time.time() - 10
    os.utime(directory, (settled, settled))
    assert spool.has_pending() is False
    assert spool.has_pending() is False
    assert spool.has_pending() is False
    assert len(scans) == 3  # settled and empty: one stat per call from now on
    other_worker.write(*sample())  # another process spools a decision
    assert spool.has_pending() is True
    assert spool.has_pending() is True
    assert len(scans) == 5


def test_has_pending_sees_a_file_written_in_the_same_tick(tmp_path, monkeypatch):
    """A file system whose clock has coarse ticks: the folder's time does not move when a
    file is added right after a scan. The scan's result is then not trusted."""
    directory = tmp_path / "spool"
    directory.mkdir()
    spool = Spool(str(directory))
    frozen = os.stat(directory).st_mtime_ns
    assert spool.has_pending() is False
    spool.write(*sample())
    os.utime(directory, ns=(frozen, frozen))  # as if in the same tick as before
    assert spool.has_pending() is True


# -- PostgreSQL connections dropped by the server ----------------------------------------


def _drop_connections(app: Flask) -> None:
    """What a server restart or a proxy's idle timeout does to the pool's connections."""
    url = make_url(app.extensions["consentkit"].settings.database_uri)
    admin = create_engine(url.set(database="postgres"), isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as conn:
            others = " FROM pg_stat_activity WHERE datname = :name AND pid <> pg_backend_pid()"
            conn.execute(text("SELECT pg_terminate_backend(pid)" + others), {"name": url.database})
            # pg_terminate_backend only signals: wait until those backends have exited
            # (said goodbye to their clients), as a restart has before anyone reconnects.
            deadline = time.monotonic() + 10
            while conn.execute(text("SELECT count(*)" + others), {"name": url.database}).scalar():
                assert time.monotonic() < deadline, "the backends did not exit"
                time.sleep(0.01)
    finally:
        admin.dispose()


@pytest.mark.postgres
@pytest.mark.parametrize("idle", [True, False])
def test_a_connection_the_server_dropped_is_replaced_before_use(
    make_app, pg_server, monkeypatch, idle
):
    uri = pg_server.create_database(f"dropped_{'idle' if idle else 'busy'}")
    app = make_app(CONSENTKIT_DATABASE_URI=uri)
    client = app.test_client()
    assert client.post("/consent", json={"action": "reject_all"}).status_code == 200
    _drop_connections(app)
    if idle:  # as if the pooled connection had not been used for a while: pinged
        monkeypatch.setattr(store_module, "IDLE_PING_SECONDS", -1.0)
    # Used a moment ago or not, the dead connection is seen before use and replaced: the
    # decision is written at once, and a read right after a failover works too.
    response = client.post("/consent", json={"action": "accept_all"})
    assert response.status_code == 200
    assert [r["action"] for r in log_rows(app)] == ["reject_all", "accept_all"]
    assert spool_of(app).pending() == 0
    _drop_connections(app)
    receipt = client.get("/consent/receipt", headers={"Accept": "application/json"})
    assert receipt.status_code == 200
    assert [r["action"] for r in receipt.get_json()["records"]] == ["reject_all", "accept_all"]
    _drop_connections(app)
    assert client.get("/consent/health").get_json()["database"] == "ok"


@pytest.mark.postgres
def test_a_connection_that_dies_unannounced_costs_a_spooled_decision_not_a_lost_one(
    make_app, pg_server, monkeypatch
):
    """A drop no message announced (the check above sees nothing): the insert fails, the
    decision waits in the spool, and the pool's connections are replaced."""
    uri = pg_server.create_database("dropped_silently")
    app = make_app(CONSENTKIT_DATABASE_URI=uri)
    client = app.test_client()
    assert client.post("/consent", json={"action": "reject_all"}).status_code == 200
    _drop_connections(app)
    monkeypatch.setattr(store_module, "closed_by_server", lambda _connection: False)
    assert client.post("/consent", json={"action": "accept_all"}).status_code == 200
    assert spool_of(app).pending() == 1
    assert client.post("/consent", json={"action": "reject_all"}).status_code == 200
    assert spool_of(app).pending() == 0  # replayed before the new decision
    assert [r["action"] for r in log_rows(app)] == ["reject_all", "accept_all", "reject_all"]


def test_an_idle_connection_with_nothing_to_read_is_not_taken_for_closed():
    left, right = socket.socketpair()
    try:
        connection = SimpleNamespace(fileno=left.fileno)
        assert store_module.closed_by_server(connection) is False
        right.close()  # the other end goes away: end of file is readable
        assert store_module.closed_by_server(connection) is True
    finally:
        left.close()
    assert store_module.closed_by_server(SimpleNamespace()) is False  # no socket to look at
