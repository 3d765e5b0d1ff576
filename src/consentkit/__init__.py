"""consentkit: cookie-consent banner and tamper-evident consent log for Flask."""

from .categories import CATEGORY_NAMES, OPTIONAL_CATEGORIES, Category, Cookie
from .config import ConfigError
from .extension import ConsentKit, current_consent
from .signals import consent_withdrawn, decision_recorded
from .state import ConsentState

__all__ = [
    "CATEGORY_NAMES",
    "OPTIONAL_CATEGORIES",
    "Category",
    "ConfigError",
    "ConsentKit",
    "ConsentState",
    "Cookie",
    "consent_withdrawn",
    "current_consent",
    "decision_recorded",
]
