"""Decision logic, pure."""

from __future__ import annotations

import pytest

from consentkit.state import UNDECIDED, ConsentState, decide


def run(action, requested=(), previous=(), gpc=False, mode="strict"):
    return decide(
        action=action,
        requested=requested,
        previous_granted=previous,
        consent_id="c" * 22,
        policy_version="1",
        gpc_signal=gpc,
        gpc_mode=mode,
    )


def test_undecided_grants_only_functional():
    assert UNDECIDED.granted_categories == ("functional",)
    assert not UNDECIDED.granted("marketing")
    # Flags alone do not grant while undecided.
    assert not ConsentState(decided=False, statistics=True).granted("statistics")


def test_unknown_category_name_raises_keyerror():
    with pytest.raises(KeyError):
        UNDECIDED.granted("tracking")


@pytest.mark.parametrize(
    ("action", "requested", "granted"),
    [
        ("accept_all", (), ("functional", "preferences", "statistics", "marketing")),
        ("reject_all", (), ("functional",)),
        ("close", (), ("functional",)),
        ("custom", ("statistics",), ("functional", "statistics")),
        ("custom", (), ("functional",)),
    ],
)
def test_actions(action, requested, granted):
    decision = run(action, requested)
    assert decision.granted == granted
    assert set(decision.granted) | set(decision.denied) == {
        "functional",
        "preferences",
        "statistics",
        "marketing",
    }


def test_gpc_strict_accept_all_keeps_marketing_off():
    decision = run("accept_all", gpc=True)
    assert "marketing" in decision.denied
    assert decision.state.gpc


def test_gpc_strict_custom_marketing_is_granted():
    assert "marketing" in run("custom", ("marketing",), gpc=True).granted


def test_gpc_ignore_mode():
    decision = run("accept_all", gpc=True, mode="ignore")
    assert "marketing" in decision.granted
    assert not decision.state.gpc


def test_withdrawn():
    decision = run("custom", ("preferences",), previous=("functional", "statistics", "marketing"))
    assert decision.withdrawn == ("statistics", "marketing")
    assert run("accept_all", previous=("functional", "statistics")).withdrawn == ()


def test_new_consent_id_when_none():
    a = decide(
        action="reject_all",
        consent_id=None,
        policy_version="1",
        gpc_signal=False,
        gpc_mode="strict",
    )
    assert a.state.consent_id
    assert len(a.state.consent_id) >= 22


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [({"action": "grant"}, "unknown action"), ({"requested": ("functional",)}, "unknown")],
)
def test_invalid_inputs(kwargs, message):
    base = {"action": "custom", "requested": ()}
    base.update(kwargs)
    with pytest.raises(ValueError, match=message):
        run(base["action"], base["requested"])


def test_expires_at():
    decision = run("reject_all")
    assert decision.state.expires_at(60) is not None
    assert UNDECIDED.expires_at(60) is None
