"""Load test: gunicorn with 4 workers on PostgreSQL, 50+ concurrent visitors for 60 s.

Every visitor posts decisions as fast as it is answered (keeping its cookie for three
decisions, like a visitor changing their mind, then a new visitor takes its place). At the
end: zero 5xx, and every 2xx answer has exactly one row in the log (per visitor, rows = 2xx
answers); p50 / p90 / p99 latencies and the throughput are printed.

    make load-test              # .venv/bin/python benchmarks/load_test.py --write
    python benchmarks/load_test.py --duration 10 --concurrency 50   # a quicker look

Client, gunicorn and PostgreSQL share the machine (loopback only), so the figures are what
this machine does with all three on it. ``--write`` records them in benchmarks/RESULTS.md.
Exit status 0 only when no 5xx, no error and no lost or duplicated record.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from datetime import UTC, datetime
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from serving import (
    BENCH,
    Gunicorn,
    check_log,
    durable_postgres,
    flask_cli,
    machine,
    postgres_facts,
    replace_section,
    run_visitors,
)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--duration", type=float, default=60.0, help="seconds of load")
    parser.add_argument("--concurrency", type=int, default=50, help="concurrent visitors")
    parser.add_argument("--workers", type=int, default=4, help="gunicorn workers")
    parser.add_argument("--threads", type=int, default=1, help="threads per worker")
    parser.add_argument("--write", action="store_true", help="write benchmarks/RESULTS.md")
    args = parser.parse_args()
    if args.duration > 600 or args.concurrency > 500:
        parser.error("bounded: at most 600 s and 500 visitors")

    server = durable_postgres()
    try:
        uri = server.create_database("load")
        facts = postgres_facts(uri)
        with tempfile.TemporaryDirectory(prefix="consentkit-load-") as tmp:
            instance = Path(tmp) / "instance"
            with Gunicorn(uri, instance, workers=args.workers, threads=args.threads) as app:
                run = run_visitors(app.url, concurrency=args.concurrency, duration=args.duration)
            # Each decision a worker could not write to PostgreSQL is logged as spooled.
            spooled = app.log.read_text(errors="replace").count("spooling decision")
            flushed = flask_cli(uri, instance, "flush")
            check = check_log(uri, run)
    finally:
        server.stop()

    elapsed = run.ended - run.started
    statuses = run.statuses()
    five_xx = sum(n for status, n in statuses.items() if status >= 500)
    errors = statuses.get(0, 0)
    ok_answers = run.acknowledged
    lines = [
        f"- gunicorn {args.workers} sync workers"
        + (f" x {args.threads} threads" if args.threads > 1 else "")
        + f", {args.concurrency} concurrent visitors, {args.duration:.0f} s, "
        f"PostgreSQL {facts['version']}",
        f"- requests: {len(run.answers)} in {elapsed:.1f} s = "
        f"**{len(run.answers) / elapsed:.0f} decisions/s**; statuses: "
        + ", ".join(f"{k}: {v}" for k, v in sorted(statuses.items())),
        f"- 5xx: **{five_xx}**; connection errors: {errors}",
        f"- 2xx answers: **{check.acknowledged}**; records stored: **{check.stored}**; "
        f"lost: **{check.missing}**; duplicated: {check.duplicates}; "
        f"unexpected: {check.unexpected}; decisions that went through the spool: {spooled}",
        f"- latency of 2xx answers: p50 **{run.latency_ms(0.5, ok_answers):.1f} ms**, "
        f"p90 {run.latency_ms(0.9, ok_answers):.1f} ms, "
        f"p99 **{run.latency_ms(0.99, ok_answers):.1f} ms**, "
        f"max {run.latency_ms(1.0, ok_answers):.1f} ms",
    ]
    passed = (
        five_xx == 0
        and errors == 0
        and check.missing == 0
        and check.duplicates == 0
        and check.unexpected == 0
        and check.acknowledged == len(run.answers)
        and flushed.returncode == 0
    )
    text = "\n".join(lines)
    print(text)
    print("PASS" if passed else "FAIL")
    if args.write:
        m = machine()
        body = (
            "## Load (`make load-test`)\n\n"
            f"Measured {datetime.now(UTC):%Y-%m-%d} on {m['cpus']} CPUs ({m['cpu']}), "
            f"{m['memory']} RAM, {m['os']}, Python {m['python']}, gunicorn {m['gunicorn']}, "
            f"PostgreSQL {facts['version']} (fsync {facts['fsync']}, synchronous_commit "
            f"{facts['synchronous_commit']}, one commit per decision). The load client "
            "(aiohttp, one process), gunicorn and PostgreSQL share these CPUs over loopback; "
            "each decision is a JSON `POST /consent` on a new connection (sync workers "
            "close it).\n\n" + text + f"\n- result: **{'PASS' if passed else 'FAIL'}**\n"
        )
        replace_section(BENCH / "RESULTS.md", "load", body)
    return 0 if passed else 1


if __name__ == "__main__":
    raise SystemExit(main())
