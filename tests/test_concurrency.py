"""Concurrent opens and changes: distinct sequential ids and unbroken audit chains."""

from __future__ import annotations

import asyncio

import pytest

from rightsdesk.audit import verify_chains
from rightsdesk.models import Channel, RequestType
from rightsdesk.service import Desk
from rightsdesk.tickets import Contact, NewTicket
from tests.conftest import add_staff, at


def _new(i: int) -> NewTicket:
    return NewTicket(
        channel=Channel.EMAIL,
        # Some requesters write several times at once: their requester row is shared.
        contact=Contact.email(f"user{i % 50}@example.com"),
        types=[RequestType.ERASURE],
        received_at=at("2026-03-02 10:00"),
    )


@pytest.mark.slow
async def test_concurrent_opens_get_distinct_sequential_ids(desk: Desk, database_url: str) -> None:
    count = 200 if database_url.startswith("postgresql") else 60
    tickets = await asyncio.gather(*(desk.tickets.open(_new(i)) for i in range(count)))
    ids = [t.public_id for t in tickets]
    assert len(set(ids)) == count
    assert sorted(t.seq for t in tickets) == list(range(1, count + 1))
    assert len({t.requester_id for t in tickets}) == 50
    async with desk.db.transaction() as session:
        assert (await verify_chains(session)).ok


async def test_concurrent_changes_to_one_ticket_keep_one_chain(desk: Desk) -> None:
    ticket = await desk.tickets.open(_new(0))
    await add_staff(desk, *(f"agent{i}" for i in range(20)))
    await asyncio.gather(
        *(desk.tickets.assign(ticket.public_id, "cli:dpo", f"agent{i}") for i in range(20))
    )
    detail = await desk.tickets.detail(ticket.public_id)
    assert [e.seq for e in detail.events] == list(range(1, 22))
    async with desk.db.transaction() as session:
        report = await verify_chains(session)
    assert report.ok, report.broken
