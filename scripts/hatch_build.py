"""Hatchling build hook: compile the gettext catalogs so the wheel ships ``.mo`` files."""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

from babel.messages.mofile import write_mo
from babel.messages.pofile import read_po
from hatchling.builders.hooks.plugin.interface import BuildHookInterface


class CompileCatalogs(BuildHookInterface):  # type: ignore[type-arg]
    PLUGIN_NAME = "custom"

    def initialize(self, version: str, build_data: dict[str, Any]) -> None:
        if self.target_name != "wheel" or version == "editable":
            return  # an editable install compiles the .po sources in memory at run time
        root = Path(self.root) / "src" / "consentkit" / "translations"
        out_root = Path(self.directory) / "consentkit-mo"
        for po in sorted(root.glob("*/LC_MESSAGES/consentkit.po")):
            locale = po.parent.parent.name
            with po.open("rb") as fp:
                catalog = read_po(fp, locale=locale, domain="consentkit")
            buffer = io.BytesIO()
            write_mo(buffer, catalog, use_fuzzy=False)
            target = out_root / locale / "LC_MESSAGES" / "consentkit.mo"
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(buffer.getvalue())
            relative = f"consentkit/translations/{locale}/LC_MESSAGES/consentkit.mo"
            build_data["force_include"][str(target)] = relative
