"""`rightsdesk audit`, `digest`, `purge`, `deadline`: the trail and the calendar."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from rightsdesk.audit import verify_chains
from rightsdesk.cli.common import (
    JsonFlag,
    app,
    desk_settings,
    err,
    fail,
    out,
    parse_instant,
    parse_types,
    print_json,
    shown,
    with_desk,
)
from rightsdesk.deadlines import DeadlinePolicy
from rightsdesk.service import Desk

audit_app = typer.Typer(help="The tamper-evident audit trail.", no_args_is_help=True)


@audit_app.command("verify")
def audit_verify(as_json: JsonFlag = False) -> None:
    """Check every ticket's hash chain; name the first broken link."""

    async def work(desk: Desk) -> Any:
        async with desk.db.transaction() as session:
            return await verify_chains(session)

    report = with_desk(work)
    if as_json:
        print_json(
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


@audit_app.command("pack")
def audit_pack(
    ticket: Annotated[str, typer.Argument(help="Ticket id, e.g. PRIV-2026-000001.")],
    output: Annotated[Path, typer.Option("--output", "-o", help="The ZIP file to write.")],
) -> None:
    """Write a ticket's evidence pack: messages, attachments, events with their hash chain."""
    from rightsdesk.cli.common import state
    from rightsdesk.evidence import build_pack

    async def work(desk: Desk) -> bytes:
        return await build_pack(desk.db, ticket, state.actor, desk.clock.now())

    output.write_bytes(with_desk(work))
    out.print(f"wrote {output}", highlight=False)


@audit_app.command("verify-pack")
def audit_verify_pack(
    file: Annotated[Path, typer.Argument(help="An evidence pack ZIP.")],
    as_json: JsonFlag = False,
) -> None:
    """Check an evidence pack offline (no database): file hashes and the event chain."""
    from rightsdesk.evidence_check import verify_pack

    problems = verify_pack(file)
    if as_json:
        print_json({"ok": not problems, "problems": problems})
    elif problems:
        for problem in problems:
            err.print(f"[bold red]BROKEN[/] {problem}", highlight=False)
    else:
        out.print(f"evidence pack intact: {file}", highlight=False)
    if problems:
        raise typer.Exit(1)


@app.command()
def report(
    month: Annotated[str, typer.Option("--month", help="The month, e.g. 2026-11.")],
    pdf: Annotated[Path | None, typer.Option("--pdf", help="Write the report as PDF here.")] = None,
    as_json: JsonFlag = False,
) -> None:
    """The monthly report: received by type, answered on time or late, extended, denied (with
    the reasons), median working days to answer."""
    import dataclasses

    from rightsdesk.reports import ReportError, monthly_report, report_pdf, report_text

    settings = desk_settings()

    async def work(desk: Desk) -> Any:
        return await monthly_report(desk.db, desk.policy, month)

    try:
        figures = with_desk(work)
        if as_json:
            print_json(
                {**dataclasses.asdict(figures), "median_working_days": figures.median_working_days}
            )
            return
        import datetime as dt

        text = report_text(
            figures, settings.desk.company_name, dt.datetime.now(dt.UTC), settings.desk.tz
        )
        if pdf is None:
            out.print(text, highlight=False, markup=False)
            return
        pdf.write_bytes(report_pdf(text, settings.console.pdf_font_file))
    except ReportError as exc:
        fail(str(exc), 2)
    out.print(f"wrote {pdf}", highlight=False)


@app.command()
def digest(
    print_: Annotated[
        bool, typer.Option("--print", help="Show today's digest; send nothing.")
    ] = False,
    as_json: JsonFlag = False,
) -> None:
    """The DPO's digest as it would be sent today (the scheduler sends it on working days)."""
    from scheduler.digest import build_digest, calendar_warning, render_digest

    async def work(desk: Desk) -> Any:
        today = desk.tickets.today()
        return await build_digest(desk, today), desk.outbox.templates

    built, templates = with_desk(work)
    if as_json:
        print_json(
            {
                "day": built.day.isoformat(),
                "sections": {
                    key: [line.__dict__ for line in lines] for key, lines in built.sections.items()
                },
                "by_type": dict(built.by_type),
                "by_channel": dict(built.by_channel),
                "calendar_warning": calendar_warning(built, templates),
            }
        )
        return
    if not print_:
        fail("the scheduler sends the digest; use --print to see it here", 2)
    _, text, _ = render_digest(built, templates)
    out.print(shown(text, multiline=True), highlight=False)


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
        fail("this deletes message contents for good: add --yes, or --dry-run to look first", 2)

    async def work(desk: Desk) -> tuple[list[str], int]:
        tickets = await purge_closed(desk, dry_run=dry_run)
        return tickets, await purge_unattached(desk, dry_run=dry_run)

    purged, unattached = with_desk(work)
    if as_json:
        print_json({"dry_run": dry_run, "tickets": purged, "unattached_messages": unattached})
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
    settings = desk_settings()
    received_at = parse_instant(received, "--received")
    assert received_at is not None
    types = parse_types(type_ or ["access"])
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
        print_json(data)
        return
    out.print(f"received on {data['started_on']} ({settings.desk.timezone})", highlight=False)
    flag = "  (provisional: holidays not yet published)" if result.provisional else ""
    out.print(f"answer due:     {data['response_due']}{flag}", highlight=False)
    if result.completion_due:
        out.print(f"completion due: {data['completion_due']}", highlight=False)
