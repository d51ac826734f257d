"""`rightsdesk`: run the service and work tickets from the command line.

Every listing takes `--json`. Errors are one line on stderr and a non-zero exit: 1 for a request
the rules refuse, 2 for bad usage or configuration.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import getpass
import json
import sys
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Annotated, Any, NoReturn, TypeVar

import typer
from rich.console import Console
from rich.progress import Progress, SpinnerColumn, TextColumn, TimeElapsedColumn
from rich.table import Column, Table
from sqlalchemy.exc import InterfaceError, OperationalError

from rightsdesk.accounts import AccountImportError
from rightsdesk.audit import verify_chains
from rightsdesk.config import CONFIG_ENV, ConfigError, Settings, load_settings
from rightsdesk.deadlines import DeadlinePolicy
from rightsdesk.models import Channel, RequestType, TicketStatus
from rightsdesk.service import Desk, StartupError, configure_logging, first_line, run_service
from rightsdesk.tickets import Contact, NewTicket, TicketError, TicketFilter
from rightsdesk.views import account_view, message_view, ticket_detail, ticket_summary

T = TypeVar("T")

app = typer.Typer(
    help="rightsdesk: answers people who exercise their rights over their personal information.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
db_app = typer.Typer(help="Database schema.", no_args_is_help=True)
accounts_app = typer.Typer(help="The company's user directory.", no_args_is_help=True)
tickets_app = typer.Typer(help="Work the tickets.", no_args_is_help=True)
audit_app = typer.Typer(help="The tamper-evident audit trail.", no_args_is_help=True)
intake_app = typer.Typer(help="Messages that could not be routed.", no_args_is_help=True)
outbox_app = typer.Typer(help="Mail we are sending.", no_args_is_help=True)
app.add_typer(db_app, name="db")
app.add_typer(accounts_app, name="accounts")
app.add_typer(tickets_app, name="tickets")
app.add_typer(audit_app, name="audit")
app.add_typer(intake_app, name="intake")
app.add_typer(outbox_app, name="outbox")
classifier_app = typer.Typer(
    help="Train and evaluate the request classifier.", no_args_is_help=True
)
app.add_typer(classifier_app, name="classifier")

out = Console(soft_wrap=True)
err = Console(stderr=True, soft_wrap=True)

JsonFlag = Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")]
TicketId = Annotated[str, typer.Argument(help="Ticket id, e.g. PRIV-2026-000001.")]


class _State:
    config: Path | None = None
    actor: str = ""


state = _State()


@app.callback()
def _global_options(
    config: Annotated[
        Path | None,
        typer.Option(
            "--config", "-c", envvar=CONFIG_ENV, help="TOML config file (default: built-ins)."
        ),
    ] = None,
    actor: Annotated[
        str | None,
        typer.Option(help="Who is acting, for the audit trail (default: cli:$USER)."),
    ] = None,
) -> None:
    state.config = config
    state.actor = actor or f"cli:{_username()}"


def _username() -> str:
    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return "unknown"


def _fail(message: str, code: int = 1) -> NoReturn:
    err.print(f"[bold red]error:[/] {message}", highlight=False)
    raise typer.Exit(code)


def _settings() -> Settings:
    try:
        return load_settings(state.config)
    except ConfigError as exc:
        _fail(f"config: {exc}", 2)


def _with_desk(work: Callable[[Desk], Awaitable[T]], *, migrate: bool = True) -> T:
    """Build the desk, bring the schema up to date, run `work`, and tear down."""
    settings = _settings()

    async def main() -> T:
        desk = Desk.build(settings)
        try:
            if migrate:
                await desk.db.migrate()
            return await work(desk)
        finally:
            await desk.close()

    try:
        return asyncio.run(main())
    except TicketError as exc:
        _fail(str(exc))
    except (OSError, ConnectionError, OperationalError, InterfaceError) as exc:
        _fail(f"database unreachable: {first_line(exc)}", 2)


def _print_json(data: Any) -> None:
    sys.stdout.write(json.dumps(data, ensure_ascii=False, indent=2) + "\n")


def _parse_date(value: str | None, option: str) -> dt.date | None:
    if value is None:
        return None
    try:
        return dt.date.fromisoformat(value)
    except ValueError:
        _fail(f"{option}: expected a date like 2026-03-09, got {value!r}", 2)


def _parse_types(values: list[str]) -> list[RequestType]:
    types: list[RequestType] = []
    for value in values:
        for part in value.split(","):
            part = part.strip()
            if not part:
                continue
            try:
                types.append(RequestType(part))
            except ValueError:
                known = ", ".join(t.value for t in RequestType)
                _fail(f"unknown request type {part!r}; known: {known}", 2)
    return types


# ---- run / db ---------------------------------------------------------------------------------


@app.command()
def run() -> None:
    """Migrate the database and run the service until SIGTERM or Ctrl-C."""
    settings = _settings()
    configure_logging(settings)
    try:
        asyncio.run(run_service(settings))
    except StartupError as exc:
        _fail(str(exc), 2)


@db_app.command("upgrade")
def db_upgrade() -> None:
    """Apply every pending migration (also done by `rightsdesk run`)."""

    async def work(desk: Desk) -> str:
        await desk.db.migrate()
        return desk.db.url.render_as_string(hide_password=True)

    url = _with_desk(work, migrate=False)
    err.print(f"database is up to date: {url}", highlight=False)


# ---- accounts ---------------------------------------------------------------------------------


@accounts_app.command("import")
def accounts_import(
    file: Annotated[Path, typer.Argument(help="CSV with account_id,email[,phone,name,username].")],
    as_json: JsonFlag = False,
) -> None:
    """Insert or update accounts from a CSV export of the user directory."""

    async def work(desk: Desk) -> Any:
        with Progress(
            SpinnerColumn(),
            TextColumn("importing accounts: {task.completed} rows read"),
            TimeElapsedColumn(),
            console=err,
            transient=True,
            disable=not err.is_terminal,
        ) as progress:
            task = progress.add_task("import", total=None)
            return await desk.accounts.import_csv(
                file, progress=lambda rows: progress.update(task, completed=rows)
            )

    try:
        report = _with_desk(work)
    except AccountImportError as exc:
        _fail(str(exc), 2)
    if as_json:
        _print_json(
            {
                "rows": report.rows,
                "imported": report.imported,
                "rejected": [{"line": line, "reason": why} for line, why in report.rejected],
            }
        )
    else:
        err.print(f"{report.imported} of {report.rows} rows imported", highlight=False)
        for line, why in report.rejected[:20]:
            err.print(f"  line {line}: {why}", highlight=False)
        if len(report.rejected) > 20:
            err.print(f"  … and {len(report.rejected) - 20} more rejected rows", highlight=False)
    if report.rejected:
        raise typer.Exit(1)


@accounts_app.command("list")
def accounts_list(
    limit: Annotated[int, typer.Option(help="At most this many rows.")] = 100,
    as_json: JsonFlag = False,
) -> None:
    """List imported accounts."""
    accounts = _with_desk(lambda desk: desk.accounts.browse(limit))
    if as_json:
        _print_json([account_view(a) for a in accounts])
        return
    table = Table("account", "email", "phone", "name", "username")
    for a in accounts:
        table.add_row(a.id, a.email, a.phone or "", a.name or "", a.username or "")
    out.print(table)


# ---- tickets ----------------------------------------------------------------------------------


@tickets_app.command("list")
def tickets_list(
    status: Annotated[
        list[TicketStatus] | None, typer.Option(help="Only this status (repeatable).")
    ] = None,
    type_: Annotated[
        list[str] | None, typer.Option("--type", help="Only tickets with this request type.")
    ] = None,
    due_before: Annotated[
        str | None, typer.Option(help="Only answers due before this date (YYYY-MM-DD).")
    ] = None,
    overdue: Annotated[bool, typer.Option(help="Only open work past a due date.")] = False,
    assignee: Annotated[str | None, typer.Option(help="Only tickets of this assignee.")] = None,
    needs_review: Annotated[
        bool, typer.Option("--needs-review", help="Only the triage queue.")
    ] = False,
    limit: Annotated[int | None, typer.Option(help="At most this many tickets.")] = None,
    as_json: JsonFlag = False,
) -> None:
    """List tickets, most urgent first."""
    filters = TicketFilter(
        statuses=status or (),
        types=_parse_types(type_ or []),
        due_before=_parse_date(due_before, "--due-before"),
        overdue=overdue,
        assignee=assignee,
        needs_review=True if needs_review else None,
        limit=limit,
    )

    async def work(desk: Desk) -> list[dict[str, Any]]:
        today = desk.tickets.today()
        return [ticket_summary(t, today, desk.policy.tz) for t in await desk.tickets.find(filters)]

    rows = _with_desk(work)
    if as_json:
        _print_json(rows)
        return
    table = Table(
        Column("id", no_wrap=True),
        "status",
        "types",
        "channel",
        Column("received", no_wrap=True),
        Column("due", no_wrap=True),
        "left",
        "assignee",
    )
    for row in rows:
        due = (row["response_due"] or "-") + ("*" if row["provisional"] else "")
        left = "" if row["days_left"] is None else str(row["days_left"])
        style = "red" if row["overdue"] else None
        table.add_row(
            row["id"],
            row["status"] + (" (review)" if row["needs_review"] else ""),
            ",".join(row["types"]),
            row["channel"],
            row["received_at"][:10],
            due,
            left,
            row["assignee"] or "",
            style=style,
        )
    out.print(table)
    if any(row["provisional"] for row in rows):
        err.print("* provisional: next year's official holidays are not known yet")


@tickets_app.command("show")
def tickets_show(ticket_id: TicketId, as_json: JsonFlag = False) -> None:
    """Show a ticket with its deadlines, messages and audit events."""

    async def work(desk: Desk) -> dict[str, Any]:
        return ticket_detail(
            await desk.tickets.detail(ticket_id), desk.tickets.today(), desk.policy.tz
        )

    data = _with_desk(work)
    if as_json:
        _print_json(data)
        return
    scores = (data["classification"] or {}).get("scores") or {}
    types = ", ".join(f"{t} ({scores[t]:.2f})" if t in scores else t for t in data["types"])
    out.print(f"[bold]{data['id']}[/]  {data['status']}  {types}")
    for key in (
        "channel",
        "requester_contact",
        "subject",
        "received_at",
        "response_due",
        "completion_due",
        "provisional",
        "assignee",
        "needs_review",
        "extension_reason",
        "denial_reason",
        "resolution_note",
    ):
        if data[key] not in (None, False, ""):
            out.print(f"  {key}: {data[key]}", highlight=False)
    if data["classification"]:
        out.print(f"  classification: {json.dumps(data['classification'], ensure_ascii=False)}")
    for message in data["messages"]:
        out.rule(f"{message['direction']} {message['channel']} {message['received_at']}")
        out.print(message["text"] or "(no text)", highlight=False, markup=False)
    table = Table("#", "at", "actor", "action", "change", title="audit trail")
    for event in data["events"]:
        change = json.dumps(event["after"], ensure_ascii=False)
        table.add_row(str(event["seq"]), event["at"][:19], event["actor"], event["action"], change)
    out.print(table)


@tickets_app.command("open")
def tickets_open(
    type_: Annotated[list[str], typer.Option("--type", help="Request type(s), e.g. access.")],
    email: Annotated[str | None, typer.Option(help="The requester's email address.")] = None,
    phone: Annotated[str | None, typer.Option(help="The requester's phone number.")] = None,
    name: Annotated[str | None, typer.Option(help="The requester's name.")] = None,
    subject: Annotated[str | None, typer.Option(help="A one-line summary.")] = None,
    text: Annotated[str | None, typer.Option(help="The request as the requester put it.")] = None,
    received: Annotated[
        str | None, typer.Option(help="When it was received (ISO 8601; default: now).")
    ] = None,
    lang: Annotated[str | None, typer.Option(help="zh or en.")] = None,
    as_json: JsonFlag = False,
) -> None:
    """Open a ticket for a request that came by phone, letter or in person."""
    if (email is None) == (phone is None):
        _fail("give exactly one of --email or --phone", 2)
    contact = Contact.email(email) if email is not None else Contact.phone(phone or "")

    async def work(desk: Desk) -> dict[str, Any]:
        received_at = _parse_instant(received, "--received") or desk.clock.now()
        ticket = await desk.tickets.open(
            NewTicket(
                channel=Channel.MANUAL,
                contact=contact,
                types=_parse_types(type_),
                received_at=received_at,
                subject=subject,
                requester_name=name,
                language=lang,
                text=text,
            ),
            actor=state.actor,
        )
        return ticket_summary(ticket, desk.tickets.today(), desk.policy.tz)

    row = _with_desk(work)
    if as_json:
        _print_json(row)
    else:
        out.print(f"opened {row['id']}, answer due {row['response_due']}", highlight=False)


def _parse_instant(value: str | None, option: str) -> dt.datetime | None:
    if value is None:
        return None
    try:
        parsed = dt.datetime.fromisoformat(value)
    except ValueError:
        _fail(f"{option}: expected a time like 2026-02-10T10:00+08:00, got {value!r}", 2)
    if parsed.tzinfo is None:
        _fail(f"{option}: give a UTC offset, e.g. 2026-02-10T10:00+08:00", 2)
    return parsed


def _change(action: Callable[[Desk], Awaitable[Any]], as_json: bool, done: str) -> None:
    """Run one ticket change and report the ticket as it now stands."""

    async def work(desk: Desk) -> dict[str, Any]:
        return ticket_summary(await action(desk), desk.tickets.today(), desk.policy.tz)

    row = _with_desk(work)
    if as_json:
        _print_json(row)
    else:
        out.print(f"{row['id']} {done}: now {row['status']}", highlight=False)


@tickets_app.command("assign")
def tickets_assign(
    ticket_id: TicketId,
    assignee: Annotated[str, typer.Argument(help="Who works it; '-' to unassign.")],
    as_json: JsonFlag = False,
) -> None:
    """Assign a ticket to a person."""
    who = None if assignee == "-" else assignee
    _change(lambda d: d.tickets.assign(ticket_id, state.actor, who), as_json, "assigned")


@tickets_app.command("verify")
def tickets_verify(
    ticket_id: TicketId,
    note: Annotated[str, typer.Option(help="How the identity was checked.")],
    as_json: JsonFlag = False,
) -> None:
    """Mark the requester's identity as verified (documents checked by hand)."""
    if not note.strip():
        _fail("--note: say how the identity was checked", 2)
    _change(lambda d: d.tickets.mark_verified(ticket_id, state.actor, note), as_json, "verified")


@tickets_app.command("resend-code")
def tickets_resend_code(ticket_id: TicketId) -> None:
    """Send a new verification code to the account's registered address (limited)."""
    _with_desk(lambda d: d.verifier.resend_code(ticket_id, state.actor))
    out.print(f"{ticket_id}: a new code is on its way to the registered address", highlight=False)


@tickets_app.command("start")
def tickets_start(ticket_id: TicketId, as_json: JsonFlag = False) -> None:
    """Start working a ticket."""
    _change(lambda d: d.tickets.start(ticket_id, state.actor), as_json, "started")


@tickets_app.command("resolve")
def tickets_resolve(
    ticket_id: TicketId,
    note: Annotated[str, typer.Option(help="What was done.")],
    as_json: JsonFlag = False,
) -> None:
    """Resolve a ticket: the request was carried out."""
    _change(lambda d: d.tickets.resolve(ticket_id, state.actor, note), as_json, "resolved")


@tickets_app.command("deny")
def tickets_deny(
    ticket_id: TicketId,
    reason: Annotated[str, typer.Option(help="Why (PIPL Art. 50: a refusal must say why).")],
    as_json: JsonFlag = False,
) -> None:
    """Deny a request, with the reason the requester will be told."""
    _change(lambda d: d.tickets.deny(ticket_id, state.actor, reason), as_json, "denied")


@tickets_app.command("extend")
def tickets_extend(
    ticket_id: TicketId,
    until: Annotated[str, typer.Option(help="New answer due date (YYYY-MM-DD).")],
    reason: Annotated[str, typer.Option(help="Why more time is needed.")],
    as_json: JsonFlag = False,
) -> None:
    """Extend the answer deadline, with a reason and a new date."""
    new_date = _parse_date(until, "--until")
    assert new_date is not None
    _change(
        lambda d: d.tickets.extend(ticket_id, state.actor, new_date, reason), as_json, "extended"
    )


@tickets_app.command("cancel")
def tickets_cancel(
    ticket_id: TicketId,
    reason: Annotated[
        str | None, typer.Option(help="Why (e.g. withdrawn by the requester).")
    ] = None,
    as_json: JsonFlag = False,
) -> None:
    """Cancel a ticket."""
    _change(lambda d: d.tickets.cancel(ticket_id, state.actor, reason), as_json, "cancelled")


@tickets_app.command("close")
def tickets_close(ticket_id: TicketId, as_json: JsonFlag = False) -> None:
    """Close a finished ticket for good."""
    _change(lambda d: d.tickets.close(ticket_id, state.actor), as_json, "closed")


@tickets_app.command("reopen")
def tickets_reopen(
    ticket_id: TicketId,
    reason: Annotated[str, typer.Option(help="Why it is reopened.")],
    as_json: JsonFlag = False,
) -> None:
    """Reopen a finished or closed ticket."""
    _change(lambda d: d.tickets.reopen(ticket_id, state.actor, reason), as_json, "reopened")


@tickets_app.command("relabel")
def tickets_relabel(
    ticket_id: TicketId,
    types: Annotated[str, typer.Option(help="Comma-separated request types, e.g. access,erasure.")],
    as_json: JsonFlag = False,
) -> None:
    """Correct a ticket's request types (kept as a training correction)."""
    new_types = _parse_types([types])

    async def relabel(desk: Desk) -> Any:
        await desk.tickets.relabel(ticket_id, state.actor, new_types)
        # The new types may need more proof of identity than was asked for.
        await desk.verifier.reconsider(ticket_id, state.actor)
        return await desk.tickets.get(ticket_id)

    _change(relabel, as_json, "relabelled")


# ---- intake -----------------------------------------------------------------------------------


@intake_app.command("failed")
def intake_failed(
    limit: Annotated[int, typer.Option(help="At most this many messages.")] = 100,
    as_json: JsonFlag = False,
) -> None:
    """List stored messages that failed to parse or route, or were too large to fetch."""

    async def work(desk: Desk) -> list[dict[str, Any]]:
        return [message_view(m) for m in await desk.pipeline.problems(limit)]

    rows = _with_desk(work)
    if as_json:
        _print_json(rows)
        return
    table = Table(Column("#", no_wrap=True), "status", "received", "sender", "size", "problem")
    for row in rows:
        table.add_row(
            str(row["id"]),
            row["parse_status"],
            (row["received_at"] or "")[:19],
            row["sender"] or "",
            str(row["raw_bytes"] or ""),
            row["parse_error"] or "",
        )
    out.print(table)


@intake_app.command("retry")
def intake_retry(
    message: Annotated[int, typer.Argument(help="The message number from `intake failed`.")],
) -> None:
    """Route a failed message again (after the cause was fixed)."""
    outcome = _with_desk(lambda desk: desk.pipeline.retry(message))
    if outcome is None:
        _fail(f"message #{message} is not waiting or failed")
    out.print(f"message #{message}: {outcome}", highlight=False)
    if outcome == "failed":
        raise typer.Exit(1)


# ---- outbox -----------------------------------------------------------------------------------


@outbox_app.command("list")
def outbox_list(as_json: JsonFlag = False) -> None:
    """Mail not sent yet: waiting for its turn, being retried, or failed for good."""

    async def work(desk: Desk) -> list[dict[str, Any]]:
        return [
            {
                "id": e.id,
                "kind": e.kind,
                "recipient": e.recipient,
                "status": e.status,
                "attempts": e.attempts,
                "next_attempt_at": e.next_attempt_at.isoformat(),
                "last_error": e.last_error,
            }
            for e in await desk.sender.pending()
        ]

    rows = _with_desk(work)
    if as_json:
        _print_json(rows)
        return
    table = Table(Column("#", no_wrap=True), "kind", "to", "status", "tries", "next try", "error")
    for row in rows:
        table.add_row(
            str(row["id"]),
            row["kind"],
            row["recipient"],
            row["status"],
            str(row["attempts"]),
            row["next_attempt_at"][:19],
            row["last_error"] or "",
        )
    out.print(table)


# ---- audit / deadline -------------------------------------------------------------------------


@audit_app.command("verify")
def audit_verify(as_json: JsonFlag = False) -> None:
    """Check every ticket's hash chain; name the first broken link."""

    async def work(desk: Desk) -> Any:
        async with desk.db.transaction() as session:
            return await verify_chains(session)

    report = _with_desk(work)
    if as_json:
        _print_json(
            {
                "ok": report.ok,
                "tickets": report.tickets,
                "events": report.events,
                "broken": None
                if report.broken is None
                else {
                    "ticket": report.broken.public_id,
                    "seq": report.broken.seq,
                    "event_id": report.broken.event_id,
                    "reason": report.broken.reason,
                },
            }
        )
    elif report.ok:
        out.print(f"audit trail intact: {report.tickets} tickets, {report.events} events")
    else:
        err.print(f"[bold red]BROKEN[/] {report.broken}", highlight=False)
    if not report.ok:
        raise typer.Exit(1)


@app.command()
def digest(
    print_: Annotated[
        bool, typer.Option("--print", help="Show today's digest; send nothing.")
    ] = False,
    as_json: JsonFlag = False,
) -> None:
    """The DPO's digest as it would be sent today (the scheduler sends it on working days)."""
    from scheduler.digest import build_digest, render_digest

    async def work(desk: Desk) -> Any:
        today = desk.tickets.today()
        return await build_digest(desk, today)

    built = _with_desk(work)
    if as_json:
        _print_json(
            {
                "day": built.day.isoformat(),
                "sections": {
                    key: [line.__dict__ for line in lines] for key, lines in built.sections.items()
                },
                "by_type": dict(built.by_type),
                "by_channel": dict(built.by_channel),
                "calendar_warning": built.calendar_warning,
            }
        )
        return
    if not print_:
        _fail("the scheduler sends the digest; use --print to see it here", 2)
    _, text, _ = render_digest(built)
    out.print(text, highlight=False, markup=False)


@app.command()
def purge(
    dry_run: Annotated[bool, typer.Option("--dry-run", help="List what would go.")] = False,
    yes: Annotated[bool, typer.Option("--yes", help="Delete without asking.")] = False,
    as_json: JsonFlag = False,
) -> None:
    """Delete raw mail and texts of tickets closed longer than scheduler.retention_days, and of
    messages that belong to no ticket and are that old."""
    from scheduler.jobs import purge_closed, purge_unattached

    if not dry_run and not yes:
        _fail("this deletes message contents for good: add --yes, or --dry-run to look first", 2)

    async def work(desk: Desk) -> tuple[list[str], int]:
        tickets = await purge_closed(desk, dry_run=dry_run)
        return tickets, await purge_unattached(desk, dry_run=dry_run)

    purged, unattached = _with_desk(work)
    if as_json:
        _print_json({"dry_run": dry_run, "tickets": purged, "unattached_messages": unattached})
        return
    verb = "would purge" if dry_run else "purged"
    out.print(
        f"{verb} the messages of {len(purged)} ticket(s) and {unattached} message(s) "
        "that belong to no ticket",
        highlight=False,
    )
    for public_id in purged:
        out.print(f"  {public_id}", highlight=False)


@app.command()
def deadline(
    received: Annotated[
        str, typer.Option(help="When the request arrived, e.g. 2026-02-10T10:00+08:00.")
    ],
    type_: Annotated[
        list[str] | None, typer.Option("--type", help="Request type(s) (repeatable).")
    ] = None,
    as_json: JsonFlag = False,
) -> None:
    """Compute the due dates of a request received at a given time."""
    settings = _settings()
    received_at = _parse_instant(received, "--received")
    assert received_at is not None
    types = _parse_types(type_ or ["access"])
    policy = DeadlinePolicy(settings.deadlines, settings.desk.tz)
    result = policy.compute(received_at, types)
    data = {
        "received_at": received_at.isoformat(),
        "timezone": settings.desk.timezone,
        "types": [str(t) for t in types],
        "working_days": settings.deadlines.response_working_days,
        "completion_days": settings.deadlines.completion_calendar_days,
        **result.as_dict(),
    }
    if as_json:
        _print_json(data)
        return
    out.print(f"received on {data['started_on']} ({settings.desk.timezone})", highlight=False)
    flag = "  (provisional: holidays not yet published)" if result.provisional else ""
    out.print(f"answer due:     {data['response_due']}{flag}", highlight=False)
    if result.completion_due:
        out.print(f"completion due: {data['completion_due']}", highlight=False)


# ---- the classifier (classifiers/): imported inside the commands, spaCy takes seconds -------

ModelOption = Annotated[
    Path | None,
    typer.Option("--model", help="Model directory (default: [classifier] model_path or built-in)."),
]


def _model_dir(model: Path | None) -> Path:
    from classifiers.model import MODEL_DIR

    return model or _settings().classifier.model_path or MODEL_DIR


def _load_model(model: Path | None) -> Any:
    from classifiers.model import ModelMissing, RightsClassifier

    try:
        return RightsClassifier.load(_model_dir(model))
    except ModelMissing as exc:
        _fail(str(exc), 2)


@classifier_app.command("train")
def classifier_train(
    architecture: Annotated[
        str,
        typer.Option(
            help="bow (bag of words), chars (with character trigrams) or ensemble (+ tok2vec)."
        ),
    ] = "bow",
    with_corrections: Annotated[
        bool,
        typer.Option(
            "--with-corrections", help="Also learn from the DPO's relabels in the database."
        ),
    ] = False,
    epochs: Annotated[int, typer.Option(min=1, help="Passes over the training data.")] = 12,
    model: ModelOption = None,
    as_json: JsonFlag = False,
) -> None:
    """Train on classifiers/data (train split), tune thresholds on dev, save, report."""
    from classifiers.corrections import load_corrections
    from classifiers.dataset import DataError, load_examples
    from classifiers.training import evaluate, save, train

    if architecture not in ("bow", "chars", "ensemble"):
        _fail(f"--architecture: expected bow, chars or ensemble, got {architecture!r}", 2)
    target = _model_dir(model)
    try:
        examples = load_examples()
    except DataError as exc:
        _fail(f"training data: {exc}", 2)
    if with_corrections:
        corrections = _with_desk(lambda desk: load_corrections(desk.db))
        err.print(f"{len(corrections)} correction(s) from the database", highlight=False)
        examples += corrections
    counts = {
        split: sum(ex.split == split for ex in examples) for split in ("train", "dev", "test")
    }
    err.print(
        f"training {architecture} on {counts['train']} examples "
        f"(dev {counts['dev']}, test {counts['test']})",
        highlight=False,
    )
    trained = train(examples, architecture, epochs, progress=lambda line: err.print(line))
    test = evaluate(trained.classifier, [ex for ex in examples if ex.split == "test"], "test")
    reports = [trained.dev, test]
    target.mkdir(parents=True, exist_ok=True)
    save(trained.classifier, target, reports)
    if as_json:
        _print_json({"model": str(target), "reports": [r.as_dict() for r in reports]})
        return
    for report in reports:
        _print_report(report)
    out.print(f"saved to {target}", highlight=False)


HeldOutOption = Annotated[
    list[Path] | None,
    typer.Option(
        "--heldout",
        exists=True,
        dir_okay=False,
        help="A held-out JSON lines file (id, lang, kind, subject, text, labels); repeatable.",
    ),
]


@classifier_app.command("eval")
def classifier_eval(
    split: Annotated[str, typer.Option(help="dev or test.")] = "test",
    heldout: HeldOutOption = None,
    model: ModelOption = None,
    as_json: JsonFlag = False,
) -> None:
    """Per-label precision, recall and F1, macro-F1 and exact-set accuracy on a fixed split, or
    (--heldout) on held-out files: per language and kind, review rate, dismissed requests."""
    from classifiers.dataset import DataError, load_examples
    from classifiers.heldout import judge, load_heldout
    from classifiers.training import evaluate

    if split not in ("dev", "test"):
        _fail(f"--split: expected dev or test, got {split!r}", 2)
    classifier = _load_model(model)
    if heldout:
        try:
            sets = {path.name: load_heldout(path) for path in heldout}
        except DataError as exc:
            _fail(f"held-out data: {exc}", 2)
        judged = [judge(classifier, items, name) for name, items in sets.items()]
        if as_json:
            _print_json([{"model_version": classifier.version, **r.as_dict()} for r in judged])
            return
        for found in judged:
            out.print("\n".join(found.lines()), highlight=False)
        return
    report = evaluate(classifier, [ex for ex in load_examples() if ex.split == split], split)
    if as_json:
        _print_json(report.as_dict())
        return
    _print_report(report)


@classifier_app.command("retrain")
def classifier_retrain(
    heldout: HeldOutOption = None,
    epochs: Annotated[int, typer.Option(min=1, help="Passes over the training data.")] = 12,
    model: ModelOption = None,
    as_json: JsonFlag = False,
) -> None:
    """Train with the DPO's corrections; replace the live model only if neither the test split
    nor any held-out set gets worse (else keep it and say why). A running service picks the
    new model up by itself within seconds (or at once on SIGHUP)."""
    from classifiers.corrections import load_corrections
    from classifiers.dataset import DataError, load_examples
    from classifiers.heldout import load_heldout
    from classifiers.retrain import retrain

    try:
        examples = load_examples()
        sets = {path.name: load_heldout(path) for path in heldout or []}
    except DataError as exc:
        _fail(f"data: {exc}", 2)
    corrections = _with_desk(lambda desk: load_corrections(desk.db))
    err.print(f"{len(corrections)} correction(s) from the database", highlight=False)
    target = _model_dir(model)
    outcome = retrain([*examples, *corrections], target, sets, progress=err.print, epochs=epochs)
    if as_json:
        _print_json(
            {
                "replaced": outcome.replaced,
                "version": outcome.version,
                "old_version": outcome.old_version,
                "figures": {
                    name: {"old": vars(old) if old else None, "new": vars(new)}
                    for name, (old, new) in outcome.figures.items()
                },
                "reasons": outcome.reasons,
            }
        )
    else:
        for name, (old, new) in outcome.figures.items():
            was = f"{old.macro_f1:.3f} / {old.exact_match:.3f}" if old else "none"
            out.print(
                f"{name}: macro-F1 / exact {new.macro_f1:.3f} / {new.exact_match:.3f} "
                f"(live model: {was})",
                highlight=False,
            )
        if outcome.replaced:
            out.print(f"replaced the model at {target}: version {outcome.version}", highlight=False)
        else:
            out.print(f"kept the model at {target} ({outcome.old_version}):", highlight=False)
            for reason in outcome.reasons:
                out.print(f"  {reason}", highlight=False)
    if not outcome.replaced:
        raise typer.Exit(1)


@classifier_app.command("compare")
def classifier_compare(
    epochs: Annotated[int, typer.Option(min=1)] = 12,
    heldout: HeldOutOption = None,
    as_json: JsonFlag = False,
) -> None:
    """Train bow, chars and ensemble on the train split, and their calibrated combination;
    compare them on dev, test and any held-out file (quality, review rate, speed)."""
    from classifiers.compare import compare
    from classifiers.dataset import load_examples
    from classifiers.heldout import load_heldout

    sets = {path.name: load_heldout(path) for path in heldout or []}
    rows = [row.as_dict() for row in compare(load_examples(), sets, epochs, err.print)]
    if as_json:
        _print_json(rows)
        return
    for row in rows:
        out.print(
            f"{row['name']}: trained in {row['train_seconds']} s, "
            f"{row['messages_per_second']} test messages/s",
            highlight=False,
        )
        for name, figures in row.items():
            if isinstance(figures, dict):
                shown = ", ".join(f"{key} {value}" for key, value in figures.items())
                out.print(f"  {name}: {shown}", highlight=False)


def _print_report(report: Any) -> None:
    table = Table(
        "label",
        Column("precision", justify="right"),
        Column("recall", justify="right"),
        Column("F1", justify="right"),
        Column("support", justify="right"),
        title=f"{report.split} split: {report.count} messages",
    )
    for score in report.labels:
        table.add_row(
            score.label,
            f"{score.precision:.3f}",
            f"{score.recall:.3f}",
            f"{score.f1:.3f}",
            str(score.support),
        )
    out.print(table)
    out.print(
        f"macro-F1 {report.macro_f1:.3f}  exact label set {report.exact_match:.3f}  "
        f"needs review {report.needs_review:.3f}",
        highlight=False,
    )
    for lang, figures in report.by_language.items():
        out.print(
            f"  {lang}: {figures['count']:.0f} messages, macro-F1 {figures['macro_f1']:.3f}, "
            f"exact {figures['exact_match']:.3f}",
            highlight=False,
        )


@app.command("classify")
def classify(
    jsonl: Annotated[
        bool, typer.Option("--jsonl", help='Read {"id", "subject", "text"} JSON lines on stdin.')
    ] = False,
    batch_size: Annotated[int, typer.Option(min=1, help="Lines classified together.")] = 256,
    model: ModelOption = None,
) -> None:
    """Classify messages: one JSON line out per line in, in input order, streaming.

    A line that is not a JSON object gets {"id": null, "error": ...} in its place.
    """
    if not jsonl:
        _fail("only --jsonl is supported: pipe JSON lines on stdin", 2)
    classifier = _load_model(model)
    batch: list[tuple[Any, dict[str, Any] | str]] = []
    for number, line in enumerate(sys.stdin, 1):
        if not line.strip():
            continue
        batch.append(_classify_input(number, line))
        if len(batch) >= batch_size:
            _classify_batch(classifier, batch)
            batch = []
    _classify_batch(classifier, batch)


def _classify_input(number: int, line: str) -> tuple[Any, dict[str, Any] | str]:
    try:
        item = json.loads(line)
    except json.JSONDecodeError as exc:
        return None, f"line {number}: not JSON ({exc.msg})"
    if not isinstance(item, dict):
        return None, f"line {number}: expected a JSON object"
    if not isinstance(item.get("text", ""), str) or not isinstance(item.get("subject", ""), str):
        return item.get("id"), f"line {number}: subject and text must be strings"
    return item.get("id"), item


def _classify_batch(classifier: Any, batch: list[tuple[Any, dict[str, Any] | str]]) -> None:
    valid = [item for _, item in batch if isinstance(item, dict)]
    predictions = iter(
        classifier.predict_many((i.get("subject") or "", i.get("text") or "") for i in valid)
    )
    lines = []
    for id_, item in batch:
        if isinstance(item, str):
            lines.append(json.dumps({"id": id_, "error": item}, ensure_ascii=False))
        else:
            lines.append(json.dumps(next(predictions).as_json(id_), ensure_ascii=False))
    if lines:
        sys.stdout.write("\n".join(lines) + "\n")
        sys.stdout.flush()


def main() -> None:
    app()
