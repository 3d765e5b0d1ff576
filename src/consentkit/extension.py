"""The Flask extension: configuration, per-request state, Jinja helpers, blueprint, CLI."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, cast

from flask import (
    Flask,
    Request,
    Response,
    current_app,
    g,
    render_template,
    request,
)
from jinja2.utils import htmlsafe_json_dumps
from markupsafe import Markup
from werkzeug.local import LocalProxy

from . import fragments, i18n
from .categories import Catalogue, Category, build_catalogue, localise
from .config import DEFAULTS, ConfigError, Settings, load_settings, option_key
from .cookie import ConsentCookieCodec
from .integrity import LogKeys
from .keys import derive_key, subject_hashes
from .notice import Notice, build_notice
from .schemas import state_json
from .state import UNDECIDED, ConsentState
from .store import ConsentStore
from .store.spool import Spool

if TYPE_CHECKING:  # guard.py imports this module
    from .guard import CookieGuard

EXTENSION_KEY = "consentkit"
#: Where a request's :class:`Visit` is kept, in ``g``. Measured through gunicorn, this
#: costs less than keeping it on the request object or in the WSGI environ: reading an
#: object's ``__dict__`` makes CPython (3.11+) stop keeping its attributes inline, which
#: slows every later read of them, and the request's are read all through a request.
_G_VISIT = "_consentkit_visit"
#: Longer Cookie and Accept-Language headers are read every time rather than remembered:
#: 4,096 remembered sets of headers, with a head of about 1 KB each, stay under 15 MB.
_MEMO_HEADER_LENGTH = 2048
_MEMO_LANGUAGES_LENGTH = 256
_NO_EXPIRY = float("inf")

LocaleSelector = Callable[[], Any]
AdminCheck = Callable[[], bool]
NonceProvider = Callable[[], str | None]


@dataclass
class ConsentKitState:
    """Everything consentkit keeps for one app (``app.extensions["consentkit"]``)."""

    settings: Settings
    catalogue: Catalogue
    codec: ConsentCookieCodec
    store: ConsentStore
    subject_keys: tuple[bytes, ...]
    locale_selector: LocaleSelector | None
    admin_authorization: AdminCheck | None
    notices: dict[str, Notice] = field(default_factory=dict)
    #: The CSP nonce of the current request (``None``: Flask-Talisman's, if any).
    csp_nonce: NonceProvider | None = None
    #: The head and banner markup, rendered once per variant (see fragments.py).
    fragments: fragments.FragmentCache = field(default_factory=fragments.FragmentCache)
    #: Locale negotiated per Accept-Language value, and state JSON per visitor state: a
    #: returning visitor's page repeats both (bounded by fragments.remember).
    header_locales: dict[str, str] = field(default_factory=dict)
    state_json_cache: dict[tuple[str, bool], str] = field(default_factory=dict)
    #: What a request's headers gave before (see :class:`Seen`), per (Cookie,
    #: Accept-Language, Sec-GPC, script root): a visitor's browser sends the same headers
    #: page after page, and one look-up replaces parsing, verifying and rendering.
    seen: dict[tuple[str, str, str, str], Seen] = field(default_factory=dict)
    #: Whether a page's locale depends on its request headers only (no locale selector,
    #: no Flask-Babel) and it has no nonce provider: then :class:`Seen` also keeps the
    #: locale and the head markup.
    headers_decide: bool = False
    #: Where decisions wait while the database is unreachable (``None``: no spool).
    spool: Spool | None = None
    #: The app's Jinja environment (``app.jinja_env`` is a Python-level property).
    jinja_env: Any = None

    def notice(self, locale: str) -> Notice:
        """The texts shown in ``locale``, built once: they depend only on configuration."""
        found = self.notices.get(locale)
        if found is None:
            found = build_notice(
                locale=locale,
                translations=i18n.translations(locale),
                catalogue=self.catalogue,
                policy_version=self.settings.policy_version,
                controller=self.settings.controller,
                policy_url=self.settings.policy_url,
                statistics_anonymous=self.settings.statistics_anonymous,
            )
            self.notices[locale] = found
        return found

    def state_json(self, consent: ConsentState, *, gpc_signal: bool) -> dict[str, Any]:
        """The contract's state JSON under this app's policy version and cookie lifetime."""
        return state_json(
            consent,
            policy_version=self.settings.policy_version,
            max_age=self.settings.cookie_max_age,
            gpc_signal=gpc_signal,
        )

    def subjects(self, consent_id: str) -> list[str]:
        """The subject hash under the current key first, then under older keys."""
        return subject_hashes(self.subject_keys, consent_id)


class ConsentKit:
    """Cookie consent for a Flask app.

    ``ConsentKit(app)`` or ``ext = ConsentKit(); ext.init_app(app)``. Keyword options are
    the ``CONSENTKIT_*`` keys in lower case without the prefix (``policy_version="2"``) and
    beat the app's config, plus:

    - ``categories``: :class:`~consentkit.Category` declarations (cookies, text overrides);
    - ``locale_selector``: a callable returning the page's locale (Flask-Babel's
      ``get_locale`` is used automatically when Flask-Babel is installed on the app);
    - ``admin_authorization``: a callable returning ``True`` when the current user may use
      the DPO pages under ``/consent/admin/``;
    - ``csp_nonce``: a callable returning the current request's Content-Security-Policy
      nonce, put on the tags consentkit renders (default: Flask-Talisman's
      ``request.csp_nonce`` when present).
    """

    def __init__(
        self,
        app: Flask | None = None,
        *,
        categories: Iterable[Category] = (),
        locale_selector: LocaleSelector | None = None,
        admin_authorization: AdminCheck | None = None,
        csp_nonce: NonceProvider | None = None,
        **options: Any,
    ) -> None:
        self.categories = tuple(categories)
        self.locale_selector = locale_selector
        self.admin_authorization = admin_authorization
        self.csp_nonce = csp_nonce
        self.options = {option_key(k): v for k, v in options.items()}
        for key in self.options:
            if key not in DEFAULTS:
                raise ConfigError(key, "unknown ConsentKit option")
        if app is not None:
            self.init_app(app)

    def init_app(self, app: Flask) -> None:
        if EXTENSION_KEY in app.extensions:
            raise RuntimeError(
                "consentkit is already initialised on this app; call init_app once per app"
            )
        for key, value in DEFAULTS.items():
            app.config.setdefault(key, value)
        config = {**app.config, **self.options}
        settings = load_settings(
            config, instance_path=app.instance_path, available_locales=i18n.available_locales()
        )
        catalogue = build_catalogue(self.categories)
        _check_declared_texts(catalogue, settings.locales)
        subject_keys = settings.subject_keys or tuple(
            derive_key(k, "subject") for k in reversed(settings.secret_keys)
        )
        state = ConsentKitState(
            settings=settings,
            catalogue=catalogue,
            codec=ConsentCookieCodec(settings.secret_keys, max_age=settings.cookie_max_age),
            store=ConsentStore.from_uri(settings.database_uri),
            subject_keys=subject_keys,
            locale_selector=self.locale_selector,
            admin_authorization=self.admin_authorization,
            csp_nonce=self.csp_nonce,
        )
        app.extensions[EXTENSION_KEY] = state
        state.headers_decide = self.locale_selector is None and self.csp_nonce is None
        # Every record this app appends is MAC'd (tamper evidence, consentkit.integrity).
        state.store.use_log_keys(LogKeys(settings.log_keys))
        if settings.spool_dir is not None:
            state.spool = Spool(settings.spool_dir)

        from .cli import consentkit_cli
        from .views import make_blueprint, well_known_gpc

        blueprint = make_blueprint(settings.url_prefix)
        # consentkit checks the origin of every decision itself; a host's Flask-WTF token
        # check would refuse the banner's forms (cached pages, no session): exempt that one
        # endpoint, now or, when CSRFProtect is set up after consentkit, on the first
        # request to consentkit's own pages. URL value preprocessors run before any
        # before_request hook (CSRFProtect's is one), and a blueprint's only for its own
        # endpoints, so a site's other pages pay nothing for this.
        if not _exempt_from_host_csrf(app):
            pending = [True]

            def exempt_late(_endpoint: str | None, _values: dict[str, Any] | None) -> None:
                if pending:
                    pending.clear()
                    _exempt_from_host_csrf(app)

            blueprint.url_value_preprocessor(exempt_late)
        app.register_blueprint(blueprint)
        from .admin import make_admin_blueprint

        app.register_blueprint(make_admin_blueprint(settings.url_prefix))
        app.add_url_rule(
            "/.well-known/gpc.json", endpoint="consentkit_gpc", view_func=well_known_gpc
        )
        state.jinja_env = app.jinja_env
        app.jinja_env.globals.update(
            consent=TemplateConsent(),
            consentkit_head=consentkit_head,
            consentkit_banner=consentkit_banner,
        )
        app.jinja_env.filters["ck_title"] = _category_title
        # Gated elements, and one after_request hook for the cookie guard and Vary (a
        # returning visitor's page pays for one hook).
        from .gating import JINJA_GLOBALS
        from .guard import CookieGuard

        app.jinja_env.globals.update(JINJA_GLOBALS)
        app.after_request(_after_request(CookieGuard()))
        app.cli.add_command(consentkit_cli)
        from .health import health

        app.add_url_rule(
            settings.url_prefix + "/health", endpoint="consentkit_health", view_func=health
        )

    @staticmethod
    def state(app: Flask | None = None) -> ConsentKitState:
        return get_state(app)


def _exempt_from_host_csrf(app: Flask) -> bool:
    """Exempt ``POST /consent`` from Flask-WTF's ``CSRFProtect`` if the host installed it."""
    csrf = app.extensions.get("csrf")
    exempt = getattr(csrf, "exempt", None)
    if exempt is None:
        return False
    from .views import post_decision

    exempt(f"{post_decision.__module__}.{post_decision.__name__}")
    return True


def _check_declared_texts(catalogue: Catalogue, locales: tuple[str, ...]) -> None:
    """A declared text given per locale must exist in every locale the site serves; a
    missing one would put another language inside the banner."""
    for category in catalogue.categories:
        for cookie in category.cookies:
            for label in ("purpose", "lifetime"):
                for locale in locales:
                    try:
                        localise(getattr(cookie, label), locale)
                    except KeyError:
                        raise ConfigError(
                            "categories",
                            f"cookie {cookie.name!r} ({category.name}) has no {label} "
                            f"in {locale!r}",
                        ) from None


def get_state(app: Flask | None = None) -> ConsentKitState:
    target = app if app is not None else current_app
    try:
        return cast(ConsentKitState, target.extensions[EXTENSION_KEY])
    except KeyError:
        raise RuntimeError("consentkit is not initialised on this app") from None


def gpc_signal() -> bool:
    """Global Privacy Control: the header is honoured only when it is exactly ``1``."""
    visit = _visit()
    return visit.gpc if visit is not None else False


class Seen:
    """What one set of request headers gave: the consent the cookie grants (until when),
    and, when those headers alone decide them (``ConsentKitState.headers_decide``), the
    locale and the head markup. A visitor's next page starts from it."""

    __slots__ = ("banner_key", "consent", "cookie_value", "head", "locale", "valid_until")

    def __init__(self, consent: ConsentState, cookie_value: str, valid_until: float) -> None:
        self.consent = consent
        self.cookie_value = cookie_value
        self.valid_until = valid_until
        self.locale: str | None = None
        self.head: Markup | None = None
        self.banner_key: tuple[Any, ...] | None = None


class Visit:
    """What consentkit works out about the current request, each part once and on first
    use: the helpers of one page share it instead of each going through Flask's context
    proxies, which cost more than the helpers' own work (benchmark B1)."""

    __slots__ = (
        "_here",
        "_locale",
        "_nonce",
        "app",
        "consent",
        "consent_from_cookie",
        "cookie_value",
        "request",
        "seen",
        "seen_key",
        "st",
        "withdrawn",
    )

    def __init__(self, app: Flask, req: Request) -> None:
        self.app = app
        self.st: ConsentKitState = app.extensions[EXTENSION_KEY]  # no cast(): a call
        self.request = req
        #: The consent state once the cookie has been read (then responses vary on it).
        self.consent: ConsentState | None = None
        #: Whether ``consent`` is what the cookie says (not a decision of this request),
        #: and that cookie's value ("" when absent).
        self.consent_from_cookie = False
        self.cookie_value = ""
        #: Categories a decision of this request withdrew (set by ``POST /consent``): its
        #: response expires their cookies (consentkit.guard).
        self.withdrawn: tuple[str, ...] | None = None
        self._locale: str | None = None
        self._nonce: tuple[str | None] | None = None
        self._here: str | None = None
        #: What these request headers gave before, and the key to remember them under
        #: (``None``: not remembered, the Cookie header is too long).
        self.seen: Seen | None = None
        self.seen_key: tuple[str, str, str, str] | None = None

    def read_consent(self) -> ConsentState:
        consent = self.consent
        if consent is not None:
            return consent
        st = self.st
        environ = self.request.environ
        header = environ.get("HTTP_COOKIE") or ""
        languages = environ.get("HTTP_ACCEPT_LANGUAGE") or ""
        # Long headers are not remembered: they keep the memo's memory small.
        if len(header) <= _MEMO_HEADER_LENGTH and len(languages) <= _MEMO_LANGUAGES_LENGTH:
            key = (
                header,
                languages,
                "1" if environ.get("HTTP_SEC_GPC") == "1" else "",
                self.request.root_path,
            )
            self.seen_key = key
            seen = st.seen.get(key)
            if seen is not None and time.time() <= seen.valid_until:
                self.seen = seen
                self.cookie_value = seen.cookie_value
                self.consent_from_cookie = True
                consent = self.consent = seen.consent
                if seen.locale is not None:
                    self._locale = seen.locale
                return consent
        # Parsed, verified (or found in the codec's own memo) and remembered.
        value = self.request.cookies.get(st.settings.cookie_name, "") if header else ""
        self.cookie_value = value
        codec = st.codec
        consent = codec.loads(value, policy_version=st.settings.policy_version)
        self.consent = consent
        self.consent_from_cookie = True
        # Remembered when decided (until the cookie expires) or when there is no consent
        # cookie at all. A cookie that did not verify is not: it may verify later (signed
        # by a server whose clock is a little ahead, say), and must then count.
        if self.seen_key is not None:
            if consent.decided or not value:
                valid_until = codec.valid_until(consent) if consent.decided else _NO_EXPIRY
                self.seen = Seen(consent, value, valid_until)
                fragments.remember(st.seen, self.seen_key, self.seen)
            else:
                st.seen.pop(self.seen_key, None)  # an expired one, say
        return consent

    @property
    def gpc(self) -> bool:
        """Global Privacy Control: honoured only when the header is exactly ``1``."""
        # Read from the WSGI environ: Werkzeug's header lookup raises and catches an
        # exception for every header a request does not have, and most lack this one.
        return bool(self.request.environ.get("HTTP_SEC_GPC") == "1")

    @property
    def locale(self) -> str:
        if self._locale is None:
            self._locale = self._negotiate_locale()
        return self._locale

    def _negotiate_locale(self) -> str:
        st = self.st
        supported = st.settings.locales
        found: str | None = None
        if st.locale_selector is not None:
            found = i18n.match_locale(st.locale_selector(), supported)
        elif "babel" in self.app.extensions:
            try:
                from flask_babel import get_locale
            except ImportError:  # another "babel" extension: fall through to the header
                pass
            else:
                found = i18n.match_locale(get_locale(), supported)
        if found is None:
            # Browsers send a handful of distinct Accept-Language values: negotiate each
            # once.
            header = self.request.environ.get("HTTP_ACCEPT_LANGUAGE", "")
            found = st.header_locales.get(header)
            if found is None:
                values = self.request.accept_languages.values()
                found = i18n.negotiate(values, supported) or ""
                if len(header) <= _MEMO_LANGUAGES_LENGTH:
                    fragments.remember(st.header_locales, header, found)
        return found or st.settings.default_locale

    def page_seen(self) -> Seen | None:
        """What these headers gave before, if this page may reuse the markup kept there: its
        consent is the cookie's, it has no CSP nonce and templates are not reloading."""
        seen = self.seen
        if (
            seen is not None
            and self.consent_from_cookie
            and self.nonce is None
            and not self.st.jinja_env.auto_reload
        ):
            return seen
        return None

    def remembers_page_parts(self) -> bool:
        """Whether this request's locale and head are what its headers alone give (then
        :class:`Seen` keeps them for the visitor's next page)."""
        return (
            self.page_seen() is not None
            and self.st.headers_decide
            and "babel" not in self.app.extensions
        )

    @property
    def nonce(self) -> str | None:
        """The page's CSP nonce from the app's provider, else Flask-Talisman's, else None."""
        if self._nonce is None:
            provider = self.st.csp_nonce
            value = provider() if provider is not None else _talisman_nonce(self.request)
            self._nonce = (str(value) if value else None,)
        return self._nonce[0]

    @property
    def here(self) -> str:
        """The current page as a same-site path, for the banner forms' ``next``."""
        if self._here is None:
            req = self.request
            query = req.query_string.decode("latin-1")
            # With the script root: the answer to a decision redirects to it as it is.
            self._here = req.root_path + req.path + ("?" + query if query else "")
        return self._here

    def fragment(
        self,
        key: tuple[Any, ...],
        build: Callable[[], str],
        state_json: Callable[[], str] | None = None,
    ) -> Markup:
        """Render through the per-app fragment cache (directly while templates
        auto-reload)."""
        nonce = self.nonce
        if self.st.jinja_env.auto_reload:
            return fragments.fill(build(), here=self.here, nonce=nonce, state_json=state_json)
        return self.st.fragments.render(
            self.variant_key(key), build, here=self.here, nonce=nonce, state_json=state_json
        )

    def variant_key(self, key: tuple[Any, ...]) -> tuple[Any, ...]:
        """The fragment cache's key for a fragment of variant ``key`` on this request: the
        script root and whether there is a nonce change the markup too."""
        return (*key, self.request.root_path, self.nonce is not None)


def _talisman_nonce(req: Request) -> str | None:
    """Flask-Talisman's per-request nonce (``request.csp_nonce``), when it made one."""
    value = getattr(req, "csp_nonce", None)
    return value if isinstance(value, str) and value else None


def _visit(*, create: bool = True) -> Visit | None:
    """The current request's :class:`Visit`; ``None`` outside a request (or, with
    ``create=False``, when nothing in this request asked for it)."""
    try:
        store = vars(g._get_current_object())
    except RuntimeError:  # no application context
        return None
    visit: Visit | None = store.get(_G_VISIT)
    if visit is None and create:
        try:
            req = request._get_current_object()  # type: ignore[attr-defined]
        except RuntimeError:  # an application context without a request
            return None
        visit = Visit(current_app._get_current_object(), req)  # type: ignore[attr-defined]
        store[_G_VISIT] = visit
    return visit


def current_visit() -> Visit:
    """The current request's :class:`Visit` (a request context is required)."""
    visit = _visit()
    if visit is None:
        raise RuntimeError("consentkit: this needs an active request")
    return visit


def _request_consent() -> ConsentState:
    visit = _visit()
    return visit.read_consent() if visit is not None else UNDECIDED


def set_request_consent(state: ConsentState, *, withdrawn: tuple[str, ...] = ()) -> None:
    """After a decision: the rest of this request sees the new choice, and the response
    expires the cookies of the ``withdrawn`` categories."""
    visit = current_visit()
    visit.consent = state
    visit.consent_from_cookie = False
    visit.seen = None  # what the cookie gave no longer describes this request
    visit.withdrawn = withdrawn


#: The current request's consent state, computed from the cookie on first use.
current_consent: ConsentState = cast(ConsentState, LocalProxy(_request_consent))


class TemplateConsent:
    """The ``consent`` template global: the current request's state, like
    :data:`current_consent`, with ``granted()`` reaching it without a proxy's look-ups
    (a template calls it once per gated tag, on every page)."""

    __slots__ = ()

    def granted(self, category: str) -> bool:
        visit = _visit()
        consent = visit.read_consent() if visit is not None else UNDECIDED
        return consent.granted(category)

    def __getattr__(self, name: str) -> Any:
        return getattr(_request_consent(), name)

    def __repr__(self) -> str:
        return repr(_request_consent())


def current_locale() -> str:
    """The locale consentkit renders in for this request."""
    return current_visit().locale


def template_context(locale: str | None = None) -> dict[str, Any]:
    """What every consentkit template gets: our own gettext as ``_``, the notice, state."""
    st = get_state()
    locale = locale or current_locale()
    gettext = i18n.gettext_for(locale)
    notice = st.notice(locale)
    return {
        "_": gettext,
        "notice": notice,
        "texts": notice.texts,
        "ck_locale": locale,
        "ck_settings": st.settings,
        "ck_state": _request_consent(),
        "ck_gpc": gpc_signal() and st.settings.gpc == "strict",
        "ck_here": _here(),
        "action_labels": _action_labels(gettext, notice.texts),
        "ck_fragment": False,  # True: GET /consent/panel renders panel.html alone
    }


def _here() -> str:
    """The current page as a same-site path, for the banner forms' ``next``."""
    return current_visit().here


def _action_labels(gettext: Any, texts: dict[str, Any]) -> dict[str, str]:
    return {
        "accept_all": texts["buttons"]["accept_all"],
        "reject_all": texts["buttons"]["reject_all"],
        "custom": gettext("Custom choice"),
        "close": texts["buttons"]["close"],
    }


def _sentinel_context(locale: str, nonce: str | None) -> dict[str, Any]:
    context = template_context(locale)
    context["ck_here"] = fragments.HERE
    context["ck_nonce"] = fragments.NONCE if nonce is not None else None
    return context


def consentkit_head() -> Markup:
    """The client configuration, stylesheet and script tags for ``<head>``."""
    visit = current_visit()
    consent = visit.read_consent()  # finds what these headers gave before, if any
    seen = visit.page_seen()
    if seen is not None and seen.head is not None:
        return seen.head  # the same headers as a page before: the same head
    st = visit.st
    locale = visit.locale
    nonce = visit.nonce

    def build() -> str:
        from .gating import consentkit_client_config

        context = _sentinel_context(locale, nonce)
        context["ck_config"] = {**consentkit_client_config(), "state": fragments.STATE}
        return render_template("consentkit/head.html", **context)

    def state() -> str:
        signal = visit.gpc
        if consent is UNDECIDED:
            key = ("", signal)
        elif visit.consent_from_cookie:
            key = (visit.cookie_value, signal)  # the cookie is the state
        else:  # a decision of this very request
            return _state_json_text(visit, consent, signal)
        found = st.state_json_cache.get(key)
        if found is None:
            found = _state_json_text(visit, consent, signal)
            fragments.remember(st.state_json_cache, key, found)
        return found

    if st.jinja_env.auto_reload:
        return fragments.fill(build(), here=visit.here, nonce=nonce, state_json=state)
    parts = st.fragments.parts(visit.variant_key(("head", locale)), build)
    head = fragments.join(parts, here=visit.here, nonce=nonce, state_json=state)
    seen = visit.seen
    if seen is not None and parts[1] == fragments.STATE_ONLY and visit.remembers_page_parts():
        # Nothing of this head depends on the page: the visitor's next pages reuse it.
        seen.locale = locale
        seen.head = head
    return head


def _state_json_text(visit: Visit, consent: ConsentState, signal: bool) -> str:
    value = visit.st.state_json(consent, gpc_signal=signal)
    return str(htmlsafe_json_dumps(value, dumps=visit.app.json.dumps))


def consentkit_banner() -> Markup:
    """The first-layer banner and the in-page panel (undecided visitors only), and the
    "Manage cookies" control."""
    visit = current_visit()
    consent = visit.read_consent()
    seen = visit.page_seen()
    if seen is not None and seen.banner_key is not None:
        # The variant is known from a page before: only the page's own path is new.
        return visit.st.fragments.render(
            seen.banner_key, lambda: _render_banner(visit), here=visit.here, nonce=None
        )
    key = (
        "banner",
        visit.locale,
        consent.decided,
        consent.preferences,
        consent.statistics,
        consent.marketing,
        visit.gpc and visit.st.settings.gpc == "strict",
    )
    banner = visit.fragment(key, lambda: _render_banner(visit))
    seen = visit.seen
    if seen is not None and seen.locale is not None and visit.remembers_page_parts():
        seen.banner_key = visit.variant_key(key)
    return banner


def _render_banner(visit: Visit) -> str:
    return render_template("consentkit/banner.html", **_sentinel_context(visit.locale, visit.nonce))


def _category_title(name: str, texts: dict[str, Any]) -> str:
    for category in texts["categories"]:
        if category["name"] == name:
            return str(category["title"])
    return name


def _varies_on_cookie(values: list[str]) -> bool:
    return any(
        token.strip().lower() in ("cookie", "*") for value in values for token in value.split(",")
    )


def _after_request(guard: CookieGuard) -> Callable[..., Any]:
    """consentkit's one ``after_request`` hook: the cookie guard, then ``Vary: Cookie``."""

    def after_request(response: Response) -> Response:
        visit = _visit(create=False)
        # One pass over the headers: each Werkzeug look-up by name scans them all.
        sets_cookies = varies = False
        for name, _value in response.headers:
            lowered = name.lower()
            if lowered == "set-cookie":
                sets_cookies = True
            elif lowered == "vary":
                varies = True
        # The guard has nothing to do on a page that sets no cookie and is not the answer
        # to a decision (``withdrawn`` marks one): the common case.
        if sets_cookies or (visit is not None and visit.withdrawn is not None):
            response = guard(response, visit, sets_cookies=sets_cookies)
            if visit is None:
                visit = _visit(create=False)  # the guard may have read the consent
        # A page that read the consent cookie differs per visitor: caches must key on it.
        if visit is not None and visit.consent is not None:
            if not varies:
                response.headers.add("Vary", "Cookie")
            else:
                # One header with every value the page set (it may have set several):
                # later hooks that edit Vary through Werkzeug read only the first header.
                values = response.headers.getlist("Vary")
                if not _varies_on_cookie(values):
                    response.headers["Vary"] = ", ".join([*values, "Cookie"])
        return response

    return after_request
