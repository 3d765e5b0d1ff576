"""The library's own gettext domain ``consentkit`` and locale negotiation.

consentkit never uses the host's ``_``: a site running Flask-Babel keeps its ``messages``
domain untouched, and our texts come from the catalogs shipped in the package.
"""

from __future__ import annotations

import io
from collections.abc import Callable, Iterable, Sequence
from functools import cache
from pathlib import Path
from typing import Any

from babel import Locale, UnknownLocaleError
from babel.messages.mofile import write_mo
from babel.messages.pofile import read_po
from babel.support import Translations

DOMAIN = "consentkit"
CATALOG_DIR = Path(__file__).parent / "translations"


def available_locales() -> tuple[str, ...]:
    """Locales with a catalog: a compiled ``.mo`` (wheels) or a ``.po`` (source checkout)."""
    found = []
    if CATALOG_DIR.is_dir():
        for entry in sorted(CATALOG_DIR.iterdir()):
            messages = entry / "LC_MESSAGES"
            if (messages / f"{DOMAIN}.mo").is_file() or (messages / f"{DOMAIN}.po").is_file():
                found.append(entry.name)
    return tuple(found)


@cache
def translations(locale: str) -> Translations:
    """The catalog of one locale, loaded once per process.

    Wheels ship compiled ``.mo`` files. A source checkout has only the ``.po`` sources, so
    they are compiled in memory rather than requiring a build step to run the tests.
    """
    messages = CATALOG_DIR / locale / "LC_MESSAGES"
    mo = messages / f"{DOMAIN}.mo"
    if mo.is_file():
        with mo.open("rb") as fp:
            return Translations(fp, domain=DOMAIN)
    po = messages / f"{DOMAIN}.po"
    if not po.is_file():
        raise LookupError(f"no consentkit catalog for locale {locale!r}")
    with po.open("rb") as fp:
        catalog = read_po(fp, locale=locale, domain=DOMAIN)
    buffer = io.BytesIO()
    write_mo(buffer, catalog, use_fuzzy=False)
    buffer.seek(0)
    return Translations(buffer, domain=DOMAIN)


def match_locale(candidate: str | None, supported: Sequence[str]) -> str | None:
    """Map a host locale (``fr_FR``, ``fr-CA``, a babel ``Locale``) to a supported one."""
    if not candidate:
        return None
    text = str(candidate).replace("-", "_")
    if text in supported:
        return text
    try:
        language = Locale.parse(text).language
    except (ValueError, UnknownLocaleError):
        return None
    return language if language in supported else None


def negotiate(preferred: Iterable[str], supported: Sequence[str]) -> str | None:
    """Pick a supported locale from ``Accept-Language`` values, best first."""
    # In the visitor's order of preference, each tried exactly then by language, so that
    # "fr-CA, en;q=0.5" gives "fr" where only "fr" and "en" exist.
    for value in preferred:
        if isinstance(value, str) and 0 < len(value) <= 35 and value != "*":
            found = match_locale(value, supported)
            if found:
                return found
    return None


def gettext_for(locale: str) -> Callable[..., str]:
    """A ``gettext`` for templates that also formats: ``_("Hello %(name)s", name=x)``."""
    catalog = translations(locale)

    def gettext(message: str, **variables: Any) -> str:
        text = catalog.gettext(message)
        return text % variables if variables else text

    return gettext
