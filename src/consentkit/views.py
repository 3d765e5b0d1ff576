"""HTTP endpoints: record a decision, the preferences page, the receipt, gpc.json."""

from __future__ import annotations

import logging
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any, cast
from urllib.parse import unquote, urlsplit

from flask import (
    Blueprint,
    Response,
    current_app,
    jsonify,
    redirect,
    render_template,
    request,
)
from marshmallow import ValidationError
from werkzeug.exceptions import HTTPException, RequestEntityTooLarge

from .extension import (
    _request_consent,
    current_locale,
    get_state,
    gpc_signal,
    set_request_consent,
    template_context,
)
from .schemas import NEXT_MAX_LENGTH, DecisionSchema, RecordSchema
from .signals import consent_withdrawn, decision_recorded
from .state import UNDECIDED, decide
from .store import STORE_ERRORS, NewRecord, NoticeCopy
from .store.spool import record_or_spool, replay_some

log = logging.getLogger("consentkit")

#: When consentkit's handling of Global Privacy Control last changed (gpc.json).
GPC_LAST_UPDATE = "2026-11-22"
#: Form fields a host may add to every form (Flask-WTF's CSRF token); ignored here.
_HOST_FORM_FIELDS = frozenset({"csrf_token"})
_FORM_TYPES = ("application/x-www-form-urlencoded", "multipart/form-data")

_decision_schema = DecisionSchema()
_record_schema = RecordSchema()


def make_blueprint(url_prefix: str) -> Blueprint:
    bp = Blueprint(
        "consentkit",
        __name__,
        url_prefix=url_prefix,
        template_folder="templates",
        static_folder="static",
        static_url_path="/static",
    )
    bp.add_url_rule("", "decide", post_decision, methods=["POST"])
    bp.add_url_rule("", "preferences", preferences, methods=["GET"])
    bp.add_url_rule("/panel", "panel", panel, methods=["GET"])
    bp.add_url_rule("/receipt", "receipt", receipt, methods=["GET"])
    bp.add_url_rule("/receipt/download", "receipt_download", receipt_download, methods=["GET"])
    return bp


# -- helpers -----------------------------------------------------------------------------


def wants_json() -> bool:
    best = request.accept_mimetypes.best_match(["text/html", "application/json"])
    return best == "application/json"


def error_response(
    status: int, message: str, fields: dict[str, Any] | None = None, *, as_json: bool
) -> Response:
    if as_json:
        response = jsonify({"error": message, "fields": fields or {}})
    else:
        context = template_context()
        context.update(status=status, message=message, fields=fields or {})
        response = Response(
            render_template("consentkit/error.html", **context), mimetype="text/html"
        )
    response.status_code = status
    return response


def same_origin() -> bool:
    """Refuse a POST that a browser says comes from another site (CSRF protection that
    needs no token, so the cached no-JavaScript banner works)."""
    if request.headers.get("Sec-Fetch-Site", "") == "cross-site":
        return False
    origin = request.headers.get("Origin")
    if origin is not None:
        return _same_host(origin)
    referer = request.headers.get("Referer")
    if referer is not None:
        return _same_host(referer)
    return True  # not a browser form or fetch: nothing for a third site to forge


def _same_host(url: str) -> bool:
    try:
        parts = urlsplit(url)
    except ValueError:
        return False
    if parts.scheme not in ("http", "https") or not parts.netloc:
        return False
    return parts.netloc.lower() == request.host.lower()


def safe_next(value: str | None) -> str:
    """A same-site path to go back to, or ``/``. Anything that a browser could read as
    another host (``//evil``, ``/\\evil``, ``https://evil``, their %-encodings) is refused."""
    if not value:
        return "/"
    candidate = value
    for _ in range(3):  # also judge the decoded forms a browser or proxy may see
        if any(ord(ch) < 0x20 or ord(ch) == 0x7F for ch in candidate) or "\\" in candidate:
            return "/"
        if not candidate.startswith("/") or candidate.startswith("//"):
            return "/"
        try:
            parts = urlsplit(candidate)
        except ValueError:
            return "/"
        if parts.scheme or parts.netloc:
            return "/"
        decoded = unquote(candidate)
        if decoded == candidate:
            break
        candidate = decoded
    return value


def _form_payload() -> tuple[dict[str, Any], dict[str, Any]]:
    """The form as the schema's input, and errors for fields given twice."""
    form = request.form
    data: dict[str, Any] = {}
    errors: dict[str, Any] = {}
    for key in form:
        if key in _HOST_FORM_FIELDS:
            continue
        values = form.getlist(key)
        if key == "granted":
            data[key] = [v for v in values if v != ""]
        elif len(values) > 1:
            errors[key] = ["given more than once"]
        else:
            data[key] = values[0]
    return data, errors


def set_consent_cookie(response: Response, value: str) -> None:
    """Write the consent cookie with every attribute from configuration."""
    s = get_state().settings
    response.set_cookie(
        s.cookie_name,
        value,
        max_age=s.cookie_max_age,
        path=s.cookie_path,
        domain=s.cookie_domain,
        secure=s.cookie_secure,
        httponly=False,  # consentkit.js reads nothing from it, but hosts' scripts may
        samesite=s.cookie_samesite,
    )


# -- POST /consent -----------------------------------------------------------------------


def post_decision() -> Response:
    st = get_state()
    settings = st.settings
    mimetype = request.mimetype
    json_body = mimetype == "application/json"
    # A form posted by consentkit.js asks for JSON with its Accept header.
    as_json = json_body or wants_json()

    if not same_origin():
        return error_response(403, "cross-origin request refused", as_json=as_json)
    # Bound the body before Werkzeug reads it: larger is 413, nothing parsed.
    request.max_content_length = settings.max_body
    try:
        if request.content_length is None and request.environ.get("wsgi.input_terminated"):
            # A streamed (chunked) body has no length to refuse up front, and Werkzeug
            # stops reading at the limit without a word: the rest would be parsed as if
            # it were the whole body. Read one byte more than allowed to know.
            request.max_content_length = settings.max_body + 1
            if len(request.get_data(cache=True)) > settings.max_body:
                raise RequestEntityTooLarge()
        if mimetype == "application/json":
            body = request.get_json(silent=True)
            if not isinstance(body, dict):
                return error_response(
                    400,
                    "the body must be a JSON object",
                    {"_body": ["not a JSON object"]},
                    as_json=True,
                )
            data, dup_errors = body, dict[str, Any]()
        elif mimetype in _FORM_TYPES:
            data, dup_errors = _form_payload()
        else:
            return error_response(
                400,
                "send application/x-www-form-urlencoded or application/json",
                {"_body": [f"unsupported content type {mimetype or '(none)'!r}"]},
                as_json=as_json,
            )
    except RequestEntityTooLarge:
        return error_response(
            413, f"the body is larger than {settings.max_body} bytes", as_json=as_json
        )
    except HTTPException as exc:  # malformed multipart and the like
        return error_response(400, f"malformed request body: {exc.description}", as_json=as_json)

    if json_body and "next" in data:
        dup_errors = {**dup_errors, "next": ["only for form submissions"]}
    try:
        decision_in = _decision_schema.load(data)
    except ValidationError as exc:
        errors = {**exc.messages_dict, **dup_errors}
        return error_response(400, _summary(errors), errors, as_json=as_json)
    if dup_errors:
        return error_response(400, _summary(dup_errors), dup_errors, as_json=as_json)

    locale = decision_in["locale"]
    if locale is None:
        locale = current_locale()
    elif locale not in settings.locales:
        errors = {"locale": [f"must be one of {', '.join(settings.locales)}"]}
        return error_response(400, _summary(errors), errors, as_json=as_json)

    # The previous cookie, even under an older policy version, keeps the same consent id
    # so one visitor's history stays one subject.
    previous_cookie = st.codec.load_payload(request.cookies.get(settings.cookie_name))
    consent_id = previous_cookie.consent_id if previous_cookie else None
    signal = gpc_signal()
    notice = st.notice(locale)
    try:
        replay_some(st.store, st.spool)  # older spooled decisions first, bounded in time
        previous_granted = (
            st.store.last_granted(st.subjects(consent_id)) if consent_id else None
        ) or []
        log_readable = True
    except STORE_ERRORS:
        # The log cannot be read: the visitor's own cookie says what they granted last,
        # and the decision goes to the outage spool.
        previous_granted = list(previous_cookie.granted_categories) if previous_cookie else []
        log_readable = False
    try:
        decision = decide(
            action=decision_in["action"],
            requested=decision_in["granted"],
            previous_granted=previous_granted,
            consent_id=consent_id,
            policy_version=settings.policy_version,
            gpc_signal=signal,
            gpc_mode=settings.gpc,
        )
        new_state = decision.state
        consent_id = cast(str, new_state.consent_id)  # decide() always sets both
        issued_at = cast(datetime, new_state.issued_at)
        subject = st.subjects(consent_id)[0]
        record_id = record_or_spool(
            st.store,
            st.spool,
            NewRecord(
                event_id=uuid.uuid4().hex,
                occurred_at=datetime.now(UTC),
                site=settings.site,
                subject=subject,
                action=decision.action,
                surface=decision_in["surface"],
                granted=decision.granted,
                denied=decision.denied,
                withdrawn=decision.withdrawn,
                policy_version=settings.policy_version,
                locale=locale,
                notice_hash=notice.hash,
                gpc=new_state.gpc,
                expires_at=issued_at + timedelta(seconds=settings.cookie_max_age),
            ),
            NoticeCopy(notice.hash, locale, settings.policy_version, notice.canonical),
            store_reachable=log_readable,
        )
    except STORE_ERRORS:
        # Neither logged nor spooled: not acknowledged, so nothing is lost; the visitor
        # keeps the banner and can retry.
        log.exception("consentkit: could not record a decision")
        return error_response(
            503, "the consent could not be recorded; please try again", as_json=as_json
        )

    app = current_app._get_current_object()  # type: ignore[attr-defined]
    decision_recorded.send(app, decision=decision, record_id=record_id, subject=subject)
    if decision.withdrawn:
        consent_withdrawn.send(
            app,
            categories=decision.withdrawn,
            subject=subject,
            consent_id=new_state.consent_id,
        )

    # The rest of this request sees the new choice; the cookie guard expires the cookies
    # of the categories it withdrew.
    set_request_consent(new_state, withdrawn=decision.withdrawn)
    if as_json:
        response = jsonify(st.state_json(new_state, gpc_signal=signal))
    else:
        response = cast(Response, redirect(safe_next(decision_in["next"]), code=303))
    set_consent_cookie(response, st.codec.dumps(new_state))
    response.headers["Cache-Control"] = "no-store"
    return response


def _summary(errors: dict[str, Any]) -> str:
    parts = []
    for name, messages in errors.items():
        text = messages if isinstance(messages, str) else _flatten(messages)
        parts.append(f"{name}: {text}")
    return "invalid decision: " + "; ".join(parts)


def _flatten(messages: Any) -> str:
    if isinstance(messages, dict):
        return "; ".join(f"item {k}: {_flatten(v)}" for k, v in messages.items())
    if isinstance(messages, list):
        return " ".join(_flatten(m) for m in messages)
    return str(messages)


# -- GET /consent ------------------------------------------------------------------------


def preferences() -> Response:
    st = get_state()
    state = _request_consent()
    if wants_json():
        response = jsonify(st.state_json(state, gpc_signal=gpc_signal()))
    else:
        context = template_context()
        context["next"] = safe_next(request.args.get("next"))
        response = Response(
            render_template("consentkit/preferences.html", **context), mimetype="text/html"
        )
    response.headers["Cache-Control"] = "no-store"
    return response


# -- GET /consent/panel: the in-page second layer, fetched by consentkit.js -------------


def panel() -> Response:
    """The confirmation and the preferences dialog of consentkit/panel.html, as an HTML
    fragment: a returning visitor's pages leave them out, and consentkit.js fetches them
    when "Manage cookies" is used. ``locale`` is the page's (a site may choose it by URL,
    which this request does not share) and ``next`` the page to come back to."""
    st = get_state()
    locale = request.args.get("locale")
    if locale is None:
        locale = current_locale()
    elif locale not in st.settings.locales:
        problem = f"must be one of {', '.join(st.settings.locales)}"
        return error_response(
            400, f"locale: {problem}", {"locale": [problem]}, as_json=wants_json()
        )
    back = request.args.get("next")
    context = template_context(locale)
    # The decision form would refuse a longer ``next`` (DecisionSchema): the page instead.
    fits = back is not None and len(back) <= NEXT_MAX_LENGTH
    context["ck_here"] = safe_next(back) if fits else "/"
    context["ck_fragment"] = True
    response = Response(render_template("consentkit/panel.html", **context), mimetype="text/html")
    response.headers["Cache-Control"] = "no-store"
    return response


# -- GET /consent/receipt ----------------------------------------------------------------


def receipt() -> Response:
    st = get_state()
    settings = st.settings
    # The receipt shows a visitor's history even after a policy change, as long as the
    # cookie is authentic and unexpired.
    cookie_state = st.codec.load_payload(request.cookies.get(settings.cookie_name))
    records: list[dict[str, Any]] = []
    if cookie_state is not None and cookie_state.consent_id:
        try:
            records = st.store.history(st.subjects(cookie_state.consent_id))
        except STORE_ERRORS:
            log.exception("consentkit: could not read a receipt")
            return error_response(
                503,
                "your history cannot be shown right now; please try again",
                as_json=wants_json(),
            )
    current = (
        cookie_state
        if cookie_state is not None and cookie_state.policy_version == settings.policy_version
        else UNDECIDED
    )
    if wants_json():
        response = jsonify(
            {
                "consent_id": cookie_state.consent_id if cookie_state else None,
                "state": st.state_json(current, gpc_signal=gpc_signal()),
                "records": _record_schema.dump(records, many=True),
            }
        )
    else:
        context = template_context()
        context.update(
            records=records,
            consent_id=cookie_state.consent_id if cookie_state else None,
            receipt_state=current,
        )
        response = Response(
            render_template("consentkit/receipt.html", **context), mimetype="text/html"
        )
    response.headers["Cache-Control"] = "no-store"
    return response


# -- GET /consent/receipt/download: the visitor's history as a file (GDPR Art. 15) -------


def receipt_download() -> Response:
    """The same document as ``flask consentkit subject``, for the visitor's own cookie."""
    from .access import history_document
    from .store.dpo import notices_for

    st = get_state()
    cookie_state = st.codec.load_payload(request.cookies.get(st.settings.cookie_name))
    if cookie_state is None or not cookie_state.consent_id:
        return error_response(404, "this browser has no recorded cookie choice", as_json=True)
    subjects = st.subjects(cookie_state.consent_id)
    try:
        records = st.store.history(subjects)
        notices = notices_for(st.store, {r["notice_hash"] for r in records})
    except STORE_ERRORS:
        log.exception("consentkit: could not read a receipt")
        return error_response(503, "your history cannot be read right now", as_json=True)
    document = history_document(
        records,
        [(n.notice_hash, n.locale, n.policy_version, n.texts) for n in notices],
        consent_id=cookie_state.consent_id,
        subjects=subjects,
        generated_at=datetime.now(UTC),
    )
    response = jsonify(document)
    response.headers["Content-Disposition"] = 'attachment; filename="my-cookie-choices.json"'
    response.headers["Cache-Control"] = "no-store"
    return response


# -- /.well-known/gpc.json ---------------------------------------------------------------


def well_known_gpc() -> Response:
    honoured = get_state().settings.gpc == "strict"
    response = jsonify({"gpc": honoured, "lastUpdate": GPC_LAST_UPDATE})
    response.headers["Cache-Control"] = "public, max-age=86400"
    return response
