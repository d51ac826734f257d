"""Opening a batch's new requests in bulk (#15, rightsdesk/pipeline/bulk.py): the same rows as
routing each message alone, a statement count that does not grow with the batch, and a
message that breaks the bulk write still failing alone."""

from __future__ import annotations

import asyncio
import re
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import event
from sqlmodel import col, select, update

from intake.mail import mail_dedupe_key
from rightsdesk.audit import verify_chains
from rightsdesk.clock import FrozenClock
from rightsdesk.config import Settings
from rightsdesk.models import (
    Channel,
    Event,
    Message,
    OutboxEntry,
    Ticket,
    TicketCounter,
    VerificationChallenge,
)
from rightsdesk.pipeline import Classification, Delivery
from rightsdesk.pipeline.bulk import BulkOpening
from rightsdesk.service import Desk
from tests.conftest import mail


class ByWord:
    """Types by a word in the text, as a model would decide them, and deterministic."""

    def classify(self, subject: str, text: str) -> Classification:
        if "BROKEN" in text:  # no such type: opening it raises, as a bug would
            return Classification(types=["no_such_type"], needs_review=False)  # type: ignore[list-item]
        if "complain" in text:
            return Classification(types=["complaint"], needs_review=False)  # type: ignore[list-item]
        if "unsure" in text:
            return Classification(types=["erasure"], needs_review=True)  # type: ignore[list-item]
        return Classification(types=["erasure"], needs_review=False)  # type: ignore[list-item]


def _mails() -> list[bytes]:
    """Registered senders (a code goes out), unknown ones, a complaint (nothing to prove),
    the classifier unsure, the same sender twice (the second joins), a sender who is
    already a requester with an open ticket of other types."""
    mails = [
        mail(f"please delete my data {i}", sender=f"user{i}@example.com", message_id=f"m{i}@x")
        for i in range(10)
    ]
    mails.append(mail("I complain about you", sender="c@example.com", message_id="c@x"))
    mails.append(mail("unsure: delete?", sender="u@example.com", message_id="u@x"))
    mails.append(mail("please delete my data again", sender="user1@example.com", message_id="d@x"))
    mails.append(mail("我要投诉 complain", sender="old@example.com", message_id="o2@x"))
    return mails


async def _desk(settings: Settings, clock: FrozenClock, folder: Path, bulk: bool) -> Desk:
    desk = Desk.build(settings, clock, classifier=ByWord())
    await desk.db.migrate()  # idempotent: a fresh SQLite file needs it
    desk.pipeline.batch_seconds = 600.0  # one batch
    if not bulk:
        desk.pipeline.bulk = None  # every message alone, through the stages
    csv = folder / "accounts.csv"
    rows = [f"a{i},user{i}@example.com,,User {i}," for i in range(0, 10, 2)]
    csv.write_text("account_id,email,phone,name,username\n" + "\n".join(rows) + "\n")
    await desk.accounts.import_csv(csv)
    return desk


async def _store(desk: Desk, mails: list[bytes]) -> list[int]:
    accepted = []
    for raw in mails:  # one at a time: the row ids in this order
        accepted.append(await desk.inbox.accept(Delivery(Channel.EMAIL, raw, mail_dedupe_key(raw))))
    return [a.message_row_id for a in accepted]


async def _rows(desk: Desk) -> dict[str, Any]:
    """What routing wrote, without what is random (codes, Message-ID nonces)."""
    async with desk.db.reading() as session:
        tickets = (await session.exec(select(Ticket).order_by(col(Ticket.id)))).all()
        by_id = {t.id: t.public_id for t in tickets}
        events = (await session.exec(select(Event).order_by(col(Event.id)))).all()
        entries = (await session.exec(select(OutboxEntry).order_by(col(OutboxEntry.id)))).all()
        challenges = (await session.exec(select(VerificationChallenge))).all()
        inbound = (
            await session.exec(
                select(Message).where(Message.direction == "in").order_by(col(Message.id))
            )
        ).all()
        out = (
            await session.exec(
                select(Message).where(Message.direction == "out").order_by(col(Message.id))
            )
        ).all()
        report = await verify_chains(session)
    assert report.ok, report.broken
    return {
        "tickets": [
            (
                t.public_id,
                t.status,
                sorted(t.types),
                t.verification,
                t.needs_review,
                t.language,
                t.response_due,
                t.completion_due,
                by_id.get(t.duplicate_of),
                t.contact_value,
                t.audit_head,
            )
            for t in tickets
        ],
        # The hash covers ticket, seq, time, actor, action, before and after: equal hashes
        # are equal events (the clock is frozen).
        "events": sorted((by_id[e.ticket_id], e.seq, e.action, e.hash) for e in events),
        "entries": sorted((by_id.get(e.ticket_id), e.kind, e.recipient) for e in entries),
        "challenges": sorted((by_id[c.ticket_id], c.account_id, c.sent_to) for c in challenges),
        "inbound": [
            (m.parse_status, by_id.get(m.ticket_id), m.acknowledge, m.sender, m.subject)
            for m in inbound
        ],
        "out": sorted(
            (
                by_id.get(m.ticket_id),
                m.subject,
                re.sub(r"(?<![-\d])\d{6}(?!\d)", "<code>", m.text or ""),
                m.envelope_to,
                b"In-Reply-To: <" in (m.raw or b""),
                (m.raw or b"").count(b"References: "),
            )
            for m in out
        ),
    }


async def _route(desk: Desk, mails: list[bytes]) -> dict[str, Any]:
    # Someone who wrote before: a requester with an open ticket (a complaint, not erasure).
    await _store(desk, [mail("complain 1", sender="old@example.com", message_id="o1@x")])
    await desk.pipeline.route_next()
    await _store(desk, mails)
    while (await desk.pipeline.route_next()).claimed:
        pass
    return await _rows(desk)


async def test_bulk_writes_what_routing_each_message_alone_writes(
    settings: Settings, clock: FrozenClock, tmp_path: Path
) -> None:
    alone = await _desk(settings, clock, tmp_path, bulk=False)
    try:
        expected = await _route(alone, _mails())
    finally:
        await alone.close()
    # A fresh database of the same kind for the bulk run.
    fresh = settings.model_copy(deep=True)
    if settings.database.url.startswith("sqlite"):
        fresh.database.url = f"sqlite+aiosqlite:///{tmp_path / 'bulk.db'}"
        fresh.desk.data_dir = tmp_path / "bulk"
        bulk = await _desk(fresh, clock, tmp_path, bulk=True)
    else:
        await _truncate(alone, settings)
        bulk = await _desk(settings, clock, tmp_path, bulk=True)
    try:
        found = await _route(bulk, _mails())
    finally:
        await bulk.close()
    assert found["tickets"] == expected["tickets"]
    assert found["events"] == expected["events"]
    assert found["entries"] == expected["entries"]
    assert found["challenges"] == expected["challenges"]
    assert found["inbound"] == expected["inbound"]
    assert found["out"] == expected["out"]
    # What the mix holds: codes to the five registered senders, a join, a link, a complaint.
    statuses = {t[0]: t[1] for t in found["tickets"]}
    assert sorted(statuses.values()).count("awaiting_verification") == 5
    assert any(e[2] == "duplicate_joined" for e in found["events"])
    assert len(found["challenges"]) == 5


async def _truncate(desk: Desk, settings: Settings) -> None:
    from tests.conftest import _truncate_all

    await _truncate_all(settings.database.url)


async def test_a_batch_takes_a_bounded_number_of_statements(
    settings: Settings, clock: FrozenClock, tmp_path: Path
) -> None:
    """The statements a batch sends do not grow with its messages: 8 new requests and 64
    take nearly the same number (lookups and INSERTs are one per table for the batch)."""
    desk = await _desk(settings, clock, tmp_path, bulk=True)
    desk.pipeline.batch_size = 64
    counted: list[int] = [0]

    def count(*_: object) -> None:
        counted[0] += 1

    event.listen(desk.db.engine.sync_engine, "before_cursor_execute", count)
    try:
        per_batch = []
        for n, start in ((8, 0), (64, 100)):
            await _store(
                desk,
                [
                    mail(f"please delete {i}", sender=f"s{i}@example.com", message_id=f"n{i}@x")
                    for i in range(start, start + n)
                ],
            )
            counted[0] = 0
            batch = await desk.pipeline.route_next()
            assert batch.claimed == n
            assert set(batch.outcomes.values()) == {"opened"}
            per_batch.append(counted[0])
        small, large = per_batch
        assert large <= small + 4, per_batch  # not 22 a message, as a message alone takes
        assert large <= 40, per_batch
    finally:
        event.remove(desk.db.engine.sync_engine, "before_cursor_execute", count)
        await desk.close()


async def test_a_message_that_breaks_the_bulk_write_fails_alone(
    settings: Settings, clock: FrozenClock, tmp_path: Path
) -> None:
    """The one that breaks is found by routing the batch again a message at a time: the
    others are ticketed, numbered without a gap, and it alone is marked failed."""
    desk = await _desk(settings, clock, tmp_path, bulk=True)
    try:
        mails = [
            mail(f"please delete {i}", sender=f"p{i}@example.com", message_id=f"p{i}@x")
            for i in range(20)
        ]
        mails[13] = mail("BROKEN please delete", sender="bad@example.com", message_id="bad@x")
        ids = await _store(desk, mails)
        batch = await desk.pipeline.route_next()
        assert batch.outcomes[ids[13]] == "failed"
        assert [batch.outcomes[i] for i in ids if i != ids[13]] == ["opened"] * 19
        async with desk.db.reading() as session:
            statuses = dict((await session.exec(select(Message.id, Message.parse_status))).all())
            public = (await session.exec(select(Ticket.public_id).order_by(col(Ticket.id)))).all()
            assert (await verify_chains(session)).ok
        assert statuses[ids[13]] == "failed"
        assert {statuses[i] for i in ids if i != ids[13]} == {"parsed"}
        year = clock.now().year
        assert list(public) == [f"PRIV-{year}-{n:06d}" for n in range(1, 20)]
    finally:
        await desk.close()


async def test_replicas_opening_in_bulk_share_the_numbers(
    settings: Settings, clock: FrozenClock, tmp_path: Path
) -> None:
    """Two routers opening in bulk at once: one ticket per message, gapless, chains whole."""
    first = await _desk(settings, clock, tmp_path, bulk=True)
    second = Desk.build(settings, clock, classifier=ByWord())
    first.pipeline.batch_size = second.pipeline.batch_size = 7
    try:
        mails = [
            mail(f"please delete {i}", sender=f"r{i}@example.com", message_id=f"r{i}@x")
            for i in range(50)
        ]
        await _store(first, mails)

        async def drain(desk: Desk) -> None:
            while (await desk.pipeline.route_next()).claimed:
                pass

        await asyncio.gather(drain(first), drain(second))
        async with first.db.reading() as session:
            public = (await session.exec(select(Ticket.public_id).order_by(col(Ticket.seq)))).all()
            routed = (
                await session.exec(select(Message.ticket_id).where(Message.direction == "in"))
            ).all()
            assert (await verify_chains(session)).ok
        year = clock.now().year
        assert list(public) == [f"PRIV-{year}-{n:06d}" for n in range(1, 51)]
        assert len(set(routed)) == 50
        assert None not in routed
    finally:
        await first.close()
        await second.close()


async def test_a_ticket_built_ahead_of_the_lock_is_not_built_again(
    settings: Settings, clock: FrozenClock, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Plain new requests: each ticket (and its events and mails) is built once, before the
    write lock, and taken as it is inside it; and a ticket number taken meanwhile by another
    writer has the batch's tickets built again for their new numbers, in the lock."""
    built: list[str] = []
    build = BulkOpening._ticket

    def counted(self: BulkOpening, opening: Any, now: Any) -> None:
        build(self, opening, now)
        built.append(opening.ticket.public_id)

    monkeypatch.setattr(BulkOpening, "_ticket", counted)
    desk = await _desk(settings, clock, tmp_path, bulk=True)
    year = clock.now().year
    try:
        await _store(
            desk,
            [
                mail(f"please delete {i}", sender=f"b{i}@example.com", message_id=f"b{i}@x")
                for i in range(12)
            ],
        )
        batch = await desk.pipeline.route_next()
        assert set(batch.outcomes.values()) == {"opened"}
        assert built == [f"PRIV-{year}-{n:06d}" for n in range(1, 13)]  # once each

        ahead = desk.pipeline.bulk.compose_ahead  # type: ignore[union-attr]

        async def then_a_number_taken(session: Any, routings: Any) -> None:
            await ahead(session, routings)
            async with desk.db.transaction() as writing:  # another writer's ticket number
                await writing.exec(
                    update(TicketCounter)
                    .where(col(TicketCounter.year) == year)
                    .values(last_seq=col(TicketCounter.last_seq) + 1)
                )

        monkeypatch.setattr(desk.pipeline.bulk, "compose_ahead", then_a_number_taken)
        await _store(
            desk,
            [
                mail(f"please delete {i}", sender=f"c{i}@example.com", message_id=f"c{i}@x")
                for i in range(3)
            ],
        )
        built.clear()
        batch = await desk.pipeline.route_next()
        assert set(batch.outcomes.values()) == {"opened"}
        again = [f"PRIV-{year}-{n:06d}" for n in range(14, 17)]  # 13 is the other writer's
        assert built == [f"PRIV-{year}-{n:06d}" for n in range(13, 16)] + again
        async with desk.db.reading() as session:
            tickets = dict((await session.exec(select(Ticket.id, Ticket.public_id))).all())
            acks = (
                await session.exec(
                    select(Message.ticket_id, Message.text).where(Message.direction == "out")
                )
            ).all()
            assert (await verify_chains(session)).ok
        assert sorted(tickets.values())[-3:] == again
        assert len(acks) == 15
        for ticket_id, text in acks:  # each mail names its own ticket's number
            assert tickets[ticket_id] in (text or "")
    finally:
        await desk.close()
