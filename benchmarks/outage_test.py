"""Outage test: PostgreSQL stops in the middle of traffic; nothing acknowledged is lost.

A private PostgreSQL server, gunicorn with several workers, visitors posting decisions all
the time. Mid-run PostgreSQL is stopped (``pg_ctl stop -m fast``), the visitors keep posting,
then it is started again and the visitors go on. Afterwards (and after ``flask consentkit
flush``) every decision that got a 2xx answer must be in the log exactly once, with the time
the visitor decided, and ``flask consentkit verify`` must pass.

    make outage-test            # .venv/bin/python benchmarks/outage_test.py --write
    python benchmarks/outage_test.py --before 5 --down 10 --after 5 --workers 4

``--write`` puts the figures into benchmarks/RESULTS.md. Exit status 0 only when nothing was
lost, nothing duplicated and no 5xx was answered.
"""

from __future__ import annotations

import argparse
import re
import sys
import tempfile
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from serving import (
    BENCH,
    Gunicorn,
    LogCheck,
    Run,
    check_log,
    durable_postgres,
    flask_cli,
    machine,
    postgres_facts,
    replace_section,
    subject_of,
)


@dataclass
class OutageResult:
    run: Run
    check: LogCheck
    down_from: float  # wall clock: pg_ctl stop began
    down_until: float  # wall clock: pg_ctl start returned
    stop_seconds: float
    acknowledged_while_down: int
    five_xx: int
    errors: int
    pending_before_flush: int
    flushed_output: str
    verify_code: int | None
    verify_output: str
    time_errors: int  # rows whose occurred_at is not within their request
    workers: int
    concurrency: int
    postgres: dict[str, str]


def _pending(instance: Path) -> int:
    spool = instance / "consentkit-spool"
    return len([p for p in spool.glob("*.json")]) if spool.exists() else 0


def outage_scenario(
    workdir: Path,
    *,
    before: float,
    down: float,
    after: float,
    workers: int = 3,
    concurrency: int = 8,
    pause: float = 0.0,
    verify: bool = True,
) -> OutageResult:
    """Run the scenario in ``workdir`` (its own PostgreSQL, gunicorn, instance folder)."""
    from serving import run_visitors

    server = durable_postgres()
    try:
        uri = server.create_database("outage")
        facts = postgres_facts(uri)
        instance = workdir / "instance"
        marks: dict[str, float] = {}

        def scenario() -> None:
            time.sleep(before)
            marks["stop_begin"] = time.time()
            server.pg_stop()
            marks["stopped"] = time.time()
            time.sleep(down)
            server.pg_start()
            marks["started"] = time.time()

        with Gunicorn(uri, instance, workers=workers) as app:
            run = run_visitors(
                app.url,
                concurrency=concurrency,
                duration=before + down + after + 2,
                pause=pause,
                during=scenario,
            )
            pending = _pending(instance)
        flushed = flask_cli(uri, instance, "flush")
        if flushed.returncode != 0:
            raise RuntimeError(f"flush failed:\n{flushed.stdout}{flushed.stderr}")
        verify_code: int | None = None
        verify_output = ""
        if verify:
            verified = flask_cli(uri, instance, "verify")
            verify_code = verified.returncode
            verify_output = (verified.stdout + verified.stderr).strip()
        check = check_log(uri, run)
    finally:
        server.stop()

    # Acknowledged while PostgreSQL was certainly down: sent after it stopped, answered before
    # it started again. Those can only have gone through the spool.
    while_down = [
        a
        for a in run.acknowledged
        if a.started >= marks["stopped"] and a.started + a.latency <= marks["started"]
    ]
    # occurred_at is the moment of the decision: within its request, not at replay time.
    by_subject: dict[str, list[Any]] = {}
    for row in check.rows:
        by_subject.setdefault(row["subject"], []).append(row)
    time_errors = 0
    for answer in run.acknowledged:
        candidates = by_subject.get(subject_of(answer.consent_id or ""), [])
        window = (answer.started - 1.0, answer.started + answer.latency + 1.0)
        if not any(window[0] <= _ts(r["occurred_at"]) <= window[1] for r in candidates):
            time_errors += 1
    return OutageResult(
        run=run,
        check=check,
        down_from=marks["stop_begin"],
        down_until=marks["started"],
        stop_seconds=marks["stopped"] - marks["stop_begin"],
        acknowledged_while_down=len(while_down),
        five_xx=sum(1 for a in run.answers if a.status >= 500),
        errors=sum(1 for a in run.answers if a.status == 0),
        pending_before_flush=pending,
        flushed_output=(flushed.stdout + flushed.stderr).strip(),
        verify_code=verify_code,
        verify_output=verify_output,
        time_errors=time_errors,
        workers=workers,
        concurrency=concurrency,
        postgres=facts,
    )


def _flushed(output: str) -> str:
    found = re.search(r"flushed (\d+) decision\(s\)", output)
    return f"{found.group(1)} decision(s)" if found else "?"


def _ts(value: datetime) -> float:
    return (value if value.tzinfo else value.replace(tzinfo=UTC)).timestamp()


def report(result: OutageResult) -> str:
    run, check = result.run, result.check
    statuses = ", ".join(f"{k}: {v}" for k, v in sorted(run.statuses().items()))
    lost = check.missing
    down_for = result.down_until - result.down_from
    lines = [
        f"- gunicorn {result.workers} sync workers, {result.concurrency} concurrent visitors, "
        f"PostgreSQL {result.postgres['version']} stopped for {down_for:.1f} s "
        f"(`pg_ctl stop -m fast` took {result.stop_seconds:.1f} s) mid-run",
        f"- requests: {len(run.answers)} ({statuses})",
        f"- decisions acknowledged (2xx): **{check.acknowledged}**, "
        f"of which {result.acknowledged_while_down} while PostgreSQL was down",
        f"- records stored: **{check.stored}**; lost: **{lost}**; duplicated: "
        f"{check.duplicates}; unexpected: {check.unexpected}",
        f"- 5xx answers: **{result.five_xx}**; connection errors: {result.errors}",
        f"- spooled decisions still waiting when traffic stopped: {result.pending_before_flush}"
        " (the others were replayed automatically by the requests after the restart); "
        f"`flask consentkit flush` then wrote {_flushed(result.flushed_output)}",
        f"- rows whose `occurred_at` is outside their own request: {result.time_errors}",
        f"- latency p50 / p99 (all answers): {run.latency_ms(0.5):.1f} / "
        f"{run.latency_ms(0.99):.1f} ms",
    ]
    if result.verify_code is not None:
        last = result.verify_output.splitlines()[-1] if result.verify_output else ""
        lines.append(f"- `flask consentkit verify`: exit {result.verify_code} ({last})")
    return "\n".join(lines)


def ok(result: OutageResult) -> bool:
    check = result.check
    return (
        check.missing == 0
        and check.duplicates == 0
        and check.unexpected == 0
        and result.five_xx == 0
        and result.time_errors == 0
        and result.acknowledged_while_down > 0
        and result.verify_code in (0, None)
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--before", type=float, default=8.0, help="seconds before the stop")
    parser.add_argument("--down", type=float, default=12.0, help="seconds PostgreSQL is down")
    parser.add_argument("--after", type=float, default=8.0, help="seconds after the restart")
    parser.add_argument("--workers", type=int, default=4)
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--write", action="store_true", help="write benchmarks/RESULTS.md")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="consentkit-outage-") as tmp:
        result = outage_scenario(
            Path(tmp),
            before=args.before,
            down=args.down,
            after=args.after,
            workers=args.workers,
            concurrency=args.concurrency,
        )
    text = report(result)
    print(text)
    passed = ok(result)
    print("PASS" if passed else "FAIL")
    if args.write:
        m = machine()
        body = (
            "## Database outage (`make outage-test`)\n\n"
            f"Measured {datetime.now(UTC):%Y-%m-%d} on {m['cpus']} CPUs ({m['cpu']}), "
            f"{m['memory']} RAM, {m['os']}, Python {m['python']}, gunicorn {m['gunicorn']}, "
            f"PostgreSQL {result.postgres['version']} (fsync {result.postgres['fsync']}, "
            f"synchronous_commit {result.postgres['synchronous_commit']}); everything on "
            "loopback, client and servers on the same machine.\n\n"
            + text
            + f"\n- result: **{'PASS' if passed else 'FAIL'}**\n"
        )
        replace_section(BENCH / "RESULTS.md", "outage", body)
    return 0 if passed else 1


if __name__ == "__main__":
    raise SystemExit(main())
