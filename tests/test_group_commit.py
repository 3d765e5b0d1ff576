"""Group commit: concurrent decisions of one process share a transaction, each caller gets
its own outcome, and nothing is acknowledged before its row is committed."""

from __future__ import annotations

import os
import threading
import time
import uuid
import warnings
from collections.abc import Callable, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import event
from sqlalchemy.exc import IntegrityError

from consentkit.store import NewRecord
from consentkit.store.group_commit import GroupCommit, Interrupted
from dpo_support import notice_copy, report, sql, state


class Rejected(Exception):
    """A row-specific error (stands for a broken constraint)."""


def _wait_until(condition: Callable[[], bool], timeout: float = 10) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.001)


class Writer:
    """A write function whose first call holds until the test lets it go, so that the other
    callers queue up behind it deterministically."""

    def __init__(
        self,
        reject: set[int] | None = None,
        fail: BaseException | None = None,
        fail_first: BaseException | None = None,
    ):
        self.batches: list[list[int]] = []
        self.entered = threading.Event()
        self.release = threading.Event()
        self.reject = reject or set()
        self.fail = fail  # raised by every batch after the first
        self.fail_first = fail_first  # raised by the first batch once it is let go

    def __call__(self, items: Sequence[int]) -> list[int]:
        self.batches.append(list(items))
        if len(self.batches) == 1:
            self.entered.set()
            assert self.release.wait(10)
            if self.fail_first is not None:
                raise self.fail_first
        if self.fail is not None and len(self.batches) > 1:
            raise self.fail
        if any(item in self.reject for item in items):
            raise Rejected(f"rejected in {list(items)}")
        return [item * 10 for item in items]


def _submit_concurrently(
    group: GroupCommit[int, int], writer: Writer, items: Sequence[int]
) -> dict[int, Any]:
    """Submit items[0] and wait until it is being written; then submit the rest, wait until
    they all queue, and let the first write finish. Each item's result or exception."""
    outcomes: dict[int, Any] = {}

    def call(item: int) -> None:
        try:
            outcomes[item] = group.submit(item)
        except BaseException as exc:
            outcomes[item] = exc

    first = threading.Thread(target=call, args=(items[0],))
    first.start()
    assert writer.entered.wait(10)
    rest = [threading.Thread(target=call, args=(item,)) for item in items[1:]]
    for thread in rest:
        thread.start()
    _wait_until(lambda: group.waiting == len(items) - 1)
    writer.release.set()
    for thread in (first, *rest):
        thread.join(10)
        assert not thread.is_alive()
    return outcomes


def test_a_lone_writer_commits_at_once():
    batches: list[list[int]] = []

    def write(items: Sequence[int]) -> list[int]:
        batches.append(list(items))
        return [i + 1 for i in items]

    group = GroupCommit(write)
    assert [group.submit(i) for i in (1, 2, 3)] == [2, 3, 4]
    assert batches == [[1], [2], [3]]
    assert group.waiting == 0


def test_rows_arriving_during_a_commit_share_the_next_one():
    writer = Writer()
    group = GroupCommit(writer)
    outcomes = _submit_concurrently(group, writer, [1, 2, 3, 4, 5])
    assert outcomes == {i: i * 10 for i in (1, 2, 3, 4, 5)}  # each caller, its own result
    assert writer.batches[0] == [1]
    assert sorted(writer.batches[1]) == [2, 3, 4, 5]
    assert len(writer.batches) == 2


def test_a_batch_is_bounded():
    writer = Writer()
    group = GroupCommit(writer, max_batch=2)
    outcomes = _submit_concurrently(group, writer, [1, 2, 3, 4, 5])
    assert outcomes == {i: i * 10 for i in (1, 2, 3, 4, 5)}
    assert [len(b) for b in writer.batches] == [1, 2, 2]


def test_a_row_error_fails_only_that_row():
    writer = Writer(reject={3})
    group = GroupCommit(writer, row_errors=(Rejected,))
    outcomes = _submit_concurrently(group, writer, [1, 2, 3, 4])
    assert isinstance(outcomes[3], Rejected)
    assert {i: outcomes[i] for i in (1, 2, 4)} == {1: 10, 2: 20, 4: 40}
    # The shared batch failed as a whole, then each of its rows was written alone.
    assert sorted(writer.batches[1]) == [2, 3, 4]
    assert sorted(map(tuple, writer.batches[2:])) == [(2,), (3,), (4,)]


def test_a_database_error_reaches_every_caller_of_the_batch():
    down = OSError("database unreachable")
    writer = Writer(fail=down)
    group = GroupCommit(writer, row_errors=(Rejected,))
    outcomes = _submit_concurrently(group, writer, [1, 2, 3])
    assert outcomes[1] == 10
    for item in (2, 3):  # each caller raises its own copy, the shared error as its cause
        assert type(outcomes[item]) is OSError
        assert str(outcomes[item]) == "database unreachable"
        assert outcomes[item].__cause__ is down
    assert outcomes[2] is not outcomes[3]
    assert len(writer.batches) == 2  # not retried row by row: it is not the rows' fault


def test_rows_queued_during_a_failed_commit_fail_at_once():
    """While the database is down, a row queued behind a failing commit gets that error
    (and can be spooled) instead of waiting for a connection timeout of its own."""
    down = OSError("database unreachable")
    writer = Writer(fail_first=down)
    group: GroupCommit[int, int] = GroupCommit(writer)
    outcomes = _submit_concurrently(group, writer, [1, 2])
    assert writer.batches == [[1]]  # the queued row was not written after the failure
    assert outcomes[1].__cause__ is down
    assert outcomes[2].__cause__ is down
    assert group.waiting == 0


def test_an_interrupt_in_the_writer_leaves_no_caller_waiting():
    writer = Writer(fail=KeyboardInterrupt())
    group = GroupCommit(writer)
    outcomes = _submit_concurrently(group, writer, [1, 2, 3])
    assert outcomes[1] == 10
    # The interrupted thread raises its interrupt; the other caller of its batch gets an
    # OSError it can spool (whether the batch committed is unknown).
    assert sorted(type(outcomes[i]).__name__ for i in (2, 3)) == [
        "Interrupted",
        "KeyboardInterrupt",
    ]
    (spooled,) = [outcomes[i] for i in (2, 3) if isinstance(outcomes[i], Interrupted)]
    assert isinstance(spooled, OSError)
    writer.fail = None
    assert group.submit(7) == 70  # and the group is usable again


def test_a_writer_returning_the_wrong_number_of_results_fails_loudly():
    group = GroupCommit(lambda items: [])
    with pytest.raises(RuntimeError, match="0 results for 1 rows"):
        group.submit(1)
    with pytest.raises(ValueError):
        GroupCommit(lambda items: list(items), max_batch=0)


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork")
def test_a_forked_child_does_not_wait_for_its_parents_write():
    writer = Writer()
    group = GroupCommit(writer)
    parent = threading.Thread(target=group.submit, args=(1,))
    parent.start()
    assert writer.entered.wait(10)  # the parent is mid-write when it forks
    with warnings.catch_warnings():  # Python 3.12+ warns about forking with threads
        warnings.simplefilter("ignore", DeprecationWarning)
        pid = os.fork()
    if pid == 0:  # pragma: no cover - the child reports through its exit status
        try:
            done = threading.Event()
            result: list[int] = []
            threading.Thread(target=lambda: (result.append(group.submit(2)), done.set())).start()
            os._exit(0 if done.wait(5) and result == [20] else 1)
        except BaseException:
            os._exit(2)
    _, status = os.waitpid(pid, 0)
    writer.release.set()
    parent.join(10)
    assert os.waitstatus_to_exitcode(status) == 0


# -- in the store, on SQLite and PostgreSQL ----------------------------------------------


def _new_record(event_id: str | None = None) -> NewRecord:
    now = datetime.now(UTC)
    return NewRecord(
        event_id=event_id or uuid.uuid4().hex,
        occurred_at=now,
        site="default",
        subject=uuid.uuid4().hex * 2,
        action="accept_all",
        surface="banner",
        granted=("functional", "preferences", "statistics", "marketing"),
        denied=(),
        withdrawn=(),
        policy_version="1",
        locale="en",
        notice_hash=notice_copy().notice_hash,
        gpc=False,
        expires_at=now + timedelta(days=183),
    )


def _held_first_commit(engine: Any) -> tuple[threading.Event, threading.Event, list[int]]:
    """Hold the next transaction just before its commit; count the rows of each commit."""
    entered, release = threading.Event(), threading.Event()
    rows_per_commit: list[int] = []
    pending = [0]

    def on_insert(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        if statement.lstrip().upper().startswith("INSERT INTO CONSENTKIT_RECORDS"):
            pending[0] += 1

    def on_commit(conn: Any) -> None:
        if pending[0]:
            rows_per_commit.append(pending[0])
            pending[0] = 0
            if not entered.is_set():
                entered.set()
                assert release.wait(10)

    def on_rollback(conn: Any) -> None:
        pending[0] = 0

    event.listen(engine, "before_cursor_execute", on_insert)
    event.listen(engine, "commit", on_commit)
    event.listen(engine, "rollback", on_rollback)
    return entered, release, rows_per_commit


def test_concurrent_decisions_share_commits_and_still_verify(app):
    store = state(app).store
    notice = notice_copy()
    store.record(_new_record(), notice)  # tables and notice in place
    entered, release, rows_per_commit = _held_first_commit(store.engine)
    records: list[NewRecord] = [_new_record() for _ in range(6)]
    ids: dict[str, int] = {}

    def write(new: NewRecord) -> None:
        ids[new.event_id] = store.record(new, notice)

    threads = [threading.Thread(target=write, args=(records[0],))]
    threads[0].start()
    assert entered.wait(10)
    assert records[0].event_id not in ids  # not acknowledged before its commit
    threads += [threading.Thread(target=write, args=(new,)) for new in records[1:]]
    for thread in threads[1:]:
        thread.start()
    _wait_until(lambda: store._inserts.waiting == 5)
    assert ids == {}
    release.set()
    for thread in threads:
        thread.join(10)
    assert rows_per_commit == [1, 5]
    stored = dict(
        sql(
            app,
            "SELECT event_id, record_id FROM consentkit_records WHERE event_id IN "
            "(" + ",".join(f"'{r.event_id}'" for r in records) + ")",
        )
    )
    assert stored == ids  # each caller got its own row's id
    rep = report(app)
    assert rep.ok, rep.as_dict()
    assert rep.records == 7


def test_a_duplicate_in_a_shared_commit_fails_alone(app):
    store = state(app).store
    notice = notice_copy()
    taken = _new_record()
    store.record(taken, notice)
    entered, release, rows_per_commit = _held_first_commit(store.engine)
    outcomes: dict[str, Any] = {}

    def write(new: NewRecord) -> None:
        try:
            outcomes[new.event_id + str(id(new))] = store.record(new, notice)
        except IntegrityError as exc:
            outcomes[new.event_id + str(id(new))] = exc

    first = _new_record()
    threading.Thread(target=write, args=(first,)).start()
    assert entered.wait(10)
    duplicate = _new_record(taken.event_id)
    others = [_new_record(), _new_record()]
    threads = [threading.Thread(target=write, args=(n,)) for n in (others[0], duplicate, others[1])]
    for thread in threads:
        thread.start()
    _wait_until(lambda: store._inserts.waiting == 3)
    release.set()
    _wait_until(lambda: len(outcomes) == 4)
    assert isinstance(outcomes[duplicate.event_id + str(id(duplicate))], IntegrityError)
    stored = {r[0] for r in sql(app, "SELECT event_id FROM consentkit_records")}
    assert {first.event_id, others[0].event_id, others[1].event_id} <= stored
    assert len(stored) == 4
    # The shared commit failed as a whole; the two good rows were then committed alone.
    assert rows_per_commit == [1, 1, 1]
    # The failed row's stream is dropped, never reused with a hole: more rows after it,
    # then the whole log verifies.
    for _ in range(3):
        store.record(_new_record(), notice)
    rep = report(app)
    assert rep.ok, rep.as_dict()
    assert rep.records == 7
