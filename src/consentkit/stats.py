"""Consent statistics: rates per period and group, small groups suppressed, and a
server-rendered SVG chart. Pure: no Flask, no database.

Input is the per-day counts the store computes in SQL (a few rows per day, whatever the
log's size); everything here is arithmetic on them.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date, timedelta
from typing import Any, Protocol

from markupsafe import Markup, escape

from .categories import OPTIONAL_CATEGORIES

ACTIONS: tuple[str, ...] = ("accept_all", "reject_all", "custom", "close")
PERIODS = ("day", "week")
SPLITS = ("site", "locale", "policy_version")
#: One colour per optional category (colour-blind-safe Okabe-Ito hues), plus a dash pattern
#: so the lines differ without colour too.
SERIES_STYLE: dict[str, tuple[str, str]] = {
    "preferences": ("#0072B2", ""),
    "statistics": ("#E69F00", "6 3"),
    "marketing": ("#CC79A7", "2 3"),
}


class DayCount(Protocol):
    @property
    def day(self) -> str: ...
    @property
    def locale(self) -> str: ...
    @property
    def policy_version(self) -> str: ...
    @property
    def site(self) -> str: ...
    @property
    def action(self) -> str: ...
    @property
    def granted(self) -> tuple[str, ...]: ...
    @property
    def count(self) -> int: ...


def period_of(day: str, by: str) -> str:
    """``2026-01-07`` -> itself (``day``) or the ISO week ``2026-W02`` (``week``)."""
    if by == "day":
        return day
    if by != "week":
        raise ValueError(f"unknown period {by!r}")
    year, week, _ = date.fromisoformat(day).isocalendar()
    return f"{year}-W{week:02d}"


def period_start(period: str) -> date:
    if "-W" in period:
        year, week = period.split("-W")
        return date.fromisocalendar(int(year), int(week), 1)
    return date.fromisoformat(period)


@dataclass(slots=True)
class Group:
    """Decisions of one period (and site / locale / policy version when split by them)."""

    period: str
    site: str | None = None
    locale: str | None = None
    policy_version: str | None = None
    decisions: int = 0
    actions: dict[str, int] = field(default_factory=dict)
    grants: dict[str, int] = field(default_factory=dict)

    def add(self, action: str, granted: Sequence[str], count: int) -> None:
        self.decisions += count
        self.actions[action] = self.actions.get(action, 0) + count
        for category in granted:
            if category in OPTIONAL_CATEGORIES:
                self.grants[category] = self.grants.get(category, 0) + count

    def suppressed(self, k: int) -> bool:
        return self.decisions < k

    def rate(self, count: int) -> float:
        return count / self.decisions if self.decisions else 0.0

    def as_dict(self, k: int) -> dict[str, Any]:
        """Rates in 0..1; a group under ``k`` decisions shows neither its count nor rates."""
        out: dict[str, Any] = {"period": self.period}
        for name in SPLITS:
            value = getattr(self, name)
            if value is not None:
                out[name] = value
        if self.suppressed(k):
            out.update(decisions=None, suppressed=True, actions=None, grant_rates=None)
            return out
        out.update(
            decisions=self.decisions,
            suppressed=False,
            actions={a: round(self.rate(self.actions.get(a, 0)), 4) for a in ACTIONS},
            grant_rates={
                c: round(self.rate(self.grants.get(c, 0)), 4) for c in OPTIONAL_CATEGORIES
            },
        )
        return out


def aggregate(rows: Iterable[DayCount], *, by: str, split: Iterable[str] = SPLITS) -> list[Group]:
    """Groups per period and per the ``split`` dimensions, sorted."""
    dims = tuple(split)
    for dim in dims:
        if dim not in SPLITS:
            raise ValueError(f"cannot split by {dim!r}; use {', '.join(SPLITS)}")
    groups: dict[tuple[str | None, ...], Group] = {}
    for row in rows:
        values = {d: getattr(row, d) if d in dims else None for d in SPLITS}
        key = (period_of(row.day, by), values["site"], values["locale"], values["policy_version"])
        group = groups.get(key)
        if group is None:
            group = groups[key] = Group(
                key[0] or "",
                site=values["site"],
                locale=values["locale"],
                policy_version=values["policy_version"],
            )
        group.add(row.action, row.granted, row.count)
    return [groups[k] for k in sorted(groups, key=lambda key: tuple(v or "" for v in key))]


def grant_series(groups: Iterable[Group], k: int) -> dict[str, list[tuple[str, float | None]]]:
    """Per optional category, ``(period, grant rate)`` in period order; ``None`` where the
    period had fewer than ``k`` decisions (a gap in the chart, never a small number)."""
    ordered = sorted(groups, key=lambda g: g.period)
    return {
        category: [
            (g.period, None if g.suppressed(k) else g.rate(g.grants.get(category, 0)))
            for g in ordered
        ]
        for category in OPTIONAL_CATEGORIES
    }


def fill_periods(groups: Sequence[Group], by: str) -> list[Group]:
    """Add empty periods between the first and last, so time runs evenly on the chart."""
    if not groups:
        return []
    known = {g.period: g for g in groups}
    start = period_start(min(known))
    end = period_start(max(known))
    step = timedelta(days=1 if by == "day" else 7)
    out = []
    current = start
    while current <= end:
        label = period_of(current.isoformat(), by)
        out.append(known.get(label) or Group(label))
        current += step
    return out


# -- SVG ---------------------------------------------------------------------------------


def svg_chart(
    series: Mapping[str, Sequence[tuple[str, float | None]]],
    *,
    labels: Mapping[str, str],
    title: str,
    empty_text: str,
    width: int = 720,
    height: int = 300,
    percent: Callable[[float], str] = lambda rate: f"{rate * 100:.1f} %",
) -> Markup:
    """A line chart of rates (0-100 %) over periods, as inline SVG: no script, no external
    resource, text escaped. A ``None`` value breaks the line."""
    left, right, top, bottom = 48, 150, 16, 40
    plot_w, plot_h = width - left - right, height - top - bottom
    periods = [p for p, _ in next(iter(series.values()), [])]
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" class="ck-chart" role="img" '
        f'viewBox="0 0 {width} {height}" width="{width}" height="{height}" '
        f'aria-labelledby="ck-chart-title">',
        f'<title id="ck-chart-title">{escape(title)}</title>',
    ]
    for pct in (0, 25, 50, 75, 100):
        y = top + plot_h * (1 - pct / 100)
        parts.append(
            f'<line x1="{left}" y1="{y:.1f}" x2="{left + plot_w}" y2="{y:.1f}" '
            f'stroke="#ddd" stroke-width="1"/>'
            f'<text x="{left - 6}" y="{y + 4:.1f}" text-anchor="end" font-size="11">{pct} %</text>'
        )
    if not periods:
        parts.append(
            f'<text x="{left + plot_w / 2:.1f}" y="{top + plot_h / 2:.1f}" text-anchor="middle" '
            f'font-size="13">{escape(empty_text)}</text></svg>'
        )
        return Markup("".join(parts))  # noqa: S704 - built from escaped values only

    def x_of(i: int) -> float:
        return left + (plot_w * i / (len(periods) - 1) if len(periods) > 1 else plot_w / 2)

    # At most ~8 period labels on the x axis.
    step = max(1, -(-len(periods) // 8))
    for i in range(0, len(periods), step):
        parts.append(
            f'<text x="{x_of(i):.1f}" y="{height - bottom + 16}" text-anchor="middle" '
            f'font-size="11">{escape(periods[i])}</text>'
        )
    for n, (category, points) in enumerate(series.items()):
        colour, dash = SERIES_STYLE.get(category, ("#333", ""))
        dash_attr = f' stroke-dasharray="{dash}"' if dash else ""
        segment: list[str] = []
        for i, (period, value) in enumerate(points):
            if value is None:
                parts.extend(_polyline(segment, colour, dash_attr))
                segment = []
                continue
            y = top + plot_h * (1 - value)
            segment.append(f"{x_of(i):.1f},{y:.1f}")
            parts.append(
                f'<circle cx="{x_of(i):.1f}" cy="{y:.1f}" r="2.5" fill="{colour}">'
                f"<title>{escape(labels.get(category, category))} {escape(period)}: "
                f"{escape(percent(value))}</title></circle>"
            )
        parts.extend(_polyline(segment, colour, dash_attr))
        ly = top + 14 + 20 * n
        parts.append(
            f'<line x1="{width - right + 12}" y1="{ly - 4}" x2="{width - right + 36}" '
            f'y2="{ly - 4}" stroke="{colour}" stroke-width="2.5"{dash_attr}/>'
            f'<text x="{width - right + 42}" y="{ly}" font-size="12">'
            f"{escape(labels.get(category, category))}</text>"
        )
    parts.append("</svg>")
    return Markup("".join(parts))  # noqa: S704 - built from escaped values only


def _polyline(points: list[str], colour: str, dash_attr: str) -> list[str]:
    if len(points) < 2:
        return []
    return [
        f'<polyline fill="none" stroke="{colour}" stroke-width="2.5"{dash_attr} '
        f'points="{" ".join(points)}"/>'
    ]


# -- text output -------------------------------------------------------------------------


def table_rows(groups: Iterable[Group], k: int, split: Sequence[str]) -> list[list[str]]:
    """Rows for a plain-text or CSV table: header first; percentages with one decimal."""
    header = ["period", *split, "decisions"]
    header += [f"{a} %" for a in ACTIONS[:3]] + [f"{c} granted %" for c in OPTIONAL_CATEGORIES]
    rows = [header]
    for g in groups:
        cells = [g.period, *[str(getattr(g, d)) for d in split]]
        if g.suppressed(k):
            cells += [f"<{k}"] + ["-"] * (3 + len(OPTIONAL_CATEGORIES))
        else:
            cells.append(str(g.decisions))
            cells += [f"{100 * g.rate(g.actions.get(a, 0)):.1f}" for a in ACTIONS[:3]]
            cells += [f"{100 * g.rate(g.grants.get(c, 0)):.1f}" for c in OPTIONAL_CATEGORIES]
        rows.append(cells)
    return rows


def format_table(rows: Sequence[Sequence[str]]) -> str:
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    lines = []
    for row in rows:
        lines.append(
            "  ".join(
                cell.rjust(w) if n else cell.ljust(w)
                for n, (cell, w) in enumerate(zip(row, widths, strict=True))
            ).rstrip()
        )
    return "\n".join(lines) + "\n"
