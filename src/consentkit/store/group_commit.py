"""Group commit: decisions recorded at the same moment in one process share a transaction.

A commit waits for the database to make the row durable (an fsync of SQLite's WAL, a flush
of PostgreSQL's WAL), which takes longer than the rest of a decision. When several threads
of one process record at once (gunicorn's ``gthread`` workers, waitress, ...), the first
becomes the *leader*: it writes every row waiting at that moment in one transaction, and
rows that arrive meanwhile wait for the next one. No one waits for a timer, so a lone
writer commits at once, as with one transaction per row. Every caller returns only after
its own row is committed: an acknowledged decision is exactly as durable as before.
"""

from __future__ import annotations

import copy
import os
import threading
import weakref
from collections.abc import Callable, Sequence
from typing import Generic, TypeVar

T = TypeVar("T")
R = TypeVar("R")

#: Rows per transaction at most: bounds how long the last caller of a batch waits.
MAX_BATCH = 64


class Interrupted(OSError):
    """A shared transaction was interrupted in another thread (a ``KeyboardInterrupt``, a
    worker's timeout): whether it committed is unknown. An ``OSError``, so a decision that
    gets it is spooled like one the database refused (replay skips a row already stored)."""


class _Slot(Generic[T, R]):
    __slots__ = ("done", "error", "item", "result")

    def __init__(self, item: T) -> None:
        self.item = item
        self.done = False
        self.result: R | None = None
        self.error: BaseException | None = None

    def succeed(self, result: R) -> None:
        self.result, self.done = result, True

    def fail(self, error: BaseException) -> None:
        self.error, self.done = error, True

    def outcome(self) -> R:
        if self.error is not None:
            # Several callers may share one error: each raises its own copy, so that their
            # tracebacks do not pile up on one object (the original stays the cause).
            own = _own_copy(self.error)
            if own is self.error:
                raise own
            raise own from self.error
        return self.result  # type: ignore[return-value]  # set together with done


def _own_copy(error: BaseException) -> BaseException:
    try:
        duplicate = copy.copy(error)
    except Exception:  # an exception type that cannot be rebuilt from its arguments
        return error
    return duplicate if type(duplicate) is type(error) else error


class GroupCommit(Generic[T, R]):
    """Calls ``write(items)`` (one transaction, one result per item, in order) for the
    items submitted concurrently, and gives each caller its own result or error.

    When a batch of several rows fails with one of the ``row_errors`` (a constraint that
    one row broke), each row is written again on its own, so only that row's caller sees
    the error. Any other error (the database is unreachable) reaches every caller of the
    batch, who can then spool its decision.
    """

    def __init__(
        self,
        write: Callable[[Sequence[T]], Sequence[R]],
        *,
        row_errors: tuple[type[BaseException], ...] = (),
        max_batch: int = MAX_BATCH,
    ) -> None:
        if max_batch < 1:
            raise ValueError("max_batch must be at least 1")
        self._write = write
        self._row_errors = row_errors
        self._max_batch = max_batch
        self._reset()
        # A child forked while another thread was writing would wait for that write
        # forever: it starts with an empty queue instead.
        ref = weakref.ref(self)

        def reset_in_child() -> None:
            group = ref()
            if group is not None:
                group._reset()

        os.register_at_fork(after_in_child=reset_in_child)

    def _reset(self) -> None:
        self._cond = threading.Condition(threading.Lock())
        self._queue: list[_Slot[T, R]] = []
        self._busy = False

    @property
    def waiting(self) -> int:
        """Rows queued for the next transaction (not the one being written)."""
        return len(self._queue)

    def submit(self, item: T) -> R:
        """Write ``item`` (in a transaction shared with concurrent callers) and return its
        result once committed, or raise the error that prevented it."""
        slot: _Slot[T, R] = _Slot(item)
        cond = self._cond
        with cond:
            self._queue.append(slot)
            while not slot.done:
                if self._busy:
                    cond.wait()
                    continue
                self._busy = True
                batch = self._queue[: self._max_batch]
                del self._queue[: self._max_batch]
                failure: BaseException | None = None
                cond.release()
                try:
                    failure = self._write_batch(batch)
                except BaseException as interrupt:
                    failure = interrupt
                    raise
                finally:
                    cond.acquire()
                    self._busy = False
                    if failure is not None:
                        # The database just failed the whole batch (or this thread was
                        # interrupted): the rows that queued meanwhile fail now and can be
                        # spooled, instead of each waiting for its own timeout in turn.
                        if not isinstance(failure, Exception):
                            failure = Interrupted(f"interrupted by {failure!r}")
                        for waiting in self._queue:
                            waiting.fail(failure)
                        self._queue.clear()
                    cond.notify_all()
        return slot.outcome()

    def _write_batch(self, batch: list[_Slot[T, R]]) -> BaseException | None:
        """Settle every slot of ``batch`` (never leaves one pending: its caller would wait
        forever). Returns the error that failed the whole batch, if any."""
        try:
            results = self._write([slot.item for slot in batch])
            if len(results) != len(batch):  # a broken writer, not a database error
                raise RuntimeError(f"{len(results)} results for {len(batch)} rows")
        except self._row_errors as exc:
            if len(batch) == 1:
                batch[0].fail(exc)
                return None
            # Nothing was committed: write each row alone to find the one(s) at fault.
            failure = None
            for i, slot in enumerate(batch):
                try:
                    failure = self._write_batch([slot]) or failure
                except BaseException as interrupt:  # only a non-Exception escapes
                    for rest in batch[i + 1 :]:
                        rest.fail(Interrupted(f"interrupted by {interrupt!r}"))
                    raise
            return failure
        except Exception as exc:
            for slot in batch:
                slot.fail(exc)
            return exc
        except BaseException as interrupt:
            # The writing thread is interrupted: it raises this itself; the other callers
            # of the batch get an error they can spool.
            for slot in batch:
                slot.fail(Interrupted(f"interrupted by {interrupt!r}"))
            raise
        for slot, result in zip(batch, results, strict=True):
            slot.succeed(result)
        return None
