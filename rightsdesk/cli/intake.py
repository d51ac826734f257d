"""`rightsdesk intake`: messages that could not be routed, and what to do with each."""

from __future__ import annotations

import dataclasses
from typing import Annotated, Any

import typer
from rich.table import Column, Table

from rightsdesk.cli.common import JsonFlag, fail, out, print_json, shown, state, with_desk
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
        return [message_view(m, tz=desk.policy.tz) for m in await desk.pipeline.problems(limit)]

    rows = with_desk(work)
    if as_json:
        print_json(rows)
        return
    table = Table(Column("#", no_wrap=True), "status", "received", "sender", "size", "problem")
    for row in rows:
        table.add_row(
            str(row["id"]),
            row["parse_status"],
            (row["received_at"] or "")[:16],  # Beijing time (the offset is in --json)
            shown(row["sender"] or ""),
            str(row["raw_bytes"] or ""),
            shown(row["parse_error"] or ""),
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
    # Every field came from outside: through `shown` (control characters escaped, Rich
    # markup taken literally), like every printer of message text.
    out.print(
        f"message #{view.id}: {shown(view.parse_status)}"
        + (f" ({shown(view.parse_error)})" if view.parse_error else "")
        + (f", ticket {view.ticket}" if view.ticket else ""),
        highlight=False,
    )
    out.print(
        f"  sender: {shown(view.sender or '(none)')}"
        f"  envelope: {shown(view.envelope_from or '(none)')}"
        f"  received: {view.received_at}  size: {view.raw_bytes}",
        highlight=False,
    )
    out.rule("headers")
    for name, value in view.headers:
        out.print(f"{shown(name)}: {shown(value)}", highlight=False)
    out.rule("text")
    out.print(shown(view.text, multiline=True) if view.text else "(no text)", highlight=False)


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
