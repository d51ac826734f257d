"""Nothing a requester writes goes unnoticed (issue #13), end to end through real sockets on
both databases: mail in over SMTP, our mail out through a real SMTP relay on loopback."""

from __future__ import annotations

import asyncio
import datetime as dt
import smtplib
from collections.abc import AsyncIterator

import pytest

from classifiers.model import RightsClassifier
from rightsdesk.audit import verify_chains
from rightsdesk.clock import FrozenClock
from rightsdesk.config import Settings
from rightsdesk.followups import worth_reading
from rightsdesk.models import Channel, RequestType, TicketStatus
from rightsdesk.pipeline import IntakeWorker
from rightsdesk.service import Desk
from rightsdesk.tickets import Contact, NewTicket, TicketError, TicketFilter
from rightsdesk.views import ticket_detail
from tests.conftest import add_staff
from tests.conftest import mail as plain_mail
from tests.test_verification_flow import (
    OWNER,
    PRIVACY,
    World,
    _body,
    code_in,
    make_world,
    only_ticket,
    reply_to,
    request,
    text_of,
    to_of,
)

DPO = "cli:dpo"


async def _world(settings: Settings, clock: FrozenClock, types: list[RequestType]) -> World:
    settings.desk.dpo_emails = ["dpo@example.com"]
    return await make_world(settings, clock, types)


@pytest.fixture
async def complaint(settings: Settings, clock: FrozenClock) -> AsyncIterator[World]:
    world = await _world(settings, clock, [RequestType.COMPLAINT])
    yield world
    await world.receiver.stop()
    await world.relay.stop()
    await world.desk.close()


@pytest.fixture
async def erasure(settings: Settings, clock: FrozenClock) -> AsyncIterator[World]:
    world = await _world(settings, clock, [RequestType.ERASURE])
    yield world
    await world.receiver.stop()
    await world.relay.stop()
    await world.desk.close()


@pytest.fixture
async def not_rights(settings: Settings, clock: FrozenClock) -> AsyncIterator[World]:
    world = await _world(settings, clock, [RequestType.NOT_RIGHTS_REQUEST])
    yield world
    await world.receiver.stop()
    await world.relay.stop()
    await world.desk.close()


async def test_a_reply_on_a_resolved_ticket_is_unread_and_the_assignee_is_mailed(
    complaint: World,
) -> None:
    desk = complaint.desk
    await complaint.send(request(body="我要投诉你们的客服。"))
    public_id = await only_ticket(desk)
    await add_staff(desk, "wang.fang@example.com")
    await desk.tickets.assign(public_id, DPO, "wang.fang@example.com")
    await desk.tickets.resolve(public_id, DPO, "apologised and fixed")
    await desk.sender.send_due()
    assert (await desk.tickets.get(public_id)).unread is False  # a person acted last
    [resolved] = complaint.relay.mails("resolved")
    await complaint.send(reply_to(resolved, "I did not receive any file."))
    ticket = await desk.tickets.get(public_id)
    assert ticket.unread is True
    assert ticket.status == TicketStatus.RESOLVED
    assert [t.public_id for t in await desk.tickets.find(TicketFilter(unread=True))] == [public_id]
    [told] = complaint.relay.mails("requester_wrote")
    assert to_of(told) == "wang.fang@example.com"
    assert public_id in told["Subject"]
    assert "I did not receive" not in text_of(told)  # the DPO reads it on the desk, not by mail
    # On the ticket's timeline it is mail to our staff, never mistaken for mail to the requester.
    detail = ticket_detail(
        await desk.tickets.detail(public_id), desk.tickets.today(), desk.policy.tz
    )
    [staff_mail] = [m for m in detail["messages"] if m["to_staff"]]
    assert staff_mail["to"] == ["wang.fang@example.com"]
    assert not [m for m in detail["messages"] if m["direction"] == "in" and m["to_staff"]]
    # A second message while still unread tells nobody again.
    await complaint.send(reply_to(resolved, "Hello? Still nothing.", n=2))
    assert len(complaint.relay.mails("requester_wrote")) == 1
    # The desk's own work does not clear it; a person's action does.
    await desk.tickets.close(public_id, "system:scheduler")
    assert (await desk.tickets.get(public_id)).unread is True
    await desk.tickets.reopen(public_id, DPO, "the file did not arrive")
    assert (await desk.tickets.get(public_id)).unread is False
    assert await desk.tickets.find(TicketFilter(unread=True)) == []


async def test_without_an_assignee_the_dpo_is_told(complaint: World) -> None:
    desk = complaint.desk
    await complaint.send(request(body="我要投诉。"))
    public_id = await only_ticket(desk)
    await desk.tickets.deny(public_id, DPO, "no grounds")
    await desk.sender.send_due()
    [denied] = complaint.relay.mails("denied")
    await complaint.send(reply_to(denied, "Why?"))
    [told] = complaint.relay.mails("requester_wrote")
    assert to_of(told) == "dpo@example.com"


async def test_the_requester_writing_on_an_open_ticket_flags_it_without_mail(
    complaint: World,
) -> None:
    desk = complaint.desk
    await complaint.send(request(body="我要投诉。"))
    public_id = await only_ticket(desk)
    [ack] = complaint.relay.mails("acknowledgement")
    await complaint.send(reply_to(ack, "One more detail: it happened twice."))
    assert (await desk.tickets.get(public_id)).unread is True
    assert complaint.relay.mails("requester_wrote") == []
    await desk.tickets.start(public_id, DPO)
    assert (await desk.tickets.get(public_id)).unread is False


@pytest.fixture
async def with_model(
    settings: Settings, clock: FrozenClock, model: RightsClassifier
) -> AsyncIterator[World]:
    world = await _world(settings, clock, [RequestType.ACCESS])
    await world.desk.close()
    world.desk = Desk.build(settings, clock, classifier=model)
    from intake.smtp import SmtpReceiver

    await world.receiver.stop()
    world.receiver = SmtpReceiver(settings.smtp, settings.mail, world.desk.inbox, [PRIVACY])
    await world.receiver.start()
    await world.desk.accounts.import_csv(settings.desk.data_dir / "accounts.csv")
    yield world
    await world.receiver.stop()
    await world.relay.stop()
    await world.desk.close()


async def test_a_new_ask_in_a_reply_is_suggested_never_dropped(with_model: World) -> None:
    desk = with_model.desk
    await with_model.send(
        plain_mail("I would like a copy of all the personal data you hold about me.")
    )
    public_id = await only_ticket(desk)
    ticket = await desk.tickets.get(public_id)
    assert ticket.types == [RequestType.ACCESS]
    [ack] = with_model.relay.mails("acknowledgement")

    def reply(body: str, n: int) -> bytes:
        return plain_mail(
            body,
            message_id=f"reply-{n}@example.com",
            subject=f"Re: {ack['Subject']}",
            headers=f"In-Reply-To: {ack['Message-ID']}\r\n",
        )

    await with_model.send(reply("Thanks, received.", 1))
    assert (await desk.tickets.get(public_id)).suggested_types == []
    await with_model.send(reply("Please also delete my second email address from your systems.", 2))
    ticket = await desk.tickets.get(public_id)
    assert "erasure" in ticket.suggested_types
    assert ticket.types == [RequestType.ACCESS]  # suggested, not added
    assert ticket.needs_review is True
    [told] = with_model.relay.mails("requester_wrote")
    assert "：删除。" in text_of(told)  # the staff's name for the type, not the requester's
    assert "您的" not in text_of(told)
    # The DPO's relabel decides, and the suggestion is gone.
    await desk.tickets.relabel(public_id, DPO, [RequestType.ACCESS, RequestType.ERASURE])
    assert (await desk.tickets.get(public_id)).suggested_types == []


async def test_a_wrong_code_gets_an_answer_that_reveals_nothing(erasure: World) -> None:
    await erasure.send(request(message_id="known@example.com"))
    await erasure.send(request(sender="nobody@example.com", message_id="unknown@example.com"))
    [code_mail] = erasure.relay.mails("verification_code")
    wrong = f"{(int(code_in(code_mail)) + 1) % 10**6:06d}"
    await erasure.send(reply_to(code_mail, wrong))
    # The stranger was sent no code (no account has their address); they guess one.
    stranger_ack = erasure.relay.mails("acknowledgement")[1]
    await erasure.send(reply_to(stranger_ack, "123456", sender="nobody@example.com"))
    answers = erasure.relay.mails("code_not_accepted")
    assert [to_of(a) for a in answers] == [OWNER, "nobody@example.com"]
    known = text_of(answers[0])
    assert "您还可以尝试 4 次" in known
    assert "重新发送验证码" in known
    assert "new code" in known.lower() or "新的验证码" in known
    assert _body(answers[0]) == _body(answers[1])  # word for word the same
    tickets = {t.contact_value: t for t in await erasure.desk.tickets.find()}
    for ticket in tickets.values():
        events = (await erasure.desk.tickets.detail(ticket.public_id)).events
        assert [e.after["attempts"] for e in events if e.action == "verification_code_wrong"] == [1]


async def test_a_code_the_desk_answered_leaves_the_ticket_read(erasure: World) -> None:
    await erasure.send(request())
    public_id = await only_ticket(erasure.desk)
    await add_staff(erasure.desk, "wang.fang")
    await erasure.desk.tickets.assign(public_id, DPO, "wang.fang")  # a person acted: read
    assert (await erasure.desk.tickets.get(public_id)).unread is False
    [code_mail] = erasure.relay.mails("verification_code")
    await erasure.send(reply_to(code_mail, "000000" if code_in(code_mail) != "000000" else "1"))
    assert (await erasure.desk.tickets.get(public_id)).unread is False  # answered: wrong code
    await erasure.send(reply_to(code_mail, code_in(code_mail), n=2))
    ticket = await erasure.desk.tickets.get(public_id)
    assert ticket.verification == "verified"
    assert ticket.unread is False  # the desk's own business, not a person's to read
    await erasure.send(reply_to(code_mail, "Thanks. When will it be done?", n=3))
    assert (await erasure.desk.tickets.get(public_id)).unread is True


async def test_a_broken_from_header_is_routed_by_the_envelope_sender(erasure: World) -> None:
    raw = (
        "From: =?utf-8?B?!!!broken?=\r\nTo: privacy@localhost\r\nSubject: delete\r\n"
        "Message-ID: <broken-from@example.com>\r\n"
        "Content-Type: text/plain; charset=utf-8\r\n\r\n请删除我的全部个人信息。"
    ).encode()
    await erasure.send(raw, envelope_from=OWNER)
    public_id = await only_ticket(erasure.desk)
    ticket = await erasure.desk.tickets.get(public_id)
    assert ticket.contact_value == OWNER
    [ack] = erasure.relay.mails("acknowledgement")
    assert to_of(ack) == OWNER
    # Routed normally: a code went to the registered address.
    [code_mail] = erasure.relay.mails("verification_code")
    assert to_of(code_mail) == OWNER


async def test_a_from_with_broken_brackets_is_routed_by_the_envelope_sender(
    erasure: World,
) -> None:
    raw = (
        "From: =?utf-8?b?5byg5LiJ?= <<<broken@@>\r\nTo: privacy@localhost\r\nSubject: delete\r\n"
        "Message-ID: <broken-brackets@example.com>\r\n"
        "Content-Type: text/plain; charset=utf-8\r\n\r\n请删除我的全部个人信息。"
    ).encode()
    await erasure.send(raw, envelope_from=OWNER)
    ticket = await erasure.desk.tickets.get(await only_ticket(erasure.desk))
    assert ticket.contact_value == OWNER
    [ack] = erasure.relay.mails("acknowledgement")
    assert to_of(ack) == OWNER


async def _send_null_sender(world: World, raw: bytes) -> None:
    def deliver() -> None:
        with smtplib.SMTP("127.0.0.1", world.receiver.port, timeout=30) as client:
            client.sendmail("", [PRIVACY], raw)  # MAIL FROM:<>

    await asyncio.to_thread(deliver)
    await IntakeWorker(world.desk.pipeline, world.desk.inbox).drain()


async def test_mail_with_no_address_at_all_can_be_shown_ticketed_or_dismissed(
    erasure: World,
) -> None:
    desk = erasure.desk
    raw = (
        "To: privacy@localhost\r\nSubject: =?utf-8?B?5Yig6Zmk?= \x1b[31mred\r\n"
        "Message-ID: <nobody-1@example.com>\r\n"
        "Content-Type: text/plain; charset=utf-8\r\n\r\n请删除我的数据 \x1b[2J 张三"
    ).encode()
    await _send_null_sender(erasure, raw)
    await _send_null_sender(erasure, raw.replace(b"nobody-1@", b"nobody-2@"))
    stuck = await desk.pipeline.problems()
    assert [m.parse_status for m in stuck] == ["failed", "failed"]
    first, second = (m.id or 0 for m in stuck)
    shown = await desk.stray.show(first)
    assert ("Subject", "删除 \\x1b[31mred") in shown.headers
    assert "\x1b" not in shown.text
    assert "请删除我的数据 \\x1b[2J 张三" in shown.text
    with pytest.raises(TicketError):
        await desk.stray.open_ticket(first, "not an address", DPO)
    public_id = await desk.stray.open_ticket(first, OWNER, DPO)
    ticket = await desk.tickets.get(public_id)
    assert ticket.contact_value == OWNER
    events = (await desk.tickets.detail(public_id)).events
    assert events[-1].action == "sender_given"
    assert events[-1].actor == DPO
    await desk.sender.send_due()
    assert to_of(erasure.relay.mails("acknowledgement")[0]) == OWNER
    with pytest.raises(TicketError, match="reason"):
        await desk.stray.dismiss(second, " ", DPO)
    await desk.stray.dismiss(second, "spam", DPO)
    assert await desk.pipeline.problems() == []


async def test_not_a_rights_request_gets_the_support_pointer_no_deadline_and_dismiss(
    not_rights: World,
) -> None:
    desk = not_rights.desk
    await not_rights.send(request(body="我的订单什么时候发货？"))
    public_id = await only_ticket(desk)
    [ack] = not_rights.relay.mails("acknowledgement")
    text = text_of(ack)
    assert "客服" in text
    assert "2026-03" not in text  # no promised date
    assert "之前答复您" not in text
    triage = await desk.tickets.find(TicketFilter(needs_review=True))
    assert [t.public_id for t in triage] == [public_id]
    with pytest.raises(TicketError, match="reason"):
        await desk.tickets.dismiss(public_id, DPO, "")
    dismissed = await desk.tickets.dismiss(public_id, DPO, "a delivery question")
    assert dismissed.status == TicketStatus.DISMISSED
    assert dismissed.finished_at is not None
    assert await desk.tickets.find(TicketFilter(needs_review=True)) == []
    await desk.sender.send_due()
    assert len(not_rights.relay.mails()) == 1  # the requester is not written to again
    # Closed after the grace period like other finished work.
    from scheduler.jobs import close_finished

    not_rights.clock.advance(dt.timedelta(days=15))
    assert await close_finished(desk) == [public_id]


async def test_denied_and_resolved_tickets_leave_the_triage_queue(erasure: World) -> None:
    desk = erasure.desk
    await erasure.send(request(sender="nobody@example.com", message_id="u1@example.com"))
    await erasure.send(request(sender="other@example.com", message_id="u2@example.com"))
    queue = [t.public_id for t in await desk.tickets.find(TicketFilter(needs_review=True))]
    assert len(queue) == 2
    await desk.tickets.deny(queue[0], DPO, "we could not identify the account")
    await desk.tickets.cancel(queue[1], DPO, "asked by phone")
    assert await desk.tickets.find(TicketFilter(needs_review=True)) == []
    assert (await desk.tickets.get(queue[0])).needs_review is False


async def test_extension_past_completion_needs_its_reason_and_names_both_dates(
    erasure: World,
) -> None:
    desk = erasure.desk
    await erasure.send(request())
    public_id = await only_ticket(desk)
    await desk.tickets.mark_verified(public_id, DPO, note="called the registered phone")
    ticket = await desk.tickets.get(public_id)
    assert ticket.response_due == dt.date(2026, 3, 9)
    assert ticket.completion_due == dt.date(2026, 3, 12)
    with pytest.raises(TicketError, match="completion-until"):
        await desk.tickets.extend(public_id, DPO, dt.date(2026, 3, 20), "four systems")
    with pytest.raises(TicketError, match="reason for extending the completion"):
        await desk.tickets.extend(
            public_id,
            DPO,
            dt.date(2026, 3, 20),
            "four systems",
            completion_until=dt.date(2026, 3, 27),
        )
    await desk.tickets.extend(
        public_id,
        DPO,
        dt.date(2026, 3, 20),
        "four systems",
        completion_until=dt.date(2026, 3, 27),
        completion_reason="backup tapes rotate weekly",
    )
    await desk.sender.send_due()
    [notice] = erasure.relay.mails("extended")
    text = text_of(notice)
    assert "2026-03-20" in text
    assert "2026-03-27" in text
    assert "backup tapes rotate weekly" in text
    ticket = await desk.tickets.get(public_id)
    assert ticket.original_completion_due == dt.date(2026, 3, 12)


async def test_the_same_request_by_mail_joins_another_channel_is_linked_and_merge_moves_it(
    erasure: World,
) -> None:
    """The rule of docs/architecture.md "The same request again": by mail, from the same
    requester with the same types, it joins the open ticket; what does not join (here: the
    DPO opens the same request from a phone call) is linked by duplicate_of for merging."""
    desk = erasure.desk
    await erasure.send(request(message_id="first@example.com"))
    await erasure.send(request(message_id="again@example.com", body="我再发一次：请删除。"))
    first = await only_ticket(desk)  # the copy joined it
    assert [e.action for e in (await desk.tickets.detail(first)).events].count(
        "duplicate_joined"
    ) == 1
    phoned = await desk.tickets.open(
        NewTicket(
            channel=Channel.MANUAL,
            contact=Contact.email(OWNER),
            types=[RequestType.ERASURE],
            received_at=erasure.clock.now(),
            text="再说一次：请删除我的数据。",
        ),
        DPO,
    )
    second = phoned.public_id
    other = await desk.tickets.get(second)
    kept = await desk.tickets.get(first)
    assert other.duplicate_of == kept.id
    assert other.needs_review is True
    shown = await desk.tickets.links_of([other])
    assert shown == {kept.id: first}
    with pytest.raises(TicketError):
        await desk.merger.merge(first, first, DPO)
    before = len((await desk.tickets.detail(second)).events)
    await desk.merger.merge(first, second, DPO)
    merged = await desk.tickets.detail(first)
    texts = [m.text for m in merged.messages if m.direction == "in"]
    assert "再说一次：请删除我的数据。" in texts
    copied = [e for e in merged.events if e.action == "merged_event"]
    assert len(copied) == before
    assert copied[0].after["from"] == second
    assert merged.events[-1].action == "merged"
    closed = await desk.tickets.detail(second)
    assert closed.ticket.status == TicketStatus.CLOSED
    assert closed.ticket.merged_into == kept.id
    assert closed.events[-1].action == "merged_into"
    assert not [m for m in closed.messages]
    async with desk.db.reading() as session:
        report = await verify_chains(session)
    assert report.ok, report
    # Mail that names the merged ticket continues on the kept one.
    await erasure.send(
        plain_mail("还在吗？", sender=OWNER, message_id="tag-5@example.com", subject=f"[{second}]")
    )
    texts = [m.text for m in (await desk.tickets.detail(first)).messages]
    assert "还在吗？" in texts
    with pytest.raises(TicketError, match="merged already"):
        await desk.merger.merge(first, second, DPO)


@pytest.mark.parametrize("said", ["撤销", "撤銷。", "undo", "取消", "cancel", "123456"])
def test_what_the_desk_answers_itself_is_never_read_for_new_asks(said: str) -> None:
    # "撤销" undoes a withdrawal: read as a new ask it suggested withdraw_consent and told
    # the DPO about a request nobody made.
    assert worth_reading(said) is None


def test_a_follow_up_with_words_is_read_for_new_asks() -> None:
    assert worth_reading("  also delete my old address  ") == "also delete my old address"
