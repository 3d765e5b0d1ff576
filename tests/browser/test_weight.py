"""The banner's weight budget (a size, not a timing), the same bounds as
benchmarks/asset_weight.py, with no browser needed."""

from __future__ import annotations

import importlib.util
import re
from pathlib import Path

BENCHMARK = Path(__file__).resolve().parents[2] / "benchmarks" / "asset_weight.py"
_spec = importlib.util.spec_from_file_location("asset_weight", BENCHMARK)
assert _spec is not None
assert _spec.loader is not None
weight = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(weight)


def test_banner_assets_within_5000_bytes_gzipped():
    sizes = weight.asset_sizes()
    assert set(sizes) == {"consentkit.js", "consentkit.css"}
    for raw, packed in sizes.values():
        assert 0 < packed < raw  # really measured, really compressed
    assert sum(packed for _raw, packed in sizes.values()) <= weight.ASSET_BUDGET == 5_000


def test_consent_cookie_within_200_bytes():
    sizes = weight.consent_cookie_sizes()
    assert set(sizes) == {"accept_all", "accept_all + GPC"}
    assert all(0 < size <= weight.COOKIE_BUDGET == 200 for size in sizes.values())


def test_assets_make_no_third_party_request():
    """No URL to another host in the banner's own files (the budget is all there is)."""
    for name in weight.ASSETS:
        text = (weight.STATIC / name).read_text(encoding="utf-8")
        assert not re.search(r"(https?:)?//[a-z0-9.-]+\.[a-z]{2,}", text, re.IGNORECASE), name
        assert "@import" not in text
