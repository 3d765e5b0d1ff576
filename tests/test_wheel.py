"""The built wheel ships compiled catalogs and renders the French banner from them."""

from __future__ import annotations

import html
import os
import subprocess
import sys
import venv
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent

SCRIPT = """
import pathlib, tempfile
import consentkit
from consentkit import i18n
from flask import Flask, render_template_string

pkg = pathlib.Path(consentkit.__file__).parent
assert not list(pkg.rglob("*.po")), "sources should not be in the wheel"
assert (pkg / "translations/fr/LC_MESSAGES/consentkit.mo").is_file()
app = Flask("w", instance_path=tempfile.mkdtemp())
app.config.update(SECRET_KEY="k" * 32)
consentkit.ConsentKit(app)

@app.get("/")
def index():
    return render_template_string("{{ consentkit_banner() }}")

html = app.test_client().get("/", headers={"Accept-Language": "fr"}).get_data(as_text=True)
print(html)
"""


@pytest.mark.slow
def test_wheel_installs_and_renders_french(tmp_path):
    dist = tmp_path / "dist"
    subprocess.run(
        [sys.executable, "-m", "build", "--wheel", "--no-isolation", "--outdir", str(dist)],
        cwd=ROOT,
        check=True,
        capture_output=True,
    )
    wheel = next(dist.glob("consentkit-*.whl"))
    names = zipfile.ZipFile(wheel).namelist()
    assert "consentkit/translations/fr/LC_MESSAGES/consentkit.mo" in names
    assert "consentkit/translations/en/LC_MESSAGES/consentkit.mo" in names
    assert "consentkit/py.typed" in names
    assert "consentkit/static/consentkit/consentkit.js" in names
    assert not [n for n in names if n.endswith(".po")]

    env_dir = tmp_path / "venv"
    venv.EnvBuilder(with_pip=True).create(env_dir)
    python = env_dir / "bin" / "python"
    subprocess.run(
        [str(python), "-m", "pip", "install", "--quiet", str(wheel)],
        check=True,
        capture_output=True,
    )
    # Run outside the source tree, without PYTHONPATH, so the installed package is imported.
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    result = subprocess.run(
        [str(python), "-c", SCRIPT],
        cwd=tmp_path,
        env=env,
        check=True,
        capture_output=True,
        text=True,
    )
    page = html.unescape(result.stdout)  # consentkit's markup is ASCII (char refs)
    assert "Gérer le consentement aux cookies" in page
    assert "Tout refuser" in page
    assert "Reject all" not in result.stdout
