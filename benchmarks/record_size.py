"""Bytes per consent record on PostgreSQL, for the scaling note in docs/production.md.

Writes N records (default 100 000) through ``ConsentStore.record`` exactly as the app does
(tamper-evidence columns included), from a few processes at once, into a private PostgreSQL
server; then ``VACUUM ANALYZE`` and ``pg_total_relation_size`` (table + indexes + TOAST).

    .venv/bin/python benchmarks/record_size.py --write
"""

from __future__ import annotations

import argparse
import multiprocessing
import random
import sys
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from serving import BENCH, machine, postgres_facts, replace_section

ACTIONS = [
    ("accept_all", ("functional", "preferences", "statistics", "marketing"), ()),
    ("reject_all", ("functional",), ("preferences", "statistics", "marketing")),
    ("custom", ("functional", "statistics"), ("preferences", "marketing")),
    ("close", ("functional",), ("preferences", "statistics", "marketing")),
]


def _write(uri: str, count: int, seed: int) -> int:
    from consentkit.integrity import LogKeys
    from consentkit.keys import derive_key, subject_hash
    from consentkit.store import ConsentStore, NewRecord, NoticeCopy

    rng = random.Random(seed)
    store = ConsentStore.from_uri(uri)
    store.use_log_keys(LogKeys((derive_key(b"record-size-secret", "log"),)))
    texts = '{"title":"Gérer le consentement aux cookies","text":"' + "x" * 1500 + '"}'
    import hashlib

    notice = NoticeCopy(hashlib.sha256(texts.encode()).hexdigest(), "fr", "1", texts)
    key = b"record-size-subject-key"
    start = datetime(2026, 1, 1, tzinfo=UTC)
    try:
        for n in range(count):
            action, granted, denied = rng.choice(ACTIONS)
            when = start + timedelta(seconds=rng.randrange(365 * 86400))
            store.record(
                NewRecord(
                    event_id=uuid.uuid4().hex,
                    occurred_at=when,
                    site="default",
                    subject=subject_hash(key, f"visitor-{seed}-{n // 2}"),
                    action=action,
                    surface=rng.choice(["banner", "preferences"]),
                    granted=granted,
                    denied=denied,
                    withdrawn=("statistics",) if rng.random() < 0.05 else (),
                    policy_version="1",
                    locale=rng.choice(["fr", "en"]),
                    notice_hash=notice.notice_hash,
                    gpc=rng.random() < 0.1,
                    expires_at=when + timedelta(days=183),
                ),
                notice,
            )
    finally:
        store.dispose()
    return count


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--records", type=int, default=100_000)
    parser.add_argument("--processes", type=int, default=4)
    parser.add_argument("--write", action="store_true", help="write benchmarks/RESULTS.md")
    args = parser.parse_args()
    if not 1000 <= args.records <= 1_000_000:
        parser.error("between 1 000 and 1 000 000 records")

    from pgserver import PostgresServer
    from sqlalchemy import create_engine, text

    server = PostgresServer()
    server.start()
    try:
        uri = server.create_database("sizes")
        facts = postgres_facts(uri)
        from consentkit.store import ConsentStore

        ConsentStore.from_uri(uri).create_all()
        per = args.records // args.processes
        started = time.monotonic()
        ctx = multiprocessing.get_context("spawn")
        with ctx.Pool(args.processes) as pool:
            written = sum(
                pool.starmap_async(
                    _write, [(uri, per, seed) for seed in range(args.processes)]
                ).get(timeout=1800)
            )
        elapsed = time.monotonic() - started
        engine = create_engine(uri, isolation_level="AUTOCOMMIT")
        try:
            with engine.connect() as conn:
                conn.execute(text("VACUUM ANALYZE consentkit_records"))
                sizes = conn.execute(
                    text(
                        "SELECT pg_total_relation_size('consentkit_records'),"
                        " pg_relation_size('consentkit_records'),"
                        " pg_indexes_size('consentkit_records'),"
                        " (SELECT count(*) FROM consentkit_records)"
                    )
                ).one()
                indexes = conn.execute(
                    text(
                        "SELECT indexrelname, pg_relation_size(indexrelid) FROM"
                        " pg_stat_user_indexes WHERE relname = 'consentkit_records'"
                        " ORDER BY 2 DESC"
                    )
                ).all()
        finally:
            engine.dispose()
    finally:
        server.stop()

    total, heap, index_bytes, rows = sizes
    assert rows == written
    lines = [
        f"- {rows} records written through `ConsentStore.record` by {args.processes} processes "
        f"in {elapsed:.0f} s (tamper-evidence columns filled)",
        f"- `consentkit_records` total (heap + indexes + TOAST): {total / 1e6:.1f} MB = "
        f"**{total / rows:.0f} bytes per record** (heap {heap / rows:.0f}, "
        f"indexes {index_bytes / rows:.0f})",
        "- per index: " + ", ".join(f"`{name}` {size / rows:.0f} B" for name, size in indexes),
        f"- projected: 10 million records ≈ {total / rows * 1e7 / 1e9:.1f} GB, "
        f"50 million ≈ {total / rows * 5e7 / 1e9:.1f} GB (notice texts are stored once per "
        "hash and do not grow with the records)",
    ]
    text_out = "\n".join(lines)
    print(text_out)
    if args.write:
        m = machine()
        body = (
            "## Bytes per record on PostgreSQL (`benchmarks/record_size.py`)\n\n"
            f"Measured {datetime.now(UTC):%Y-%m-%d}, PostgreSQL {facts['version']}, "
            f"Python {m['python']}.\n\n" + text_out + "\n"
        )
        replace_section(BENCH / "RESULTS.md", "record-size", body)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
