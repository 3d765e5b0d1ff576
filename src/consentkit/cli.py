"""``flask consentkit …``: the DPO's command line."""

from __future__ import annotations

import re
import sys
from datetime import UTC, datetime
from typing import TextIO

import click
from flask.cli import AppGroup

from .export import FORMATS, WRITERS
from .extension import get_state
from .store import STORE_ERRORS, RecordFilter

consentkit_cli = AppGroup("consentkit", help="Export and inspect the consent log.")

_SUBJECT_HASH = re.compile(r"^[0-9a-f]{64}$")
_DATE_FORMATS = ["%Y-%m-%d", "%Y-%m-%dT%H:%M:%S", "%Y-%m-%d %H:%M:%S", "%Y-%m-%dT%H:%M"]


def _utc(value: datetime | None) -> datetime | None:
    return None if value is None else value.replace(tzinfo=UTC)


def _subjects(value: str | None) -> list[str]:
    """``--subject`` takes a visitor's consent id (from their cookie or receipt) or a
    subject hash as it appears in an export."""
    if value is None:
        return []
    if _SUBJECT_HASH.match(value):
        return [value]
    if not re.match(r"^[A-Za-z0-9_-]{16,64}$", value):
        raise click.BadParameter("expected a consent id or a 64-character subject hash")
    return get_state().subjects(value)


@consentkit_cli.command("export")
@click.option("--format", "fmt", type=click.Choice(FORMATS), default="csv", show_default=True)
@click.option("--since", type=click.DateTime(_DATE_FORMATS), help="From this UTC time (incl.).")
@click.option("--until", type=click.DateTime(_DATE_FORMATS), help="Before this UTC time.")
@click.option("--site", help="Only this site label.")
@click.option("--subject", help="Only this visitor: consent id or subject hash.")
@click.option(
    "--output", "-o", type=click.Path(dir_okay=False, writable=True), help="File (default stdout)."
)
def export_command(
    fmt: str,
    since: datetime | None,
    until: datetime | None,
    site: str | None,
    subject: str | None,
    output: str | None,
) -> None:
    """Export consent records, oldest first. Data goes to stdout unless --output is given."""
    since_utc, until_utc = _utc(since), _utc(until)
    if since_utc and until_utc and since_utc >= until_utc:
        raise click.BadParameter("--since must be before --until", param_hint="--since")
    filters = RecordFilter(since=since_utc, until=until_utc, site=site, subjects=_subjects(subject))
    store = get_state().store
    writer = WRITERS[fmt]
    try:
        if output is None:
            count = writer(store.iter_records(filters), _stdout())
        else:
            with open(output, "w", encoding="utf-8", newline="") as fh:
                count = writer(store.iter_records(filters), fh)
    except STORE_ERRORS as exc:
        raise click.ClickException(
            f"cannot read the consent log: {exc.__class__.__name__}: {exc}"
        ) from None
    click.echo(f"exported {count} record(s)", err=True)


def _stdout() -> TextIO:
    return sys.stdout
