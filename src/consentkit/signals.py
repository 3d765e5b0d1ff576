"""Blinker signals a host app subscribes to.

``consent_withdrawn`` is how a site learns it must stop using, and usually delete, data
collected under a category the visitor has just withdrawn (GDPR Art. 7(3)).
"""

from __future__ import annotations

from blinker import Namespace

_signals = Namespace()

#: Sent after every recorded decision: ``sender`` is the app; keyword arguments
#: ``decision`` (:class:`consentkit.state.Decision`), ``record_id`` and ``subject``.
decision_recorded = _signals.signal("consentkit.decision-recorded")

#: Sent when a decision withdraws categories: ``sender`` is the app; keyword arguments
#: ``categories`` (tuple of names), ``subject`` (the keyed hash) and ``consent_id``.
consent_withdrawn = _signals.signal("consentkit.consent-withdrawn")
