"""`flask consentkit inventory`: the GDPR Art. 30 register entry, in JSON and Markdown."""

from __future__ import annotations

import json
from datetime import timedelta

import pytest

from consentkit import Category, Cookie
from dpo_support import run_flask, write_app

MATOMO = Cookie(
    name="_pk_id.*",
    provider="Matomo (self-hosted)",
    purpose={"en": "Counts visits | pages", "fr": "Compte les visites | pages"},
    lifetime={"en": "13 months", "fr": "13 mois"},
    party="first",
)
VIDEO = Cookie(
    name="VISITOR_INFO1_LIVE",
    provider="YouTube",
    purpose={"en": "Video recommendations", "fr": "Recommandations vidéo"},
    lifetime={"en": "6 months", "fr": "6 mois"},
    party="third",
)


@pytest.fixture
def site(make_app, database_uri):
    return make_app(
        CONSENTKIT_DATABASE_URI=database_uri,
        CONSENTKIT_CONTROLLER="Exemple SAS",
        CONSENTKIT_POLICY_URL="/cookies",
        CONSENTKIT_LOG_RETENTION=timedelta(days=3 * 365),
        ck={
            "categories": [
                Category("statistics", cookies=(MATOMO,)),
                Category("marketing", cookies=(VIDEO,)),
            ]
        },
    )


def _inventory(app, *args):
    return app.test_cli_runner().invoke(args=["consentkit", "inventory", *args])


def test_inventory_json(site):
    result = _inventory(site, "--format", "json")
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert data["controller"] == "Exemple SAS"
    assert data["locale"] == "en"
    by_name = {c["name"]: c for c in data["categories"]}
    assert list(by_name) == ["functional", "preferences", "statistics", "marketing"]
    functional = by_name["functional"]
    assert functional["legal_basis"]["code"] == "strictly-necessary"
    assert functional["consent_required"] is False
    assert functional["cookies"][0]["name"] == "eu-consent"
    assert functional["cookies"][0]["lifetime"] == "183 day(s)"
    stats = by_name["statistics"]
    assert stats["legal_basis"]["code"] == "consent"
    assert stats["consent_required"] is True
    assert stats["cookies"] == [
        {
            "name": "_pk_id.*",
            "provider": "Matomo (self-hosted)",
            "purpose": "Counts visits | pages",
            "lifetime": "13 months",
            "party": "first",
        }
    ]
    assert by_name["marketing"]["cookies"][0]["party"] == "third"
    (log,) = data["processing_activities"]
    assert log["legal_basis"]["code"] == "legal-obligation"
    assert "3 year(s)" in log["retention"]
    assert "No IP address" in log["not_collected"]


def test_inventory_markdown_in_french(site):
    result = _inventory(site, "--format", "md", "--locale", "fr")
    assert result.exit_code == 0, result.output
    md = result.stdout
    assert md.startswith("# Register of processing")
    assert "### Statistiques (`statistics`)" in md
    assert (
        "| `_pk_id.*` | Matomo (self-hosted) | Compte les visites \\| pages | 13 mois | first |"
        in md
    )
    assert "### Consent log (proof of consent)" in md
    assert "- Controller: Exemple SAS" in md


def test_exempt_audience_measurement_has_its_own_basis(make_app, database_uri):
    app = make_app(CONSENTKIT_DATABASE_URI=database_uri, CONSENTKIT_STATISTICS_ANONYMOUS=True)
    data = json.loads(_inventory(app, "--format", "json").stdout)
    stats = next(c for c in data["categories"] if c["name"] == "statistics")
    assert stats["legal_basis"]["code"] == "exempt-audience-measurement"
    assert stats["consent_required"] is False


@pytest.mark.parametrize("args", [["--format", "pdf"], ["--locale", "de"]])
def test_inventory_bad_arguments(site, args):
    result = _inventory(site, *args)
    assert result.exit_code == 2


@pytest.mark.slow
def test_inventory_in_a_real_flask_process(site, tmp_path):
    write_app(tmp_path, site, CONSENTKIT_CONTROLLER=repr("Exemple SAS"))
    md = run_flask(tmp_path, "inventory")
    assert md.returncode == 0, md.stderr
    assert "Exemple SAS" in md.stdout
    data = run_flask(tmp_path, "inventory", "--format", "json", "--locale", "fr")
    assert data.returncode == 0, data.stderr
    assert json.loads(data.stdout)["categories"][1]["title"] == "Préférences"
