"""The scheduler's jobs, with a clock moved through Spring Festival 2026, on both databases."""

from __future__ import annotations

import asyncio
import datetime as dt
from collections.abc import Sequence

from sqlmodel import col, func, select

from rightsdesk.audit import verify_chains
from rightsdesk.clock import FrozenClock
from rightsdesk.config import Settings
from rightsdesk.models import Channel, Message, OutboxEntry, RequestType, SentNotice
from rightsdesk.service import Desk
from rightsdesk.tickets import Contact, NewTicket
from scheduler.digest import build_digest, calendar_warning
from scheduler.jobs import (
    close_finished,
    purge_closed,
    purge_unattached,
    run_due_jobs,
    send_deadline_notices,
    send_digest,
    send_unassigned_alerts,
)
from tests.conftest import add_staff, at

D = dt.date.fromisoformat


def days(start: str, end: str) -> list[dt.date]:
    first, last = D(start), D(end)
    return [first + dt.timedelta(days=n) for n in range((last - first).days + 1)]


async def open_ticket(
    desk: Desk, received: str = "2026-02-10 10:00", types: Sequence[str] = ("access",),
    email: str = "zhang.san@example.com", text: str | None = "请提供我的数据",
) -> str:  # fmt: skip
    ticket = await desk.tickets.open(
        NewTicket(
            channel=Channel.EMAIL,
            contact=Contact.email(email),
            types=[RequestType(t) for t in types],
            received_at=at(received),
            text=text,
        )
    )
    return ticket.public_id


async def outbox_kinds(desk: Desk) -> list[tuple[str, str]]:
    async with desk.db.reading() as session:
        rows = await session.exec(
            select(OutboxEntry.kind, OutboxEntry.recipient).order_by(col(OutboxEntry.id))
        )
        return list(rows.all())


async def test_digest_on_working_days_only_once_each(desk: Desk, clock: FrozenClock) -> None:
    sent_on = []
    for day in days("2026-02-12", "2026-02-25"):
        clock.set(at(f"{day} 08:59"))
        assert await send_digest(desk) is False  # not before 09:00
        clock.set(at(f"{day} 09:30"))
        if await send_digest(desk):
            sent_on.append(day)
        assert await send_digest(desk) is False  # once a day
    # Feb 14 is a working Saturday (调休); Feb 15-23 is the Spring Festival holiday.
    assert sent_on == [D("2026-02-12"), D("2026-02-13"), D("2026-02-14"), D("2026-02-24"),
                       D("2026-02-25")]  # fmt: skip
    assert await outbox_kinds(desk) == [("digest", "dpo@localhost")] * 5


async def test_a_digest_missed_at_nine_goes_out_when_the_service_is_back(
    desk: Desk, clock: FrozenClock
) -> None:
    clock.set(at("2026-02-24 11:47"))  # down all morning
    assert await send_digest(desk) is True
    clock.set(at("2026-02-24 15:00"))
    assert await send_digest(desk) is False


async def test_digest_lists_what_the_dpo_must_see(desk: Desk, clock: FrozenClock) -> None:
    overdue = await open_ticket(desk, "2026-02-10 10:00")
    soon = await open_ticket(desk, "2026-02-24 10:00", email="b@example.com")
    await add_staff(desk, "li.na@example.com")
    await desk.tickets.assign(soon, "cli:dpo", "li.na@example.com")
    clock.set(at("2026-03-10 09:30"))
    digest = await build_digest(desk, D("2026-03-10"))
    sections = {k: [line.ticket_id for line in v] for k, v in digest.sections.items()}
    assert sections["overdue"] == [overdue]
    assert sections["due_soon"] == [soon]  # due 2026-03-16, 4 working days away
    assert sections["unassigned"] == [overdue]
    assert digest.by_type == {"access": 2}
    assert digest.provisional_year is None


async def test_deadline_notices_through_spring_festival(desk: Desk, clock: FrozenClock) -> None:
    ticket = await open_ticket(desk, "2026-02-10 10:00")  # answer due 2026-03-09
    log = []
    for day in days("2026-02-11", "2026-03-12"):
        clock.set(at(f"{day} 10:00"))
        for key in await send_deadline_notices(desk):
            log.append((day.isoformat(), key))
        assert await send_deadline_notices(desk) == []  # once
    assert log == [
        ("2026-03-02", f"{ticket}:response:2026-03-09:5"),
        ("2026-03-05", f"{ticket}:response:2026-03-09:2"),
        ("2026-03-06", f"{ticket}:response:2026-03-09:1"),
        ("2026-03-09", f"{ticket}:response:2026-03-09:0"),
        ("2026-03-10", f"{ticket}:response:2026-03-10"),
        ("2026-03-11", f"{ticket}:response:2026-03-11"),
        ("2026-03-12", f"{ticket}:response:2026-03-12"),
    ]
    kinds = [kind for kind, _ in await outbox_kinds(desk)]
    assert kinds == ["reminder"] * 4 + ["escalation"] * 3


async def test_a_ticket_resolved_at_0859_gets_no_reminder_at_0900(
    desk: Desk, clock: FrozenClock
) -> None:
    ticket = await open_ticket(desk, "2026-02-10 10:00")
    clock.set(at("2026-03-02 08:59"))
    await desk.tickets.mark_verified(ticket, "cli:dpo")
    await desk.tickets.resolve(ticket, "cli:dpo", reply="sent")
    clock.set(at("2026-03-02 09:00"))
    assert await send_deadline_notices(desk) == []


async def test_reminders_go_to_the_assignee_and_escalations_further(
    settings: Settings, clock: FrozenClock
) -> None:
    settings.scheduler.escalation_emails = ["legal@example.com"]
    desk = Desk.build(settings, clock)
    try:
        ticket = await open_ticket(desk, "2026-02-10 10:00", types=["erasure"])
        await add_staff(desk, "li.na@example.com")
        await desk.tickets.assign(ticket, "cli:dpo", "li.na@example.com")
        clock.set(at("2026-03-02 10:00"))
        await send_deadline_notices(desk)
        clock.set(at("2026-03-13 10:00"))  # answer and deletion (due 03-12) both late
        await send_deadline_notices(desk)
        sent = await outbox_kinds(desk)
        assert sent[0] == ("reminder", "li.na@example.com")
        escalations = [r for k, r in sent if k == "escalation"]
        assert sorted(escalations) == sorted(["dpo@localhost", "legal@example.com"] * 2)
    finally:
        await desk.close()


async def test_unassigned_alerts_on_day_one_then_every_five_working_days(
    desk: Desk, clock: FrozenClock
) -> None:
    ticket = await open_ticket(desk, "2026-02-10 10:00")
    await add_staff(desk, "wang.fang")
    alerted = []
    for day in days("2026-02-10", "2026-03-04"):
        clock.set(at(f"{day} 10:00"))
        if day == D("2026-03-04"):
            await desk.tickets.assign(ticket, "cli:dpo", "wang.fang")
        alerted += [day.isoformat() for _ in await send_unassigned_alerts(desk)]
    assert alerted == ["2026-02-11", "2026-02-25", "2026-03-03"]


async def test_unassigned_tickets_of_one_tick_are_one_mail_with_their_count(
    desk: Desk, clock: FrozenClock
) -> None:
    # A spam flood the day before: sixteen tickets nobody owns.
    flood = [
        await open_ticket(desk, "2026-02-10 10:00", email=f"spam{n}@example.com") for n in range(16)
    ]
    clock.set(at("2026-02-11 00:00"))  # Beijing midnight: one tick
    sent = await send_unassigned_alerts(desk)
    assert len(sent) == 16
    assert await send_unassigned_alerts(desk) == []  # the next tick: nothing again
    async with desk.db.reading() as session:
        entries = (
            await session.exec(select(OutboxEntry).where(OutboxEntry.kind == "unassigned"))
        ).all()
        [entry] = entries  # one DPO address in the test settings: one mail, not sixteen
        mail = await session.get_one(Message, entry.message_id)
    raw = (mail.raw or b"").decode("utf-8", "replace")
    text = mail.text or ""
    assert "16 件" in text
    assert "These 16" in text
    assert all(public_id in text for public_id in flood)
    assert "未分配" in text
    assert raw.count("X-Rightsdesk-Kind: unassigned") == 1
    # A ticket unowned from the next day on is alerted at its own tick, alone.
    late = await open_ticket(desk, "2026-02-11 10:00", email="late@example.com")
    clock.set(at("2026-02-12 00:05"))
    assert await send_unassigned_alerts(desk) == [f"{late}:2026-02-12"]


async def test_replicas_ticking_together_send_each_notice_once(
    settings: Settings, clock: FrozenClock
) -> None:
    replicas = [Desk.build(settings, clock) for _ in range(3)]
    try:
        for n in range(5):
            await open_ticket(replicas[0], "2026-02-10 10:00", email=f"u{n}@example.com")
        clock.set(at("2026-03-09 09:30"))  # digest day, reminders "due today", unassigned
        await asyncio.gather(*(run_due_jobs(r) for r in replicas))
        await asyncio.gather(*(run_due_jobs(r) for r in replicas))
        async with replicas[0].db.reading() as session:
            notices = (await session.exec(select(SentNotice.kind, SentNotice.key))).all()
            outbox = (await session.exec(select(func.count()).select_from(OutboxEntry))).one()
        assert len(notices) == len(set(notices))
        assert sorted(k for k, _ in notices).count("digest") == 1
        assert sorted(k for k, _ in notices).count("reminder") == 5
        unassigned = sorted(k for k, _ in notices).count("unassigned")
        # One DPO address: one mail per notice, but the unassigned tickets share one.
        assert outbox == len(notices) - unassigned + min(unassigned, 1)
    finally:
        for replica in replicas:
            await replica.close()


async def test_finished_tickets_close_after_the_grace_period(
    desk: Desk, clock: FrozenClock
) -> None:
    ticket = await open_ticket(desk)
    await desk.tickets.deny(ticket, "cli:dpo", "not the account holder")
    clock.advance(dt.timedelta(days=13))
    assert await close_finished(desk) == []
    clock.advance(dt.timedelta(days=2))
    assert await close_finished(desk) == [ticket]


async def test_retention_purges_message_contents_keeps_the_audit_trail(
    desk: Desk, clock: FrozenClock
) -> None:
    ticket = await open_ticket(desk, text="我的身份证号 11010519491231002X")
    await desk.tickets.cancel(ticket, "cli:dpo", "withdrawn")
    await desk.tickets.close(ticket, "cli:dpo")
    clock.advance(dt.timedelta(days=364))
    assert await purge_closed(desk, dry_run=True) == []
    clock.advance(dt.timedelta(days=2))
    assert await purge_closed(desk, dry_run=True) == [ticket]
    assert await purge_closed(desk, dry_run=False) == [ticket]
    assert await purge_closed(desk, dry_run=True) == []
    async with desk.db.reading() as session:
        texts = (await session.exec(select(Message.text, Message.raw))).all()
        assert len(texts) == 2  # the request, and our mail saying it was cancelled
        assert set(texts) == {(None, None)}
        assert (await verify_chains(session)).ok
    detail = await desk.tickets.detail(ticket)
    assert detail.events[-1].action == "purged"
    assert detail.ticket.status == "closed"


async def test_from_december_the_digest_warns_of_unknown_holidays(
    desk: Desk, clock: FrozenClock
) -> None:
    ticket = await open_ticket(desk, "2026-12-20 10:00")  # due in 2027: provisional
    digest = await build_digest(desk, D("2026-12-21"))
    warning = calendar_warning(digest, desk.outbox.templates)
    assert warning is not None
    assert ticket in warning
    assert "2027" in warning
    november = await build_digest(desk, D("2026-11-30"))
    assert calendar_warning(november, desk.outbox.templates) is None


async def test_a_december_digest_with_no_provisional_deadline_warns_of_nothing(
    desk: Desk, clock: FrozenClock
) -> None:
    digest = await build_digest(desk, D("2026-12-21"))
    assert (
        calendar_warning(digest, desk.outbox.templates) is None
    )  # it said "these deadlines are provisional: -"


async def test_retention_also_purges_messages_that_belong_to_no_ticket(
    desk: Desk, clock: FrozenClock
) -> None:
    async with desk.db.transaction() as session:
        for status, processed in (("parsed", clock.now()), ("stored", None)):
            session.add(
                Message(
                    direction="in",
                    channel=Channel.TELEGRAM,
                    sender="1001",
                    text="How do I change my plan? My phone is 13800138000",
                    raw=b"{}",
                    parse_status=status,
                    received_at=clock.now(),
                    processed_at=processed,
                )
            )
    clock.advance(dt.timedelta(days=364))
    assert await purge_unattached(desk, dry_run=True) == 0
    clock.advance(dt.timedelta(days=2))
    assert await purge_unattached(desk, dry_run=True) == 1
    assert (await run_due_jobs(desk))["retention_unattached"] == 1
    async with desk.db.reading() as session:
        kept = (
            await session.exec(
                select(Message.parse_status, Message.text).where(Message.direction == "in")
            )
        ).all()
    # Handled: emptied. Still waiting to be handled: untouched, whatever its age.
    assert sorted(kept, key=str) == sorted(
        [("parsed", None), ("stored", "How do I change my plan? My phone is 13800138000")],
        key=str,
    )
