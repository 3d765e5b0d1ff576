"""Statistics: the arithmetic (pure), `flask consentkit stats`, and the dashboard's SVG."""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import pytest

from consentkit import stats
from dpo_support import add_record, run_flask, write_app

# -- pure ----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Row:
    day: str
    locale: str
    policy_version: str
    site: str
    action: str
    granted: tuple[str, ...]
    count: int


ALL = ("functional", "preferences", "statistics", "marketing")


def test_period_of_uses_iso_weeks():
    assert stats.period_of("2026-01-04", "week") == "2026-W01"  # a Sunday
    assert stats.period_of("2026-01-05", "week") == "2026-W02"
    assert stats.period_of("2024-12-30", "week") == "2025-W01"  # ISO year
    assert stats.period_start("2025-W01").isoformat() == "2024-12-30"
    with pytest.raises(ValueError):
        stats.period_of("2026-01-05", "month")


def test_aggregate_rates_and_suppression():
    rows = [
        Row("2026-01-05", "en", "1", "a", "accept_all", ALL, 6),
        Row("2026-01-05", "en", "1", "a", "reject_all", ("functional",), 3),
        Row("2026-01-06", "fr", "1", "a", "custom", ("functional", "statistics"), 3),
        Row("2026-01-06", "fr", "2", "b", "close", ("functional",), 2),
    ]
    (week,) = stats.aggregate(rows, by="week", split=())
    assert week.period == "2026-W02"
    assert week.decisions == 14
    out = week.as_dict(10)
    assert out["actions"] == {
        "accept_all": round(6 / 14, 4),
        "reject_all": round(3 / 14, 4),
        "custom": round(3 / 14, 4),
        "close": round(2 / 14, 4),
    }
    assert out["grant_rates"] == {
        "preferences": round(6 / 14, 4),
        "statistics": round(9 / 14, 4),
        "marketing": round(6 / 14, 4),
    }
    groups = stats.aggregate(rows, by="day", split=("site", "locale", "policy_version"))
    assert [(g.period, g.site, g.locale, g.policy_version, g.decisions) for g in groups] == [
        ("2026-01-05", "a", "en", "1", 9),
        ("2026-01-06", "a", "fr", "1", 3),
        ("2026-01-06", "b", "fr", "2", 2),
    ]
    small = groups[1].as_dict(5)
    assert small["suppressed"]
    assert small["decisions"] is None
    assert small["grant_rates"] is None
    rendered = stats.format_table(stats.table_rows(groups, 5, ("site",)))
    assert "<5" in rendered
    assert "66.7" in rendered
    with pytest.raises(ValueError):
        stats.aggregate(rows, by="day", split=("subject",))


def test_series_leave_gaps_for_small_or_empty_periods():
    rows = [
        Row("2026-01-01", "en", "1", "a", "accept_all", ALL, 20),
        Row("2026-01-02", "en", "1", "a", "accept_all", ALL, 2),
        Row("2026-01-04", "en", "1", "a", "reject_all", ("functional",), 10),
    ]
    filled = stats.fill_periods(stats.aggregate(rows, by="day", split=()), "day")
    assert [g.period for g in filled] == ["2026-01-01", "2026-01-02", "2026-01-03", "2026-01-04"]
    series = stats.grant_series(filled, 10)
    assert series["marketing"] == [
        ("2026-01-01", 1.0),
        ("2026-01-02", None),
        ("2026-01-03", None),
        ("2026-01-04", 0.0),
    ]


def test_svg_chart_is_inert_escaped_svg():
    series = {
        "preferences": [("2026-W01", 0.5), ("2026-W02", None), ("2026-W03", 0.25), ("W4", 0.3)],
        "statistics": [("2026-W01", 1.0), ("2026-W02", 0.9), ("2026-W03", 0.8), ("W4", 0.7)],
        "marketing": [("2026-W01", 0.1), ("2026-W02", 0.2), ("2026-W03", 0.3), ("W4", 0.4)],
    }
    svg = str(
        stats.svg_chart(
            series,
            labels={"preferences": "<b>Préférences & co</b>"},
            title="Taux </title><script>",
            empty_text="-",
        )
    )
    root = ET.fromstring(svg)  # well-formed XML
    ns = "{http://www.w3.org/2000/svg}"
    assert root.tag == ns + "svg"
    assert "<script" not in svg
    assert "&lt;script&gt;" in svg
    assert "&lt;b&gt;Préférences &amp; co&lt;/b&gt;" in svg
    # The gap splits preferences into one point then a two-point line; the others are whole.
    polylines = root.findall(ns + "polyline")
    assert len(polylines) == 3
    assert len(root.findall(ns + "circle")) == 11
    empty = str(stats.svg_chart({}, labels={}, title="t", empty_text="Rien ici"))
    assert "Rien ici" in empty
    assert ET.fromstring(empty) is not None


# -- the command --------------------------------------------------------------------------------


def _log(app):
    start = datetime(2026, 1, 5, 10, tzinfo=UTC)  # a Monday
    for i in range(12):
        add_record(app, occurred_at=start + timedelta(hours=i), locale="en")
    for i in range(10):
        add_record(
            app,
            occurred_at=start + timedelta(days=1, hours=i),
            locale="fr",
            action="reject_all",
            granted=("functional",),
        )
    for i in range(3):  # a small group: three visitors on another site
        add_record(
            app,
            occurred_at=start + timedelta(days=8, hours=i),
            site="small",
            action="custom",
            granted=("functional", "statistics"),
        )


def _stats(runner, *args):
    return runner.invoke(args=["consentkit", "stats", *args])


def test_stats_json_per_week(app, runner):
    _log(app)
    result = _stats(runner, "--by", "week", "--total", "--format", "json")
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert data["min_count"] == 10
    first, second = data["groups"]
    assert (first["period"], first["decisions"]) == ("2026-W02", 22)
    assert first["actions"]["accept_all"] == round(12 / 22, 4)
    assert first["grant_rates"]["marketing"] == round(12 / 22, 4)
    assert second == {
        "period": "2026-W03",
        "decisions": None,
        "suppressed": True,
        "actions": None,
        "grant_rates": None,
    }


def test_stats_table_split_and_filters(app, runner):
    _log(app)
    result = _stats(runner, "--split", "locale")
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert lines[0].split()[:3] == ["period", "locale", "decisions"]
    assert any(
        line.startswith("2026-01-05") and " en " in line and " 12 " in line for line in lines
    )
    assert any(line.startswith("2026-01-13") and "<10" in line for line in lines)
    assert "suppressed" in result.stderr
    only = _stats(runner, "--total", "--site", "small", "--format", "csv")
    assert only.stdout.splitlines()[1].startswith("2026-01-13,<10")
    week = _stats(
        runner, "--total", "--since", "2026-01-06", "--until", "2026-01-06", "--format", "json"
    )
    assert [g["decisions"] for g in json.loads(week.stdout)["groups"]] == [10]


def test_stats_default_splits_by_site_locale_policy(app, runner):
    _log(app)
    data = json.loads(_stats(runner, "--format", "json").stdout)
    assert data["split"] == ["site", "locale", "policy_version"]
    assert {(g["site"], g["locale"]) for g in data["groups"]} == {
        ("default", "en"),
        ("default", "fr"),
        ("small", "en"),
    }


def test_stats_threshold_is_configurable(make_app, database_uri):
    app = make_app(CONSENTKIT_DATABASE_URI=database_uri, CONSENTKIT_STATS_MIN_COUNT=3)
    _log(app)
    data = json.loads(
        _stats(app.test_cli_runner(), "--total", "--by", "week", "--format", "json").stdout
    )
    assert data["groups"][1]["decisions"] == 3


@pytest.mark.parametrize(
    "args",
    [["--by", "month"], ["--total", "--split", "site"], ["--split", "subject"], ["--since", "x"]],
)
def test_stats_bad_arguments(app, runner, args):
    result = _stats(runner, *args)
    assert result.exit_code == 2
    assert "Error" in result.output


@pytest.mark.slow
def test_stats_in_a_real_flask_process(app, tmp_path):
    _log(app)
    write_app(tmp_path, app)
    result = run_flask(tmp_path, "stats", "--by", "week", "--total", "--format", "json")
    assert result.returncode == 0, result.stderr
    assert [g["suppressed"] for g in json.loads(result.stdout)["groups"]] == [False, True]
