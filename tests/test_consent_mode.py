"""Google Consent Mode v2: opt-in, defaults from the stored state before any Google tag.

consent-mode.js is run for real (Node's vm) against the configuration the page renders.
"""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest

from consentkit import ConfigError
from test_gating import Elements

SCRIPT = (
    Path(__file__).resolve().parent.parent
    / "src"
    / "consentkit"
    / "static"
    / "consentkit"
    / "consent-mode.js"
)

# Runs consent-mode.js in a bare global with a fake document; prints what it pushed.
HARNESS = r"""
const fs = require("fs"), vm = require("vm");
const input = JSON.parse(fs.readFileSync(0, "utf8"));
const own = [];
const sandbox = {
  document: {
    getElementById: (id) =>
      id === "consentkit-config" && input.config !== null ? { textContent: input.config } : null,
  },
};
sandbox.window = sandbox;
if (input.predefinedGtag) {
  sandbox.gtag = function () { own.push(Array.from(arguments)); };
}
vm.createContext(sandbox);
vm.runInContext(fs.readFileSync(input.script, "utf8"), sandbox);
const pushed = (sandbox.dataLayer || []).map((args) => ({
  isArguments: Object.prototype.toString.call(args) === "[object Arguments]",
  args: Array.from(args),
}));
process.stdout.write(JSON.stringify({ dataLayer: pushed, own: own }));
"""

ALL_DENIED = {
    "ad_storage": "denied",
    "ad_user_data": "denied",
    "ad_personalization": "denied",
    "analytics_storage": "denied",
    "personalization_storage": "denied",
    "functionality_storage": "granted",
    "security_storage": "granted",
}


def run_script(config: str | None, *, predefined_gtag: bool = False) -> dict:
    node = shutil.which("node")
    if node is None:
        pytest.skip("node is not installed (scripts/bootstrap.sh installs it)")
    result = subprocess.run(
        [node, "-e", HARNESS],
        input=json.dumps(
            {"script": str(SCRIPT), "config": config, "predefinedGtag": predefined_gtag}
        ),
        capture_output=True,
        text=True,
        timeout=30,
        check=True,
    )
    return json.loads(result.stdout)


def config_text(client, **headers) -> str:
    html = client.get("/", headers=headers).get_data(as_text=True)
    return Elements(html).tags("script", id="consentkit-config")[0]["text"]


def defaults_for(client, **headers) -> dict:
    out = run_script(config_text(client, **headers))
    assert len(out["dataLayer"]) == 1
    entry = out["dataLayer"][0]
    assert entry["isArguments"]  # gtag's queue holds arguments objects, as Google's snippet
    assert entry["args"][:2] == ["consent", "default"]
    return entry["args"][2]


@pytest.fixture
def cm_app(make_app, database_uri):
    return make_app(CONSENTKIT_DATABASE_URI=database_uri, CONSENTKIT_GOOGLE_CONSENT_MODE=True)


def test_off_by_default(make_app):
    client = make_app().test_client()
    html = client.get("/").get_data(as_text=True)
    assert "consent-mode.js" not in html
    assert json.loads(config_text(client))["consentMode"] is False


def test_head_loads_it_synchronously_between_config_and_banner(cm_app):
    html = cm_app.test_client().get("/").get_data(as_text=True)
    scripts = Elements(html).tags("script")
    assert [s["attrs"].get("id") or s["attrs"].get("src") for s in scripts[:3]] == [
        "consentkit-config",
        "/consent/static/consentkit/consent-mode.js",
        "/consent/static/consentkit/consentkit.js",
    ]
    mode = scripts[1]["attrs"]
    assert "defer" not in mode
    assert "async" not in mode
    assert json.loads(scripts[0]["text"])["consentMode"] is True


def test_option_beats_config_and_is_validated(make_app):
    app = make_app(ck={"google_consent_mode": True})
    assert "consent-mode.js" in app.test_client().get("/").get_data(as_text=True)
    with pytest.raises(ConfigError, match="CONSENTKIT_GOOGLE_CONSENT_MODE"):
        make_app(CONSENTKIT_GOOGLE_CONSENT_MODE="yes")


def test_script_is_served_and_small(cm_app):
    response = cm_app.test_client().get("/consent/static/consentkit/consent-mode.js")
    assert response.status_code == 200
    assert response.mimetype in ("text/javascript", "application/javascript")
    assert len(response.data) < 2000
    response.close()


def test_undecided_visitor_defaults_to_denied(cm_app):
    assert defaults_for(cm_app.test_client()) == ALL_DENIED


def test_accept_all_grants_everything(cm_app):
    client = cm_app.test_client()
    client.post("/consent", data={"action": "accept_all"})
    assert defaults_for(client) == dict.fromkeys(ALL_DENIED, "granted")


def test_each_category_maps_to_its_signals(cm_app):
    client = cm_app.test_client()
    client.post("/consent", data={"action": "custom", "granted": "statistics"})
    assert defaults_for(client) == {**ALL_DENIED, "analytics_storage": "granted"}
    client.post("/consent", data={"action": "custom", "granted": "preferences"})
    assert defaults_for(client) == {**ALL_DENIED, "personalization_storage": "granted"}
    client.post("/consent", data={"action": "custom", "granted": "marketing"})
    assert defaults_for(client) == {
        **ALL_DENIED,
        "ad_storage": "granted",
        "ad_user_data": "granted",
        "ad_personalization": "granted",
    }


def test_gpc_keeps_advertising_denied(cm_app):
    client = cm_app.test_client()
    client.post("/consent", data={"action": "accept_all"}, headers={"Sec-GPC": "1"})
    assert defaults_for(client) == {
        **dict.fromkeys(ALL_DENIED, "granted"),
        "ad_storage": "denied",
        "ad_user_data": "denied",
        "ad_personalization": "denied",
    }


def test_a_gtag_the_page_already_defined_is_used(cm_app):
    out = run_script(config_text(cm_app.test_client()), predefined_gtag=True)
    assert out["dataLayer"] == []
    assert out["own"] == [["consent", "default", ALL_DENIED]]


@pytest.mark.parametrize("config", [None, "{not json", "[]", '{"state": null}'])
def test_missing_or_broken_config_denies_everything(config):
    out = run_script(config)
    assert [e["args"] for e in out["dataLayer"]] == [["consent", "default", ALL_DENIED]]
