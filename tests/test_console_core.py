"""The core pieces the console stands on: the version check, the console's filters, staff."""

from __future__ import annotations

import dataclasses
import datetime as dt

import pytest

from rightsdesk.clock import FrozenClock
from rightsdesk.models import ACTIVE_STATUSES, Channel, RequestType
from rightsdesk.service import Desk
from rightsdesk.staff import LoginRefused, StaffError
from rightsdesk.tickets import Contact, NewTicket, TicketConflict, TicketFilter, unchanged_since
from tests.conftest import add_staff, at


async def _open(desk: Desk, n: int, **fields: object) -> str:
    new = NewTicket(
        channel=fields.pop("channel", Channel.EMAIL),  # type: ignore[arg-type]
        contact=Contact.email(f"p{n}@example.com"),
        types=[RequestType.ACCESS],
        received_at=fields.pop("received_at", desk.clock.now()),  # type: ignore[arg-type]
    )
    return (await desk.tickets.open(new, "test")).public_id


async def test_a_stale_version_is_refused_by_the_core(desk: Desk) -> None:
    ticket = await _open(desk, 1)
    await add_staff(desk, "wang", "li")
    head = (await desk.tickets.get(ticket)).audit_head
    with unchanged_since(ticket, head):
        await desk.tickets.assign(ticket, "a", "wang")  # the version it saw: done
    with pytest.raises(TicketConflict), unchanged_since(ticket, head):
        await desk.tickets.assign(ticket, "b", "li")  # someone changed it since
    assert (await desk.tickets.get(ticket)).assignee == "wang"
    fresh = (await desk.tickets.get(ticket)).audit_head
    with unchanged_since(ticket.lower(), fresh):  # ids are matched as the core matches them
        await desk.tickets.cancel(ticket, "b", "withdrawn")


async def test_active_work_comes_first_and_pages_cross_the_boundary(
    desk: Desk, clock: FrozenClock
) -> None:
    early = await _open(desk, 1, received_at=at("2026-01-05 10:00"))
    late = await _open(desk, 2, received_at=at("2026-02-09 10:00"))
    done = [await _open(desk, 3 + k) for k in range(3)]
    for ticket in done:
        await desk.tickets.cancel(ticket, "test")
    everything = TicketFilter(active_first=True)
    listed = [t.public_id for t in await desk.tickets.find(everything)]
    assert listed == [early, late, *reversed(done)]  # urgent first; then finished, newest first
    for size in (1, 2, 3, 4):
        paged: list[str] = []
        for page in range(0, 6, size):
            batch = await desk.tickets.find(
                dataclasses.replace(everything, offset=page, limit=size)
            )
            paged.extend(t.public_id for t in batch)
        assert paged == listed, size
    # The console's plain rows: the same tickets, order and types as the entities.
    found = await desk.tickets.find(everything)
    plain = await desk.tickets.rows(everything)
    assert [(r.public_id, r.types, r.status) for r in plain] == [
        (t.public_id, t.types, t.status) for t in found
    ]
    # A search's hits (ids) are sorted in one statement: the same order, page by page.
    hits = dataclasses.replace(everything, ids=tuple(t.id or 0 for t in found))
    for size in (1, 2, 4):
        paged = []
        for page in range(0, 6, size):
            rows = await desk.tickets.rows(dataclasses.replace(hits, offset=page, limit=size))
            paged.extend(t.public_id for t in rows)
        assert paged == listed, size
    two = dataclasses.replace(hits, ids=(found[4].id or 0, found[0].id or 0))
    assert [t.public_id for t in await desk.tickets.rows(two)] == [listed[0], listed[4]]
    only_finished = dataclasses.replace(everything, statuses=("cancelled",), limit=2)  # type: ignore[arg-type]
    assert [t.public_id for t in await desk.tickets.find(only_finished)] == [done[2], done[1]]
    assert await desk.tickets.count(TicketFilter(statuses=tuple(ACTIVE_STATUSES))) == 2


async def test_the_console_filters(desk: Desk) -> None:
    mail = await _open(desk, 1, received_at=at("2026-02-09 10:00"))
    chat = await _open(desk, 2, channel=Channel.TELEGRAM, received_at=at("2026-02-10 09:00"))
    await add_staff(desk, "wang")
    await desk.tickets.assign(mail, "test", "wang")

    async def ids(**fields: object) -> list[str]:
        return [t.public_id for t in await desk.tickets.find(TicketFilter(**fields))]  # type: ignore[arg-type]

    assert await ids(channels=(Channel.TELEGRAM,)) == [chat]
    assert await ids(unassigned=True) == [chat]
    assert await ids(received_from=dt.date(2026, 2, 10)) == [chat]
    assert await ids(received_to=dt.date(2026, 2, 9)) == [mail]
    due = (await desk.tickets.get(mail)).response_due
    assert due is not None
    assert chat in await ids(due_from=due + dt.timedelta(days=1))
    assert mail not in await ids(due_from=due + dt.timedelta(days=1))


async def test_staff_rules(desk: Desk) -> None:
    with pytest.raises(StaffError, match="at least 10"):
        await desk.staff.add("short", "s@example.com", "agent", "short")
    with pytest.raises(StaffError, match="unknown role"):
        await desk.staff.add("x", "x@example.com", "admin", "long-enough-password")
    await desk.staff.add("wang", "W@Example.com", "agent", "long-enough-password")
    with pytest.raises(StaffError, match="already"):
        await desk.staff.add("wang", "w@example.com", "dpo", "long-enough-password")
    logged = await desk.staff.login("wang", "long-enough-password", "127.0.0.1")
    seen = await desk.staff.session(logged.token)
    assert seen is not None
    assert seen.staff.email == "w@example.com"
    assert seen.staff.actor == "console:wang"
    await desk.staff.reset_password("wang", "another-long-password")
    assert await desk.staff.session(logged.token) is None  # a reset ends the sessions
    with pytest.raises(LoginRefused):
        await desk.staff.login("wang", "long-enough-password", "127.0.0.1")
    _, token = await desk.staff.issue_token("wang")
    assert (await desk.staff.token_user(token)) is not None
    await desk.staff.set_disabled("wang")
    assert (await desk.staff.token_user(token)) is None  # disabling revokes tokens too


async def test_queue_counts_are_shared_while_fresh_and_computed_once(desk: Desk) -> None:
    import asyncio

    from console.queues import cached_count
    from rightsdesk.tickets import TicketService

    calls = 0

    class Counting(TicketService):
        async def count(
            self, filters: TicketFilter = TicketFilter(), cap: int | None = None
        ) -> int:
            nonlocal calls
            calls += 1
            await asyncio.sleep(0.05)  # a slow count: the others arrive while it runs
            return await super().count(filters, cap)

    tickets = Counting(desk.db, desk.clock, desk.policy)
    await _open(desk, 1)
    counts = await asyncio.gather(*(cached_count(tickets, TicketFilter(), 60) for _ in range(20)))
    assert counts == [1] * 20
    assert calls == 1
    await _open(desk, 2)
    assert await cached_count(tickets, TicketFilter(), 60) == 1  # still fresh: reused
    assert await cached_count(tickets, TicketFilter(), 0) == 2  # no reuse wanted: counted
    assert calls == 2
    await _open(desk, 3)
    # Expired: the last count is answered at once, and a fresh one is made meanwhile.
    await asyncio.sleep(0.02)
    assert await cached_count(tickets, TicketFilter(), 0.01) == 2
    await asyncio.sleep(0.2)
    assert calls == 3
    assert await cached_count(tickets, TicketFilter(), 60) == 3
