"""`rightsdesk tickets`: work the tickets."""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from typing import Annotated, Any

import typer
from rich.table import Column, Table

from rightsdesk.cli.common import (
    JsonFlag,
    TicketId,
    err,
    fail,
    out,
    parse_date,
    parse_instant,
    parse_types,
    print_json,
    shown,
    state,
    with_desk,
)
from rightsdesk.languages import LANGS
from rightsdesk.models import Channel, TicketStatus
from rightsdesk.service import Desk
from rightsdesk.tickets import Contact, NewTicket, TicketFilter
from rightsdesk.views import ticket_detail, ticket_summary

tickets_app = typer.Typer(help="Work the tickets.", no_args_is_help=True)


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
        types=parse_types(type_ or []),
        due_before=parse_date(due_before, "--due-before"),
        overdue=overdue,
        assignee=assignee,
        needs_review=True if needs_review else None,
        limit=limit,
    )

    async def work(desk: Desk) -> list[dict[str, Any]]:
        today = desk.tickets.today()
        return [ticket_summary(t, today, desk.policy.tz) for t in await desk.tickets.find(filters)]

    rows = with_desk(work)
    if as_json:
        print_json(rows)
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
        state = row["status"] + (" (review)" if row["needs_review"] else "")
        if row["withdrawal_pending"]:
            state += " (withdrawal pending)"
        table.add_row(
            shown(row["id"]),
            state,
            ",".join(row["types"]),
            row["channel"],
            row["received_at"][:10],
            due,
            left,
            shown(row["assignee"] or ""),
            style=style,
        )
    out.print(table)
    if any(row["provisional"] for row in rows):
        err.print("* provisional: next year's official holidays are not known yet")


@tickets_app.command("show")
def tickets_show(ticket_id: TicketId, as_json: JsonFlag = False) -> None:
    """Show a ticket with its deadlines, messages and audit events."""

    async def work(desk: Desk) -> dict[str, Any]:
        data = ticket_detail(
            await desk.tickets.detail(ticket_id), desk.tickets.today(), desk.policy.tz
        )
        data["fulfilment"] = await desk.fulfilment.status(ticket_id)
        return data

    data = with_desk(work)
    if as_json:
        print_json(data)
        return
    scores = (data["classification"] or {}).get("scores") or {}
    types = ", ".join(f"{t} ({scores[t]:.2f})" if t in scores else t for t in data["types"])
    out.print(f"[bold]{shown(data['id'])}[/]  {data['status']}  {types}")
    if data["withdrawal_final_at"]:
        out.print(
            f"  [bold yellow]withdrawal pending[/]: final at {data['withdrawal_final_at'][:16]} "
            f"unless undone (rightsdesk tickets undo-withdrawal {shown(data['id'])})"
        )
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
        "language",
        "denial_reason",
        "resolution_reply",
        "cancel_reason",
    ):
        if data[key] not in (None, False, ""):
            out.print(f"  {key}: {shown(data[key])}", highlight=False)
    if data["classification"]:
        classification = json.dumps(data["classification"], ensure_ascii=False)
        out.print(f"  classification: {shown(classification)}", highlight=False)
    for run in data["fulfilment"][:1]:  # the newest run; `fulfil tasks` lists them all
        out.print(f"  fulfilment: run {run['run']} {run['status']}", highlight=False)
        for step in run["systems"]:
            failed = step["status"] == "failed"
            line = f"    {step['system']}: {step['status']}"
            if failed:
                line += f" (attempt {step['attempts']}, retry {step['next_attempt_at']}): "
                line += step["last_error"] or ""
            out.print(shown(line), highlight=False, style="red" if failed else None)
    for message in data["messages"]:
        if message["internal"]:
            title = f"INTERNAL NOTE by {message['sender']} {message['received_at']} (never sent)"
            out.rule(f"[bold yellow]{shown(title)}[/]")
            out.print(shown(message["text"] or "(no text)", multiline=True), highlight=False)
            continue
        title = f"{message['direction']} {message['channel']} {message['received_at']}"
        if message["sender"]:
            title += f" from {message['sender']}"
        out.rule(shown(title), style="yellow" if message["unauthenticated_thread"] else "")
        if message["unauthenticated_thread"]:
            out.print(
                "[bold yellow]UNVERIFIED SENDER[/]: joined this ticket by its [PRIV-…] tag or as"
                " the same request again; nothing proves who wrote it. Do not act on it (a new"
                " address, a withdrawal) without checking.",
                highlight=False,
            )
        if message["subject"]:
            out.print(f"Subject: {shown(message['subject'])}", highlight=False)
        out.print(shown(message["text"] or "(no text)", multiline=True), highlight=False)
        for attachment in message["attachments"]:
            name = shown(attachment["filename"] or "(no name)")
            out.print(
                f"  attachment #{attachment['id']}: {name} "
                f"({shown(attachment['content_type'])}, {attachment['size']:,} bytes)",
                highlight=False,
            )
    table = Table("#", "at", "actor", "action", "change", title="audit trail")
    for event in data["events"]:
        change = json.dumps(event["after"], ensure_ascii=False)
        table.add_row(
            str(event["seq"]),
            event["at"][:19],
            shown(event["actor"]),
            shown(event["action"]),
            shown(change),
        )
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
    lang: Annotated[
        str | None, typer.Option(help="The language to answer in: zh, zh-Hant or en.")
    ] = None,
    as_json: JsonFlag = False,
) -> None:
    """Open a ticket for a request that came by phone, letter or in person."""
    if (email is None) == (phone is None):
        fail("give exactly one of --email or --phone", 2)
    contact = Contact.email(email) if email is not None else Contact.phone(phone or "")
    if lang is not None and lang not in LANGS:
        fail(f"--lang: one of {', '.join(LANGS)}", 2)

    async def work(desk: Desk) -> dict[str, Any]:
        received_at = parse_instant(received, "--received") or desk.clock.now()
        ticket = await desk.tickets.open(
            NewTicket(
                channel=Channel.MANUAL,
                contact=contact,
                types=parse_types(type_),
                received_at=received_at,
                subject=subject,
                requester_name=name,
                language=lang,
                text=text,
            ),
            actor=state.actor,
        )
        return ticket_summary(ticket, desk.tickets.today(), desk.policy.tz)

    row = with_desk(work)
    if as_json:
        print_json(row)
    else:
        out.print(f"opened {row['id']}, answer due {row['response_due']}", highlight=False)


def _change(action: Callable[[Desk], Awaitable[Any]], as_json: bool, done: str) -> None:
    """Run one ticket change and report the ticket as it now stands."""

    async def work(desk: Desk) -> dict[str, Any]:
        return ticket_summary(await action(desk), desk.tickets.today(), desk.policy.tz)

    row = with_desk(work)
    if as_json:
        print_json(row)
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
        fail("--note: say how the identity was checked", 2)
    _change(lambda d: d.tickets.mark_verified(ticket_id, state.actor, note), as_json, "verified")


@tickets_app.command("resend-code")
def tickets_resend_code(ticket_id: TicketId) -> None:
    """Send a new verification code to the account's registered address (limited)."""
    with_desk(lambda d: d.verifier.resend_code(ticket_id, state.actor))
    out.print(f"{ticket_id}: a new code is on its way to the registered address", highlight=False)


@tickets_app.command("start")
def tickets_start(ticket_id: TicketId, as_json: JsonFlag = False) -> None:
    """Start working a ticket."""
    _change(lambda d: d.tickets.start(ticket_id, state.actor), as_json, "started")


INTERNAL_NOTE = "Internal note for the team: kept on the ticket, never sent to the requester."


@tickets_app.command("resolve")
def tickets_resolve(
    ticket_id: TicketId,
    reply: Annotated[
        str | None,
        typer.Option(
            help="What the REQUESTER reads, inside the resolved notice (e.g. 'the copy of your "
            "data was sent on 3 March'). Required."
        ),
    ] = None,
    note: Annotated[str | None, typer.Option(help=INTERNAL_NOTE)] = None,
    as_json: JsonFlag = False,
) -> None:
    """Resolve a ticket: the request was carried out.

    --reply goes to the requester; --note stays with the team."""
    if reply is None or not reply.strip():
        if note is not None:
            # Before the split, --note was what the requester read: refuse rather than send
            # nothing (or send what was meant for the team).
            fail(
                "--note is internal now and never sent; say what the requester reads with "
                "--reply TEXT (and keep --note for the team)",
                2,
            )
        fail("--reply TEXT is required: what the requester reads in the resolved notice", 2)
    _change(
        lambda d: d.answers.resolve(ticket_id, actor=state.actor, reply=reply, note=note),
        as_json,
        "resolved",
    )


@tickets_app.command("deny")
def tickets_deny(
    ticket_id: TicketId,
    reason: Annotated[
        str,
        typer.Option(
            help="Why, as the REQUESTER reads it inside the denial (PIPL Art. 50: a refusal "
            "must say why)."
        ),
    ],
    note: Annotated[str | None, typer.Option(help=INTERNAL_NOTE)] = None,
    as_json: JsonFlag = False,
) -> None:
    """Deny a request.

    --reason goes to the requester; --note stays with the team."""
    _change(
        lambda d: d.answers.deny(ticket_id, actor=state.actor, reason=reason, note=note),
        as_json,
        "denied",
    )


@tickets_app.command("extend")
def tickets_extend(
    ticket_id: TicketId,
    until: Annotated[str, typer.Option(help="New answer due date (YYYY-MM-DD).")],
    reason: Annotated[str, typer.Option(help="Why more time is needed.")],
    as_json: JsonFlag = False,
) -> None:
    """Extend the answer deadline, with a reason and a new date."""
    new_date = parse_date(until, "--until")
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


@tickets_app.command("undo-withdrawal")
def tickets_undo_withdrawal(ticket_id: TicketId, as_json: JsonFlag = False) -> None:
    """Undo a withdrawal by mail that is not final yet (the requester says it was not them)."""
    _change(lambda d: d.withdrawals.undo(ticket_id, state.actor), as_json, "withdrawal undone")


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
    new_types = parse_types([types])

    async def relabel(desk: Desk) -> Any:
        await desk.tickets.relabel(ticket_id, state.actor, new_types)
        # The new types may need more proof of identity than was asked for.
        await desk.verifier.reconsider(ticket_id, state.actor)
        return await desk.tickets.get(ticket_id)

    _change(relabel, as_json, "relabelled")
