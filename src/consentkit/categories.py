"""The four consent categories and the cookies a site declares under them.

Pure declarations, free of Flask. Texts here are English message ids of the ``consentkit``
gettext domain; :mod:`consentkit.notice` translates them. A site overrides a text per
locale with ``Category(..., texts={"fr": {"description": "..."}})``.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from functools import cached_property
from typing import Literal


def N_(message: str) -> str:
    """Mark a string for extraction into the catalog without translating it here."""
    return message


FUNCTIONAL = "functional"
PREFERENCES = "preferences"
STATISTICS = "statistics"
MARKETING = "marketing"

#: The four categories in display order. The cookie carries one boolean per category.
CATEGORY_NAMES: tuple[str, ...] = (FUNCTIONAL, PREFERENCES, STATISTICS, MARKETING)
#: The categories a visitor can switch; ``functional`` is always granted.
OPTIONAL_CATEGORIES: tuple[str, ...] = (PREFERENCES, STATISTICS, MARKETING)

#: Text of a locale: either one string for every locale or a ``{locale: text}`` mapping.
LocalText = str | Mapping[str, str]

_TEXT_FIELDS = ("title", "description")


def localise(text: LocalText, locale: str) -> str:
    """Pick a text's version for a locale (a plain ``str`` serves every locale)."""
    if isinstance(text, str):
        return text
    if locale in text:
        return text[locale]
    raise KeyError(locale)


@dataclass(frozen=True, slots=True)
class Cookie:
    """A cookie the site sets under a category.

    ``name`` is an exact name or a glob pattern with ``*`` (``_pk_id.*``). Declarations let
    consentkit show the policy table, expire the cookies when consent is withdrawn and drop
    a ``Set-Cookie`` that the visitor has not allowed.
    """

    name: str
    provider: str = ""
    purpose: LocalText = ""
    lifetime: LocalText = ""
    party: Literal["first", "third"] = "first"
    domain: str | None = None
    path: str = "/"
    http_only: bool = False

    def __post_init__(self) -> None:
        if not self.name or not re.fullmatch(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+", self.name):
            raise ValueError(f"Cookie name {self.name!r}: use cookie-name characters and '*'")
        if self.party not in ("first", "third"):
            raise ValueError(f"Cookie {self.name!r}: party must be 'first' or 'third'")
        if not self.path.startswith("/"):
            raise ValueError(f"Cookie {self.name!r}: path must start with '/'")

    @property
    def is_pattern(self) -> bool:
        return "*" in self.name

    def matches(self, cookie_name: str) -> bool:
        if not self.is_pattern:
            return cookie_name == self.name
        regex = ".*".join(re.escape(part) for part in self.name.split("*"))
        return re.fullmatch(regex, cookie_name) is not None


@dataclass(frozen=True, slots=True)
class Category:
    """One consent category: its texts and the cookies declared under it."""

    name: str
    title: str = ""
    description: str = ""
    #: The CNIL-exempt wording of ``statistics``, used when the site declares anonymous
    #: audience measurement. Only one of ``description`` / ``anonymous_description`` is shown.
    anonymous_description: str = ""
    cookies: tuple[Cookie, ...] = ()
    #: Per-locale overrides: ``{"fr": {"title": ..., "description": ...}}``.
    texts: Mapping[str, Mapping[str, str]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.name not in CATEGORY_NAMES:
            raise ValueError(
                f"Category {self.name!r}: consentkit knows {', '.join(CATEGORY_NAMES)}"
            )
        for locale, texts in self.texts.items():
            unknown = set(texts) - set(_TEXT_FIELDS)
            if unknown:
                raise ValueError(
                    f"Category {self.name!r}, locale {locale!r}: unknown text {sorted(unknown)};"
                    f" use {_TEXT_FIELDS}"
                )
        object.__setattr__(self, "cookies", tuple(self.cookies))

    @property
    def required(self) -> bool:
        return self.name == FUNCTIONAL


_DEFAULTS: dict[str, Category] = {
    FUNCTIONAL: Category(
        FUNCTIONAL,
        title=N_("Functional"),
        description=N_(
            "Needed for the site to work and to remember your cookie choice; "
            "they cannot be switched off."
        ),
    ),
    PREFERENCES: Category(
        PREFERENCES,
        title=N_("Preferences"),
        description=N_(
            "Remember settings you pick, such as language or display theme, "
            "so the site looks the way you left it."
        ),
    ),
    STATISTICS: Category(
        STATISTICS,
        title=N_("Statistics"),
        description=N_(
            "Count visits and measure how pages are used, with data that may identify "
            "your browser, so that we can improve the site."
        ),
        anonymous_description=N_(
            "Produce anonymous visit counts, kept by us alone and used only to measure "
            "the site's audience."
        ),
    ),
    MARKETING: Category(
        MARKETING,
        title=N_("Marketing"),
        description=N_(
            "Let advertising partners and embedded media follow your visits to show you "
            "content and ads based on your interests."
        ),
    ),
}


@dataclass(frozen=True)
class Catalogue:
    """The four categories of one app, in display order, with the site's declarations."""

    categories: tuple[Category, ...]

    @cached_property
    def by_name(self) -> dict[str, Category]:
        return {c.name: c for c in self.categories}

    def __getitem__(self, name: str) -> Category:
        return self.by_name[name]

    def cookies_of(self, names: Iterable[str]) -> list[Cookie]:
        return [cookie for name in names for cookie in self.by_name[name].cookies]

    def category_of_cookie(self, cookie_name: str) -> str | None:
        """The category a cookie name was declared under, or ``None`` if undeclared."""
        for category in self.categories:
            if any(c.matches(cookie_name) for c in category.cookies):
                return category.name
        return None


def build_catalogue(overrides: Iterable[Category] = ()) -> Catalogue:
    """The four defaults, each replaced field by field by a site's declaration of it."""
    merged = dict(_DEFAULTS)
    seen: set[str] = set()
    for override in overrides:
        if not isinstance(override, Category):
            raise TypeError(f"categories: expected Category objects, got {override!r}")
        if override.name in seen:
            raise ValueError(f"categories: {override.name!r} is declared twice")
        seen.add(override.name)
        base = merged[override.name]
        merged[override.name] = replace(
            base,
            title=override.title or base.title,
            description=override.description or base.description,
            anonymous_description=override.anonymous_description or base.anonymous_description,
            cookies=override.cookies,
            texts=override.texts,
        )
    return Catalogue(tuple(merged[name] for name in CATEGORY_NAMES))
