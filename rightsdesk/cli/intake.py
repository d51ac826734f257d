"""`rightsdesk intake`: messages that could not be routed."""

from __future__ import annotations

from typing import Annotated, Any

import typer
from rich.table import Column, Table

from rightsdesk.cli.common import JsonFlag, fail, out, print_json, shown, with_desk
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
