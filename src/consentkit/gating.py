"""Gated elements and what the browser needs to gate them.

A gated ``<script>``, ``<iframe>`` or ``<img>`` is rendered inert (``type="text/plain"``,
``data-src`` instead of ``src``, ``data-consentkit="<category>"``) until its category is
granted; ``consentkit.js`` activates it in the page once the visitor allows the category.
When the category is already granted at render time the active element is rendered
directly, so a page works without JavaScript for visitors who have decided.

The markup builders are pure (``*_markup``): escaped values in, :class:`Markup` out. The
Jinja globals (``consentkit_script``, ``consentkit_iframe``, ``consentkit_img``,
``consentkit_csp_nonce``, ``consentkit_client_config``) add the request's consent state,
CSP nonce and locale.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from typing import Any

from flask import render_template, url_for
from markupsafe import Markup, escape

from .categories import CATEGORY_NAMES, OPTIONAL_CATEGORIES
from .extension import (
    _request_consent,
    current_locale,
    current_visit,
    get_state,
    gpc_signal,
    template_context,
)

_ATTR_NAME = re.compile(r"^[A-Za-z][-A-Za-z0-9_:.]*$")
# Scripts end at "</script" whatever the context; "<!--" starts a state where they may
# not end at all. Neither can be escaped inside a script, so neither is accepted.
_SCRIPT_BREAKERS = re.compile(r"</script|<!--", re.IGNORECASE)
_DANGEROUS_SCHEME = re.compile(r"^\s*(javascript|vbscript):", re.IGNORECASE)
_CONTROL = re.compile(r"[\x00-\x20]")

_OWNED = {
    "script": frozenset({"src", "data-src", "data-consentkit", "type"}),
    "iframe": frozenset({"src", "data-src", "data-consentkit", "title", "hidden"}),
    "img": frozenset({"src", "data-src", "data-consentkit", "alt"}),
}


class GatingError(ValueError):
    """A gated element was asked for with arguments that cannot be rendered safely."""


def _check_category(category: str) -> None:
    if category not in CATEGORY_NAMES:
        raise GatingError(
            f"unknown consent category {category!r}; use one of {', '.join(OPTIONAL_CATEGORIES)}"
        )


def _check_url(url: str, what: str) -> None:
    if not isinstance(url, str) or not url.strip():
        raise GatingError(f"{what} must be a non-empty URL")
    if _DANGEROUS_SCHEME.match(_CONTROL.sub("", url)):
        raise GatingError(f"{what} {url!r}: script URLs are not allowed")


def html_attrs(attrs: Mapping[str, Any], *, element: str) -> Markup:
    """Serialise keyword attributes: ``class_`` -> ``class``, ``data_x`` -> ``data-x``;
    ``True`` gives a bare attribute, ``False`` / ``None`` omit it; values are escaped.

    Event handlers and ``style`` are refused: a strict Content-Security-Policy blocks them.
    """
    parts: list[str] = []
    for key, value in attrs.items():
        name = key.rstrip("_").replace("_", "-").lower()
        if not _ATTR_NAME.match(name):
            raise GatingError(f"{key!r} is not an HTML attribute name")
        if name.startswith("on"):
            raise GatingError(f"{name!r}: event-handler attributes break a strict CSP")
        if name == "style":
            raise GatingError("'style': inline styles break a strict CSP; use a class")
        if name in _OWNED[element]:
            raise GatingError(f"{name!r} is set by consentkit on a gated <{element}>")
        if value is None or value is False:
            continue
        if value is True:
            parts.append(f" {name}")
        else:
            parts.append(f' {name}="{escape(str(value))}"')
    return Markup("".join(parts))  # noqa: S704 - names checked, values escaped


def script_markup(
    category: str,
    *,
    granted: bool,
    src: str | None = None,
    body: str = "",
    nonce: str | None = None,
    attrs: Mapping[str, Any] | None = None,
) -> Markup:
    """A ``<script>`` that runs only when ``category`` is granted.

    ``body`` is JavaScript, written as is (HTML escaping would corrupt it); it must not
    contain ``</script`` or ``<!--``: encode data with Jinja's ``tojson``, which escapes
    ``<``.
    """
    _check_category(category)
    if src is not None:
        _check_url(src, "src")
    body = str(body or "")
    if src is None and not body.strip():
        raise GatingError("a gated script needs a src or a body")
    if _SCRIPT_BREAKERS.search(body):
        raise GatingError("a gated script's body must not contain '</script' or '<!--'")
    extra = dict(attrs or {})
    if nonce is not None and "nonce" not in extra:
        extra["nonce"] = nonce
    rest = html_attrs(extra, element="script")
    if granted:
        src_attr = Markup(' src="{}"').format(src) if src is not None else Markup("")
        return Markup("<script{}{}>{}</script>").format(src_attr, rest, Markup(body))  # noqa: S704
    data_src = Markup(' data-src="{}"').format(src) if src is not None else Markup("")
    return Markup('<script type="text/plain" data-consentkit="{}"{}{}>{}</script>').format(
        category,
        data_src,
        rest,
        Markup(body),  # noqa: S704 - checked above; inert text/plain until activated
    )


def iframe_markup(
    category: str,
    *,
    granted: bool,
    src: str,
    title: str,
    attrs: Mapping[str, Any] | None = None,
) -> Markup:
    """An ``<iframe>``: active, or hidden with ``data-src`` (the placeholder follows it)."""
    _check_category(category)
    _check_url(src, "src")
    if not isinstance(title, str) or not title.strip():
        raise GatingError("an iframe needs a title (screen readers announce it)")
    rest = html_attrs(attrs or {}, element="iframe")
    if granted:
        return Markup('<iframe src="{}" title="{}"{}></iframe>').format(src, title, rest)
    return Markup(
        '<iframe data-consentkit="{}" data-src="{}" hidden title="{}"{}></iframe>'
    ).format(category, src, title, rest)


def img_markup(
    category: str,
    *,
    granted: bool,
    src: str,
    alt: str,
    attrs: Mapping[str, Any] | None = None,
) -> Markup:
    """An ``<img>`` (a tracking pixel, a third-party image) loaded only when granted."""
    _check_category(category)
    _check_url(src, "src")
    if not isinstance(alt, str):
        raise GatingError("alt must be a string ('' for a decorative image or a pixel)")
    rest = html_attrs(attrs or {}, element="img")
    if granted:
        return Markup('<img src="{}" alt="{}"{}>').format(src, alt, rest)
    return Markup('<img data-consentkit="{}" data-src="{}" alt="{}"{}>').format(
        category, src, alt, rest
    )


# -- Flask glue: the Jinja globals ---------------------------------------------------------


def consentkit_csp_nonce() -> str | None:
    """The current request's CSP nonce from the app's provider (``ConsentKit(app,
    csp_nonce=...)``), else Flask-Talisman's, else ``None``."""
    return current_visit().nonce


def consentkit_script(
    category: str,
    src: str | None = None,
    body: str | None = None,
    *,
    caller: Callable[[], str] | None = None,
    **attrs: Any,
) -> Markup:
    """A script that runs once ``category`` is granted: ``consentkit_script("statistics",
    src=url)``, ``consentkit_script("statistics", body="…")`` or, for inline code, a Jinja
    ``{% call consentkit_script("statistics") %}…{% endcall %}`` block. The CSP nonce is
    added for you."""
    if body is not None and caller is not None:
        raise GatingError("give the script's body either as body= or as a call block")
    _check_category(category)
    text = body if body is not None else (caller() if caller is not None else "")
    return script_markup(
        category,
        granted=_request_consent().granted(category),
        src=src,
        body=text,
        nonce=consentkit_csp_nonce(),
        attrs=attrs,
    )


def consentkit_iframe(
    category: str,
    src: str,
    title: str,
    *,
    placeholder: str | None = None,
    **attrs: Any,
) -> Markup:
    """An embed loaded once ``category`` is granted. Until then a placeholder says why it
    is blocked and offers a button that allows the category (it works without JavaScript).
    ``placeholder`` replaces the placeholder's sentence."""
    _check_category(category)
    granted = _request_consent().granted(category)
    element = iframe_markup(category, granted=granted, src=src, title=title, attrs=attrs)
    if granted:
        return element
    context = template_context()
    state = context["ck_state"]
    context.update(
        gate_category=category,
        gate_granted=[c for c in OPTIONAL_CATEGORIES if c == category or state.granted(c)],
        gate_message=placeholder,
    )
    # render_template autoescapes: the placeholder is safe HTML.
    return element + Markup(  # noqa: S704
        render_template("consentkit/gate_placeholder.html", **context)
    )


def consentkit_img(category: str, src: str, alt: str, **attrs: Any) -> Markup:
    """An image (a pixel, a third-party picture) loaded once ``category`` is granted."""
    _check_category(category)
    return img_markup(
        category, granted=_request_consent().granted(category), src=src, alt=alt, attrs=attrs
    )


def consentkit_client_config() -> dict[str, Any]:
    """The JSON that ``consentkit_head()`` puts in ``#consentkit-config`` for the scripts."""
    st = get_state()
    settings = st.settings
    return {
        "endpoint": url_for("consentkit.decide"),
        "preferencesUrl": url_for("consentkit.preferences"),
        "state": st.state_json(_request_consent(), gpc_signal=gpc_signal()),
        "cookies": {
            category: [
                {"name": c.name, "domain": c.domain, "path": c.path}
                for c in st.catalogue[category].cookies
            ]
            for category in OPTIONAL_CATEGORIES
        },
        "consentMode": settings.google_consent_mode,
        "locale": current_locale(),
    }


#: What ``init_app`` adds to the app's Jinja globals.
JINJA_GLOBALS: dict[str, Callable[..., Any]] = {
    "consentkit_script": consentkit_script,
    "consentkit_iframe": consentkit_iframe,
    "consentkit_img": consentkit_img,
    "consentkit_csp_nonce": consentkit_csp_nonce,
    "consentkit_client_config": consentkit_client_config,
}
