"""The audit trail is a hash chain: any edit, removal or truncation is found and named."""

from __future__ import annotations

from sqlalchemy import text

from rightsdesk.audit import AuditReport, verify_chains
from rightsdesk.models import Channel, RequestType
from rightsdesk.service import Desk
from rightsdesk.tickets import Contact, NewTicket
from tests.conftest import at


async def _two_worked_tickets(desk: Desk) -> tuple[str, str]:
    ids = []
    for email in ("alice@example.com", "bob@example.com"):
        ticket = await desk.tickets.open(
            NewTicket(
                channel=Channel.EMAIL,
                contact=Contact.email(email),
                types=[RequestType.ACCESS],
                received_at=at("2026-02-10 10:00"),
            )
        )
        await desk.tickets.mark_verified(ticket.public_id, "system")
        await desk.tickets.start(ticket.public_id, "cli:dpo")
        await desk.tickets.resolve(ticket.public_id, "cli:dpo", reply="copy sent")
        ids.append(ticket.public_id)
    return ids[0], ids[1]


async def _verify(desk: Desk) -> AuditReport:
    async with desk.db.transaction() as session:
        return await verify_chains(session, batch_size=3)  # small batches: pagination is walked


async def _sql(desk: Desk, statement: str) -> None:
    async with desk.db.engine.begin() as conn:
        await conn.execute(text(statement))


async def test_untouched_trail_verifies(desk: Desk) -> None:
    await _two_worked_tickets(desk)
    report = await _verify(desk)
    assert report.ok, report.broken
    assert (report.tickets, report.events) == (2, 8)


async def test_edited_event_is_named(desk: Desk) -> None:
    _, second = await _two_worked_tickets(desk)
    await _sql(
        desk,
        "UPDATE event SET actor = 'cli:mallory' WHERE seq = 3 AND ticket_id = "
        f"(SELECT id FROM ticket WHERE public_id = '{second}')",
    )
    report = await _verify(desk)
    assert report.broken is not None
    assert (report.broken.public_id, report.broken.seq) == (second, 3)
    assert "edited" in report.broken.reason
    assert str(report.broken).startswith(f"{second} event #3")


async def test_edited_after_values_are_found(desk: Desk) -> None:
    first, _ = await _two_worked_tickets(desk)
    await _sql(
        desk,
        """UPDATE event SET "after" = '{"status": "resolved", "resolution_note": "nothing"}' """
        f"WHERE seq = 4 AND ticket_id = (SELECT id FROM ticket WHERE public_id = '{first}')",
    )
    report = await _verify(desk)
    assert report.broken is not None
    assert (report.broken.public_id, report.broken.seq) == (first, 4)


async def test_removed_middle_event_is_found(desk: Desk) -> None:
    first, _ = await _two_worked_tickets(desk)
    await _sql(
        desk,
        "DELETE FROM event WHERE seq = 2 AND ticket_id = "
        f"(SELECT id FROM ticket WHERE public_id = '{first}')",
    )
    report = await _verify(desk)
    assert report.broken is not None
    assert (report.broken.public_id, report.broken.seq) == (first, 2)
    assert "missing" in report.broken.reason


async def test_removed_last_event_is_found(desk: Desk) -> None:
    first, _ = await _two_worked_tickets(desk)
    await _sql(
        desk,
        "DELETE FROM event WHERE seq = 4 AND ticket_id = "
        f"(SELECT id FROM ticket WHERE public_id = '{first}')",
    )
    report = await _verify(desk)
    assert report.broken is not None
    assert (report.broken.public_id, report.broken.seq) == (first, 4)
    assert "cut short" in report.broken.reason


async def test_ticket_with_no_events_is_found(desk: Desk) -> None:
    _, second = await _two_worked_tickets(desk)
    await _sql(
        desk,
        f"DELETE FROM event WHERE ticket_id = (SELECT id FROM ticket WHERE public_id = '{second}')",
    )
    report = await _verify(desk)
    assert report.broken is not None
    assert report.broken.public_id == second
    assert "no audit events" in report.broken.reason
