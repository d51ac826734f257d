"""`rightsdesk outbox`: mail we are sending."""

from __future__ import annotations

from typing import Any

import typer
from rich.table import Column, Table

from rightsdesk.cli.common import JsonFlag, out, print_json, shown, with_desk
from rightsdesk.service import Desk

outbox_app = typer.Typer(help="Mail we are sending.", no_args_is_help=True)


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

    rows = with_desk(work)
    if as_json:
        print_json(rows)
        return
    table = Table(Column("#", no_wrap=True), "kind", "to", "status", "tries", "next try", "error")
    for row in rows:
        table.add_row(
            str(row["id"]),
            row["kind"],
            shown(row["recipient"]),
            row["status"],
            str(row["attempts"]),
            row["next_attempt_at"][:19],
            shown(row["last_error"] or ""),
        )
    out.print(table)
