"""``flask consentkit …``: the DPO's command line.

Data goes to stdout (or ``--output``), progress and reports to stderr. A malformed argument
is a usage error (exit 2) raised before anything is read or changed.
"""

from __future__ import annotations

import contextlib
import getpass
import json
import os
import re
import sys
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from importlib import metadata
from typing import TYPE_CHECKING, Any, TextIO

import click
from flask.cli import AppGroup

from . import access, export, inventory, stats
from .export import FORMATS
from .extension import ConsentKitState, get_state
from .integrity import LogKeys
from .state import ACTIONS
from .store import STORE_ERRORS, RecordFilter, dpo

consentkit_cli = AppGroup("consentkit", help="Export and inspect the consent log.")

_SUBJECT_HASH = re.compile(r"^[0-9a-f]{64}$")
_CONSENT_ID = re.compile(r"^[A-Za-z0-9_-]{16,64}$")


# -- arguments ---------------------------------------------------------------------------


if TYPE_CHECKING:  # click >= 8.2 types ParamType as generic; older click is not subscriptable
    _TimeParam = click.ParamType[datetime]
else:
    _TimeParam = click.ParamType


class UtcTime(_TimeParam):
    """A date (``2026-01-31``) or a date and time (``2026-01-31T12:00``, ``…Z``, ``…+01:00``);
    without an offset it is UTC. As an end bound, a bare date includes that whole day."""

    name = "datetime"

    def __init__(self, *, end: bool = False) -> None:
        self.end = end

    def convert(
        self, value: Any, param: click.Parameter | None, ctx: click.Context | None
    ) -> datetime:
        if isinstance(value, datetime):
            return value
        try:
            return export.parse_utc(str(value), end=self.end)
        except ValueError:
            self.fail(
                f"{value!r} is not a date (YYYY-MM-DD) or a UTC date and time "
                "(YYYY-MM-DDTHH:MM[:SS][Z|+HH:MM])",
                param,
                ctx,
            )


def _subjects(value: str | None) -> list[str]:
    """``--subject`` takes a visitor's consent id (from their cookie or receipt) or a
    subject hash as it appears in an export."""
    if value is None:
        return []
    if _SUBJECT_HASH.match(value):
        return [value]
    if not _CONSENT_ID.match(value):
        raise click.BadParameter("expected a consent id or a 64-character subject hash")
    return get_state().subjects(value)


def _keys(st: ConsentKitState) -> LogKeys:
    return LogKeys(st.settings.log_keys)


def _fail_on_store(exc: Exception) -> click.ClickException:
    return click.ClickException(f"cannot use the consent log: {exc.__class__.__name__}: {exc}")


def _who() -> str:
    try:
        return getpass.getuser()
    except (OSError, KeyError):  # no login name in some containers
        return "unknown"


def _generator() -> str:
    try:
        return "consentkit " + metadata.version("consentkit")
    except metadata.PackageNotFoundError:
        return "consentkit"


def filter_options(func: Callable[..., Any]) -> Callable[..., Any]:
    """The record filters shared by ``export`` and ``stats``."""
    options = [
        click.option("--since", type=UtcTime(), help="From this UTC date or time (included)."),
        click.option(
            "--until",
            type=UtcTime(end=True),
            help="Up to this UTC date (the whole day included) or time (excluded).",
        ),
        click.option("--site", help="Only this site label."),
        click.option(
            "--action",
            "actions",
            type=click.Choice(ACTIONS),
            multiple=True,
            help="Only these actions (repeatable).",
        ),
        click.option("--policy-version", help="Only this policy version."),
    ]
    for option in reversed(options):
        func = option(func)
    return func


def _filters(
    since: datetime | None,
    until: datetime | None,
    site: str | None,
    actions: tuple[str, ...],
    policy_version: str | None,
    subjects: list[str] | None = None,
) -> RecordFilter:
    if since is not None and until is not None and since >= until:
        raise click.BadParameter("--since must be before --until", param_hint="--since")
    return RecordFilter(
        since=since,
        until=until,
        site=site,
        subjects=subjects or [],
        actions=actions,
        policy_version=policy_version,
    )


def described_filters(filters: RecordFilter, *, hide_subject: bool) -> dict[str, Any]:
    """Filters as recorded in a manifest or the ledger; the ledger never names a subject."""
    out: dict[str, Any] = {
        "since": export.iso(filters.since) if filters.since else None,
        "until": export.iso(filters.until) if filters.until else None,
        "site": filters.site,
        "actions": list(filters.actions),
        "policy_version": filters.policy_version,
    }
    if filters.subjects:
        out["subject"] = "one subject" if hide_subject else list(filters.subjects)
    return out


# -- export ------------------------------------------------------------------------------


@consentkit_cli.command("export")
@click.option("--format", "fmt", type=click.Choice(FORMATS), default="csv", show_default=True)
@filter_options
@click.option("--subject", help="Only this visitor: consent id or subject hash.")
@click.option(
    "--output",
    "-o",
    type=click.Path(dir_okay=False, writable=True),
    help="Write to this file, with its manifest (and notices file) beside it.",
)
@click.option(
    "--notices",
    "notices_file",
    type=click.Path(dir_okay=False, writable=True),
    help="CSV/NDJSON to stdout: write the notice texts to this file.",
)
@click.option(
    "--bom/--no-bom",
    default=None,
    help="Start a CSV with a UTF-8 byte-order mark (default: yes for --output, for Excel).",
)
def export_command(
    fmt: str,
    since: datetime | None,
    until: datetime | None,
    site: str | None,
    actions: tuple[str, ...],
    policy_version: str | None,
    subject: str | None,
    output: str | None,
    notices_file: str | None,
    bom: bool | None,
) -> None:
    """Export consent records, oldest first, with the notice texts they reference.

    With --output, a manifest FILE.manifest.json (row count, SHA-256, filters, time range,
    the log's integrity) is written beside FILE; CSV and NDJSON also get FILE.notices.json.
    Every export is recorded in the log's ledger (without the subject).
    """
    if output is not None and notices_file is not None:
        raise click.BadParameter(
            "--notices is for stdout; --output writes its own", param_hint="--notices"
        )
    if output is not None and os.path.isdir(output):
        raise click.BadParameter(f"{output} is a directory", param_hint="--output")
    filters = _filters(since, until, site, actions, policy_version, _subjects(subject))
    st = get_state()
    keys = _keys(st)
    with_bom = (output is not None) if bom is None else bom
    try:
        if output is None:
            count = _export_to_stdout(st, keys, fmt, filters, with_bom, notices_file)
        else:
            count = _export_to_file(st, keys, fmt, filters, with_bom, output)
    except STORE_ERRORS as exc:
        raise _fail_on_store(exc) from None
    click.echo(f"exported {count} record(s)", err=True)


def _notices_of(st: ConsentKitState, hashes: set[str]) -> dict[str, Any]:
    return {
        n.notice_hash: export.notice_entry(n.locale, n.policy_version, n.texts)
        for n in dpo.notices_for(st.store, hashes)
    }


def _record_export(
    st: ConsentKitState,
    keys: LogKeys,
    *,
    fmt: str,
    filters: RecordFilter,
    records: int,
    files: list[dict[str, Any]] | None = None,
) -> int:
    details: dict[str, Any] = {
        "via": "cli",
        "user": _who(),
        "format": fmt,
        "filters": described_filters(filters, hide_subject=True),
        "records": records,
    }
    if files is not None:
        details["files"] = files
    return dpo.record_operation(st.store, keys, "export", details).seq


def _export_to_stdout(
    st: ConsentKitState,
    keys: LogKeys,
    fmt: str,
    filters: RecordFilter,
    bom: bool,
    notices_file: str | None,
) -> int:
    tally = export.Tally(dpo.iter_export_records(st.store, filters))
    out = _stdout()
    for chunk in export.iter_export(
        fmt, tally, bom=bom, notices=lambda: _notices_of(st, tally.notice_hashes)
    ):
        out.write(chunk)
    out.flush()
    if fmt != "json":
        if notices_file is not None:
            with open(notices_file, "w", encoding="utf-8") as fh:
                fh.write(export.notices_document(_notices_of(st, tally.notice_hashes)))
        elif tally.count:
            click.echo(
                "note: the notice texts these records reference are not on stdout; "
                "use --notices FILE, --output FILE or --format json",
                err=True,
            )
    _record_export(st, keys, fmt=fmt, filters=filters, records=tally.count)
    return tally.count


def _progress(st: ConsentKitState, filters: RecordFilter) -> Any:
    """A progress bar on stderr when it is a terminal, else nothing."""
    if not sys.stderr.isatty():
        return None
    total = dpo.count_records(st.store, filters)
    return click.progressbar(
        length=total, label="exporting", file=sys.stderr, update_min_steps=1000
    )


def _export_to_file(
    st: ConsentKitState,
    keys: LogKeys,
    fmt: str,
    filters: RecordFilter,
    bom: bool,
    output: str,
) -> int:
    generated_at = datetime.now(UTC)
    click.echo("checking the log's integrity…", err=True)
    report = dpo.verify(st.store, keys)
    if not report.ok:
        click.echo(
            "warning: the log is NOT intact (run `flask consentkit verify`); the manifest says so",
            err=True,
        )
    partial = output + ".part"  # renamed once complete: a crash leaves no half export
    try:
        with contextlib.ExitStack() as stack:
            bar = _progress(st, filters)
            tick = None
            if bar is not None:
                stack.enter_context(bar)
                tick = lambda: bar.update(1)  # noqa: E731
            tally = export.Tally(dpo.iter_export_records(st.store, filters), on_record=tick)
            fh = stack.enter_context(open(partial, "w", encoding="utf-8", newline=""))
            for chunk in export.iter_export(
                fmt,
                tally,
                bom=bom and fmt == "csv",
                notices=lambda: _notices_of(st, tally.notice_hashes),
            ):
                fh.write(chunk)
        os.replace(partial, output)
    except BaseException:
        if os.path.exists(partial):
            os.unlink(partial)
        raise
    files = [(output, "records")]
    if fmt != "json":
        notices_out = export.notices_path(output)
        with open(notices_out, "w", encoding="utf-8") as fh:
            fh.write(export.notices_document(_notices_of(st, tally.notice_hashes)))
        files.append((notices_out, "notices"))
    manifest = export.build_manifest(
        files=files,
        fmt=fmt,
        bom=bom and fmt == "csv",
        records=tally.count,
        first=tally.first,
        last=tally.last,
        filters=described_filters(filters, hide_subject=False),
        generated_at=generated_at,
        integrity=report.state(),
        ledger_seq=None,
        generator=_generator(),
    )
    manifest["ledger_seq"] = _record_export(
        st,
        keys,
        fmt=fmt,
        filters=filters,
        records=tally.count,
        files=[{"name": f["name"], "sha256": f["sha256"]} for f in manifest["files"]],
    )
    manifest = export.sign_manifest(manifest, keys)
    mpath = export.manifest_path(output)
    with open(mpath, "w", encoding="utf-8") as fh:
        json.dump(manifest, fh, ensure_ascii=False, indent=2)
        fh.write("\n")
    click.echo(f"manifest: {mpath}", err=True)
    return tally.count


@consentkit_cli.command("verify-export")
@click.argument("path", type=click.Path(exists=True, dir_okay=False))
def verify_export_command(path: str) -> None:
    """Check an export file (or its manifest) against its manifest and the log's ledger.

    Exits 1 when anything differs: a file's SHA-256 or size, the record count, a record's
    MAC, a notice text, or the ledger's record of the export.
    """
    st = get_state()
    keys = _keys(st)
    result = export.verify_export(path, keys)
    seq = result.manifest.get("ledger_seq") if result.manifest else None
    if isinstance(seq, int):
        try:
            _check_ledger_export(st, seq, result)
        except STORE_ERRORS as exc:
            result.add(False, f"cannot read the ledger: {exc.__class__.__name__}")
    for ok, message in result.checks:
        click.echo(("ok      " if ok else "FAILED  ") + message)
    if not result.ok:
        click.echo("the export does NOT match its manifest", err=True)
        sys.exit(1)
    click.echo("the export matches its manifest", err=True)


def _check_ledger_export(st: ConsentKitState, seq: int, result: export.ExportCheck) -> None:
    entry = next((e for e in dpo.iter_ledger(st.store) if e.seq == seq), None)
    if entry is None or entry.kind != "export":
        result.add(False, f"the log's ledger has no export #{seq}")
        return
    recorded = {f["name"]: f["sha256"] for f in entry.parsed().get("files", [])}
    listed = {f["name"]: f["sha256"] for f in result.manifest.get("files", [])}
    same = recorded == listed
    result.add(
        same,
        f"ledger export #{seq} of {export.iso(entry.occurred_at)} "
        + ("records the same SHA-256" if same else "records DIFFERENT files"),
    )


def _stdout() -> TextIO:
    return sys.stdout


# -- tamper evidence ---------------------------------------------------------------------


def _anchors(values: tuple[str, ...]) -> Iterator[tuple[int, str]]:
    for value in values:
        match = re.fullmatch(r"(\d+):([0-9a-f]{64})", value)
        if match:
            yield int(match.group(1)), match.group(2)
            continue
        try:
            with open(value, encoding="utf-8") as fh:
                data = json.load(fh)
            head = data["integrity"]["ledger_head"] if "integrity" in data else data["ledger_head"]
            if head is not None:
                yield int(head["seq"]), str(head["mac"])
        except (OSError, ValueError, KeyError, TypeError):
            raise click.BadParameter(
                f"{value!r} is neither SEQ:MAC nor a manifest or verify --json report",
                param_hint="--anchor",
            ) from None


@consentkit_cli.command("verify")
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON.")
@click.option(
    "--anchor",
    multiple=True,
    metavar="SEQ:MAC|FILE",
    help="A ledger head kept outside the database (from a manifest or an earlier verify): "
    "fail if the log no longer has it, i.e. was rolled back.",
)
def verify_command(as_json: bool, anchor: tuple[str, ...]) -> None:
    """Check the log for modified, inserted or deleted records and altered notice texts.

    Exits 0 when intact, 1 with a report of each problem found.
    """
    anchors = list(_anchors(anchor))
    st = get_state()
    try:
        report = dpo.verify(st.store, _keys(st), anchors=anchors)
    except STORE_ERRORS as exc:
        raise _fail_on_store(exc) from None
    if as_json:
        click.echo(json.dumps(report.as_dict(), indent=2))
    else:
        for problem in report.as_dict()["listed"]:
            click.echo(f"{problem['kind'].upper():16} {problem['message']}")
        hidden = sum(report.counts.values()) - len(report.problems)
        if hidden > 0:
            click.echo(f"… and {hidden} more")
        head = report.head
        click.echo(
            f"{report.records} record(s) in {report.streams} stream(s), "
            f"{report.ledger_entries} ledger entr{'y' if report.ledger_entries == 1 else 'ies'}, "
            f"{report.notices} notice(s); ledger head: "
            + (f"{head['seq']}:{head['mac']}" if head else "none"),
            err=not report.ok,
        )
    if not report.ok:
        summary = ", ".join(f"{n} {kind}" for kind, n in sorted(report.counts.items()))
        click.echo(f"the consent log is NOT intact: {summary}", err=True)
        sys.exit(1)
    if not as_json:
        click.echo("the consent log is intact", err=True)


@consentkit_cli.command("seal")
@click.option(
    "--adopt-unsigned",
    is_flag=True,
    help="First sign the records that have no MAC (written before tamper evidence): "
    "you vouch for them as they are now.",
)
def seal_command(adopt_unsigned: bool) -> None:
    """Record the current head of every writer stream in the ledger (run it from cron):
    deleting records written before a seal is then detected. Prints the ledger head to keep
    outside the database (verify --anchor)."""
    st = get_state()
    keys = _keys(st)
    try:
        if adopt_unsigned:
            adopted = dpo.adopt_unsigned(st.store, keys)
            click.echo(f"adopted {adopted} unsigned record(s)", err=True)
        entry = dpo.record_operation(st.store, keys, "seal", {"via": "cli", "user": _who()})
    except STORE_ERRORS as exc:
        raise _fail_on_store(exc) from None
    click.echo(f"{entry.seq}:{entry.mac}")


@consentkit_cli.command("ledger")
@click.option("--json", "as_json", is_flag=True, help="One JSON object per entry.")
def ledger_command(as_json: bool) -> None:
    """List what the DPO tools did: exports, purges, erasures, seals."""
    st = get_state()
    try:
        entries = list(dpo.iter_ledger(st.store))
    except STORE_ERRORS as exc:
        raise _fail_on_store(exc) from None
    for entry in entries:
        details = entry.parsed()
        details.pop("heads", None)
        removed = details.pop("removed", None)
        if removed is not None:
            details["positions"] = sum(b - a + 1 for r in removed.values() for a, b in r)
        if as_json:
            click.echo(
                json.dumps(
                    {
                        "seq": entry.seq,
                        "kind": entry.kind,
                        "occurred_at": export.iso(entry.occurred_at),
                        **details,
                    },
                    ensure_ascii=False,
                )
            )
        else:
            click.echo(
                f"{entry.seq:>6}  {export.iso(entry.occurred_at)}  {entry.kind:<7} "
                + json.dumps(details, ensure_ascii=False, sort_keys=True)
            )


# -- subject access and erasure ----------------------------------------------------------


# A consent id is URL-safe base64 and one in 64 starts with "-": taken for an unknown
# option, it would be refused. Unknown options are therefore read as the argument (the
# command's own options have no short forms to collide with).
@consentkit_cli.command("subject", context_settings={"ignore_unknown_options": True})
@click.argument("consent_id")
@click.option("--erase", is_flag=True, help="Delete this visitor's records (GDPR Art. 17).")
@click.option("--yes", is_flag=True, help="Do not ask for confirmation before --erase.")
def subject_command(consent_id: str, erase: bool, yes: bool) -> None:
    """Print one visitor's history as JSON (GDPR Art. 15), with the texts they were shown.

    CONSENT_ID is the identifier on the visitor's receipt page (or a subject hash from an
    export). With --erase, delete their records instead, unless a legal hold is configured;
    the erasure is recorded in the ledger with counts only.
    """
    subjects = _subjects(consent_id)
    raw_id = None if _SUBJECT_HASH.match(consent_id) else consent_id
    st = get_state()
    if erase:
        _erase(st, subjects, yes)
        return
    try:
        records = st.store.history(subjects)
        notices = dpo.notices_for(st.store, {r["notice_hash"] for r in records})
    except STORE_ERRORS as exc:
        raise _fail_on_store(exc) from None
    document = access.history_document(
        records,
        [(n.notice_hash, n.locale, n.policy_version, n.texts) for n in notices],
        consent_id=raw_id,
        subjects=subjects,
        generated_at=datetime.now(UTC),
    )
    click.echo(json.dumps(document, ensure_ascii=False, indent=2))
    if not records:
        click.echo("no record for this visitor", err=True)


def _erase(st: ConsentKitState, subjects: list[str], yes: bool) -> None:
    hold = st.settings.legal_hold
    if hold is not None:
        raise click.ClickException(
            f"a legal hold is configured (CONSENTKIT_LEGAL_HOLD: {hold}): nothing erased"
        )
    if not yes:
        click.confirm(
            "Erase every record of this visitor? This cannot be undone", abort=True, err=True
        )
    try:
        result = dpo.erase(st.store, _keys(st), subjects)
    except dpo.TamperedRows as exc:
        raise click.ClickException(str(exc)) from None
    except STORE_ERRORS as exc:
        raise _fail_on_store(exc) from None
    if result.ledger_seq is None:
        click.echo("no record for this visitor: nothing erased", err=True)
    else:
        click.echo(
            f"erased {result.records} record(s); recorded as ledger entry {result.ledger_seq}",
            err=True,
        )


# -- retention ---------------------------------------------------------------------------


@consentkit_cli.command("purge")
@click.option("--dry-run", is_flag=True, help="Only count what would be removed.")
def purge_command(dry_run: bool) -> None:
    """Remove records that stopped being current more than CONSENTKIT_LOG_RETENTION ago,
    and notice texts no record references any more. A visitor's current record is kept
    until it expires; each purge is recorded in the ledger with counts only."""
    st = get_state()
    hold = st.settings.legal_hold
    if hold is not None and not dry_run:
        raise click.ClickException(
            f"a legal hold is configured (CONSENTKIT_LEGAL_HOLD: {hold}): nothing purged"
        )
    keys = _keys(st)
    try:
        result = dpo.purge(st.store, keys, retention=st.settings.log_retention, dry_run=dry_run)
    except dpo.TamperedRows as exc:
        raise click.ClickException(f"purge stopped: {exc}") from None
    except STORE_ERRORS as exc:
        raise _fail_on_store(exc) from None
    verb = "would remove" if dry_run else "removed"
    click.echo(
        f"{verb} {result.records} record(s) and {result.notices} notice text(s) "
        f"no longer current before {export.iso(result.cutoff)}"
    )


# -- statistics and inventory --------------------------------------------------------------


@consentkit_cli.command("stats")
@click.option("--by", type=click.Choice(stats.PERIODS), default="day", show_default=True)
@click.option(
    "--split",
    type=click.Choice(stats.SPLITS),
    multiple=True,
    help="Group by these (repeatable; default: site, locale and policy version).",
)
@click.option("--total", is_flag=True, help="No split: one row per period.")
@filter_options
@click.option(
    "--format",
    "fmt",
    type=click.Choice(["table", "json", "csv"]),
    default="table",
    show_default=True,
)
def stats_command(
    by: str,
    split: tuple[str, ...],
    total: bool,
    since: datetime | None,
    until: datetime | None,
    site: str | None,
    actions: tuple[str, ...],
    policy_version: str | None,
    fmt: str,
) -> None:
    """Decisions and rates per day or week: accept-all, reject-all and custom rates and the
    grant rate of each category. Groups of fewer than CONSENTKIT_STATS_MIN_COUNT decisions
    are shown without count or rates."""
    if total and split:
        raise click.BadParameter("--total and --split exclude each other", param_hint="--total")
    dims = () if total else (split or stats.SPLITS)
    filters = _filters(since, until, site, actions, policy_version)
    st = get_state()
    k = st.settings.stats_min_count
    try:
        groups = stats.aggregate(dpo.decision_counts(st.store, filters), by=by, split=dims)
    except STORE_ERRORS as exc:
        raise _fail_on_store(exc) from None
    if fmt == "json":
        click.echo(
            json.dumps(
                {
                    "by": by,
                    "split": list(dims),
                    "min_count": k,
                    "groups": [g.as_dict(k) for g in groups],
                },
                indent=2,
            )
        )
        return
    rows = stats.table_rows(groups, k, dims)
    if fmt == "csv":
        import csv

        writer = csv.writer(_stdout(), lineterminator="\r\n")
        writer.writerows([[export.csv_cell(c) for c in row] for row in rows])
    else:
        click.echo(stats.format_table(rows), nl=False)
    click.echo(f"groups under {k} decisions are suppressed", err=True)


@consentkit_cli.command("inventory")
@click.option("--format", "fmt", type=click.Choice(["json", "md"]), default="md", show_default=True)
@click.option("--locale", help="Language of the category and cookie texts (default: the site's).")
def inventory_command(fmt: str, locale: str | None) -> None:
    """The register of processing (GDPR Art. 30): categories, their cookies, legal basis,
    retention, and the consent log itself as a processing activity."""
    st = get_state()
    s = st.settings
    locale = locale or s.default_locale
    if locale not in s.locales:
        raise click.BadParameter(f"expected one of {', '.join(s.locales)}", param_hint="--locale")
    document = inventory.build_inventory(
        notice_texts=st.notice(locale).texts,
        site=s.site,
        controller=s.controller,
        policy_url=s.policy_url,
        policy_version=s.policy_version,
        cookie_name=s.cookie_name,
        cookie_max_age=s.cookie_max_age,
        log_retention=s.log_retention,
        statistics_anonymous=s.statistics_anonymous,
        database_backend=st.store.engine.dialect.name,
    )
    if fmt == "json":
        click.echo(json.dumps(document, ensure_ascii=False, indent=2))
    else:
        click.echo(inventory.render_markdown(document), nl=False)


# -- production: the outage spool and schema migrations --------------------------------------


@consentkit_cli.command("flush")
def flush_command() -> None:
    """Write decisions spooled during a database outage into the log (idempotent).

    Exits non-zero while the database is still unreachable or when a spool file could not be
    read (it is kept under the spool's quarantine/ folder for inspection)."""
    st = get_state()
    if st.spool is None:
        click.echo("no spool configured (CONSENTKIT_SPOOL_DIR = False): nothing to flush", err=True)
        return
    try:
        result = st.spool.replay(st.store, wait=True)
    except OSError as exc:
        raise click.ClickException(f"cannot read the spool {st.spool.directory}: {exc}") from None
    click.echo(
        f"flushed {result.inserted} decision(s) from {st.spool.directory} "
        f"({result.duplicates} already in the log, {result.remaining} left)",
        err=True,
    )
    if result.error is not None:
        raise click.ClickException(f"the consent log is unreachable: {result.error}")
    if result.quarantined:
        raise click.ClickException(
            f"{result.quarantined} spool file(s) could not be read; moved to "
            f"{st.spool.directory}/quarantine"
        )


@consentkit_cli.group("db")
def db_group() -> None:
    """The consent log's schema (migrations)."""


@db_group.command("upgrade")
@click.option("--revision", default="head", show_default=True, help="Target revision.")
def db_upgrade_command(revision: str) -> None:
    """Upgrade the consent log's schema (creates it in an empty database). Run it once
    after installing a new consentkit, before or while the new version serves."""
    from .migrations import BASELINE, upgrade

    st = get_state()
    try:
        before, after = upgrade(st.store.engine, revision)
    except STORE_ERRORS as exc:
        raise click.ClickException(f"cannot upgrade: {exc.__class__.__name__}: {exc}") from None
    if before == after:
        click.echo(f"the consentkit schema is up to date (revision {after})", err=True)
    else:
        shown = {"empty": "an empty database", None: f"{BASELINE} (unversioned)"}
        click.echo(
            f"upgraded the consentkit schema from {shown.get(before, before)} to {after}",
            err=True,
        )


@db_group.command("current")
def db_current_command() -> None:
    """Print the schema revision of the database and the one this consentkit needs."""
    from .migrations import head, schema_state

    st = get_state()
    try:
        with st.store.engine.connect() as conn:
            state = schema_state(conn)
    except STORE_ERRORS as exc:
        raise click.ClickException(
            f"cannot read the schema: {exc.__class__.__name__}: {exc}"
        ) from None
    shown = {"empty": "none (empty database)", None: "baseline, unversioned"}.get(state, state)
    click.echo(f"database: {shown}")
    click.echo(f"consentkit needs: {head()}")
    if state not in ("empty", head()):
        raise SystemExit(1)
