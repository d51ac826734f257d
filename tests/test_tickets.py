"""Ticket rules, on SQLite and PostgreSQL: ids, the status machine, deadlines, changes."""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence

import pytest
from sqlmodel import select

from rightsdesk.clock import FrozenClock
from rightsdesk.config import Settings
from rightsdesk.deadlines import DeadlinePolicy
from rightsdesk.models import Channel, RequestType, Ticket, TicketStatus
from rightsdesk.service import Desk
from rightsdesk.tickets import (
    Contact,
    DismissingRightsRequest,
    IllegalTransition,
    NewTicket,
    TicketError,
    TicketFilter,
    TicketNotFound,
    TicketService,
    UnknownAssignee,
)
from tests.conftest import add_staff, at

D = dt.date.fromisoformat
ACTOR = "cli:dpo"


def request(
    received: str = "2026-02-10 10:00",
    types: Sequence[RequestType] = (RequestType.ACCESS,),
    email: str = "alice@example.com",
) -> NewTicket:
    return NewTicket(
        channel=Channel.EMAIL,
        contact=Contact.email(email),
        types=types,
        received_at=at(received),
        subject="请提供我的个人信息副本",
        text="您好，我想查阅贵公司保存的我的个人信息。",
    )


async def test_open_assigns_public_id_deadlines_and_first_event(desk: Desk) -> None:
    ticket = await desk.tickets.open(request())
    assert ticket.public_id == "PRIV-2026-000001"
    assert ticket.status == TicketStatus.NEW
    assert ticket.types == [RequestType.ACCESS]
    assert ticket.response_due == D("2026-03-09")
    assert ticket.deadlines_provisional is False
    detail = await desk.tickets.detail(ticket.public_id)
    assert [e.action for e in detail.events] == ["opened"]
    assert detail.events[0].after["response_due"] == "2026-03-09"
    assert [m.text for m in detail.messages] == ["您好，我想查阅贵公司保存的我的个人信息。"]
    second = await desk.tickets.open(request())
    assert second.public_id == "PRIV-2026-000002"


async def test_ids_restart_each_year_by_the_beijing_calendar(desk: Desk) -> None:
    await desk.tickets.open(request("2026-12-31 23:00"))
    # 2026-12-31 17:00 UTC is already 2027-01-01 01:00 in Beijing.
    new_year = NewTicket(
        channel=Channel.EMAIL,
        contact=Contact.email("bob@example.com"),
        types=[RequestType.INQUIRY],
        received_at=dt.datetime(2026, 12, 31, 17, 0, tzinfo=dt.UTC),
    )
    ticket = await desk.tickets.open(new_year)
    assert ticket.public_id == "PRIV-2027-000001"


async def test_same_address_is_one_requester(desk: Desk) -> None:
    first = await desk.tickets.open(request(email="Alice@Example.COM"))
    second = await desk.tickets.open(request(email=" alice@example.com "))
    assert first.requester_id == second.requester_id
    assert second.contact_value == "alice@example.com"


async def test_full_lifecycle_is_audited(desk: Desk, clock: FrozenClock) -> None:
    await add_staff(desk, "wang.fang")
    t = (await desk.tickets.open(request())).public_id
    await desk.tickets.request_verification(t, "system")
    await desk.tickets.mark_verified(t, "system", note="DKIM-aligned mail from registered address")
    await desk.tickets.assign(t, ACTOR, "wang.fang")
    await desk.tickets.start(t, ACTOR)
    clock.advance(dt.timedelta(days=3))
    await desk.tickets.resolve(t, ACTOR, reply="copy sent")
    await desk.tickets.close(t, "system")
    reopened = await desk.tickets.reopen(t, ACTOR, reason="requester says the copy is incomplete")
    assert reopened.status == TicketStatus.REOPENED
    assert reopened.finished_at is None
    assert reopened.closed_at is None
    detail = await desk.tickets.detail(t)
    assert [e.action for e in detail.events] == [
        "opened",
        "awaiting_verification",
        "verified",
        "assigned",
        "in_progress",
        "resolved",
        "closed",
        "reopened",
    ]
    resolved = detail.events[5]
    assert resolved.actor == ACTOR
    assert resolved.before["status"] == "in_progress"
    assert resolved.after == {
        "status": "resolved",
        "resolution_note": "copy sent",
        "response_due": "2026-03-09",
        "completion_due": None,
        "provisional": False,
    }
    assert detail.events[3].before == {"assignee": None}
    assert detail.events[3].after == {"assignee": "wang.fang"}
    assert detail.ticket.verified_at is not None


@pytest.mark.parametrize(
    ("path", "illegal"),
    [
        ([], TicketStatus.RESOLVED),  # new -> resolved: nobody checked who asked
        ([], TicketStatus.IN_PROGRESS),
        (["cancel"], TicketStatus.IN_PROGRESS),
        (["cancel", "close"], TicketStatus.OPEN),
        (["verify", "start"], TicketStatus.AWAITING_VERIFICATION),
    ],
)
async def test_illegal_transitions_are_refused(
    desk: Desk, path: list[str], illegal: TicketStatus
) -> None:
    t = (await desk.tickets.open(request())).public_id
    steps = {
        "cancel": lambda: desk.tickets.cancel(t, ACTOR, "withdrawn"),
        "close": lambda: desk.tickets.close(t, ACTOR),
        "verify": lambda: desk.tickets.mark_verified(t, ACTOR),
        "start": lambda: desk.tickets.start(t, ACTOR),
    }
    for step in path:
        await steps[step]()
    before = await desk.tickets.get(t)
    with pytest.raises(IllegalTransition, match=f"cannot become {illegal}"):
        await desk.tickets._transition(t, illegal, ACTOR)
    after = await desk.tickets.get(t)
    assert after.status == before.status
    assert len((await desk.tickets.detail(t)).events) == len(path) + 1


async def test_denial_requires_a_written_reason(desk: Desk) -> None:
    t = (await desk.tickets.open(request())).public_id
    for blank in ("", "   \n"):
        with pytest.raises(TicketError, match="reason for the denial is required"):
            await desk.tickets.deny(t, ACTOR, blank)
    denied = await desk.tickets.deny(t, ACTOR, "  The account was deleted in 2024; no data held. ")
    assert denied.status == TicketStatus.DENIED
    assert denied.denial_reason == "The account was deleted in 2024; no data held."


async def test_extension_needs_reason_and_a_later_date(desk: Desk) -> None:
    t = (await desk.tickets.open(request())).public_id
    with pytest.raises(TicketError, match="reason for the extension is required"):
        await desk.tickets.extend(t, ACTOR, D("2026-03-20"), " ")
    with pytest.raises(TicketError, match="must be after 2026-03-09"):
        await desk.tickets.extend(t, ACTOR, D("2026-03-09"), "complex request")
    extended = await desk.tickets.extend(t, ACTOR, D("2026-03-20"), "data spread over 4 systems")
    assert extended.response_due == D("2026-03-20")
    assert extended.original_response_due == D("2026-03-09")
    again = await desk.tickets.extend(t, ACTOR, D("2026-03-27"), "backup restore needed")
    assert again.original_response_due == D("2026-03-09")
    events = (await desk.tickets.detail(t)).events
    assert events[-1].action == "extended"
    assert events[-1].before["response_due"] == "2026-03-20"
    assert events[-1].after["extension_reason"] == "backup restore needed"


async def test_finished_ticket_cannot_be_extended(desk: Desk) -> None:
    t = (await desk.tickets.open(request())).public_id
    await desk.tickets.cancel(t, ACTOR, "withdrawn")
    with pytest.raises(TicketError, match="only open work can be extended"):
        await desk.tickets.extend(t, ACTOR, D("2026-04-01"), "late")


async def test_relabel_records_the_correction_and_sets_completion_due(desk: Desk) -> None:
    new = NewTicket(
        channel=Channel.EMAIL,
        contact=Contact.email("carol@example.com"),
        types=[RequestType.INQUIRY],
        received_at=at("2026-02-10 10:00"),
        needs_review=True,
    )
    t = (await desk.tickets.open(new)).public_id
    relabelled = await desk.tickets.relabel(
        t, ACTOR, [RequestType.ERASURE, RequestType.INQUIRY, RequestType.ERASURE]
    )
    assert relabelled.types == [RequestType.ERASURE, RequestType.INQUIRY]
    assert relabelled.completion_due == D("2026-03-12")
    assert relabelled.needs_review is False
    event = (await desk.tickets.detail(t)).events[-1]
    assert event.action == "relabelled"
    assert event.before["types"] == ["inquiry"]
    assert event.after["types"] == ["erasure", "inquiry"]
    reloaded = await desk.tickets.get(t)
    assert reloaded.types == [RequestType.ERASURE, RequestType.INQUIRY]


@pytest.mark.parametrize(
    "types",
    [[], ["nonsense"], [RequestType.NOT_RIGHTS_REQUEST, RequestType.ACCESS]],
)
async def test_invalid_type_sets_are_refused(desk: Desk, types: list[RequestType]) -> None:
    with pytest.raises(TicketError):
        await desk.tickets.open(request(types=types))


async def test_unknown_ticket_is_a_clear_error(desk: Desk) -> None:
    with pytest.raises(TicketNotFound, match="no ticket PRIV-2026-999999"):
        await desk.tickets.start("PRIV-2026-999999", ACTOR)


async def test_clock_can_start_at_verification(settings: Settings, clock: FrozenClock) -> None:
    settings.deadlines.clock_starts = "verification"
    desk = Desk.build(settings, clock)
    try:
        t = (await desk.tickets.open(request())).public_id
        assert (await desk.tickets.get(t)).response_due is None
        await desk.tickets.request_verification(t, "system")
        clock.set(at("2026-02-24 15:00"))  # verified on the first day after the holiday
        verified = await desk.tickets.mark_verified(t, "system")
        assert verified.clock_started_at == at("2026-02-24 15:00")
        assert verified.response_due == D("2026-03-16")  # Feb 28 (Sat) is day 4
    finally:
        await desk.close()


async def test_clock_pauses_while_waiting_for_the_requester(
    settings: Settings, clock: FrozenClock
) -> None:
    settings.deadlines.pause_while_waiting = True
    desk = Desk.build(settings, clock)
    try:
        clock.set(at("2026-11-02 09:00"))
        t = (await desk.tickets.open(request("2026-11-02 09:00", [RequestType.ERASURE]))).public_id
        await desk.tickets.request_verification(t, "system")
        clock.set(at("2026-11-09 12:00"))  # five working days later
        verified = await desk.tickets.mark_verified(t, "system")
        assert verified.response_due == D("2026-11-30")
        assert verified.completion_due == D("2026-12-09")
        assert verified.paused_since is None
    finally:
        await desk.close()


async def test_find_filters(desk: Desk, clock: FrozenClock) -> None:
    access = (await desk.tickets.open(request("2026-02-10 10:00"))).public_id
    erasure = (
        await desk.tickets.open(request("2026-03-02 10:00", [RequestType.ERASURE], "b@example.com"))
    ).public_id
    done = (await desk.tickets.open(request("2026-02-10 11:00", email="c@example.com"))).public_id
    await desk.tickets.deny(done, ACTOR, "not the account holder")
    await add_staff(desk, "li.na")
    await desk.tickets.assign(erasure, ACTOR, "li.na")

    async def ids(**filters: object) -> list[str]:
        found = await desk.tickets.find(TicketFilter(**filters))  # type: ignore[arg-type]
        return [t.public_id for t in found]

    assert await ids() == [access, erasure, done]  # active work first, most urgent first
    assert await ids(types=[RequestType.ERASURE]) == [erasure]
    assert await ids(statuses=[TicketStatus.DENIED]) == [done]
    assert await ids(assignee="li.na") == [erasure]
    assert await ids(due_before=D("2026-03-10")) == [access, done]
    assert await ids(overdue=True) == []
    clock.set(at("2026-03-10 09:00"))  # access was due 2026-03-09; the denied one is finished
    assert await ids(overdue=True) == [access]
    assert await ids(limit=1) == [access]


async def test_provisional_deadlines_are_recomputed_once_the_year_is_known(
    settings: Settings, clock: FrozenClock
) -> None:
    desk = Desk.build(settings, clock)
    try:
        t = (await desk.tickets.open(request("2026-12-20 10:00"))).public_id
        ticket = await desk.tickets.get(t)
        assert (ticket.response_due, ticket.deadlines_provisional) == (D("2027-01-08"), True)
        # The State Council's notice is out: the DPO enters 2027's New Year holiday.
        settings.deadlines.extra_holidays = [D("2027-01-01")]
        settings.deadlines.complete_years = [2027]
        informed = TicketService(desk.db, clock, DeadlinePolicy(settings.deadlines, desk.policy.tz))
        assert await informed.recompute_provisional_deadlines() == [t]
        ticket = await informed.get(t)
        assert (ticket.response_due, ticket.deadlines_provisional) == (D("2027-01-11"), False)
        assert (await informed.detail(t)).events[-1].action == "deadlines_recomputed"
        assert await informed.recompute_provisional_deadlines() == []
    finally:
        await desk.close()


def _summary_fields(ticket: Ticket) -> set[str]:
    from rightsdesk.views import ticket_summary

    return set(ticket_summary(ticket, D("2026-02-10"), dt.UTC))


async def test_listing_view_has_the_fields_the_dpo_needs(desk: Desk) -> None:
    ticket = await desk.tickets.open(request())
    assert {
        "id",
        "status",
        "types",
        "channel",
        "requester_contact",
        "received_at",
        "response_due",
        "completion_due",
        "provisional",
        "needs_review",
    } <= _summary_fields(ticket)


async def test_a_rights_request_is_dismissed_only_relabelled_or_with_the_override(
    desk: Desk,
) -> None:
    erasure = (await desk.tickets.open(request(types=[RequestType.ERASURE]))).public_id
    with pytest.raises(DismissingRightsRequest) as refused:
        await desk.tickets.dismiss(erasure, ACTOR, "looks like spam")
    assert refused.value.types == ["erasure"]
    assert (await desk.tickets.get(erasure)).status == TicketStatus.NEW
    forced = await desk.tickets.dismiss(erasure, ACTOR, "a test mail", despite_types=True)
    assert forced.status == TicketStatus.DISMISSED
    event = (await desk.tickets.detail(erasure)).events[-1]
    assert (event.action, event.after["despite_types"]) == ("dismissed", ["erasure"])
    # Relabelled first: dismissed without any override, and the event says none was used.
    other = (await desk.tickets.open(request(email="b@example.com"))).public_id
    await desk.tickets.relabel(other, ACTOR, [RequestType.NOT_RIGHTS_REQUEST])
    await desk.tickets.dismiss(other, ACTOR, "a delivery question")
    event = (await desk.tickets.detail(other)).events[-1]
    assert event.action == "dismissed"
    assert "despite_types" not in event.after


async def test_assign_takes_only_an_enabled_console_user(desk: Desk) -> None:
    await add_staff(desk, "wang.fang")
    await add_staff(desk, "gone", disabled=True)
    t = (await desk.tickets.open(request())).public_id
    with pytest.raises(UnknownAssignee, match="nobody is not a user of the console"):
        await desk.tickets.assign(t, ACTOR, "nobody")
    with pytest.raises(UnknownAssignee, match="gone is disabled"):
        await desk.tickets.assign(t, ACTOR, "gone")
    assert (await desk.tickets.get(t)).assignee is None
    assert [e.action for e in (await desk.tickets.detail(t)).events] == ["opened"]
    assert (await desk.tickets.assign(t, ACTOR, "wang.fang")).assignee == "wang.fang"
    # By the email too (kept as given: reminders go to an address).
    by_mail = await desk.tickets.assign(t, ACTOR, "Wang.Fang@example.com")
    assert by_mail.assignee == "Wang.Fang@example.com"
    assert (await desk.tickets.assign(t, ACTOR, None)).assignee is None


async def test_detail_reads_each_message_once_with_its_files_and_without_its_bytes(
    desk: Desk,
) -> None:
    from sqlalchemy import inspect

    from rightsdesk.models import Message, StoredAttachment

    opened = await desk.tickets.open(request())
    async with desk.db.transaction() as session:
        first = (await session.exec(select(Message).where(Message.ticket_id == opened.id))).one()
        first.raw, first.raw_size = b"R" * 2048, 2048
        second = Message(ticket_id=opened.id, direction="in", channel=Channel.EMAIL,
                         text="two files", raw=b"r" * 10, raw_size=10,
                         received_at=first.received_at + dt.timedelta(minutes=5))  # fmt: skip
        session.add_all([first, second])
        await session.flush()
        kept = StoredAttachment.of(second.id or 0, "a.pdf", "application/pdf", b"%PDF")
        emptied = StoredAttachment.of(second.id or 0, "b.png", "image/png", b"\x89PNG")
        emptied.content = None  # over the size kept, or emptied by retention
        session.add_all([kept, emptied])
    detail = await desk.tickets.detail(opened.public_id)
    assert [m.text for m in detail.messages] == [first.text, "two files"]
    assert [m.raw_size for m in detail.messages] == [2048, 10]
    assert all("raw" in inspect(m).unloaded for m in detail.messages)
    files = detail.attachments[second.id or 0]
    assert [f.filename for f in files] == ["a.pdf", "b.png"]
    assert first.id not in detail.attachments
    assert detail.not_kept == frozenset({emptied.id})
