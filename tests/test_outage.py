"""A real database outage under real workers: PostgreSQL is stopped while gunicorn workers
take decisions, then started again; every acknowledged decision is in the log exactly once,
at the time the visitor decided, and the log verifies.

The longer run with figures is ``make outage-test`` (benchmarks/outage_test.py).
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "benchmarks"))

from outage_test import ok, outage_scenario, report

pytestmark = [pytest.mark.postgres, pytest.mark.slow]


def test_no_acknowledged_decision_is_lost_when_postgresql_stops(tmp_path):
    result = outage_scenario(
        tmp_path, before=3, down=5, after=1.5, workers=3, concurrency=6, pause=0.005
    )
    summary = report(result)
    print(summary)
    check = result.check
    assert result.acknowledged_while_down > 0, summary  # the outage really happened
    assert result.five_xx == 0, summary
    assert result.errors == 0, summary
    assert check.acknowledged == len(result.run.acknowledged) > 0
    assert check.missing == 0, summary  # nothing acknowledged is lost
    assert check.duplicates == 0, summary  # nothing is logged twice
    assert check.unexpected == 0, summary
    assert check.stored == check.acknowledged
    assert result.time_errors == 0, summary  # occurred_at: decision time, not replay time
    assert result.verify_code == 0, result.verify_output
    assert ok(result)
