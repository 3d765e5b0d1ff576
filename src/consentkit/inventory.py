"""The site's entry for the register of processing activities (GDPR Art. 30): each consent
category with its declared cookies, legal basis and retention, and the consent log itself as
a processing activity. Pure: built from the notice texts and the settings.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import timedelta
from typing import Any

from .categories import FUNCTIONAL, STATISTICS

INVENTORY_FORMAT = "consentkit-inventory/1"

_CONSENT_BASIS = {
    "code": "consent",
    "text": "Consent of the visitor: GDPR Art. 6(1)(a), and ePrivacy Directive Art. 5(3) "
    "for reading or storing information on the device (France: Art. 82 Loi Informatique et "
    "Libertés).",
}
_NECESSARY_BASIS = {
    "code": "strictly-necessary",
    "text": "Strictly necessary for the service the visitor asked for: exempt from consent "
    "under ePrivacy Directive Art. 5(3); where personal data is processed, GDPR Art. 6(1)(f) "
    "(legitimate interest).",
}
_EXEMPT_AUDIENCE_BASIS = {
    "code": "exempt-audience-measurement",
    "text": "Audience measurement declared exempt from consent (CNIL guidelines 2020-091 "
    "art. 5: first party, anonymous statistics only, tracker at most 13 months, data at most "
    "25 months): GDPR Art. 6(1)(f) (legitimate interest); the visitor can still refuse.",
}


def _duration(value: timedelta) -> str:
    days = round(value.total_seconds() / 86400)
    if days % 365 == 0 and days >= 365:
        return f"{days // 365} year(s)"
    return f"{days} day(s)"


def build_inventory(
    *,
    notice_texts: Mapping[str, Any],
    site: str,
    controller: str | None,
    policy_url: str | None,
    policy_version: str,
    cookie_name: str,
    cookie_max_age: int,
    log_retention: timedelta,
    statistics_anonymous: bool,
    database_backend: str,
) -> dict[str, Any]:
    """The inventory as a JSON-ready dict. ``notice_texts`` are the texts shown in one
    locale (titles, descriptions, cookie purposes and lifetimes as visitors read them)."""
    choice_lifetime = _duration(timedelta(seconds=cookie_max_age))
    categories = []
    for category in notice_texts["categories"]:
        name = category["name"]
        if name == FUNCTIONAL:
            basis = _NECESSARY_BASIS
        elif name == STATISTICS and statistics_anonymous:
            basis = _EXEMPT_AUDIENCE_BASIS
        else:
            basis = _CONSENT_BASIS
        cookies = [dict(c) for c in category["cookies"]]
        if name == FUNCTIONAL:
            cookies.insert(
                0,
                {
                    "name": cookie_name,
                    "provider": site,
                    "purpose": "Remembers the visitor's cookie choice (a random consent "
                    "identifier, the policy version, one yes/no per category, the time).",
                    "lifetime": choice_lifetime,
                    "party": "first",
                },
            )
        categories.append(
            {
                "name": name,
                "title": category["title"],
                "description": category["description"],
                "legal_basis": basis,
                "consent_required": basis is _CONSENT_BASIS,
                "cookies": cookies,
                "choice_retention": (
                    None
                    if name == FUNCTIONAL
                    else f"the visitor's choice is kept {choice_lifetime}, then asked again"
                ),
            }
        )
    consent_log = {
        "name": "Consent log (proof of consent)",
        "purpose": "Demonstrate that each visitor's consent was valid and what they were "
        "shown (GDPR Art. 7(1)); answer access and erasure requests; keep statistics of "
        "consent rates.",
        "legal_basis": {
            "code": "legal-obligation",
            "text": "GDPR Art. 6(1)(c): the controller must be able to demonstrate consent "
            "(Art. 7(1)).",
        },
        "controller": controller,
        "data_subjects": "Visitors of the site who made a cookie choice.",
        "data_categories": [
            "pseudonymous subject identifier (keyed HMAC-SHA256 of the random consent id "
            "held in the visitor's cookie)",
            "time of the decision (UTC) and expiry of the choice",
            "decision: action, surface, granted, denied and withdrawn categories",
            "policy version, locale shown, and the hash of the exact texts shown",
            "whether a Global Privacy Control signal was received",
        ],
        "not_collected": "No IP address, no user agent, no name or e-mail, no third-party "
        "identifier.",
        "recipients": "The controller's data protection officer and the people the site "
        "authorises to use the consent administration pages.",
        "transfers_outside_eu": "None by consentkit; depends on where the database is hosted.",
        "retention": f"Each record is kept {_duration(log_retention)} after it stops being "
        f"current (the visitor decides again or the choice expires), then purged "
        f"(`flask consentkit purge`).",
        "storage": f"{database_backend} database (tables consentkit_records, "
        "consentkit_notices, consentkit_ledger).",
        "security": "Records are append-only through the application and carry a keyed MAC "
        "in numbered per-writer streams; `flask consentkit verify` detects modified, "
        "inserted or deleted records; every export, purge and erasure is itself recorded.",
        "rights": "Access (Art. 15): the visitor's receipt page and `flask consentkit subject`; "
        "erasure (Art. 17): `flask consentkit subject --erase`.",
    }
    return {
        "format": INVENTORY_FORMAT,
        "site": site,
        "controller": controller,
        "policy_url": policy_url,
        "policy_version": policy_version,
        "locale": notice_texts["locale"],
        "categories": categories,
        "processing_activities": [consent_log],
    }


def _md(text: Any) -> str:
    """A Markdown table cell: pipes and line breaks would break the table."""
    value = "" if text is None else str(text)
    return value.replace("\\", "\\\\").replace("|", "\\|").replace("\r", " ").replace("\n", " ")


def render_markdown(inventory: Mapping[str, Any]) -> str:
    lines = [
        f"# Register of processing: cookies and consent ({_md(inventory['site'])})",
        "",
        f"- Controller: {_md(inventory['controller'] or 'not configured')}",
        f"- Cookie policy: {_md(inventory['policy_url'] or 'not configured')}",
        f"- Policy version: {_md(inventory['policy_version'])}",
        f"- Language of the texts: {_md(inventory['locale'])}",
        "",
        "## Cookie categories",
    ]
    for category in inventory["categories"]:
        lines += [
            "",
            f"### {_md(category['title'])} (`{category['name']}`)",
            "",
            _md(category["description"]),
            "",
            f"- Legal basis: {_md(category['legal_basis']['text'])}",
            f"- Consent required: {'yes' if category['consent_required'] else 'no'}",
        ]
        if category["choice_retention"]:
            lines.append(f"- Retention of the choice: {_md(category['choice_retention'])}")
        lines.append("")
        if category["cookies"]:
            lines += [
                "| Cookie | Provider | Purpose | Lifetime | Party |",
                "|---|---|---|---|---|",
            ]
            lines += [
                f"| `{_md(c['name'])}` | {_md(c['provider'])} | {_md(c['purpose'])} | "
                f"{_md(c['lifetime'])} | {_md(c['party'])} |"
                for c in category["cookies"]
            ]
        else:
            lines.append("No cookie declared.")
    lines += ["", "## Processing activities"]
    for activity in inventory["processing_activities"]:
        lines += ["", f"### {_md(activity['name'])}", ""]
        for key, value in activity.items():
            if key == "name":
                continue
            label = key.replace("_", " ").capitalize()
            if isinstance(value, dict):
                value = value.get("text")
            if isinstance(value, list):
                lines.append(f"- {label}:")
                lines += [f"  - {_md(v)}" for v in value]
            else:
                lines.append(f"- {label}: {_md(value)}")
    return "\n".join(lines) + "\n"
