"""The DPO's web pages under ``<prefix>/admin/``: a statistics dashboard and a streamed export.

Refused with 404 when the site gave no ``admin_authorization`` callable (the pages do not
exist for it) and with 403 when the callable returns a false value. Every download is
recorded in the log's ledger, like a command-line export.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

from babel.numbers import format_percent
from flask import Blueprint, Response, abort, render_template, request, stream_with_context
from werkzeug.datastructures import MultiDict

from . import export, stats
from .extension import get_state, template_context
from .integrity import LogKeys
from .state import ACTIONS
from .store import RecordFilter, dpo

_MIMETYPES = {
    "csv": "text/csv; charset=utf-8",
    "json": "application/json",
    "ndjson": "application/x-ndjson",
}
_CHUNK = 64 * 1024


def make_admin_blueprint(url_prefix: str) -> Blueprint:
    bp = Blueprint("consentkit_admin", __name__, url_prefix=url_prefix + "/admin")
    bp.before_request(_authorise)
    bp.add_url_rule("/", "index", index)
    bp.add_url_rule("/stats", "stats", stats_page)
    bp.add_url_rule("/export", "export", export_download)
    bp.add_url_rule("/export/notices.json", "export_notices", notices_download)
    return bp


def _authorise() -> None:
    check = get_state().admin_authorization
    if check is None:
        abort(404)
    if not check():
        abort(403)


def _no_store(response: Response) -> Response:
    response.headers["Cache-Control"] = "no-store"
    return response


def _time_arg(args: MultiDict[str, str], name: str, *, end: bool) -> datetime | None:
    value = args.get(name, "").strip()
    if not value:
        return None
    try:
        return export.parse_utc(value, end=end)
    except ValueError:
        abort(400, description=f"{name}: expected a date (YYYY-MM-DD) or a date and time")


def _filters(args: MultiDict[str, str]) -> RecordFilter:
    actions = args.getlist("action")
    for action in actions:
        if action not in ACTIONS:
            abort(400, description=f"action: expected one of {', '.join(ACTIONS)}")
    since = _time_arg(args, "since", end=False)
    until = _time_arg(args, "until", end=True)
    if since is not None and until is not None and since >= until:
        abort(400, description="since must be before until")
    return RecordFilter(
        since=since,
        until=until,
        site=args.get("site") or None,
        actions=tuple(actions),
        policy_version=args.get("policy_version") or None,
    )


def _described(filters: RecordFilter) -> dict[str, Any]:
    return {
        "since": export.iso(filters.since) if filters.since else None,
        "until": export.iso(filters.until) if filters.until else None,
        "site": filters.site,
        "actions": list(filters.actions),
        "policy_version": filters.policy_version,
    }


# -- pages -------------------------------------------------------------------------------


def index() -> Response:
    context = template_context()
    context.update(formats=export.FORMATS, actions=ACTIONS)
    return _no_store(
        Response(render_template("consentkit/admin/index.html", **context), mimetype="text/html")
    )


def stats_page() -> Response:
    by = request.args.get("by", "week")
    if by not in stats.PERIODS:
        abort(400, description=f"by: expected one of {', '.join(stats.PERIODS)}")
    filters = _filters(request.args)
    st = get_state()
    k = st.settings.stats_min_count
    counts = dpo.decision_counts(st.store, filters)
    totals = stats.fill_periods(stats.aggregate(counts, by=by, split=()), by)
    detail = stats.aggregate(counts, by=by, split=stats.SPLITS)
    context = template_context()
    _ = context["_"]
    labels = {c["name"]: c["title"] for c in context["texts"]["categories"]}

    def pct(rate: float) -> str:
        return format_percent(rate, "#,##0.0 %", locale=context["ck_locale"])

    chart = stats.svg_chart(
        stats.grant_series(totals, k),
        labels=labels,
        title=_("Share of decisions granting each category"),
        empty_text=_("No decision in this period."),
        percent=pct,
    )
    context.update(
        chart=chart,
        totals=[g for g in totals if g.decisions],
        detail=detail,
        k=k,
        by=by,
        labels=labels,
        args=request.args,
        optional=[c for c in labels if c != "functional"],
        pct=pct,
    )
    return _no_store(
        Response(render_template("consentkit/admin/stats.html", **context), mimetype="text/html")
    )


def _keys() -> LogKeys:
    return LogKeys(get_state().settings.log_keys)


def _notices_of(hashes: set[str]) -> dict[str, Any]:
    return {
        n.notice_hash: export.notice_entry(n.locale, n.policy_version, n.texts)
        for n in dpo.notices_for(get_state().store, hashes)
    }


def _batched(chunks: Iterator[str]) -> Iterator[bytes]:
    buffer: list[str] = []
    size = 0
    for chunk in chunks:
        buffer.append(chunk)
        size += len(chunk)
        if size >= _CHUNK:
            yield "".join(buffer).encode("utf-8")
            buffer, size = [], 0
    if buffer:
        yield "".join(buffer).encode("utf-8")


def export_download() -> Response:
    """The log as a streamed download (CSV with a BOM for Excel, JSON with the notice texts
    as a section, or NDJSON); recorded in the ledger once the stream ends."""
    fmt = request.args.get("format", "csv")
    if fmt not in export.FORMATS:
        abort(400, description=f"format: expected one of {', '.join(export.FORMATS)}")
    filters = _filters(request.args)
    st = get_state()
    keys = _keys()
    tally = export.Tally(dpo.iter_export_records(st.store, filters))
    chunks = export.iter_export(
        fmt, tally, bom=fmt == "csv", notices=lambda: _notices_of(tally.notice_hashes)
    )
    user = request.remote_user

    def generate() -> Iterator[bytes]:
        completed = False
        try:
            yield from _batched(chunks)
            completed = True
        finally:
            dpo.record_operation(
                st.store,
                keys,
                "export",
                {
                    "via": "web",
                    "user": user,
                    "format": fmt,
                    "filters": _described(filters),
                    "records": tally.count,
                    "completed": completed,
                },
            )

    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    response = Response(stream_with_context(generate()), mimetype=_MIMETYPES[fmt])
    response.headers["Content-Disposition"] = f'attachment; filename="consent-log-{stamp}.{fmt}"'
    return _no_store(response)


def notices_download() -> Response:
    """The notice texts the records of the same filters reference (goes with a CSV or
    NDJSON download)."""
    filters = _filters(request.args)
    st = get_state()
    hashes = dpo.notice_hashes(st.store, filters)
    response = Response(export.notices_document(_notices_of(hashes)), mimetype="application/json")
    response.headers["Content-Disposition"] = 'attachment; filename="consent-notices.json"'
    return _no_store(response)
