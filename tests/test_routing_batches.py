"""Routing in batches (#15): one transaction per batch; a message that fails rolls the batch
back, the others are routed again without it and it alone is marked failed; ids stay gapless
and the audit chains verify; on PostgreSQL two routers take different batches (SKIP LOCKED)."""

from __future__ import annotations

import asyncio

from sqlmodel import col, select

from intake.mail import mail_dedupe_key
from rightsdesk.audit import verify_chains
from rightsdesk.clock import FrozenClock
from rightsdesk.config import Settings
from rightsdesk.models import Channel, Message, OutboxEntry, Ticket
from rightsdesk.pipeline import Classification, Delivery, IntakeWorker
from rightsdesk.service import Desk
from tests.conftest import mail


class PoisonedClassifier:
    """Raises on one text, as a bug would: that message alone must fail."""

    def classify(self, subject: str, text: str) -> Classification:
        if "POISON" in text:
            raise RuntimeError("the classifier broke on this one")
        return Classification(types=["erasure"], needs_review=False)  # type: ignore[list-item]


def request(i: int) -> bytes:
    return mail(f"请删除我的个人数据 {i}", sender=f"user{i}@example.com", message_id=f"b{i}@x")


async def _store(desk: Desk, mails: list[bytes]) -> list[int]:
    """Stored as the doors store them, not routed yet."""
    accepted = await asyncio.gather(
        *(desk.inbox.accept(Delivery(Channel.EMAIL, raw, mail_dedupe_key(raw))) for raw in mails)
    )
    return [a.message_row_id for a in accepted]


async def _statuses(desk: Desk) -> dict[int, str]:
    async with desk.db.reading() as session:
        rows = (await session.exec(select(Message.id, Message.parse_status))).all()
        return {row_id: status for row_id, status in rows if row_id is not None}


async def _public_ids(desk: Desk) -> list[str]:
    async with desk.db.reading() as session:
        found = await session.exec(select(Ticket.public_id).order_by(col(Ticket.id)))
        return list(found.all())


async def test_a_message_failing_inside_a_batch_fails_alone(
    settings: Settings, clock: FrozenClock
) -> None:
    desk = Desk.build(settings, clock, classifier=PoisonedClassifier())
    desk.pipeline.batch_seconds = 600.0  # no message left for the next batch: one batch
    try:
        mails = [request(i) for i in range(12)]
        # One fails in the parse step (the classifier), one inside the stages (no address to
        # answer: OpenTicket raises after RecordParsed wrote to its row and to the batch).
        mails[4] = mail("POISON 请删除", sender="poison@example.com", message_id="p@x")
        mails[7] = b"Subject: nobody\r\nMessage-ID: <nobody@x>\r\n\r\nplease delete my data"
        ids = await _store(desk, mails)
        batch = await desk.pipeline.route_next()
        assert batch.claimed == 12  # one batch
        assert set(batch.outcomes) == set(ids)
        assert batch.outcomes[ids[4]] == batch.outcomes[ids[7]] == "failed"
        assert [batch.outcomes[i] for i in ids if i not in (ids[4], ids[7])] == ["opened"] * 10
        statuses = await _statuses(desk)
        assert {i for i, s in statuses.items() if s == "failed"} == {ids[4], ids[7]}
        assert {statuses[i] for i in ids if i not in (ids[4], ids[7])} == {"parsed"}
        # The ten tickets: numbered without a gap (the rolled back one took no number) ...
        year = clock.now().year
        assert await _public_ids(desk) == [f"PRIV-{year}-{n:06d}" for n in range(1, 11)]
        async with desk.db.reading() as session:
            report = await verify_chains(session)
            acks = (
                await session.exec(
                    select(OutboxEntry.recipient).where(OutboxEntry.kind == "acknowledgement")
                )
            ).all()
        assert report.ok, report.broken  # ... and every chain verifies
        assert sorted(acks) == sorted(f"user{i}@example.com" for i in range(12) if i not in (4, 7))
        assert (await desk.pipeline.route_next()).claimed == 0  # nothing left
    finally:
        await desk.close()


async def test_the_same_sender_twice_in_a_batch_is_answered_within_the_limit(
    settings: Settings, clock: FrozenClock
) -> None:
    """The batch counts its own acknowledgements: the hourly limit holds inside a batch."""
    settings.mail.acknowledgements_per_hour = 2
    desk = Desk.build(settings, clock, classifier=PoisonedClassifier())
    try:
        mails = [
            mail(f"请删除我的数据，第 {i} 次", sender="same@example.com", message_id=f"s{i}@x")
            for i in range(4)
        ]
        await _store(desk, mails)
        await IntakeWorker(desk.pipeline, desk.inbox).drain()
        async with desk.db.reading() as session:
            answered = (
                await session.exec(select(Message.id).where(col(Message.acknowledge).is_(True)))
            ).all()
        assert len(answered) == 2
    finally:
        await desk.close()


async def test_two_routers_take_different_batches(settings: Settings, clock: FrozenClock) -> None:
    """Two desks on one database, as two replicas: on PostgreSQL each claims its own batch
    (FOR UPDATE SKIP LOCKED) while the other's is open; on SQLite they take turns. Either way
    every message is routed once, into one ticket each, numbered without a gap."""
    settings.mail.route_attempts = 3
    first = Desk.build(settings, clock, classifier=PoisonedClassifier())
    second = Desk.build(settings, clock, classifier=PoisonedClassifier())
    first.pipeline.batch_size = second.pipeline.batch_size = 5
    try:
        ids = await _store(first, [request(i) for i in range(40)])
        results = await asyncio.gather(
            IntakeWorker(first.pipeline, first.inbox).drain(),
            IntakeWorker(second.pipeline, second.inbox).drain(),
        )
        assert sum(results) == len(ids)
        if not first.db.is_sqlite:
            assert min(results) > 0  # both routed: neither waited for the other's batch
        statuses = await _statuses(first)
        assert {statuses[i] for i in ids} == {"parsed"}
        year = clock.now().year
        assert await _public_ids(first) == [f"PRIV-{year}-{n:06d}" for n in range(1, 41)]
        async with first.db.reading() as session:
            assert (await verify_chains(session)).ok
    finally:
        await first.close()
        await second.close()
