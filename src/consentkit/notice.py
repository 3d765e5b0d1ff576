"""The notice: every text a visitor is shown before deciding, and its SHA-256.

The banner and the preferences page render from a :class:`Notice`, and each logged decision
stores the notice's hash; the texts themselves are stored once per hash. So the log proves
what was shown, in which language and policy version, not merely that the site was
"configured correctly" (EDPB 05/2020, para. 108).
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from typing import Any

from babel.support import NullTranslations

from .categories import STATISTICS, Catalogue, Category, Cookie, localise

NOTICE_FORMAT = 1


@dataclass(frozen=True, slots=True)
class Notice:
    locale: str
    policy_version: str
    texts: dict[str, Any]
    canonical: str  # the exact JSON that was hashed and is stored
    hash: str

    @property
    def categories(self) -> list[dict[str, Any]]:
        return list(self.texts["categories"])


def canonical_json(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False, sort_keys=True, separators=(",", ":"))


def _category_texts(
    category: Category, locale: str, gettext: Any, *, statistics_anonymous: bool
) -> dict[str, Any]:
    override = category.texts.get(locale, {})
    if category.name == STATISTICS and statistics_anonymous:
        # Exactly one wording: never the anonymous and the identifying text together.
        description = gettext(category.anonymous_description)
    else:
        description = gettext(category.description)
    title = override.get("title") or gettext(category.title)
    texts: dict[str, Any] = {
        "name": category.name,
        "title": title,
        "description": override.get("description") or description,
        "required": category.required,
        "cookies": [_cookie_texts(c, locale) for c in category.cookies],
    }
    if not category.required:
        # Shown where a gated embed waits; its button records a decision, so the words on it
        # are part of the proof like the banner's.
        texts["placeholder"] = gettext(
            "This content is blocked until you allow %(category)s cookies."
        ) % {"category": title}
        texts["allow"] = gettext("Allow %(category)s cookies") % {"category": title}
    return texts


def _cookie_texts(cookie: Cookie, locale: str) -> dict[str, str]:
    return {
        "name": cookie.name,
        "provider": cookie.provider,
        "purpose": localise(cookie.purpose, locale),
        "lifetime": localise(cookie.lifetime, locale),
        "party": cookie.party,
    }


def build_notice(
    *,
    locale: str,
    translations: NullTranslations,
    catalogue: Catalogue,
    policy_version: str,
    controller: str | None,
    policy_url: str | None,
    statistics_anonymous: bool,
) -> Notice:
    _ = translations.gettext
    texts: dict[str, Any] = {
        "format": NOTICE_FORMAT,
        "locale": locale,
        "policy_version": policy_version,
        "title": _("Manage cookie consent"),
        "intro": _(
            "We use cookies to run this site and, if you agree, to remember your "
            "preferences, measure its audience and show marketing content."
        ),
        "controller": (
            _("Data controller: %(controller)s") % {"controller": controller}
            if controller
            else None
        ),
        "policy_link": (
            {"label": _("Read our cookie policy"), "url": policy_url} if policy_url else None
        ),
        "refusal_free": _("Refusing does not limit your access to the site."),
        "change_later": _(
            "You can change your choice at any time with the “Manage cookies” link "
            "shown on every page."
        ),
        "buttons": {
            "accept_all": _("Accept all"),
            "reject_all": _("Reject all"),
            "customise": _("Customise"),
            "save": _("Save my choices"),
            "close": _("Continue without accepting"),
        },
        "always_active": _("Always active"),
        "manage": _("Manage cookies"),
        "gpc_honoured": _("Opt-out preference signal honoured"),
        "cookie_table": {
            "name": _("Cookie"),
            "provider": _("Provider"),
            "purpose": _("Purpose"),
            "lifetime": _("Lifetime"),
        },
        "categories": [
            _category_texts(c, locale, _, statistics_anonymous=statistics_anonymous)
            for c in catalogue.categories
        ],
    }
    canonical = canonical_json(texts)
    digest = hashlib.sha256(canonical.encode("utf-8")).hexdigest()
    return Notice(locale, policy_version, texts, canonical, digest)
