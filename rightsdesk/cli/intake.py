"""`rightsdesk intake`: messages that could not be routed, and what to do with each."""

from __future__ import annotations

import dataclasses
from typing import Annotated, Any

import typer
from rich.table import Column, Table

from rightsdesk.cli.common import JsonFlag, fail, out, print_json, state, with_desk
from rightsdesk.service import Desk
from rightsdesk.views import message_view

intake_app = typer.Typer(help="Messages that could not be routed.", no_args_is_help=True)


@intake_app.command("failed")
def intake_failed(
    limit: Annotated[int, typer.Option(help="At most this many messages.")] = 100,
    as_json: JsonFlag = False,
) -> None:
    """List stored messages that failed to parse or route, or were too large to fetch."""

    async def work(desk: Desk) -> list[dict[str, Any]]:
        return [message_view(m) for m in await desk.pipeline.problems(limit)]

    rows = with_desk(work)
    if as_json:
        print_json(rows)
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
    outcome = with_desk(lambda desk: desk.pipeline.retry(message))
    if outcome is None:
        fail(f"message #{message} is not waiting or failed")
    out.print(f"message #{message}: {outcome}", highlight=False)
    if outcome == "failed":
        raise typer.Exit(1)


MessageNumber = Annotated[int, typer.Argument(help="The message number from `intake failed`.")]


@intake_app.command("show")
def intake_show(message: MessageNumber, as_json: JsonFlag = False) -> None:
    """Show a received message: its headers and decoded text (control characters escaped)."""
    view = with_desk(lambda desk: desk.stray.show(message))
    if as_json:
        print_json(dataclasses.asdict(view))
        return
    out.print(
        f"message #{view.id}: {view.parse_status}"
        + (f" ({view.parse_error})" if view.parse_error else "")
        + (f", ticket {view.ticket}" if view.ticket else ""),
        highlight=False,
        markup=False,
    )
    out.print(
        f"  sender: {view.sender or '(none)'}  envelope: {view.envelope_from or '(none)'}"
        f"  received: {view.received_at}  size: {view.raw_bytes}",
        highlight=False,
        markup=False,
    )
    out.rule("headers")
    for name, value in view.headers:
        out.print(f"{name}: {value}", highlight=False, markup=False)
    out.rule("text")
    out.print(view.text or "(no text)", highlight=False, markup=False)


@intake_app.command("ticket")
def intake_ticket(
    message: MessageNumber,
    email: Annotated[str, typer.Option(help="Who wrote it (the mail names no usable sender).")],
) -> None:
    """Route a stuck message as if EMAIL had sent it: it opens (or joins) a ticket."""
    public_id = with_desk(lambda desk: desk.stray.open_ticket(message, email, state.actor))
    out.print(f"message #{message}: {public_id}", highlight=False)


@intake_app.command("dismiss")
def intake_dismiss(
    message: MessageNumber,
    reason: Annotated[str, typer.Option(help="Why nothing is to be done (kept on the message).")],
) -> None:
    """Set a stuck message aside for good; it leaves `intake failed`."""
    with_desk(lambda desk: desk.stray.dismiss(message, reason, state.actor))
    out.print(f"message #{message}: dismissed", highlight=False)
