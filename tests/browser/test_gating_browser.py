"""Gating and the cookie guard in a real browser: the newsroom example end to end (with and
without JavaScript) and server-set cookies refused until their category is granted."""

from __future__ import annotations

import pytest
from playwright.sync_api import expect

from browser.conftest import LiveServer, cookie_names
from test_example import newsroom

pytestmark = pytest.mark.browser

OPTIONAL = {"nr_visits", "video_session", "theme"}


@pytest.fixture
def newsroom_url(tmp_path):
    app = newsroom.create_app({"TESTING": True}, instance_path=str(tmp_path / "instance"))
    with LiveServer(app) as server:
        yield server.url
    app.extensions["consentkit"].store.dispose()


def counted(page, url: str) -> int:
    """The page views the example's statistics endpoint counted."""
    page.goto(url + "/en/cookies")
    return int(page.locator("#nr-counted").inner_text())


def test_newsroom_accept_then_withdraw(newsroom_url, new_page):
    page = new_page(locale="fr-FR")
    article = newsroom_url + "/fr/article/night-trains"
    page.goto(article)
    placeholder = page.locator("[data-consentkit-placeholder=marketing]")
    expect(placeholder).to_contain_text("Ce contenu est bloqué")
    expect(page.locator("iframe.nr-video-frame")).to_be_hidden()
    assert not OPTIONAL & cookie_names(page)

    page.locator("#ck-banner").get_by_role("button", name="Tout accepter").click()
    # Without a reload: the statistics script runs and the video loads with its cookie.
    page.wait_for_function("() => document.cookie.includes('nr_visits=1')")
    frame = page.locator("iframe.nr-video-frame")
    expect(frame).to_be_visible()
    expect(placeholder).to_have_count(0)
    expect(page.frame_locator("iframe.nr-video-frame").locator("body")).to_contain_text(
        "Lecteur vidéo de démonstration"
    )
    page.wait_for_function("() => document.cookie.includes('video_session=')")

    # The theme is a server-set HttpOnly cookie, allowed now.
    page.get_by_role("button", name="Sombre").click()
    expect(page.locator("body")).to_have_class("nr-theme-dark")
    expect(page.locator("#nr-visits")).to_have_text("2")  # stats.js ran on this page too
    assert {"nr_visits", "video_session", "theme"} <= cookie_names(page)

    # Withdraw everything from the preferences.
    page.locator("#ck-manage").click()
    dialog = page.get_by_role("dialog", name="Gérer le consentement aux cookies")
    dialog.get_by_role("button", name="Tout refuser").click()
    expect(dialog).to_be_hidden()
    page.wait_for_function("() => !document.cookie.includes('nr_visits')")
    assert not OPTIONAL & cookie_names(page)  # HttpOnly "theme" included
    page.reload()
    expect(page.locator("body")).to_have_class("nr-theme-light")
    expect(page.locator("iframe.nr-video-frame")).to_be_hidden()
    assert page.locator("script[type='text/plain'][data-src='/static/stats.js']").count() == 1
    assert not OPTIONAL & cookie_names(page)
    assert counted(page, newsroom_url) == 2  # two page views while Statistics was on
    assert page.watch.csp_violations() == []
    assert page.watch.errors == []


def test_newsroom_contextual_consent_without_javascript(newsroom_url, new_page):
    page = new_page(locale="en-GB", java_script_enabled=False)
    page.goto(newsroom_url + "/en/article/night-trains")
    page.locator("[data-consentkit-placeholder=marketing]").get_by_role(
        "button", name="Allow Marketing cookies"
    ).click()
    page.wait_for_url(newsroom_url + "/en/article/night-trains")
    frame = page.locator("iframe.nr-video-frame")
    expect(frame).to_be_visible()
    expect(frame).to_have_attribute("src", "/embed/video?v=night-trains&lang=en")
    expect(page.frame_locator("iframe.nr-video-frame").locator("body")).to_contain_text(
        "Demo video player"
    )
    names = cookie_names(page)
    assert "video_session" in names
    assert not {"nr_visits", "theme"} & names  # only Marketing was allowed
    # The theme form works, but Preferences is off: nothing is remembered.
    page.get_by_role("button", name="Dark").click()
    expect(page.locator("body")).to_have_class("nr-theme-light")
    assert "theme" not in cookie_names(page)


def test_guard_keeps_server_cookies_out_until_granted(site, new_page):
    page = new_page()
    page.goto(site.url + "/t/set-stat")  # an HttpOnly statistics cookie, set by the server
    assert "_stat_srv" not in cookie_names(page)
    page.goto(site.page_url)
    page.locator("#ck-banner").get_by_role("button", name="Reject all").click()
    page.wait_for_function("() => document.cookie.includes('eu-consent=')")
    page.goto(site.url + "/t/set-stat")
    assert "_stat_srv" not in cookie_names(page)
    page.goto(site.page_url)
    page.locator("#ck-manage").click()
    page.get_by_role("dialog").get_by_role("button", name="Accept all").click()
    # The gated pixel loads in place once Marketing is granted.
    pixel = page.locator("img[alt='']")
    expect(pixel).to_have_attribute("src", "/t/pixel.gif")
    page.wait_for_function("() => document.querySelector(\"img[alt='']\").naturalWidth === 1")
    page.goto(site.url + "/t/set-stat")
    assert "_stat_srv" in cookie_names(page)
