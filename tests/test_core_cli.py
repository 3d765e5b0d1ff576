"""`flask consentkit export`: the first DPO export, through the CLI runner and a real
`flask` process."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from consentkit.export import COLUMNS

APP_MODULE = """
from flask import Flask
from consentkit import ConsentKit

app = Flask(__name__, instance_path={instance!r})
app.config.update(SECRET_KEY="k" * 32, CONSENTKIT_DATABASE_URI={uri!r})
ConsentKit(app)
"""


def test_export_ndjson_has_the_contract_columns(app, client, runner):
    client.post("/consent", data={"action": "reject_all", "locale": "fr"})
    result = runner.invoke(args=["consentkit", "export", "--format", "ndjson"])
    assert result.exit_code == 0, result.output
    lines = [line for line in result.stdout.splitlines() if line.strip()]
    assert len(lines) == 1
    row = json.loads(lines[0])
    assert tuple(row) == COLUMNS
    assert row["action"] == "reject_all"
    assert row["locale"] == "fr"
    assert row["granted"] == ["functional"]
    assert row["occurred_at"].endswith("Z")


@pytest.mark.slow
def test_export_through_a_real_flask_process(app, client, tmp_path):
    client.post("/consent", json={"action": "accept_all"})
    client.post("/consent", json={"action": "reject_all"})
    module = tmp_path / "siteapp.py"
    module.write_text(
        APP_MODULE.format(
            instance=str(tmp_path / "inst"),
            uri=app.extensions["consentkit"].settings.database_uri,
        )
    )
    flask = Path(sys.executable).parent / "flask"
    env = {**os.environ, "FLASK_APP": "siteapp"}
    result = subprocess.run(
        [str(flask), "consentkit", "export", "--format", "ndjson"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    rows = [json.loads(line) for line in result.stdout.splitlines()]
    assert [r["action"] for r in rows] == ["accept_all", "reject_all"]
    assert rows[1]["withdrawn"] == ["preferences", "statistics", "marketing"]
