"""Gated <script>, <iframe> and <img>: inert until their category is granted, active when
it is, with a placeholder that allows the category without JavaScript."""

from __future__ import annotations

import json
from html.parser import HTMLParser
from typing import Any

import pytest
from flask import render_template_string
from markupsafe import Markup

from consentkit.gating import GatingError, html_attrs, iframe_markup, img_markup, script_markup

PAGE = (
    "<!doctype html><html><head>{{ consentkit_head() }}</head><body>"
    '{{ consentkit_script("statistics", src="/static/stats.js", async_=True) }}'
    '{% call consentkit_script("marketing", id="inline-mk") %}window.mk = {{ 1|tojson }};'
    "{% endcall %}"
    '{{ consentkit_iframe("marketing", src="https://video.example/embed?v=1&t=2",'
    ' title="Launch video", class_="video") }}'
    '{{ consentkit_img("marketing", src="https://ads.example/p.gif", alt="") }}'
    "{{ consentkit_banner() }}</body></html>"
)


class Elements(HTMLParser):
    """Every element of a page as ``(tag, attrs, text)``; text only for script/style."""

    def __init__(self, html: str) -> None:
        super().__init__(convert_charrefs=True)
        self.found: list[dict[str, Any]] = []
        self._raw: dict[str, Any] | None = None
        self.feed(html)
        self.close()

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        element = {"tag": tag, "attrs": dict(attrs), "text": ""}
        self.found.append(element)
        if tag in ("script", "style"):
            self._raw = element

    def handle_data(self, data: str) -> None:
        if self._raw is not None:
            self._raw["text"] += data

    def handle_endtag(self, tag: str) -> None:
        if self._raw is not None and tag == self._raw["tag"]:
            self._raw = None

    def tags(self, tag: str, **attrs: str) -> list[dict[str, Any]]:
        return [
            e
            for e in self.found
            if e["tag"] == tag and all(e["attrs"].get(k) == v for k, v in attrs.items())
        ]


@pytest.fixture
def gated_app(make_app, database_uri):
    app = make_app(CONSENTKIT_DATABASE_URI=database_uri)

    @app.get("/gated")
    def gated() -> str:
        return render_template_string(PAGE)

    return app


def page(client, path="/gated?x=1", **headers) -> Elements:
    response = client.get(path, headers=headers)
    assert response.status_code == 200
    return Elements(response.get_data(as_text=True))


# -- pure markup -------------------------------------------------------------------------


def test_script_inert_with_src_and_nonce():
    html = script_markup(
        "statistics", granted=False, src="/s.js?a=1&b=2", nonce="abc", attrs={"defer": True}
    )
    assert isinstance(html, Markup)
    assert html == (
        '<script type="text/plain" data-consentkit="statistics" data-src="/s.js?a=1&amp;b=2"'
        ' defer nonce="abc"></script>'
    )


def test_script_active_keeps_body_verbatim():
    body = 'if (a < b && c > "d") { run(); }'
    html = script_markup("statistics", granted=True, body=body, nonce="n1")
    assert html == f'<script nonce="n1">{body}</script>'
    inert = script_markup("statistics", granted=False, body=body)
    assert inert == f'<script type="text/plain" data-consentkit="statistics">{body}</script>'


def test_values_are_escaped():
    evil = '"><script>alert(1)</script>'
    html = iframe_markup("marketing", granted=False, src="/e?" + evil, title=evil)
    assert "<script>" not in html
    assert "&#34;&gt;&lt;script&gt;" in html
    img = img_markup("marketing", granted=True, src="/p.gif", alt=evil, attrs={"width": evil})
    assert "<script>" not in img


@pytest.mark.parametrize(
    "body", ["x()</script><script>evil()", "x()</SCRIPT >", "<!-- y", "a</script"]
)
def test_script_body_that_would_break_out_is_refused(body):
    with pytest.raises(GatingError, match="must not contain"):
        script_markup("statistics", granted=False, body=body)


@pytest.mark.parametrize(
    ("attrs", "message"),
    [
        ({"onload": "x()"}, "event-handler"),
        ({"ONCLICK": "x()"}, "event-handler"),
        ({"style": "color:red"}, "inline styles"),
        ({"src": "/other.js"}, "set by consentkit"),
        ({"type": "module"}, "set by consentkit"),
        ({"data_consentkit": "marketing"}, "set by consentkit"),
        ({"a b": "1"}, "not an HTML attribute"),
        ({'x"y': "1"}, "not an HTML attribute"),
    ],
)
def test_unsafe_or_owned_attributes_are_refused(attrs, message):
    with pytest.raises(GatingError, match=message):
        script_markup("statistics", granted=False, src="/s.js", attrs=attrs)


@pytest.mark.parametrize("url", ["javascript:alert(1)", " JavaScript:x", "java\tscript:x", ""])
def test_script_urls_are_refused(url):
    with pytest.raises(GatingError):
        iframe_markup("marketing", granted=False, src=url, title="t")


def test_other_refusals():
    with pytest.raises(GatingError, match="unknown consent category"):
        script_markup("analytics", granted=False, src="/s.js")
    with pytest.raises(GatingError, match="needs a src or a body"):
        script_markup("statistics", granted=False, body="  ")
    with pytest.raises(GatingError, match="needs a title"):
        iframe_markup("marketing", granted=False, src="/v", title=" ")


def test_html_attrs_conventions():
    attrs = html_attrs(
        {"class_": "a b", "data_video_id": 7, "allowfullscreen": True, "loading": None, "x": False},
        element="iframe",
    )
    assert attrs == ' class="a b" data-video-id="7" allowfullscreen'


# -- through the app -----------------------------------------------------------------------


def test_undecided_visitor_gets_only_inert_elements(gated_app):
    doc = page(gated_app.test_client())
    stats = doc.tags("script", **{"data-consentkit": "statistics"})
    assert len(stats) == 1
    assert stats[0]["attrs"] == {
        "type": "text/plain",
        "data-consentkit": "statistics",
        "data-src": "/static/stats.js",
        "async": None,
    }
    inline = doc.tags("script", id="inline-mk")[0]
    assert inline["attrs"]["type"] == "text/plain"
    assert inline["text"] == "window.mk = 1;"
    iframe = doc.tags("iframe")[0]
    assert "src" not in iframe["attrs"]
    assert iframe["attrs"]["data-src"] == "https://video.example/embed?v=1&t=2"
    assert "hidden" in iframe["attrs"]
    assert iframe["attrs"]["title"] == "Launch video"
    img = doc.tags("img")[0]
    assert "src" not in img["attrs"]
    assert img["attrs"]["data-src"] == "https://ads.example/p.gif"
    # Nothing else in the page would load the gated URLs.
    assert not [e for e in doc.found if e["attrs"].get("src") == "/static/stats.js"]


def test_accepted_visitor_gets_active_elements(gated_app):
    client = gated_app.test_client()
    assert client.post("/consent", data={"action": "accept_all"}).status_code == 303
    doc = page(client)
    stats = doc.tags("script", src="/static/stats.js")
    assert len(stats) == 1
    assert "type" not in stats[0]["attrs"]
    assert "data-src" not in stats[0]["attrs"]
    inline = doc.tags("script", id="inline-mk")[0]
    assert "type" not in inline["attrs"]
    assert inline["text"] == "window.mk = 1;"
    iframe = doc.tags("iframe")[0]
    assert iframe["attrs"]["src"] == "https://video.example/embed?v=1&t=2"
    assert "hidden" not in iframe["attrs"]
    assert iframe["attrs"]["class"] == "video"
    assert not doc.tags("div", **{"class": "ck-placeholder"})
    assert doc.tags("img")[0]["attrs"]["src"] == "https://ads.example/p.gif"


def test_each_element_follows_its_own_category(gated_app):
    client = gated_app.test_client()
    client.post("/consent", data={"action": "custom", "granted": "statistics"})
    doc = page(client)
    assert doc.tags("script", src="/static/stats.js")
    assert doc.tags("script", id="inline-mk")[0]["attrs"]["type"] == "text/plain"
    assert "src" not in doc.tags("iframe")[0]["attrs"]


def test_placeholder_form_allows_the_category_without_javascript(gated_app):
    client = gated_app.test_client()
    client.post("/consent", data={"action": "custom", "granted": "statistics"})
    doc = page(client, "/gated?x=1")
    placeholders = doc.tags("div", **{"data-consentkit-placeholder": "marketing"})
    assert len(placeholders) == 1
    assert placeholders[0]["attrs"]["class"] == "ck-placeholder"
    form = doc.tags("form", **{"data-consentkit-allow": "marketing"})[0]
    assert form["attrs"]["method"] == "post"
    assert form["attrs"]["action"] == "/consent"
    assert form["attrs"]["class"] == "ck-allow"
    # The form's fields, in document order after the form's start.
    start = doc.found.index(form)
    fields: list[tuple[str, str]] = []
    for element in doc.found[start + 1 :]:
        if element["tag"] == "button":
            assert element["attrs"] == {"type": "submit", "class": "ck-button"}
            break
        if element["tag"] == "input":
            fields.append((element["attrs"]["name"], element["attrs"]["value"]))
    assert fields == [
        ("action", "custom"),
        ("granted", "statistics"),
        ("granted", "marketing"),
        ("surface", "banner"),
        ("next", "/gated?x=1"),
        ("locale", "en"),
    ]
    # Posting exactly those fields grants Marketing, keeps Statistics, goes back.
    data: dict[str, list[str]] = {}
    for name, value in fields:
        data.setdefault(name, []).append(value)
    response = client.post("/consent", data=data)
    assert response.status_code == 303
    assert response.headers["Location"] == "/gated?x=1"
    state = client.get("/consent", headers={"Accept": "application/json"}).get_json()
    assert state["granted"] == ["functional", "statistics", "marketing"]
    doc = page(client)
    assert doc.tags("iframe")[0]["attrs"]["src"].startswith("https://video.example/")
    assert not doc.tags("div", **{"class": "ck-placeholder"})


def test_placeholder_texts_in_both_languages(gated_app):
    client = gated_app.test_client()
    en = client.get("/gated", headers={"Accept-Language": "en"}).get_data(as_text=True)
    assert "This content is blocked until you allow Marketing cookies." in en
    assert "Allow Marketing cookies" in en
    fr = client.get("/gated", headers={"Accept-Language": "fr"}).get_data(as_text=True)
    assert "Ce contenu est bloqué tant que vous n’autorisez pas les cookies « Marketing »." in fr
    assert "Autoriser les cookies « Marketing »" in fr
    assert 'name="locale" value="fr"' in fr
    assert "allow Marketing" not in fr


def test_placeholder_sentence_can_be_replaced(gated_app):
    @gated_app.get("/custom")
    def custom() -> str:
        return render_template_string(
            '{{ consentkit_iframe("marketing", "https://v.example/1", "Clip",'
            ' placeholder="Watch <b>this</b> on VideoHost once you allow it.") }}'
        )

    html = gated_app.test_client().get("/custom").get_data(as_text=True)
    assert "Watch &lt;b&gt;this&lt;/b&gt; on VideoHost once you allow it." in html
    assert "This content is blocked" not in html
    assert "Allow Marketing cookies" in html


def test_site_category_title_is_used_in_the_placeholder(make_app):
    from consentkit import Category

    app = make_app(ck={"categories": [Category("marketing", title="Vidéos & pubs")]})

    @app.get("/v")
    def v() -> str:
        return render_template_string('{{ consentkit_iframe("marketing", "/e", "E") }}')

    html = app.test_client().get("/v").get_data(as_text=True)
    assert "Allow Vidéos &amp; pubs cookies" in html


def test_unknown_category_in_a_template_fails_loudly(make_app):
    app = make_app()

    @app.get("/bad")
    def bad() -> str:
        return render_template_string('{{ consentkit_script("analytics", src="/a.js") }}')

    with pytest.raises(GatingError, match="unknown consent category 'analytics'"):
        app.test_client().get("/bad")


def test_body_given_twice_is_refused(make_app):
    app = make_app()
    with app.test_request_context("/"), pytest.raises(GatingError, match="either"):
        render_template_string(
            '{% call consentkit_script("statistics", body="a()") %}b(){% endcall %}'
        )


def test_nonce_from_the_provider_goes_on_gated_scripts_only(make_app):
    app = make_app(ck={"csp_nonce": lambda: "n0nce-123"})

    @app.get("/g")
    def g_() -> str:
        return render_template_string(PAGE)

    doc = page(app.test_client(), "/g")
    for script in doc.tags("script"):
        if script["attrs"].get("type") == "application/json":
            assert "nonce" not in script["attrs"]
        else:
            assert script["attrs"]["nonce"] == "n0nce-123"
    assert "nonce" not in doc.tags("iframe")[0]["attrs"]
    assert "nonce" not in doc.tags("img")[0]["attrs"]


def test_client_config_matches_the_state_json(gated_app):
    client = gated_app.test_client()
    client.post(
        "/consent", data={"action": "custom", "granted": "preferences"}, headers={"Sec-GPC": "1"}
    )
    doc = page(client, "/gated", **{"Accept-Language": "fr", "Sec-GPC": "1"})
    blocks = doc.tags("script", id="consentkit-config")
    assert len(blocks) == 1
    assert blocks[0]["attrs"]["type"] == "application/json"
    config = json.loads(blocks[0]["text"])
    state = client.get(
        "/consent", headers={"Accept": "application/json", "Sec-GPC": "1"}
    ).get_json()
    assert config == {
        "endpoint": "/consent",
        "preferencesUrl": "/consent",
        "state": state,
        "cookies": {"preferences": [], "statistics": [], "marketing": []},
        "consentMode": False,
        "locale": "fr",
    }
    assert config["state"]["granted"] == ["functional", "preferences"]


def test_client_config_lists_declared_cookies_and_is_html_safe(make_app):
    from consentkit import Category, Cookie

    app = make_app(
        ck={
            "categories": [
                Category("statistics", cookies=[Cookie("_pk_id.*"), Cookie("_pk_ses.*")]),
                Category(
                    "marketing",
                    cookies=[Cookie("ads", domain=".example.test", path="/shop")],
                ),
            ]
        },
        CONSENTKIT_URL_PREFIX="/privacy/consent",
    )
    html = app.test_client().get("/").get_data(as_text=True)
    config = json.loads(Elements(html).tags("script", id="consentkit-config")[0]["text"])
    assert config["endpoint"] == "/privacy/consent"
    assert config["cookies"] == {
        "preferences": [],
        "statistics": [
            {"name": "_pk_id.*", "domain": None, "path": "/"},
            {"name": "_pk_ses.*", "domain": None, "path": "/"},
        ],
        "marketing": [{"name": "ads", "domain": ".example.test", "path": "/shop"}],
    }
    assert config["state"]["decided"] is False


def test_head_order_and_attributes(gated_app):
    html = gated_app.test_client().get("/gated").get_data(as_text=True)
    head = html[html.index("<head>") + len("<head>") : html.index("</head>")]
    doc = Elements(head)
    assert [
        (e["tag"], e["attrs"].get("id") or e["attrs"].get("src") or e["attrs"]["href"])
        for e in doc.found
    ] == [
        ("script", "consentkit-config"),
        ("link", "/consent/static/consentkit/consentkit.css"),
        ("script", "/consent/static/consentkit/consentkit.js"),
    ]
    assert "defer" in doc.found[2]["attrs"]
