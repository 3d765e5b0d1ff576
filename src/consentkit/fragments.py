"""The head tags and the banner, rendered once per variant instead of once per page.

What ``consentkit_head()`` and ``consentkit_banner()`` add to a page depends on a few
things only (locale, the visitor's choice, whether the GPC notice shows, the app's script
root, whether the page has a CSP nonce) and on three per-request values: the page's own path
(the forms' ``next``), the nonce, and the visitor's state JSON. Each template is rendered
once per variant with sentinels in place of the per-request values, and a page pays for a
dictionary look-up and a few string replacements: a returning visitor's page must cost
close to nothing (benchmark B1).

A host that overrides a template still gets it rendered, once per variant; with
``TEMPLATES_AUTO_RELOAD`` (debug) nothing is cached, so edits show at once.
"""

from __future__ import annotations

import re
import threading
from collections.abc import Callable
from typing import Any, TypeVar
from urllib.parse import quote

from markupsafe import Markup, escape

# Letters and digits only: HTML escaping and URL quoting leave them unchanged.
HERE = "ckhere9f4c2e71sentinel"
NONCE = "cknonce9f4c2e71sentinel"
STATE = "ckstate9f4c2e71sentinel"
_STATE_JSON = f'"{STATE}"'
#: Variants are few (locales x 8 choices x GPC x nonce); the bound only guards against a
#: host whose script root varies per request.
MAX_VARIANTS = 512


#: Entries of the small per-app memos (locales per header, state JSON per visitor).
MEMO_SIZE = 4096
#: Filled fragments kept per (variant, page): about 4 KB each, so at most a few MB.
FILLED_SIZE = 1024

K = TypeVar("K")
V = TypeVar("V")


def remember(memo: dict[K, V], key: K, value: V, *, limit: int = MEMO_SIZE) -> None:
    """Store in a bounded memo: emptied when full, so hostile variety cannot grow it."""
    if len(memo) >= limit:
        memo.clear()
    memo[key] = value


#: The slots of a head fragment that has nothing per page but the visitor's state.
STATE_ONLY = ("state",)

# Slots of a split fragment, in the order they are filled.
_SLOTS = {
    "next=" + HERE: "here_query",
    HERE: "here_html",
    NONCE: "nonce",
    _STATE_JSON: "state",
}
_SPLIT = re.compile("|".join(re.escape(k) for k in sorted(_SLOTS, key=len, reverse=True)))


# Left as they are: elements whose text HTML does not decode (a character reference would
# show literally), comments and CDATA sections. Tags are matched with their quoted values.
_VERBATIM_OR_TAG = re.compile(
    r"(?P<verbatim><(script|style|xmp|noscript|noembed|noframes|iframe)\b.*?</\2\b[^>]*>"
    r"|<plaintext\b.*\Z|<!--.*?-->|<!\[CDATA\[.*?\]\]>)"
    r"|(?P<tag></?[A-Za-z][^\"'>]*(?:(?:\"[^\"]*\"|'[^']*')[^\"'>]*)*>)",
    re.S | re.I,
)
_QUOTED = re.compile(r"\"[^\"]*\"|'[^']*'")
# Beyond ASCII, except U+0080-U+009F: HTML reads "&#128;" as the euro sign, not U+0080.
_WIDE = re.compile("[^\x00-\x9f]")


def ascii_html(html: str) -> str:
    """``html`` with its non-ASCII characters as numeric character references wherever
    HTML decodes them (text and quoted attribute values): the same document for a browser.
    Python keeps a string holding one non-ASCII character (a typographic quote of the
    English banner) in a wider form, and a page joined with it is built and encoded to
    UTF-8 several times slower: consentkit's markup must not do that to an ASCII page.
    Runs once per fragment variant, not per request."""
    if html.isascii():
        return html
    out: list[str] = []
    last = 0
    for match in _VERBATIM_OR_TAG.finditer(html):
        out.append(_char_refs(html[last : match.start()]))
        if match.group("tag"):
            out.append(_QUOTED.sub(lambda q: _char_refs(q.group(0)), match.group(0)))
        else:
            out.append(match.group(0))
        last = match.end()
    out.append(_char_refs(html[last:]))
    return "".join(out)


def _char_refs(text: str) -> str:
    return _WIDE.sub(lambda m: f"&#{ord(m.group(0))};", text)


def split(html: str) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """Cut a rendered fragment at its sentinels: the static pieces and the slot names
    (in ASCII: see :func:`ascii_html`)."""
    html = ascii_html(html)
    pieces: list[str] = []
    slots: list[str] = []
    last = 0
    for match in _SPLIT.finditer(html):
        pieces.append(html[last : match.start()])
        slots.append(_SLOTS[match.group(0)])
        last = match.end()
    pieces.append(html[last:])
    return tuple(pieces), tuple(slots)


def fill(
    html: str, *, here: str, nonce: str | None, state_json: Callable[[], str] | None = None
) -> Markup:
    """Put the per-request values where the sentinels are, each escaped for its place."""
    return join(split(html), here=here, nonce=nonce, state_json=state_json)


def join(
    parts: tuple[tuple[str, ...], tuple[str, ...]],
    *,
    here: str,
    nonce: str | None,
    state_json: Callable[[], str] | None = None,
) -> Markup:
    pieces, slots = parts
    if not slots:
        return Markup(pieces[0])  # noqa: S704 - rendered by an autoescaped template
    if slots == STATE_ONLY and state_json is not None:  # the head without a nonce
        return Markup(pieces[0] + state_json() + pieces[1])  # noqa: S704 - JSON made safe
    values: dict[str, str] = {}
    out = [pieces[0]]
    for slot, piece in zip(slots, pieces[1:], strict=True):
        value = values.get(slot)
        if value is None:
            if slot == "here_query":
                # In a URL's query (href="...?next=…") the path is quoted; in a form's
                # hidden ``next`` it is HTML-escaped.
                value = "next=" + str(escape(quote(here, safe="/")))
            elif slot == "here_html":
                value = ascii_html(str(escape(here)))
            elif slot == "nonce":
                value = str(escape(nonce or ""))
            else:
                value = state_json() if state_json is not None else "null"
            values[slot] = value
        out.append(value)
        out.append(piece)
    return Markup("".join(out))  # noqa: S704 - autoescaped template, values escaped above


class FragmentCache:
    """Rendered fragments by variant key, shared by the requests of one app."""

    def __init__(self) -> None:
        self._fragments: dict[tuple[Any, ...], tuple[tuple[str, ...], tuple[str, ...]]] = {}
        # Fragments that depend on the variant and the page only (no nonce, no visitor
        # state), filled: the banner of a popular page is filled once, not per view.
        self._filled: dict[tuple[tuple[Any, ...], str], Markup] = {}
        self._lock = threading.Lock()

    def parts(
        self, key: tuple[Any, ...], build: Callable[[], str]
    ) -> tuple[tuple[str, ...], tuple[str, ...]]:
        """The split fragment of variant ``key`` (rendered by ``build`` the first time)."""
        parts = self._fragments.get(key)
        if parts is None:
            parts = split(build())
            with self._lock:
                remember(self._fragments, key, parts, limit=MAX_VARIANTS)
        return parts

    def render(
        self,
        key: tuple[Any, ...],
        build: Callable[[], str],
        *,
        here: str,
        nonce: str | None,
        state_json: Callable[[], str] | None = None,
    ) -> Markup:
        if nonce is not None or state_json is not None:
            return join(self.parts(key, build), here=here, nonce=nonce, state_json=state_json)
        filled_key = (key, here)
        filled = self._filled.get(filled_key)
        if filled is None:
            filled = join(self.parts(key, build), here=here, nonce=None)
            remember(self._filled, filled_key, filled, limit=FILLED_SIZE)
        return filled

    def clear(self) -> None:
        self._fragments.clear()
        self._filled.clear()
