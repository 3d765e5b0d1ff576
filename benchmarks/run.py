"""Run every benchmark and write the figures into benchmarks/RESULTS.md.

    make bench            # or: .venv/bin/python benchmarks/run.py

Each benchmark prints the measured figure, its target and PASS / FAIL (REPORT for figures
without a hard target). Sizes can be reduced for a quick look with BENCH_REQUESTS,
BENCH_DECISIONS and BENCH_EXPORT_ROWS; RESULTS.md is only rewritten by a full-size run.
"""

from __future__ import annotations

import datetime
import importlib
import os
import re
import sys
from pathlib import Path

import common

HERE = Path(__file__).resolve().parent
RESULTS_FILE = HERE / "RESULTS.md"
BEGIN = "<!-- benchmarks/run.py: begin -->"
END = "<!-- benchmarks/run.py: end -->"
MODULES = ["asset_weight", "requests_bench", "store_bench"]


def full_size() -> bool:
    return not any(
        k in os.environ for k in ("BENCH_REQUESTS", "BENCH_DECISIONS", "BENCH_EXPORT_ROWS")
    )


def _figure(r: common.Result) -> str:
    """Ratios to three decimals, sizes in whole bytes, memory to a tenth of a MB."""
    if r.unit.strip() == "B":
        return f"{r.measured:,.0f} B"
    if r.unit.strip() == "MB":
        return f"{r.measured:,.1f} MB"
    return f"{r.measured:,.3f}{r.unit}"


def write_results() -> None:
    lines = [
        BEGIN,
        "## Targets (benchmarks/run.py)",
        "",
        f"Run on {datetime.date.today().isoformat()}: {common.machine()}. Every figure is a ratio "
        "of two things measured in the same run, except sizes and memory.",
        "",
        "| id | what | measured | target | result |",
        "|---|---|---|---|---|",
    ]
    for r in common.RESULTS:
        verdict = {True: "PASS", False: "FAIL", None: "reported"}[r.passed]
        lines.append(f"| {r.bid} | {r.what.strip()} | {_figure(r)} | {r.target} | {verdict} |")
    lines.append(END)
    block = "\n".join(lines)
    old = RESULTS_FILE.read_text() if RESULTS_FILE.exists() else "# Benchmark results\n"
    if BEGIN in old:
        new = re.sub(re.escape(BEGIN) + ".*?" + re.escape(END), lambda _m: block, old, flags=re.S)
    else:
        new = old.rstrip("\n") + "\n\n" + block + "\n"
    RESULTS_FILE.write_text(new)


def main() -> int:
    sys.path.insert(0, str(HERE))
    for name in sys.argv[1:] or MODULES:
        module = importlib.import_module(name)
        module.main()
    failed = [r for r in common.RESULTS if r.passed is False]
    if full_size() and len(sys.argv) == 1:
        write_results()
        print(f"wrote {RESULTS_FILE.relative_to(HERE.parent)}")
    print(f"{len(common.RESULTS)} figures, {len(failed)} below target")
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
