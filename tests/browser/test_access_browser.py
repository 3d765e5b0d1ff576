"""Accessibility and robustness in a real browser: keyboard only, no JavaScript, strict
CSP, axe-core in both languages, 320 px to desktop, reduced motion, Consent Mode."""

from __future__ import annotations

import pytest
from conftest import log_rows
from playwright.sync_api import expect

from browser.conftest import cookie_names, run_axe
from browser.test_banner_browser import LOCALES, NAMES, assert_clean, banner, button

pytestmark = pytest.mark.browser


def focused(page, selector):
    return page.evaluate(f"() => document.activeElement.matches({selector!r})")


def tab_to(page, selector, limit=30, key="Tab"):
    """Press Tab until ``selector`` has focus; return how many presses it took."""
    for presses in range(1, limit + 1):
        page.keyboard.press(key)
        if focused(page, selector):
            return presses
    raise AssertionError(f"{selector} never got focus in {limit} presses of {key}")


def test_keyboard_only_flow(site, new_page):
    page = new_page()
    page.goto(site.page_url)
    # The banner is first in the tab order: its policy link, then the three choices.
    assert tab_to(page, "#ck-banner a") == 1
    page.keyboard.press("Tab")
    assert focused(page, "#ck-banner button[value=accept_all]")
    style = page.evaluate(
        "() => { const s = getComputedStyle(document.activeElement);"
        " return [s.outlineStyle, s.outlineWidth]; }"
    )
    assert style == ["solid", "3px"]  # a visible focus indicator
    page.keyboard.press("Tab")
    assert focused(page, "#ck-banner button[value=reject_all]")
    page.keyboard.press("Tab")
    assert focused(page, "#ck-banner [data-consentkit-open]")
    page.keyboard.press("Enter")
    dialog = page.get_by_role("dialog", name="Manage cookie consent")
    expect(dialog).to_be_visible()
    expect(page.locator("#ck-panel-title")).to_be_focused()
    # Escape closes the panel and returns to Customise, without deciding anything.
    page.keyboard.press("Escape")
    expect(dialog).to_be_hidden()
    expect(banner(page).locator("[data-consentkit-open]")).to_be_focused()
    assert log_rows(site.app) == []
    page.keyboard.press("Enter")
    expect(dialog).to_be_visible()
    tab_to(page, "#ck-toggle-statistics")
    page.keyboard.press("Space")
    expect(page.locator("#ck-toggle-statistics")).to_be_checked()
    # The modal panel keeps focus inside it.
    for _ in range(12):
        page.keyboard.press("Tab")
        assert page.evaluate(
            "() => document.getElementById('ck-panel').contains(document.activeElement)"
            " || document.activeElement === document.body"
        )
    tab_to(page, "#ck-panel button[form=ck-custom-form]")
    page.keyboard.press("Enter")
    expect(dialog).to_be_hidden()
    expect(page.locator("#ck-done")).to_be_focused()
    page.wait_for_function("() => window.__ran === 1")
    assert [r["granted"] for r in log_rows(site.app)] == ["functional,statistics"]
    # The confirmation's Close button, then Manage cookies opens the panel with Enter.
    page.keyboard.press("Tab")
    assert focused(page, "#ck-done button")
    page.keyboard.press("Space")
    expect(page.locator("#ck-done")).to_be_hidden()
    # Focus moves to Manage cookies, not back to the top of the page.
    expect(page.locator("#ck-manage")).to_be_focused()
    page.keyboard.press("Enter")
    expect(dialog).to_be_visible()
    expect(page.locator("#ck-toggle-statistics")).to_be_checked()
    page.keyboard.press("Escape")
    expect(page.locator("#ck-manage")).to_be_focused()
    assert_clean(page)


def test_everything_works_without_javascript(site, new_page):
    page = new_page(java_script_enabled=False)
    page.goto(site.page_url)
    expect(banner(page)).to_be_visible()
    expect(page.locator("#ck-panel")).to_be_hidden()  # the in-page panel needs JavaScript
    expect(page.locator("#ck-done")).to_be_hidden()
    # Customise leads to the preferences page, which comes back to this page.
    button(banner(page), "Customise").click()
    expect(page).to_have_url(f"{site.url}/consent?surface=banner&next=%2Ft%2Fpage&locale=en")
    expect(page.get_by_role("heading", level=1)).to_have_text("Manage cookie consent")
    expect(page.locator("#ck-toggle-statistics")).not_to_be_checked()
    page.locator("#ck-toggle-statistics").check()
    button(page, "Save my choices").click()
    expect(page).to_have_url(site.page_url)
    expect(page.locator("#stats")).to_have_text("True")
    expect(banner(page)).to_have_count(0)
    expect(page.locator("script[src='/t/stat.js']")).to_have_count(1)  # rendered live
    # Manage cookies, then Reject all: back again, statistics off.
    page.locator("#ck-manage").click()
    expect(page).to_have_url(f"{site.url}/consent?next=/t/page")
    expect(page.locator("#ck-toggle-statistics")).to_be_checked()
    button(page, "Reject all").click()
    expect(page).to_have_url(site.page_url)
    expect(page.locator("#stats")).to_have_text("False")
    rows = log_rows(site.app)
    assert [(r["action"], r["surface"], r["withdrawn"]) for r in rows] == [
        ("custom", "preferences", ""),
        ("reject_all", "preferences", "statistics"),
    ]
    # Accept all straight from the first layer, in another browser.
    other = new_page(java_script_enabled=False, locale="fr-FR")
    other.goto(site.page_url)
    button(banner(other), "Tout accepter").click()
    expect(other).to_have_url(site.page_url)
    expect(other.locator("#stats")).to_have_text("True")
    assert log_rows(site.app)[-1]["action"] == "accept_all"
    assert log_rows(site.app)[-1]["locale"] == "fr"


def test_preferences_page_saves_in_place_with_javascript(site, new_page):
    page = new_page()
    page.goto(site.url + "/consent?next=/t/page")
    page.locator("#ck-toggle-marketing").check()
    button(page, "Save my choices").click()
    expect(page.locator("#ck-done")).to_be_visible()
    expect(page.locator("#ck-done")).to_be_focused()
    assert page.url == site.url + "/consent?next=/t/page"
    assert [r["granted"] for r in log_rows(site.app)] == ["functional,marketing"]
    # Reloaded: the page shows the saved choice; "Reject all" clears the switch in place.
    page.reload()
    expect(page.locator("#ck-toggle-marketing")).to_be_checked()
    button(page, "Reject all").click()
    expect(page.locator("#ck-toggle-marketing")).not_to_be_checked()
    expect(page.locator(".ck-status:not(#ck-done)")).to_be_hidden()  # the old expiry date
    assert [r["action"] for r in log_rows(site.app)] == ["custom", "reject_all"]
    assert_clean(page)


def test_strict_csp_no_violation(site, new_page):
    page = new_page()
    response = page.goto(site.page_url)
    assert "style-src 'self'" in response.headers["content-security-policy"]
    assert "unsafe-inline" not in response.headers["content-security-policy"]
    button(banner(page), "Customise").click()
    dialog = page.get_by_role("dialog")
    dialog.get_by_role("checkbox", name="Marketing").check()
    button(dialog, "Save my choices").click()
    page.wait_for_function("() => window.__marketing === true")
    assert page.watch.csp_violations() == []
    for path in ("/consent?next=/t/page", "/consent/receipt"):
        page.goto(site.url + path)
        expect(page.locator("link[rel=stylesheet]")).to_have_count(1)
        assert page.evaluate("getComputedStyle(document.querySelector('main')).maxWidth") == (
            "768px"  # consentkit.css applied (48rem)
        )
        assert page.watch.csp_violations() == []
        assert page.watch.errors == []
    # The watch itself works: an inline style is a violation it reports.
    page.evaluate("document.body.setAttribute('style', 'color: red')")
    page.wait_for_function("() => window.__cspViolations.length > 0")
    assert page.watch.csp_violations()[0]["directive"].startswith("style-src")


@pytest.mark.parametrize("lang", ["en", "fr"])
def test_axe_banner_panel_and_page(site, new_page, lang):
    page = new_page(locale=LOCALES[lang])
    page.goto(site.page_url)
    expect(banner(page)).to_be_visible()
    assert run_axe(page) == []
    button(banner(page), NAMES[lang]["customise"]).click()
    expect(page.get_by_role("dialog")).to_be_visible()
    assert run_axe(page) == []
    page.goto(site.url + "/consent?next=/t/page")
    assert run_axe(page) == []


def test_axe_finds_a_real_problem(site, new_page):
    """The check above can fail: a banner button with its label removed is reported."""
    page = new_page()
    page.goto(site.page_url)
    page.evaluate("document.querySelector('#ck-banner button[value=reject_all]').textContent = ''")
    assert "button-name" in {v["id"] for v in run_axe(page)}


@pytest.mark.parametrize(("width", "height"), [(320, 640), (375, 740), (1280, 800)])
def test_usable_from_320px_to_desktop(site, new_page, width, height):
    page = new_page(viewport={"width": width, "height": height})
    page.goto(site.page_url)
    expect(banner(page)).to_be_visible()
    assert page.evaluate("document.documentElement.scrollWidth") <= width
    sizes = {
        (round(b["width"]), round(b["height"]))
        for b in (x.bounding_box() for x in banner(page).locator(".ck-button").all())
    }
    assert len(sizes) == 1
    (button_width, button_height) = sizes.pop()
    assert button_height >= 44  # a comfortable target
    assert button_width <= width
    button(banner(page), "Customise").click()
    dialog = page.locator("#ck-panel")
    expect(dialog).to_be_visible()
    box = dialog.bounding_box()
    assert box["x"] >= 0
    assert box["x"] + box["width"] <= width
    panel_fits = "(p => p.scrollWidth <= p.clientWidth)(document.getElementById('ck-panel'))"
    assert page.evaluate(panel_fits)
    # The last button can be reached (the panel scrolls inside the viewport).
    save = button(dialog, "Save my choices")
    save.scroll_into_view_if_needed()
    expect(save).to_be_in_viewport()


def test_reduced_motion(site, new_page):
    banner_animation = "getComputedStyle(document.getElementById('ck-banner')).animationName"
    switch_transition = (
        "getComputedStyle(document.getElementById('ck-toggle-statistics')).transitionDuration"
    )
    moving = new_page()
    moving.goto(site.page_url)
    assert moving.evaluate(banner_animation) == "ck-in"
    assert moving.evaluate(switch_transition) != "0s"
    still = new_page(reduced_motion="reduce")
    still.goto(site.page_url)
    assert still.evaluate(banner_animation) == "none"
    assert still.evaluate(switch_transition) == "0s"


def test_consent_mode_update_once_per_decision(make_site, new_page):
    site = make_site(CONSENTKIT_GOOGLE_CONSENT_MODE=True)
    page = new_page()
    page.goto(site.page_url)
    layer = "() => (window.dataLayer || []).map(a => Array.from(a))"
    assert [e[:2] for e in page.evaluate(layer)] == [["consent", "default"]]
    button(banner(page), "Customise").click()
    dialog = page.get_by_role("dialog")
    dialog.get_by_role("checkbox", name="Statistics").check()
    button(dialog, "Save my choices").click()
    expect(dialog).to_be_hidden()
    page.wait_for_function("() => window.__ran === 1")
    entries = page.evaluate(layer)
    assert [e[:2] for e in entries] == [["consent", "default"], ["consent", "update"]]
    assert entries[1][2] == {
        "analytics_storage": "granted",
        "ad_storage": "denied",
        "ad_user_data": "denied",
        "ad_personalization": "denied",
        "personalization_storage": "denied",
    }
    assert_clean(page)


def test_no_consent_mode_no_gtag(site, new_page):
    page = new_page()
    page.goto(site.page_url)
    button(banner(page), "Accept all").click()
    page.wait_for_function("() => window.__ran === 1")
    assert page.evaluate("typeof window.gtag") == "undefined"
    assert page.evaluate("window.dataLayer === undefined")
    assert "eu-consent" in cookie_names(page)
