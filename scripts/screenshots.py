"""Render the banner and the preferences panel into docs/*.png (README screenshots).

    .venv/bin/python scripts/screenshots.py [--out docs]

Serves the example site (examples/newsroom) on 127.0.0.1 (a free port), drives Debian's
Chromium through Playwright, and writes, for French and English, at 1280 px (desktop) and
375 px (phone) wide: ``banner-<lang>-<size>.png`` and ``panel-<lang>-<size>.png``.
"""

from __future__ import annotations

import argparse
import importlib.util
import logging
import sys
import tempfile
import threading
from pathlib import Path

from flask import Flask
from werkzeug.serving import make_server

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--disable-quic",
    "--hide-scrollbars",
]
SIZES = {"desktop": (1280, 800), "mobile": (375, 812)}
LOCALES = {"en": "en-GB", "fr": "fr-FR"}
#: Keep each picture light enough for a README.
MAX_BYTES = 150_000

EXAMPLE = Path(__file__).resolve().parent.parent / "examples" / "newsroom" / "app.py"


def build_app(instance: Path) -> Flask:
    """The example site itself (make demo), so the pictures show what the README describes."""
    spec = importlib.util.spec_from_file_location("newsroom_example", EXAMPLE)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # Flask finds the templates folder through it
    spec.loader.exec_module(module)
    app: Flask = module.create_app(instance_path=str(instance))
    return app


def take(out: Path) -> list[tuple[Path, int]]:
    from playwright.sync_api import sync_playwright

    written: list[tuple[Path, int]] = []
    with tempfile.TemporaryDirectory() as tmp:
        app = build_app(Path(tmp))
        server = make_server("127.0.0.1", 0, app, threaded=True)
        thread = threading.Thread(target=server.serve_forever, daemon=True)
        thread.start()
        base = f"http://127.0.0.1:{server.server_port}"
        try:
            with sync_playwright() as pw:
                browser = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
                for lang, locale in LOCALES.items():
                    for size, (width, height) in SIZES.items():
                        context = browser.new_context(
                            locale=locale,
                            viewport={"width": width, "height": height},
                            reduced_motion="reduce",  # no half-drawn slide-in
                        )
                        page = context.new_page()
                        page.goto(f"{base}/{lang}/")
                        page.wait_for_selector("#ck-banner")
                        for name in ("banner", "panel"):
                            if name == "panel":
                                page.click("#ck-banner [data-consentkit-open]")
                                page.wait_for_selector("#ck-panel[open]")
                                page.evaluate("document.activeElement.blur()")
                            path = out / f"{name}-{lang}-{size}.png"
                            page.screenshot(path=str(path))
                            written.append((path, path.stat().st_size))
                        context.close()
                browser.close()
        finally:
            server.shutdown()
            server.server_close()
            app.extensions["consentkit"].store.dispose()
    return written


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path(__file__).parent.parent / "docs")
    args = parser.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    logging.getLogger("werkzeug").setLevel(logging.WARNING)
    too_big = False
    for path, size in take(args.out):
        flag = "" if size <= MAX_BYTES else f"  (over {MAX_BYTES} bytes)"
        too_big = too_big or bool(flag)
        print(f"{path}  {size} bytes{flag}")
    return 1 if too_big else 0


if __name__ == "__main__":
    sys.exit(main())
