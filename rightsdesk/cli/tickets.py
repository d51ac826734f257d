"""`rightsdesk tickets`: work the tickets."""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Awaitable, Callable
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Column, Table
from rich.text import Text

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
from rightsdesk.models import Channel, Ticket, TicketStatus
from rightsdesk.service import Desk
from rightsdesk.tickets import Contact, DismissingRightsRequest, NewTicket, TicketFilter
from rightsdesk.views import hold_text, printable, search_view, ticket_detail, ticket_summary

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
        bool, typer.Option("--needs-review", help="Only the triage queue (active tickets).")
    ] = False,
    unread: Annotated[
        bool,
        typer.Option(
            "--unread", help="Only tickets whose requester wrote since a person last acted."
        ),
    ] = False,
    limit: Annotated[int | None, typer.Option(help="At most this many tickets.")] = None,
    as_json: JsonFlag = False,
) -> None:
    """List tickets: active work first, most urgent first. In the table, ● marks a ticket
    whose requester wrote since a person last acted on it, ? one that needs review, w one with
    a withdrawal by mail pending (`undo-withdrawal`); "left"
    is working days to the answer deadline (negative: late)."""
    filters = TicketFilter(
        statuses=status or (),
        types=parse_types(type_ or []),
        due_before=parse_date(due_before, "--due-before"),
        overdue=overdue,
        assignee=assignee,
        needs_review=True if needs_review else None,
        unread=True if unread else None,
        limit=limit,
    )

    async def work(desk: Desk) -> list[dict[str, Any]]:
        found = await desk.tickets.find(filters)
        links = await desk.tickets.links_of(found)
        return [_summary(desk, t, links) for t in found]

    rows = with_desk(work)
    if as_json:
        print_json(rows)
        return
    print_ticket_rows(rows)


# Column widths of the listing (cells; a Chinese character is two): the subject takes what
# the terminal has left, at least _SUBJECT_MIN, so 100 columns show every column.
_WIDTHS = {"mark": 3, "id": 16, "status": 11, "types": 12, "requester": 18, "due": 6}
_LEFT, _ASSIGNEE, _SUBJECT_MIN = 4, 8, 12


def _cut(text: str, width: int) -> Text:
    cell = Text(" ".join(text.split()), no_wrap=True)
    cell.truncate(width, overflow="ellipsis")
    return cell


def print_ticket_rows(rows: list[dict[str, Any]]) -> None:
    """The listing table, readable at 100 columns: long cells are cut, never wrapped. Due
    dates of this year show as MM-DD."""
    fixed = sum(_WIDTHS.values()) + _LEFT + _ASSIGNEE + 8  # 8: one space between columns
    subject_width = max(_SUBJECT_MIN, min(out.width, 160) - fixed)
    widths = {**_WIDTHS, "subject": subject_width}
    table = Table(
        *(
            Column(name if name != "mark" else "", no_wrap=True, width=widths[name])
            for name in ("mark", "id", "status", "types", "requester", "subject", "due")
        ),
        Column("left", no_wrap=True, justify="right", width=_LEFT),
        Column("assignee", no_wrap=True, width=_ASSIGNEE),
        box=None,
        padding=(0, 1, 0, 0),
        show_edge=False,
        pad_edge=False,
    )
    year = dt.date.today().isoformat()[:5]
    for row in rows:
        due = row["response_due"] or "-"
        due = (due[5:] if due.startswith(year) else due) + ("*" if row["provisional"] else "")
        left = "" if row["working_days_left"] is None else str(row["working_days_left"])
        mark = (
            ("●" if row["unread"] else " ")
            + ("?" if row["needs_review"] else " ")
            + ("w" if row["withdrawal_pending"] else " ")
        )
        cells = {
            "status": row["status"],
            "types": ",".join(row["types"]),
            "requester": printable(row["requester_contact"]),
            "subject": printable(row["subject"] or ""),
            "due": due,
        }
        table.add_row(
            mark,
            shown(row["id"]),
            *(_cut(cells[name], widths[name]) for name in cells),
            left,
            _cut(printable(row["assignee"] or ""), _ASSIGNEE),
            style="red" if row["overdue"] else None,
        )
    # Narrower than the columns need (a pipe is 80): print at their width, never squash ids.
    narrow = out.width < fixed + _SUBJECT_MIN
    (Console(width=fixed + _SUBJECT_MIN, soft_wrap=True) if narrow else out).print(table)
    if any(row["provisional"] for row in rows):
        err.print("* provisional: next year's official holidays are not known yet")


def _summary(desk: Desk, ticket: Ticket, links: dict[int, str] | None = None) -> dict[str, Any]:
    return ticket_summary(ticket, desk.tickets.today(), desk.policy.tz, desk.policy.calendar, links)


@tickets_app.command("search")
def tickets_search(
    text: Annotated[
        str,
        typer.Argument(
            help="A ticket id, an email address, a phone number, a name, an account id, "
            "or words of the messages (Chinese too)."
        ),
    ],
    limit: Annotated[int, typer.Option(help="At most this many tickets.")] = 50,
    as_json: JsonFlag = False,
) -> None:
    """Find tickets by id, requester (email, phone, name, account id) or message words."""

    async def work(desk: Desk) -> list[dict[str, Any]]:
        today = desk.tickets.today()
        hits = await desk.search.search(text, limit)
        return [search_view(h, today, desk.policy.tz, desk.policy.calendar) for h in hits]

    rows = with_desk(work)
    if as_json:
        print_json(rows)
        return
    if not rows:
        err.print("no ticket matches")
        return
    print_ticket_rows(rows)
    for row in rows:
        if row["snippet"]:
            out.print(f"  {shown(row['id'])}: {shown(row['snippet'])}", highlight=False)


@tickets_app.command("show")
def tickets_show(ticket_id: TicketId, as_json: JsonFlag = False) -> None:
    """Show a ticket with its deadlines, messages and audit events."""

    async def work(desk: Desk) -> dict[str, Any]:
        detail = await desk.tickets.detail(ticket_id)
        links = await desk.tickets.links_of([detail.ticket])
        today = desk.tickets.today()
        data = ticket_detail(detail, today, desk.policy.tz, desk.policy.calendar, links)
        data["fulfilment"] = await desk.fulfilment.status(ticket_id)
        data["package"] = await desk.packages.status(ticket_id)
        return data

    data = with_desk(work)
    if as_json:
        print_json(data)
        return
    scores = (data["classification"] or {}).get("scores") or {}
    types = ", ".join(f"{t} ({scores[t]:.2f})" if t in scores else t for t in data["types"])
    out.print(f"[bold]{shown(data['id'])}[/]  {data['status']}  {types}", highlight=False)
    if data["withdrawal_final_at"]:
        out.print(
            f"  [bold yellow]withdrawal pending[/]: final at {data['withdrawal_final_at'][:16]} "
            f"unless undone (rightsdesk tickets undo-withdrawal {shown(data['id'])})",
            highlight=False,
        )
    if data["review_reasons"]:
        out.print(f"  needs attention: {shown('; '.join(data['review_reasons']))}", highlight=False)
    hold = data["verification_hold"]
    if hold is not None and hold_text(hold) not in data["review_reasons"]:
        out.print(f"  {shown(hold_text(hold))}", highlight=False)
    account = data["account"]
    if account is not None:
        proven = "verified" if account["verified"] else "matched, not verified for this ticket"
        out.print(
            f"  account: {shown(account['account_id'])} ({shown(account['email'])}; {proven})",
            highlight=False,
        )
    for key in (
        "channel",
        "requester_contact",
        "subject",
        "received_at",
        "response_due",
        "working_days_left",
        "completion_due",
        "provisional",
        "assignee",
        "verification",
        "suggested_types",
        "duplicate_of",
        "merged_into",
        "extension_reason",
        "completion_extension_reason",
        "language",
        "denial_reason",
        "resolution_reply",
        "cancel_reason",
        "dismissal_reason",
        "verified_at",
        "finished_at",
        "closed_at",
    ):
        if data[key] not in (None, False, "", []):
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
    if data["package"] is not None:
        out.print(f"  {shown(data['package']['line'])}", highlight=False)
    for message in data["messages"]:
        if message["internal"]:
            title = f"INTERNAL NOTE by {message['sender']} {message['received_at']} (never sent)"
            out.rule(f"[bold yellow]{shown(title)}[/]")
            out.print(shown(message["text"] or "(no text)", multiline=True), highlight=False)
            continue
        title = f"{message['direction']} {message['channel']} {message['received_at']}"
        if message["to_staff"]:
            title = f"to our staff {message['received_at']}: {', '.join(message['to'])}"
        elif message["sender"]:
            title += f" from {message['sender']}"
        out.rule(shown(title), style="yellow" if message["unauthenticated_thread"] else "")
        if message["unauthenticated_thread"]:
            out.print(
                "[bold yellow]UNVERIFIED SENDER[/]: joined this ticket by its [PRIV-…] tag, as"
                " the same request again, or from a merged ticket nobody verified; nothing"
                " proves who wrote it. Do not act on it (a new address, a withdrawal) without"
                " checking.",
                highlight=False,
            )
        if message["subject"]:
            out.print(f"Subject: {shown(message['subject'])}", highlight=False)
        out.print(shown(message["text"] or "(no text)", multiline=True), highlight=False)
        for attachment in message["attachments"]:
            name = shown(attachment["filename"] or "(no name)")
            missing = "" if attachment["kept"] else " NOT KEPT: only its name, type, size and hash"
            out.print(
                f"  attachment #{attachment['id']}: {name} "
                f"({shown(attachment['content_type'])}, {attachment['size']:,} bytes){missing}",
                highlight=False,
            )
    table = Table("#", "at", "actor", "action", "change", title="audit trail")
    for event in data["events"]:
        change = json.dumps(event["after"], ensure_ascii=False)
        table.add_row(
            str(event["seq"]),
            event["at"],
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
        return _summary(desk, ticket)

    row = with_desk(work)
    if as_json:
        print_json(row)
    else:
        out.print(f"opened {row['id']}, answer due {row['response_due']}", highlight=False)


def _change(action: Callable[[Desk], Awaitable[Any]], as_json: bool, done: str) -> None:
    """Run one ticket change and report the ticket as it now stands."""

    async def work(desk: Desk) -> dict[str, Any]:
        return _summary(desk, await action(desk))

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
    without_package: Annotated[
        str | None,
        typer.Option(
            help="An access or portability ticket without a delivered package: why nothing "
            "is given (kept in the audit trail)."
        ),
    ] = None,
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
        lambda d: d.answers.resolve(
            ticket_id,
            actor=state.actor,
            reply=reply,
            note=note,
            without_package=without_package,
        ),
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
    reason: Annotated[str, typer.Option(help="Why more time is needed (the requester reads it).")],
    completion_until: Annotated[
        str | None,
        typer.Option(
            help="Erasure/account deletion: a new completion date (YYYY-MM-DD), needed when "
            "--until is past the 30-day completion date."
        ),
    ] = None,
    completion_reason: Annotated[
        str | None,
        typer.Option(help="Why the deletion itself takes longer (the requester reads it)."),
    ] = None,
    as_json: JsonFlag = False,
) -> None:
    """Extend the answer deadline, with a reason and a new date; the notice names both dates
    when the completion date moves too."""
    new_date = parse_date(until, "--until")
    assert new_date is not None
    completion = parse_date(completion_until, "--completion-until")
    if completion_reason is not None and completion is None:
        fail("--completion-reason goes with --completion-until", 2)
    _change(
        lambda d: d.tickets.extend(
            ticket_id,
            state.actor,
            new_date,
            reason,
            completion_until=completion,
            completion_reason=completion_reason,
        ),
        as_json,
        "extended",
    )


@tickets_app.command("dismiss")
def tickets_dismiss(
    ticket_id: TicketId,
    reason: Annotated[str, typer.Option(help="Why it needs nothing (kept on the ticket).")],
    force: Annotated[
        bool,
        typer.Option(
            "--force",
            help="Dismiss even though it is labelled a rights request (recorded in the audit).",
        ),
    ] = False,
    as_json: JsonFlag = False,
) -> None:
    """Close a ticket that is not a rights request (a product question, spam) in one step.
    It leaves the triage queue; the requester is not written to again. A ticket labelled
    with a rights type is refused (exit 2): relabel it not_rights_request, or give --force."""

    async def dismiss(desk: Desk) -> Ticket:
        try:
            return await desk.tickets.dismiss(ticket_id, state.actor, reason, despite_types=force)
        except DismissingRightsRequest as exc:
            fail(
                f"{exc.public_id} is labelled {', '.join(exc.types)}, a rights request: not "
                "dismissed; relabel it not_rights_request first, or give --force",
                2,
            )

    _change(dismiss, as_json, "dismissed")


@tickets_app.command("merge")
def tickets_merge(
    keep: Annotated[str, typer.Argument(help="The ticket that stays.")],
    other: Annotated[str, typer.Argument(help="The duplicate: its messages move to KEEP.")],
    as_json: JsonFlag = False,
) -> None:
    """Merge OTHER into KEEP: OTHER's messages move, its audit events are copied into KEEP's
    trail, and OTHER is closed pointing at KEEP (both trails still verify)."""
    _change(lambda d: d.merger.merge(keep, other, state.actor), as_json, f"absorbed {other}")


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
