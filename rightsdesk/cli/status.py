"""`rightsdesk status`: what the running service is doing, read from the database.

Each replica of the service keeps its tasks' states in `taskheartbeat` (rightsdesk.supervision);
this command reads them with the queues' depths, the last digest and the model in use. A
DPO or an operator looks here first.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from rich.table import Column, Table
from sqlmodel import col, func, select

from rightsdesk.cli.common import JsonFlag, app, out, print_json, shown, with_desk
from rightsdesk.models import Message, OutboxEntry, SentNotice, Ticket
from rightsdesk.service import Desk
from rightsdesk.supervision import read_heartbeats, stale_after


async def gather_status(desk: Desk) -> dict[str, Any]:
    now = desk.clock.now()
    stale_before = now - stale_after(desk.settings.service)
    tz = desk.policy.tz

    def local(value: dt.datetime | None) -> str | None:
        return value.astimezone(tz).isoformat(timespec="seconds") if value else None

    tasks = []
    for row in await read_heartbeats(desk.db):
        gone = row.state != "stopped" and row.beat_at < stale_before
        tasks.append(
            {
                "replica": row.replica,
                "task": row.task,
                "state": "gone" if gone else row.state,
                "since": local(row.since),
                "failures": row.failures,
                "failing_since": local(row.failing_since),
                "last_error": row.last_error,
                "detail": row.detail,
                "last_heartbeat": local(row.beat_at),
            }
        )
    async with desk.db.reading() as session:

        async def count(query: Any) -> int:
            return int((await session.exec(query)).one())

        inbound = select(func.count(col(Message.id))).where(Message.direction == "in")
        outbox = select(func.count(col(OutboxEntry.id)))
        queues = {
            "stored_not_routed": await count(inbound.where(Message.parse_status == "stored")),
            "outbox_pending": await count(outbox.where(OutboxEntry.status == "pending")),
            "outbox_retrying": await count(
                outbox.where(OutboxEntry.status == "pending").where(col(OutboxEntry.attempts) > 0)
            ),
            "outbox_failed": await count(outbox.where(OutboxEntry.status == "failed")),
            "intake_failed": await count(
                inbound.where(col(Message.parse_status).in_(["failed", "too_large"]))
            ),
            "withdrawals_pending": await count(
                select(func.count(col(Ticket.id))).where(
                    col(Ticket.withdrawal_final_at).is_not(None)
                )
            ),
        }
        digest = (
            await session.exec(
                select(SentNotice.key, SentNotice.created_at)
                .where(SentNotice.kind == "digest")
                .order_by(col(SentNotice.created_at).desc())
                .limit(1)
            )
        ).first()
    model = next((t["detail"] for t in tasks if t["task"] == "classifier" and t["detail"]), None)
    return {
        "at": local(now),
        "tasks": tasks,
        "queues": queues,
        "last_digest": {"day": digest[0], "sent_at": local(digest[1])} if digest else None,
        "model": model,
    }


_STYLE = {"up": "green", "backing_off": "yellow", "failing": "bold red", "gone": "bold red"}


@app.command("status")
def status(as_json: JsonFlag = False) -> None:
    """What the running service is doing: each door and task, the queues, the last digest."""
    data = with_desk(gather_status)
    if as_json:
        print_json(data)
        return
    if not data["tasks"]:
        out.print("no service has reported: is `rightsdesk run` running on this database?")
    table = Table(
        Column("replica", no_wrap=True),
        "task",
        "state",
        "since",
        "failures",
        "last error",
        "detail",
        title="tasks",
    )
    for task in data["tasks"]:
        state = task["state"]
        if task["failing_since"] and state != "up":
            state += f" since {task['failing_since'][:19]}"
        table.add_row(
            shown(task["replica"]),
            shown(task["task"]),
            state,
            (task["since"] or "")[:19],
            str(task["failures"] or ""),
            shown(task["last_error"] or ""),
            shown(task["detail"] or ""),
            style=_STYLE.get(task["state"]),
        )
    out.print(table)
    queues = Table("queue", "messages", title="queues")
    for name, depth in data["queues"].items():
        queues.add_row(name.replace("_", " "), str(depth))
    out.print(queues)
    digest = data["last_digest"]
    out.print(
        f"last digest: {digest['day']} (sent {digest['sent_at'][:19]})"
        if digest
        else "last digest: never",
        highlight=False,
    )
    out.print(
        f"model: {shown(data['model'] or 'unknown (no service has reported)')}", highlight=False
    )
