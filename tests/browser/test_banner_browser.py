"""The banner and the preference centre in a real browser: first visit, Accept / Reject,
Customise, Manage cookies, withdrawal, in French and English, under a strict CSP."""

from __future__ import annotations

import re
from typing import Any

import pytest
from conftest import log_rows
from playwright.sync_api import expect

from browser.conftest import cookie_names

pytestmark = pytest.mark.browser

COOKIE = "eu-consent"
NAMES = {
    "en": {
        "title": "Manage cookie consent",
        "accept": "Accept all",
        "reject": "Reject all",
        "customise": "Customise",
        "save": "Save my choices",
        "manage": "Manage cookies",
        "statistics": "Statistics",
        "marketing": "Marketing",
    },
    "fr": {
        "title": "Gérer le consentement aux cookies",
        "accept": "Tout accepter",
        "reject": "Tout refuser",
        "customise": "Personnaliser",
        "save": "Enregistrer mes choix",
        "manage": "Gérer mes cookies",
        "statistics": "Statistiques",
        "marketing": "Marketing",
    },
}
LOCALES = {"en": "en-GB", "fr": "fr-FR"}


def banner(page):
    return page.locator("#ck-banner")


def button(scope, name):
    return scope.get_by_role("button", name=name, exact=True)


def assert_nothing_ran(page):
    assert page.evaluate("window.__ran || 0") == 0
    assert page.evaluate("window.__inline || 0") == 0
    assert page.evaluate("window.__marketing || false") is False
    assert not {"_stat_js", "_pk_id.1.abc", "_pk_ses.1.abc", "video_id"} & cookie_names(page)


def refuse_on_first_visit(page, url, label="Reject all"):
    """A first visit that rejects everything, waiting until the choice is saved."""
    page.goto(url)
    button(banner(page), label).click()
    expect(page.locator("#ck-done")).to_be_visible()


def assert_clean(page):
    assert page.watch.csp_violations() == []
    assert page.watch.errors == []


@pytest.mark.parametrize("lang", ["en", "fr"])
def test_first_visit_shows_the_banner_and_runs_nothing(site, new_page, lang):
    t = NAMES[lang]
    page = new_page(locale=LOCALES[lang])
    page.goto(site.page_url)
    region = page.get_by_role("region", name=t["title"])
    expect(region).to_be_visible()
    expect(region).to_have_attribute("lang", lang)
    expect(region).to_contain_text("Test Org")
    for name in ("accept", "reject", "customise"):
        expect(button(region, t[name])).to_be_visible()
    # Same element, same class, same size for the three choices.
    boxes = [button(region, t[n]).bounding_box() for n in ("accept", "reject", "customise")]
    assert len({(round(b["width"]), round(b["height"])) for b in boxes}) == 1
    classes = {button(region, t[n]).get_attribute("class") for n in ("accept", "reject")}
    assert classes == {"ck-button"}
    # The banner comes first in reading and tab order, but does not take focus.
    assert page.evaluate("document.body.firstElementChild.id") == "ck-banner"
    assert page.evaluate("document.activeElement === document.body")
    expect(page.locator("#ck-manage")).to_have_text(t["manage"])
    assert_nothing_ran(page)
    assert COOKIE not in cookie_names(page)
    assert log_rows(site.app) == []
    assert_clean(page)


def test_reject_all_hides_the_banner_and_records_one_row(make_site, database_uri, new_page):
    site = make_site(CONSENTKIT_DATABASE_URI=database_uri)
    page = new_page()
    page.goto(site.page_url)
    button(banner(page), "Reject all").click()
    expect(banner(page)).to_be_hidden()
    expect(page.locator("#ck-done")).to_be_visible()
    expect(page.locator("#ck-done")).to_be_focused()
    assert COOKIE in cookie_names(page)
    rows = log_rows(site.app)
    assert [(r["action"], r["surface"], r["granted"]) for r in rows] == [
        ("reject_all", "banner", "functional")
    ]
    assert_nothing_ran(page)
    # The next page has no banner and still runs nothing; it works normally (no wall).
    page.goto(site.url + "/t/other")
    expect(banner(page)).to_have_count(0)
    expect(page.get_by_role("heading", name="Other page")).to_be_visible()
    assert_nothing_ran(page)
    assert len(log_rows(site.app)) == 1
    assert_clean(page)


def test_accept_all_runs_gated_code_without_reload(site, new_page):
    page = new_page()
    page.goto(site.page_url)
    page.evaluate("window.__sameDocument = true")
    events = []
    page.expose_function("__ckEvent", lambda detail: events.append(detail))
    page.evaluate("document.addEventListener('consentkit:change', e => window.__ckEvent(e.detail))")
    button(banner(page), "Accept all").click()
    expect(banner(page)).to_be_hidden()
    page.wait_for_function(
        "() => window.__ran === 1 && window.__inline === 1 && window.__marketing"
    )
    assert page.evaluate("window.__sameDocument") is True  # no reload
    frame = page.locator("iframe[title=Video]")
    expect(frame).to_be_visible()
    expect(page.locator("[data-consentkit-placeholder]")).to_have_count(0)
    expect(page.locator("img[src='/t/pixel.gif']")).to_have_count(1)
    assert {"_stat_js", "_pk_id.1.abc", "video_id"} <= cookie_names(page)
    assert len(events) == 1
    assert events[0]["granted"] == ["functional", "preferences", "statistics", "marketing"]
    assert [r["action"] for r in log_rows(site.app)] == ["accept_all"]
    # Already granted: the next page renders the scripts live, each runs once.
    page.goto(site.url + "/t/other")
    page.wait_for_function("() => window.__ran === 1")
    assert page.evaluate("window.__inline") == 1
    assert_clean(page)


@pytest.mark.parametrize("lang", ["en", "fr"])
def test_customise_opens_the_panel_in_page(site, new_page, lang):
    t = NAMES[lang]
    page = new_page(locale=LOCALES[lang])
    page.goto(site.page_url)
    button(banner(page), t["customise"]).click()
    dialog = page.get_by_role("dialog", name=t["title"])
    expect(dialog).to_be_visible()
    expect(page.locator("#ck-panel-title")).to_be_focused()
    assert page.url == site.page_url  # no navigation
    # Optional switches off, Functional on and disabled ("Always active").
    for name in ("preferences", "statistics", "marketing"):
        expect(page.locator(f"#ck-toggle-{name}")).not_to_be_checked()
    functional = page.locator("#ck-toggle-functional")
    expect(functional).to_be_checked()
    expect(functional).to_be_disabled()
    expect(dialog.get_by_role("checkbox", name=t["statistics"])).to_be_visible()
    expect(dialog.locator("table.ck-cookies").first).to_be_visible()
    dialog.get_by_role("checkbox", name=t["statistics"]).check()
    button(dialog, t["save"]).click()
    expect(dialog).to_be_hidden()
    expect(banner(page)).to_be_hidden()
    page.wait_for_function("() => window.__ran === 1")
    assert page.evaluate("window.__marketing || false") is False
    rows = log_rows(site.app)
    assert [(r["action"], r["surface"], r["granted"], r["locale"]) for r in rows] == [
        ("custom", "preferences", "functional,statistics", lang)
    ]
    # The opener went away with the banner: focus lands on the confirmation.
    expect(page.locator("#ck-done")).to_be_focused()
    assert_clean(page)


def test_panel_accept_and_reject_do_not_send_the_switches(site, new_page):
    page = new_page()
    page.goto(site.page_url)
    button(banner(page), "Customise").click()
    dialog = page.get_by_role("dialog")
    dialog.get_by_role("checkbox", name="Statistics").check()
    button(dialog, "Reject all").click()  # the server refuses "granted" with reject_all
    expect(dialog).to_be_hidden()
    assert [r["action"] for r in log_rows(site.app)] == ["reject_all"]
    page.locator("#ck-manage").click()
    # Reopened: the switches show the saved choice, not the unsaved click.
    expect(dialog.get_by_role("checkbox", name="Statistics")).not_to_be_checked()
    button(dialog, "Accept all").click()
    expect(dialog).to_be_hidden()
    assert [r["action"] for r in log_rows(site.app)] == ["reject_all", "accept_all"]
    assert_clean(page)


def test_manage_cookies_withdraws_statistics_and_deletes_its_cookies(site, new_page):
    page = new_page()
    page.goto(site.page_url)
    button(banner(page), "Accept all").click()
    page.wait_for_function("() => window.__ran === 1")
    page.goto(site.url + "/t/set-stat")  # a server-set HttpOnly statistics cookie
    page.goto(site.page_url)
    page.wait_for_function("() => window.__ran === 1")
    assert {"_stat_js", "_pk_id.1.abc", "_pk_ses.1.abc", "_stat_srv", "video_id"} <= (
        cookie_names(page)
    )

    manage = page.locator("#ck-manage")
    manage.click()
    dialog = page.get_by_role("dialog", name="Manage cookie consent")
    statistics = dialog.get_by_role("checkbox", name="Statistics")
    expect(statistics).to_be_checked()  # previously granted
    statistics.uncheck()
    button(dialog, "Save my choices").click()
    expect(dialog).to_be_hidden()
    expect(manage).to_be_focused()  # back to the control that opened the panel
    page.wait_for_function("() => !document.cookie.includes('_pk_ses')")
    names = cookie_names(page)
    assert not {"_stat_js", "_pk_id.1.abc", "_pk_ses.1.abc", "_stat_srv"} & names
    assert {"video_id", COOKIE} <= names  # marketing is still granted
    rows = log_rows(site.app)
    assert [(r["action"], r["withdrawn"]) for r in rows] == [
        ("accept_all", ""),
        ("custom", "statistics"),
    ]
    # The next page renders the statistics script inert again.
    page.goto(site.page_url)
    expect(page.locator("script[type='text/plain'][data-consentkit=statistics]")).to_have_count(2)
    assert page.evaluate("window.__ran || 0") == 0
    assert_clean(page)


def test_manage_cookies_after_a_refusal_grants_in_one_panel(site, new_page):
    page = new_page(locale="fr-FR")
    page.goto(site.page_url)
    button(banner(page), "Tout refuser").click()
    expect(page.locator("#ck-done")).to_be_focused()
    page.reload()
    expect(banner(page)).to_have_count(0)
    page.locator("#ck-manage", has_text="Gérer mes cookies").click()
    dialog = page.get_by_role("dialog", name="Gérer le consentement aux cookies")
    dialog.get_by_role("checkbox", name="Marketing").check()
    button(dialog, "Enregistrer mes choix").click()
    page.wait_for_function("() => window.__marketing === true")
    assert page.evaluate("window.__ran || 0") == 0
    assert [r["granted"] for r in log_rows(site.app)] == ["functional", "functional,marketing"]
    assert_clean(page)


def test_placeholder_allows_its_category_only(site, new_page):
    page = new_page()
    page.goto(site.page_url)
    button(banner(page), "Customise").click()
    dialog = page.get_by_role("dialog")
    dialog.get_by_role("checkbox", name="Statistics").check()
    button(dialog, "Save my choices").click()
    page.wait_for_function("() => window.__ran === 1")
    placeholder = page.locator("[data-consentkit-placeholder=marketing]")
    placeholder.get_by_role("button").click()
    frame = page.locator("iframe[title=Video]")
    expect(frame).to_be_visible()
    expect(frame).to_be_focused()
    expect(placeholder).to_have_count(0)
    rows = log_rows(site.app)
    # Statistics, granted in this page after it was rendered, is kept.
    assert [r["granted"] for r in rows] == [
        "functional,statistics",
        "functional,statistics,marketing",
    ]
    assert page.evaluate("window.__ran") == 1  # not run twice
    assert_clean(page)


def test_gpc_notice_and_marketing_stays_off(site, new_page):
    page = new_page(extra_http_headers={"Sec-GPC": "1"})
    page.goto(site.page_url)
    expect(banner(page)).to_contain_text("Opt-out preference signal honoured")
    button(banner(page), "Accept all").click()
    page.wait_for_function("() => window.__ran === 1")
    assert page.evaluate("window.__marketing || false") is False
    assert log_rows(site.app)[0]["gpc"] is True
    assert_clean(page)


def test_fetch_failure_falls_back_to_a_normal_submission(site, new_page):
    page = new_page()
    page.goto(site.page_url)
    # The first fetch fails at the network level; the form is then submitted normally.
    failed = []

    def fail_once(route):
        if route.request.headers.get("accept") == "application/json" and not failed:
            failed.append(route.request.url)
            route.abort()
        else:
            route.continue_()

    page.route(re.compile(r".*/consent$"), fail_once)
    with page.expect_navigation():
        button(banner(page), "Reject all").click()
    assert failed
    assert page.url == site.page_url
    expect(banner(page)).to_have_count(0)
    assert [r["action"] for r in log_rows(site.app)] == ["reject_all"]


def test_a_second_submission_while_saving_is_ignored(site, new_page):
    page = new_page()
    page.goto(site.page_url)
    page.evaluate(
        """() => {
            const b = document.querySelector('#ck-banner button[value=accept_all]');
            b.form.requestSubmit(b);
            b.form.requestSubmit(b);
        }"""
    )
    expect(banner(page)).to_be_hidden()
    page.wait_for_function("() => window.__ran === 1")
    assert len(log_rows(site.app)) == 1


def test_leftover_cookies_of_refused_categories_are_deleted_on_load(site, new_page):
    """A JavaScript-visible cookie of a category not granted (left by an older visit, or
    set under a path the server never sees on a decision) is deleted by consentkit.js."""
    page = new_page()
    host = site.url.split("//", 1)[1].split(":", 1)[0]
    page.context.add_cookies(
        [
            {"name": "_pk_ses.9.zz", "value": "1", "domain": host, "path": "/t/"},
            {"name": "video_old", "value": "1", "domain": host, "path": "/"},
            {"name": "unrelated", "value": "1", "domain": host, "path": "/"},
        ]
    )
    page.goto(site.page_url)
    expect(banner(page)).to_be_visible()
    page.wait_for_function("() => !document.cookie.includes('video_old')")
    names = cookie_names(page)
    assert not {"_pk_ses.9.zz", "video_old"} & names
    assert "unrelated" in names  # undeclared cookies are not consentkit's to delete
    assert_clean(page)


RESTORED = "() => window.dispatchEvent(new PageTransitionEvent('pageshow', {persisted: true}))"


def test_a_page_back_from_the_cache_follows_a_choice_made_since(site, new_page):
    page = new_page()
    page.goto(site.page_url)
    expect(banner(page)).to_be_visible()
    changes = page.evaluate_handle(
        "() => { const seen = [];"
        " document.addEventListener('consentkit:change', e => seen.push(e.detail.granted));"
        " return seen; }"
    )
    # Meanwhile, on another page of the site, the visitor accepts everything.
    other = page.context.new_page()
    other.goto(site.page_url)
    button(banner(other), "Accept all").click()
    expect(banner(other)).to_be_hidden()
    # A pageshow that is not a restore from the back/forward cache changes nothing.
    page.evaluate("() => window.dispatchEvent(new PageTransitionEvent('pageshow'))")
    page.wait_for_timeout(300)
    expect(banner(page)).to_be_visible()
    assert changes.evaluate("seen => seen.length") == 0
    # What the browser fires when Back shows the first page from its back/forward cache.
    page.evaluate(RESTORED)
    expect(banner(page)).to_be_hidden()
    page.wait_for_function("() => window.__ran === 1")  # its statistics script now runs
    assert changes.evaluate("seen => seen.length") == 1
    # Restored again with the same choice: nothing more to do.
    page.evaluate(RESTORED)
    page.wait_for_timeout(300)
    assert changes.evaluate("seen => seen.length") == 1
    assert page.evaluate("window.__ran") == 1
    assert [r["action"] for r in log_rows(site.app)] == ["accept_all"]  # nothing recorded
    assert_clean(page)


def test_a_failed_catch_up_after_back_leaves_the_page_working(site, new_page):
    page = new_page()
    page.goto(site.page_url)

    def refuse(route):  # a maintenance layer answering GET /consent with an error
        if route.request.method == "GET":
            route.fulfill(status=503, content_type="application/json", body='{"error": "busy"}')
        else:
            route.continue_()

    page.route("**/consent*", refuse)
    page.evaluate(RESTORED)
    page.wait_for_timeout(300)
    expect(banner(page)).to_be_visible()
    button(banner(page), "Accept all").click()  # the page still works
    expect(banner(page)).to_be_hidden()
    page.wait_for_function("() => window.__ran === 1")
    assert [r["action"] for r in log_rows(site.app)] == ["accept_all"]
    # Only the browser's own note of the 503; no script error.
    assert [e for e in page.watch.errors if "Failed to load resource" not in e] == []


def test_a_returning_visitors_page_fetches_the_panel_once_when_needed(site, new_page):
    page = new_page()
    refuse_on_first_visit(page, site.page_url)
    fetched = []
    page.on("request", lambda r: fetched.append(r.url) if "/consent/panel" in r.url else None)
    page.goto(site.url + "/t/other?x=1&y=2")
    # The page carries the "Manage cookies" link only.
    expect(page.locator("#ck-manage")).to_be_visible()
    expect(page.locator("#ck-panel, #ck-done")).to_have_count(0)
    page.locator("#ck-manage").click()
    dialog = page.get_by_role("dialog", name="Manage cookie consent")
    expect(dialog).to_be_visible()
    expect(page.locator("#ck-panel-title")).to_be_focused()
    assert page.url == site.url + "/t/other?x=1&y=2"  # no navigation
    assert len(fetched) == 1
    assert "next=%2Ft%2Fother%3Fx%3D1%26y%3D2" in fetched[0]
    # The forms come back to this page without JavaScript too.
    assert page.locator("#ck-custom-form input[name=next]").input_value() == "/t/other?x=1&y=2"
    button(dialog, "Close").click()
    expect(dialog).to_be_hidden()
    expect(page.locator("#ck-manage")).to_be_focused()
    page.locator("#ck-manage").click()  # opened again from the page, not fetched again
    expect(dialog).to_be_visible()
    assert len(fetched) == 1
    dialog.get_by_role("checkbox", name="Statistics").check()
    button(dialog, "Save my choices").click()
    expect(dialog).to_be_hidden()
    page.wait_for_function("() => window.__ran === 1")
    assert [r["granted"] for r in log_rows(site.app)] == ["functional", "functional,statistics"]
    assert_clean(page)


def test_manage_cookies_goes_to_the_preferences_page_when_the_panel_cannot_load(site, new_page):
    page = new_page(locale="fr-FR")
    refuse_on_first_visit(page, site.page_url, "Tout refuser")
    page.goto(site.page_url)
    page.route(
        "**/consent/panel*",
        lambda route: route.fulfill(status=503, content_type="text/plain", body="busy"),
    )
    page.locator("#ck-manage").click()
    page.wait_for_url(re.compile(r"/consent\?next=/t/page$"))
    expect(page.get_by_role("heading", name="Gérer le consentement aux cookies")).to_be_visible()
    expect(page.locator("#ck-toggle-statistics")).not_to_be_checked()
    assert [e for e in page.watch.errors if "Failed to load resource" not in e] == []


def test_a_host_opener_without_href_falls_back_to_the_preferences_page_of_this_page(site, new_page):
    page = new_page()
    refuse_on_first_visit(page, site.page_url)
    page.goto(site.url + "/t/other?x=1")
    page.route(
        "**/consent/panel*",
        lambda route: route.fulfill(status=503, content_type="text/plain", body="busy"),
    )
    # A site's own control, a button: no link to fall back on.
    page.evaluate(
        "document.body.insertAdjacentHTML('beforeend',"
        " '<button type=button data-consentkit-open>Cookie settings</button>')"
    )
    page.get_by_role("button", name="Cookie settings").click()
    page.wait_for_url(re.compile(r"/consent\?next=%2Ft%2Fother%3Fx%3D1$"))
    # Its forms come back to the page the visitor was on.
    assert page.locator("input[name=next]").first.input_value() == "/t/other?x=1"


def test_a_placeholder_allows_while_the_panel_is_still_loading(site, new_page):
    page = new_page()
    refuse_on_first_visit(page, site.page_url)
    page.goto(site.page_url)
    page.evaluate("window.__sameDocument = true")
    held: list[Any] = []
    page.route("**/consent/panel*", lambda route: held.append(route))  # slow to answer
    page.locator("#ck-manage").click()
    for _ in range(100):  # routes are handed over while Playwright is waited on
        if held:
            break
        page.wait_for_timeout(20)
    assert len(held) == 1
    placeholder = page.locator("[data-consentkit-placeholder=marketing]")
    placeholder.get_by_role("button").click()  # not ignored because the panel is loading
    page.wait_for_function("() => window.__marketing === true")
    expect(page.locator("iframe[title=Video]")).to_be_visible()
    assert [r["granted"] for r in log_rows(site.app)] == ["functional", "functional,marketing"]
    held[0].continue_()  # the panel arrives, showing the choice just made
    dialog = page.get_by_role("dialog", name="Manage cookie consent")
    expect(dialog).to_be_visible()
    expect(dialog.get_by_role("checkbox", name="Marketing")).to_be_checked()
    assert page.evaluate("window.__sameDocument") is True
    assert_clean(page)


def test_a_panel_fetched_from_a_placeholder_is_styled_and_saves_in_place(site, new_page):
    page = new_page()
    refuse_on_first_visit(page, site.page_url)
    page.goto(site.page_url)
    page.evaluate("window.__sameDocument = true")
    placeholder = page.locator("[data-consentkit-placeholder=marketing]")
    placeholder.get_by_role("link", name="Manage cookies").click()  # outside .ck-root
    dialog = page.get_by_role("dialog", name="Manage cookie consent")
    expect(dialog).to_be_visible()
    # The theme applies: a background of its own, not the page's backdrop showing through.
    background = dialog.evaluate("d => getComputedStyle(d).backgroundColor")
    assert background not in ("rgba(0, 0, 0, 0)", "transparent")
    assert dialog.evaluate("d => d.closest('[lang]').lang") == "en"
    dialog.get_by_role("checkbox", name="Marketing").check()
    button(dialog, "Save my choices").click()
    expect(dialog).to_be_hidden()
    page.wait_for_function("() => window.__marketing === true")
    assert page.evaluate("window.__sameDocument") is True  # saved with fetch, no reload
    expect(page.locator("iframe[title=Video]")).to_be_visible()
    assert [r["granted"] for r in log_rows(site.app)] == ["functional", "functional,marketing"]
    assert_clean(page)
