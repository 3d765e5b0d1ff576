"""What a visitor downloads for the banner, and what the consent cookie weighs.

    .venv/bin/python benchmarks/asset_weight.py

Prints the gzip -9 size of consentkit.js and consentkit.css and their total against the
5,000-byte budget, then the size of the consent cookie's value after "Accept all" (with and
without Global Privacy Control) against 200 bytes, and PASS or FAIL. Exits 1 on FAIL.
tests/browser/test_weight.py asserts the same bounds.
"""

from __future__ import annotations

import gzip
import sys
import tempfile
from pathlib import Path

from flask import Flask

from consentkit import ConsentKit

STATIC = Path(__file__).resolve().parent.parent / "src" / "consentkit" / "static" / "consentkit"
ASSETS = ("consentkit.js", "consentkit.css")
ASSET_BUDGET = 5_000  # bytes, gzip -9, JS + CSS together
COOKIE_BUDGET = 200  # bytes of the cookie's value


def gzipped_size(path: Path) -> int:
    return len(gzip.compress(path.read_bytes(), compresslevel=9, mtime=0))


def asset_sizes() -> dict[str, tuple[int, int]]:
    """``{file name: (raw bytes, gzip -9 bytes)}`` for the banner's assets."""
    return {name: ((STATIC / name).stat().st_size, gzipped_size(STATIC / name)) for name in ASSETS}


def consent_cookie_sizes() -> dict[str, int]:
    """Length of the consent cookie's value after Accept all, without and with GPC."""
    sizes: dict[str, int] = {}
    with tempfile.TemporaryDirectory() as tmp:
        app = Flask("weight", instance_path=tmp)
        app.config.update(
            SECRET_KEY="benchmark-secret-" + "k" * 24,
            CONSENTKIT_DATABASE_URI=f"sqlite:///{tmp}/log.sqlite3",
        )
        ConsentKit(app)
        name = app.extensions["consentkit"].settings.cookie_name
        try:
            for label, headers in (("accept_all", {}), ("accept_all + GPC", {"Sec-GPC": "1"})):
                response = app.test_client().post(
                    "/consent", json={"action": "accept_all"}, headers=headers
                )
                for header in response.headers.getlist("Set-Cookie"):
                    if header.startswith(name + "="):
                        sizes[label] = len(header.split(";", 1)[0].split("=", 1)[1])
                if label not in sizes:
                    raise RuntimeError(f"no {name} cookie in the response to {label}")
        finally:
            app.extensions["consentkit"].store.dispose()
    return sizes


def main() -> int:
    # Imported here: tests/browser/test_weight.py loads this module without benchmarks/ on
    # the path, for the size functions only.
    from common import Result, report

    sizes = asset_sizes()
    print("Banner assets (gzip -9):")
    for name, (raw, packed) in sizes.items():
        print(f"  {name:<16} {raw:>6} bytes raw  {packed:>6} bytes gzipped")
    total = sum(packed for _raw, packed in sizes.values())
    results = [
        report(
            Result(
                "B5",
                "consentkit.js + consentkit.css, gzip -9",
                total,
                f"<= {ASSET_BUDGET:,}",
                total <= ASSET_BUDGET,
                " B",
            )
        )
    ]
    for label, size in consent_cookie_sizes().items():
        results.append(
            report(
                Result(
                    "B5",
                    f"consent cookie value ({label})",
                    size,
                    f"<= {COOKIE_BUDGET}",
                    size <= COOKIE_BUDGET,
                    " B",
                )
            )
        )
    ok = all(r.passed for r in results)
    print("PASS" if ok else "FAIL")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
