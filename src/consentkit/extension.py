"""The Flask extension: configuration, per-request state, Jinja helpers, blueprint, CLI."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any, cast

from flask import Flask, current_app, g, render_template, request
from markupsafe import Markup
from werkzeug.local import LocalProxy

from . import i18n
from .categories import Catalogue, Category, build_catalogue, localise
from .config import DEFAULTS, ConfigError, Settings, load_settings, option_key
from .cookie import ConsentCookieCodec
from .keys import derive_key, subject_hashes
from .notice import Notice, build_notice
from .state import UNDECIDED, ConsentState
from .store import ConsentStore

EXTENSION_KEY = "consentkit"
_G_STATE = "_consentkit_state"
_G_LOCALE = "_consentkit_locale"

LocaleSelector = Callable[[], Any]
AdminCheck = Callable[[], bool]


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
      the DPO pages under ``/consent/admin/``.
    """

    def __init__(
        self,
        app: Flask | None = None,
        *,
        categories: Iterable[Category] = (),
        locale_selector: LocaleSelector | None = None,
        admin_authorization: AdminCheck | None = None,
        **options: Any,
    ) -> None:
        self.categories = tuple(categories)
        self.locale_selector = locale_selector
        self.admin_authorization = admin_authorization
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
        )
        app.extensions[EXTENSION_KEY] = state

        from .cli import consentkit_cli
        from .views import make_blueprint, well_known_gpc

        app.register_blueprint(make_blueprint(settings.url_prefix))
        app.add_url_rule(
            "/.well-known/gpc.json", endpoint="consentkit_gpc", view_func=well_known_gpc
        )
        app.jinja_env.globals.update(
            consent=current_consent,
            consentkit_head=consentkit_head,
            consentkit_banner=consentkit_banner,
        )
        app.jinja_env.filters["ck_title"] = _category_title
        app.after_request(_vary_on_cookie)
        app.cli.add_command(consentkit_cli)

    @staticmethod
    def state(app: Flask | None = None) -> ConsentKitState:
        return get_state(app)


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
    return request.headers.get("Sec-GPC") == "1"


def _request_consent() -> ConsentState:
    try:
        return cast(ConsentState, getattr(g, _G_STATE))
    except AttributeError:
        pass
    if not request:
        return UNDECIDED
    st = get_state()
    value = request.cookies.get(st.settings.cookie_name)
    consent = (
        st.codec.loads(value, policy_version=st.settings.policy_version) if value else UNDECIDED
    )
    setattr(g, _G_STATE, consent)
    return consent


#: The current request's consent state, computed from the cookie on first use.
current_consent: ConsentState = cast(ConsentState, LocalProxy(_request_consent))


def current_locale() -> str:
    """The locale consentkit renders in for this request."""
    cached = g.get(_G_LOCALE)
    if cached is not None:
        return cast(str, cached)
    st = get_state()
    supported = st.settings.locales
    found: str | None = None
    if st.locale_selector is not None:
        found = i18n.match_locale(st.locale_selector(), supported)
    elif "babel" in current_app.extensions:
        try:
            from flask_babel import get_locale
        except ImportError:  # another "babel" extension: fall through to the header
            pass
        else:
            found = i18n.match_locale(get_locale(), supported)
    if found is None:
        found = i18n.negotiate(request.accept_languages.values(), supported)
    locale = found or st.settings.default_locale
    setattr(g, _G_LOCALE, locale)
    return locale


def template_context(locale: str | None = None) -> dict[str, Any]:
    """What every consentkit template gets: our own gettext as ``_``, the notice, state."""
    st = get_state()
    locale = locale or current_locale()
    gettext = i18n.gettext_for(locale)
    return {
        "_": gettext,
        "notice": st.notice(locale),
        "texts": st.notice(locale).texts,
        "ck_locale": locale,
        "ck_settings": st.settings,
        "ck_state": _request_consent(),
        "ck_gpc": gpc_signal() and st.settings.gpc == "strict",
        "ck_here": _here(),
        "action_labels": _action_labels(gettext, st.notice(locale).texts),
    }


def _here() -> str:
    """The current page as a same-site path, for the banner forms' ``next``."""
    query = request.query_string.decode("latin-1")
    return request.path + ("?" + query if query else "")


def _action_labels(gettext: Any, texts: dict[str, Any]) -> dict[str, str]:
    return {
        "accept_all": texts["buttons"]["accept_all"],
        "reject_all": texts["buttons"]["reject_all"],
        "custom": gettext("Custom choice"),
        "close": texts["buttons"]["close"],
    }


def consentkit_head() -> Markup:
    """Stylesheet and script tags for ``<head>``."""
    # render_template autoescapes: the result is safe HTML.
    return Markup(render_template("consentkit/head.html", **template_context()))  # noqa: S704


def consentkit_banner() -> Markup:
    """The first-layer banner (undecided visitors only) and the "Manage cookies" control."""
    return Markup(render_template("consentkit/banner.html", **template_context()))  # noqa: S704


def _category_title(name: str, texts: dict[str, Any]) -> str:
    for category in texts["categories"]:
        if category["name"] == name:
            return str(category["title"])
    return name


def _vary_on_cookie(response: Any) -> Any:
    # A page that read the consent cookie differs per visitor: caches must key on it.
    if _G_STATE in g:
        response.vary.add("Cookie")
    return response
