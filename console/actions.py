"""Every ticket action of the console and the API, as one call of the core's TicketService.

The console never writes tickets itself. Each action runs inside `unchanged_since(head)` when
the form (or API call) says which version it saw, so two people acting at once cannot overwrite
each other: the second gets TicketConflict from the core.
"""

from __future__ import annotations

import contextlib
import datetime as dt
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass

from rightsdesk.models import RequestType, Ticket
from rightsdesk.staff import Staff
from rightsdesk.tickets import TicketError, TicketService, unchanged_since


@dataclass(frozen=True)
class Fields:
    """What the person typed, by field name (one value, or several for `types`)."""

    values: dict[str, list[str]]

    def text(self, name: str) -> str:
        found = self.values.get(name) or [""]
        return found[0].strip()

    def many(self, name: str) -> list[str]:
        return [v for v in self.values.get(name, []) if v.strip()]


Action = Callable[[TicketService, str, str, Fields], Awaitable[Ticket]]


def _date(value: str, name: str) -> dt.date:
    try:
        return dt.date.fromisoformat(value)
    except ValueError:
        raise TicketError(f"{name}: expected a date like 2026-12-24, got {value!r}") from None


def _types(values: Sequence[str]) -> list[RequestType]:
    found: list[RequestType] = []
    for value in values:
        for part in value.split(","):
            if part.strip():
                try:
                    found.append(RequestType(part.strip()))
                except ValueError:
                    raise TicketError(f"unknown request type {part.strip()!r}") from None
    return found


async def _assign(t: TicketService, tid: str, actor: str, f: Fields) -> Ticket:
    return await t.assign(tid, actor, f.text("assignee") or None)


async def _verify(t: TicketService, tid: str, actor: str, f: Fields) -> Ticket:
    return await t.mark_verified(tid, actor, f.text("note") or None)


async def _start(t: TicketService, tid: str, actor: str, f: Fields) -> Ticket:
    return await t.start(tid, actor)


async def _extend(t: TicketService, tid: str, actor: str, f: Fields) -> Ticket:
    return await t.extend(tid, actor, _date(f.text("until"), "until"), f.text("reason"))


async def _resolve(t: TicketService, tid: str, actor: str, f: Fields) -> Ticket:
    return await t.resolve(tid, actor, f.text("note"))


async def _deny(t: TicketService, tid: str, actor: str, f: Fields) -> Ticket:
    return await t.deny(tid, actor, f.text("reason"))


async def _relabel(t: TicketService, tid: str, actor: str, f: Fields) -> Ticket:
    return await t.relabel(tid, actor, _types(f.many("types")))


async def _cancel(t: TicketService, tid: str, actor: str, f: Fields) -> Ticket:
    return await t.cancel(tid, actor, f.text("reason") or None)


async def _close(t: TicketService, tid: str, actor: str, f: Fields) -> Ticket:
    return await t.close(tid, actor)


async def _reopen(t: TicketService, tid: str, actor: str, f: Fields) -> Ticket:
    return await t.reopen(tid, actor, f.text("reason"))


ACTIONS: dict[str, Action] = {
    "assign": _assign,
    "verify": _verify,
    "start": _start,
    "extend": _extend,
    "resolve": _resolve,
    "deny": _deny,
    "relabel": _relabel,
    "cancel": _cancel,
    "close": _close,
    "reopen": _reopen,
}


class UnknownAction(TicketError):
    pass


async def perform(
    tickets: TicketService,
    staff: Staff,
    public_id: str,
    action: str,
    fields: Fields,
    head: str | None,
) -> Ticket:
    """Run one action as `staff`; with `head`, only if the ticket is still at that version."""
    run = ACTIONS.get(action)
    if run is None:
        raise UnknownAction(f"no action {action!r}; actions are: {', '.join(ACTIONS)}")
    guard = unchanged_since(public_id, head) if head else contextlib.nullcontext()
    with guard:
        return await run(tickets, public_id, staff.actor, fields)
