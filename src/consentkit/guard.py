"""The cookie guard: the server half of "a refused cookie is never set, a withdrawn one is
deleted at once".

Run after every request, it

- drops any ``Set-Cookie`` of a declared cookie whose category this response's consent
  state does not grant (a cookie being *deleted* always goes through);
- on the response to a decision, expires the declared cookies of the categories the
  decision withdrew (exact names always, patterns expanded against the request's cookies),
  and any declared cookie of a denied category that the browser still sent;
- in debug mode, logs a warning for a ``Set-Cookie`` of a cookie nobody declared.

The header parsing and the choice of cookies to expire are pure functions, testable
without an app; :class:`CookieGuard` is the Flask glue.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime

from flask import Response, current_app, request
from werkzeug.http import parse_date

from .categories import FUNCTIONAL, Catalogue, Cookie
from .extension import Visit, _request_consent, get_state

#: Cookie name prefixes that browsers only accept with ``Secure`` (RFC 6265bis).
_SECURE_PREFIXES = ("__Secure-", "__Host-")
#: RFC 6265 cookie-name characters: a name outside them (it came from the request) is not
#: echoed back into a header.
_COOKIE_NAME = re.compile(r"^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$")


@dataclass(frozen=True, slots=True)
class SetCookie:
    """What the guard needs to know about one ``Set-Cookie`` header."""

    name: str
    deletes: bool  # Max-Age <= 0, or an Expires date already past


def parse_set_cookie(header: str, now: datetime | None = None) -> SetCookie | None:
    """The name of a ``Set-Cookie`` header and whether it deletes the cookie.

    ``None`` for a header without a name (browsers ignore those, so must we). Max-Age
    wins over Expires, as in RFC 6265 section 5.3.
    """
    pair, *attributes = header.split(";")
    name, sep, _ = pair.partition("=")
    name = name.strip()
    if not sep or not name:
        return None
    max_age: int | None = None
    expires_text: str | None = None
    for attribute in attributes:
        key, _, value = attribute.partition("=")
        key = key.strip().lower()
        if key == "max-age":
            try:
                max_age = int(value.strip())
            except ValueError:
                continue  # browsers ignore a malformed Max-Age
        elif key == "expires":
            expires_text = value
    if max_age is not None:
        return SetCookie(name, max_age <= 0)
    # Parsed only when there is no Max-Age: a date costs more than the rest together.
    expires = parse_date(expires_text.strip()) if expires_text is not None else None
    if expires is not None:
        moment = now or datetime.now(UTC)
        if expires.tzinfo is None:
            expires = expires.replace(tzinfo=UTC)
        return SetCookie(name, expires <= moment)
    return SetCookie(name, False)


@dataclass(frozen=True, slots=True)
class Expiry:
    """One cookie to expire, with the attributes it was declared with."""

    name: str
    domain: str | None
    path: str
    http_only: bool


def cookies_to_expire(
    catalogue: Catalogue,
    *,
    withdrawn: Iterable[str],
    denied: Iterable[str],
    present: Iterable[str],
) -> list[Expiry]:
    """The cookies a decision response must expire.

    For a withdrawn category: every exact name (the browser may hold it under a path or
    domain that did not send it with this request) and every name in ``present`` that a
    pattern matches. For any other denied category: only names in ``present``, leftovers
    that should not exist. Functional cookies are never expired, nor names that are not
    valid cookie names (they come from the request).
    """
    withdrawn = [c for c in withdrawn if c != FUNCTIONAL]
    denied = [c for c in denied if c != FUNCTIONAL and c not in withdrawn]
    names = [n for n in dict.fromkeys(present) if _COOKIE_NAME.match(n)]
    found: dict[tuple[str, str | None, str], Expiry] = {}

    def add(name: str, cookie: Cookie) -> None:
        key = (name, cookie.domain, cookie.path)
        found.setdefault(key, Expiry(name, cookie.domain, cookie.path, cookie.http_only))

    for category in withdrawn:
        for cookie in catalogue[category].cookies:
            if not cookie.is_pattern:
                add(cookie.name, cookie)
            for name in names:
                if cookie.is_pattern and cookie.matches(name):
                    add(name, cookie)
    for category in denied:
        for cookie in catalogue[category].cookies:
            for name in names:
                if cookie.matches(name):
                    add(name, cookie)
    return list(found.values())


class CookieGuard:
    """The ``after_request`` hook; one instance per app, which remembers the undeclared
    cookies it already warned about so the debug log is not flooded."""

    def __init__(self) -> None:
        self._warned: set[str] = set()

    def __call__(
        self, response: Response, visit: Visit | None, *, sets_cookies: bool = True
    ) -> Response:
        """``sets_cookies=False``: the caller saw no ``Set-Cookie`` header (the hook scans
        the headers once for everything it needs)."""
        # ``withdrawn`` is set by ``POST /consent`` once a decision is recorded (empty when
        # it withdrew nothing): it marks a decision response.
        withdrawn = visit.withdrawn if visit is not None else None
        if not sets_cookies and withdrawn is None:
            return response  # the common case: nothing to look at, not even the consent
        headers = response.headers.getlist("Set-Cookie") if sets_cookies else []
        if headers:
            self._filter(response, headers)
        if withdrawn is not None:
            self._expire(response, withdrawn)
        return response

    def _filter(self, response: Response, headers: list[str]) -> None:
        st = get_state()
        app = current_app
        own = {st.settings.cookie_name, app.config.get("SESSION_COOKIE_NAME") or "session"}
        kept: list[str] = []
        dropped: list[str] = []
        for header in headers:
            parsed = parse_set_cookie(header)
            if parsed is None or parsed.name in own:
                kept.append(header)
                continue
            category = st.catalogue.category_of_cookie(parsed.name)
            if category is None:
                if app.debug and parsed.name not in self._warned:
                    self._warned.add(parsed.name)
                    app.logger.warning(
                        "consentkit: %s sets the cookie %r, which no category declares; "
                        "declare it (Category(..., cookies=[Cookie(...)])) so the banner "
                        "lists it and consentkit can refuse and delete it",
                        request.path,
                        parsed.name,
                    )
                kept.append(header)
            elif parsed.deletes or _request_consent().granted(category):
                kept.append(header)
            else:
                dropped.append(parsed.name)
        if dropped:
            app.logger.debug(
                "consentkit: dropped Set-Cookie for %s (category not granted)", ", ".join(dropped)
            )
            del response.headers["Set-Cookie"]
            for header in kept:
                response.headers.add("Set-Cookie", header)

    def _expire(self, response: Response, withdrawn: tuple[str, ...]) -> None:
        st = get_state()
        denied = _request_consent().denied_categories
        catalogue = st.catalogue
        if not any(catalogue[c].cookies for c in (*withdrawn, *denied) if c != FUNCTIONAL):
            return  # no declared cookie to expire (an "accept all", say): no cookie parsing
        for expiry in cookies_to_expire(
            catalogue,
            withdrawn=withdrawn,
            denied=denied,
            present=request.cookies.keys(),
        ):
            response.delete_cookie(
                expiry.name,
                path=expiry.path,
                domain=expiry.domain,
                # Over HTTPS a Secure deletion can replace a Secure cookie; the prefixed
                # names are refused by browsers without it.
                secure=request.is_secure or expiry.name.startswith(_SECURE_PREFIXES),
                httponly=expiry.http_only,
            )
