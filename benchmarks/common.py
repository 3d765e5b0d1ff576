"""Shared pieces of the benchmarks: the apps compared, reporting, machine description.

Every benchmark compares two things measured in the same run (interleaved where it can),
because these machines are noisy: the target is a ratio, never an absolute time.
"""

from __future__ import annotations

import os
import platform
import statistics
import sys
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from flask import Flask, render_template
from jinja2 import DictLoader

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))  # pgserver

SECRET = "benchmark-secret-key-0123456789abcdef"

# A realistic article page: navigation, a long body, a footer. The baseline renders the same
# page with the consentkit helpers replaced by empty strings.
ARTICLE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>{{ title }}</title>
<link rel="stylesheet" href="/static/site.css">
{{ consentkit_head() }}
</head><body>
<header><nav>{% for section in sections %}<a href="/{{ section|lower }}/">{{ section }}</a> {% endfor %}</nav></header>
<main><article><h1>{{ title }}</h1>
{% for paragraph in paragraphs %}<p>{{ paragraph }}</p>
{% endfor %}</article>
<aside><ul>{% for item in related %}<li><a href="/article/{{ item.id }}">{{ item.title }}</a></li>{% endfor %}</ul></aside>
{% if consent.granted("statistics") %}<script src="/static/stats.js" defer></script>{% endif %}
</main>
<footer>{{ consentkit_banner() }}</footer>
</body></html>
"""
CONTEXT: dict[str, Any] = {
    "title": "Night trains are back",
    "sections": ["World", "Europe", "Climate", "Culture", "Science", "Sport", "Economy"],
    "paragraphs": [
        f"Paragraph {i}: three new sleeper lines open across Europe this winter, "
        "with couchettes, a dining car and bicycles welcome on board."
        for i in range(30)
    ],
    "related": [{"id": i, "title": f"Related story {i}"} for i in range(10)],
}


class _Granted:
    def granted(self, _name: str) -> bool:
        return True


def make_app(*, with_consentkit: bool, database_uri: str | None = None) -> Flask:
    from consentkit import ConsentKit

    app = Flask("bench", instance_path=tempfile.mkdtemp(prefix="ck-bench-"))
    app.config.update(SECRET_KEY=SECRET, CONSENTKIT_COOKIE_SECURE=False)
    if with_consentkit:
        if database_uri:
            app.config["CONSENTKIT_DATABASE_URI"] = database_uri
        ConsentKit(app)
    else:
        app.jinja_env.globals.update(
            consentkit_head=lambda: "", consentkit_banner=lambda: "", consent=_Granted()
        )

    # A template file as a real site has: compiled once, then rendered per request.
    app.jinja_loader = DictLoader({"article.html": ARTICLE})

    @app.get("/article")
    def article() -> str:
        return render_template("article.html", **CONTEXT)

    return app


@dataclass
class Result:
    bid: str
    what: str
    measured: float
    target: str
    passed: bool | None  # None: reported only
    unit: str = ""

    def line(self) -> str:
        verdict = {True: "PASS", False: "FAIL", None: "REPORT"}[self.passed]
        return f"{self.bid:4} {self.what:72} {self.measured:>12.3f}{self.unit:6} target {self.target:>10}  {verdict}"


RESULTS: list[Result] = []


def report(result: Result) -> Result:
    RESULTS.append(result)
    print(result.line(), flush=True)
    return result


def median_ratio(first: list[float], second: list[float]) -> float:
    return statistics.median(first) / statistics.median(second)


def interleave(
    a: Callable[[], object], b: Callable[[], object], n: int
) -> tuple[list[float], list[float]]:
    """Run ``a`` and ``b`` alternately ``n`` times each; per-call seconds of each."""
    import time

    ta: list[float] = []
    tb: list[float] = []
    for i in range(n):
        pair = ((a, ta), (b, tb)) if i % 2 == 0 else ((b, tb), (a, ta))
        for fn, out in pair:
            start = time.perf_counter()
            fn()
            out.append(time.perf_counter() - start)
    return ta, tb


def machine() -> str:
    mem = ""
    try:
        with open("/proc/meminfo") as fh:
            mem = fh.readline().split()[1]
            mem = f", {int(mem) // 1024 // 1024} GiB RAM"
    except OSError:
        pass
    return (
        f"{os.cpu_count()} cores{mem}, {platform.machine()}, Linux {platform.release()}, "
        f"Python {platform.python_version()}"
    )
