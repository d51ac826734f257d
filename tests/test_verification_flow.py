"""Verification and everything we send, end to end through real sockets, on both databases:
mail in over SMTP, our mail out through a real SMTP relay on loopback."""

from __future__ import annotations

import asyncio
import datetime as dt
import email
import email.utils
import re
import smtplib
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from aiosmtpd.smtp import SMTP, Envelope, Session
from pydantic import SecretStr
from sqlmodel import select

from intake.smtp import SmtpReceiver
from rightsdesk.clock import FrozenClock
from rightsdesk.config import Settings
from rightsdesk.models import OutboxEntry, Requester, RequestType, TicketStatus
from rightsdesk.pipeline import Classification, IntakeWorker
from rightsdesk.service import Desk
from rightsdesk.tickets import TicketError
from rightsdesk.views import ticket_detail
from tests.conftest import mail as plain_mail

PRIVACY = "privacy@localhost"
OWNER = "zhang.san@example.com"


@dataclass
class FixedTypes:
    """Stands in for the classifier (issue #3): these tests are about what follows it."""

    types: list[RequestType]

    def classify(self, subject: str, text: str) -> Classification:
        return Classification(types=self.types, needs_review=False, language="zh")


@dataclass
class Relay:
    """A real SMTP server on loopback, standing in for the company's outgoing relay."""

    received: list[tuple[str, list[str], bytes]] = field(default_factory=list)
    refuse_with: str | None = None
    server: asyncio.Server | None = None
    port: int = 0

    async def handle_RCPT(
        self, server: SMTP, session: Session, envelope: Envelope, address: str, options: Any
    ) -> str:
        if self.refuse_with:
            return self.refuse_with
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        raw = envelope.original_content or b""
        self.received.append((envelope.mail_from or "", list(envelope.rcpt_tos), raw))
        return "250 OK"

    async def start(self) -> None:
        loop = asyncio.get_running_loop()
        self.server = await loop.create_server(
            lambda: SMTP(self, hostname="relay.test"), "127.0.0.1", self.port
        )
        self.port = self.server.sockets[0].getsockname()[1]

    async def stop(self) -> None:
        assert self.server is not None
        self.server.close()
        await self.server.wait_closed()

    def mails(self, kind: str | None = None) -> list[email.message.Message]:
        parsed = [email.message_from_bytes(raw) for _, _, raw in self.received]
        return [m for m in parsed if kind is None or m["X-Rightsdesk-Kind"] == kind]


@dataclass
class World:
    desk: Desk
    relay: Relay
    receiver: SmtpReceiver
    clock: FrozenClock

    async def send(self, raw: bytes, envelope_from: str = OWNER) -> None:
        def deliver() -> None:
            with smtplib.SMTP("127.0.0.1", self.receiver.port, timeout=30) as client:
                client.sendmail(envelope_from, [PRIVACY], raw)

        await asyncio.to_thread(deliver)
        await IntakeWorker(self.desk.pipeline, self.desk.inbox).drain()
        await self.desk.sender.send_due()


async def make_world(settings: Settings, clock: FrozenClock, types: Sequence[RequestType]) -> World:
    relay = Relay()
    await relay.start()
    settings.outbound.relay_host = "127.0.0.1"
    settings.outbound.relay_port = relay.port
    settings.outbound.relay_starttls = False
    settings.mail.trusted_authserv_ids = ["mx.privacy.test"]
    settings.smtp.port = 0
    desk = Desk.build(settings, clock, classifier=FixedTypes(list(types)))
    receiver = SmtpReceiver(settings.smtp, settings.mail, desk.inbox, [PRIVACY])
    await receiver.start()
    csv = Path(str(settings.desk.data_dir)) / "accounts.csv"
    csv.parent.mkdir(parents=True, exist_ok=True)
    csv.write_text(f"account_id,email,name\nu1,{OWNER},张三\nu2,li.si@example.com,李四\n", "utf-8")
    await desk.accounts.import_csv(csv)
    return World(desk, relay, receiver, clock)


@pytest.fixture
async def erasure(settings: Settings, clock: FrozenClock) -> AsyncIterator[World]:
    world = await make_world(settings, clock, [RequestType.ERASURE])
    yield world
    await world.receiver.stop()
    await world.relay.stop()
    await world.desk.close()


@pytest.fixture
async def access(settings: Settings, clock: FrozenClock) -> AsyncIterator[World]:
    world = await make_world(settings, clock, [RequestType.ACCESS])
    yield world
    await world.receiver.stop()
    await world.relay.stop()
    await world.desk.close()


def request(
    sender: str = OWNER,
    body: str = "请删除我的全部个人信息。",
    message_id: str = "req-1@example.com",
    headers: str = "",
    name: str = "=?utf-8?b?5byg5LiJ?=",
) -> bytes:
    return plain_mail(
        body,
        sender=sender,
        message_id=message_id,
        subject="=?utf-8?b?5Yig6Zmk?=",
        headers=headers,
        name=name,
    )


def reply_to(mail: email.message.Message, body: str, sender: str = OWNER, n: int = 1) -> bytes:
    return request(
        sender=sender,
        body=body,
        message_id=f"reply-{n}-{sender}",
        headers=f"In-Reply-To: {mail['Message-ID']}\r\n",
    )


def to_of(mail: email.message.Message) -> str:
    return email.utils.parseaddr(mail["To"])[1]


def text_of(mail: email.message.Message) -> str:
    """The plain-text part of a mail of ours (multipart/alternative: text, then HTML)."""
    for part in mail.walk():
        if part.get_content_type() == "text/plain":
            payload = part.get_payload(decode=True)
            assert isinstance(payload, bytes)
            return payload.decode("utf-8")
    raise AssertionError("no text part")


def code_in(mail: email.message.Message) -> str:
    text = text_of(mail)
    found = re.search(r"(?:验证码是：|code is: )(\d{6})", text)
    assert found
    return found.group(1)


async def only_ticket(desk: Desk) -> str:
    [ticket] = await desk.tickets.find()
    return ticket.public_id


async def test_erasure_verified_by_a_code_sent_to_the_registered_address(erasure: World) -> None:
    await erasure.send(request())
    public_id = await only_ticket(erasure.desk)
    [ack] = erasure.relay.mails("acknowledgement")
    [code_mail] = erasure.relay.mails("verification_code")
    assert to_of(code_mail) == OWNER
    assert (await erasure.desk.tickets.get(public_id)).status == TicketStatus.AWAITING_VERIFICATION
    assert ack["Subject"].startswith(f"[{public_id}]")
    assert ack["In-Reply-To"] == "<req-1@example.com>"
    assert ack["Auto-Submitted"] == "auto-replied"
    assert ack["X-Auto-Response-Suppress"] == "All"
    assert erasure.desk.signer.ticket_of(ack["Message-ID"]) == public_id

    # Replying the way people do: the ticket id, then the code.
    await erasure.send(reply_to(code_mail, f"{public_id} 的验证码：{code_in(code_mail)}"))
    ticket = await erasure.desk.tickets.get(public_id)
    assert ticket.status == TicketStatus.OPEN
    assert ticket.verified_at is not None
    [verified] = erasure.relay.mails("verified")
    assert to_of(verified) == OWNER
    # A deletion: the notice names the 30-day date too, as the acknowledgement did.
    assert ticket.completion_due is not None
    assert f"将在 {ticket.completion_due.isoformat()} 之前完成" in text_of(verified)
    async with erasure.desk.db.transaction() as session:
        requester = await session.get_one(Requester, ticket.requester_id)
    assert requester.account_id == "u1"


async def test_spoofed_from_gets_its_code_sent_to_the_registered_address(access: World) -> None:
    # The attacker's server says From: the victim; no trusted DKIM/DMARC pass.
    await access.send(request(), envelope_from="attacker@evil.example")
    recipients = {r for _, rcpts, _ in access.relay.received for r in rcpts}
    assert "attacker@evil.example" not in recipients
    [code_mail] = access.relay.mails("verification_code")
    assert to_of(code_mail) == OWNER
    ticket = await access.desk.tickets.get(await only_ticket(access.desk))
    assert ticket.status == TicketStatus.AWAITING_VERIFICATION


async def test_dkim_aligned_mail_from_the_registered_address_needs_no_code(access: World) -> None:
    trusted = "Authentication-Results: mx.privacy.test; dkim=pass header.d=example.com\r\n"
    await access.send(request(headers=trusted))
    assert access.relay.mails("verification_code") == []
    ticket = await access.desk.tickets.get(await only_ticket(access.desk))
    assert (ticket.status, ticket.verification) == (TicketStatus.OPEN, "verified")


async def test_authentication_results_from_a_stranger_prove_nothing(access: World) -> None:
    forged = "Authentication-Results: mx.evil.example; dkim=pass header.d=example.com\r\n"
    await access.send(request(headers=forged))
    assert len(access.relay.mails("verification_code")) == 1


async def test_erasure_needs_a_code_even_with_dkim(erasure: World) -> None:
    trusted = "Authentication-Results: mx.privacy.test; dkim=pass header.d=example.com\r\n"
    await erasure.send(request(headers=trusted))
    assert len(erasure.relay.mails("verification_code")) == 1


FULL_WIDTH = str.maketrans("0123456789", "０１２３４５６７８９")


@pytest.mark.parametrize(
    "written",
    [
        pytest.param(lambda code: code.translate(FULL_WIDTH), id="full-width"),
        pytest.param(lambda code: f"{code[:3]} {code[3:]}", id="spaced"),
        pytest.param(lambda code: f"{code[:3]}-{code[3:]}", id="dashed"),
    ],
)
async def test_a_code_typed_full_width_or_in_groups_verifies(erasure: World, written: Any) -> None:
    # `７５６６８０` (a Chinese input method) counted as a wrong code; `756 680` as no code.
    await erasure.send(request())
    [code_mail] = erasure.relay.mails("verification_code")
    typed = written(code_in(code_mail))
    await erasure.send(reply_to(code_mail, f"验证码：{typed}，谢谢"))
    public_id = await only_ticket(erasure.desk)
    ticket = await erasure.desk.tickets.get(public_id)
    assert ticket.status == TicketStatus.OPEN
    assert ticket.verified_at is not None
    # The code as written is masked wherever the reply is shown.
    shown = ticket_detail(
        await erasure.desk.tickets.detail(public_id), erasure.clock.now().date(), dt.UTC
    )
    texts = [m["text"] or "" for m in shown["messages"]]
    assert not [t for t in texts if typed in t]
    assert any("验证码：******，谢谢" in t for t in texts)


async def test_brute_force_locks_after_five_wrong_codes(erasure: World) -> None:
    await erasure.send(request())
    [code_mail] = erasure.relay.mails("verification_code")
    right = code_in(code_mail)
    wrong = [f"{(int(right) + n) % 10**6:06d}" for n in range(1, 6)]
    for n, guess in enumerate(wrong):
        await erasure.send(reply_to(code_mail, guess, n=n))
    await erasure.send(reply_to(code_mail, right, n=9))
    ticket = await erasure.desk.tickets.get(await only_ticket(erasure.desk))
    assert ticket.status == TicketStatus.AWAITING_VERIFICATION
    assert ticket.needs_review is True
    events = (await erasure.desk.tickets.detail(ticket.public_id)).events
    wrong_events = [e for e in events if e.action == "verification_code_wrong"]
    assert [e.after["attempts"] for e in wrong_events] == [1, 2, 3, 4, 5]
    assert wrong_events[-1].after["locked"] is True
    assert all(right not in str(e.after) for e in events)  # the code is never recorded


async def test_a_code_for_one_ticket_does_not_verify_another(erasure: World) -> None:
    await erasure.send(request(message_id="a@example.com"))
    await erasure.send(request(sender="li.si@example.com", message_id="b@example.com"))
    code_a, code_b = erasure.relay.mails("verification_code")
    assert to_of(code_b) == "li.si@example.com"
    await erasure.send(reply_to(code_b, code_in(code_a), sender="li.si@example.com"))
    tickets = {t.contact_value: t for t in await erasure.desk.tickets.find()}
    assert tickets["li.si@example.com"].status == TicketStatus.AWAITING_VERIFICATION


async def test_an_expired_code_does_not_verify(erasure: World) -> None:
    await erasure.send(request())
    [code_mail] = erasure.relay.mails("verification_code")
    erasure.clock.advance(dt.timedelta(minutes=31))
    await erasure.send(reply_to(code_mail, code_in(code_mail)))
    ticket = await erasure.desk.tickets.get(await only_ticket(erasure.desk))
    assert ticket.status == TicketStatus.AWAITING_VERIFICATION
    events = (await erasure.desk.tickets.detail(ticket.public_id)).events
    assert events[-1].action == "verification_code_expired"


def _body(mail: email.message.Message) -> str:
    text = text_of(mail)
    return re.sub(r"PRIV-\d{4}-\d{6}|\d{4}-\d{2}-\d{2}", "X", text)


async def test_the_answer_never_tells_whether_an_account_exists(erasure: World) -> None:
    await erasure.send(request(message_id="known@example.com"))
    await erasure.send(request(sender="nobody@example.com", message_id="unknown@example.com"))
    known, unknown = erasure.relay.mails("acknowledgement")
    assert _body(known) == _body(unknown)
    tickets = {t.contact_value: t for t in await erasure.desk.tickets.find()}
    stranger = tickets["nobody@example.com"]
    assert (stranger.verification, stranger.needs_review) == ("no_account", True)
    assert len(erasure.relay.mails("verification_code")) == 1  # only the real owner got one


async def test_the_acknowledgement_never_echoes_an_id_number(erasure: World) -> None:
    await erasure.send(request(body="我的身份证号是 11010519491231002X，请删除我的数据。"))
    for _, _, raw in erasure.relay.received:
        assert b"11010519491231002X" not in raw


async def test_reply_cancel_withdraws_the_request_once_the_undo_window_passed(
    erasure: World,
) -> None:
    await erasure.send(request())
    [ack] = erasure.relay.mails("acknowledgement")
    await erasure.send(reply_to(ack, "取消"))  # quotes our signed Message-ID: proof enough
    public_id = await only_ticket(erasure.desk)
    ticket = await erasure.desk.tickets.get(public_id)
    assert ticket.status == TicketStatus.AWAITING_VERIFICATION  # not final yet
    assert len(erasure.relay.mails("withdrawal_pending")) == 1
    erasure.clock.advance(dt.timedelta(days=14, minutes=1))
    assert await erasure.desk.withdrawals.finalize_due() == [public_id]
    await erasure.desk.sender.send_due()
    ticket = await erasure.desk.tickets.get(public_id)
    assert ticket.status == TicketStatus.CANCELLED
    assert len(erasure.relay.mails("cancelled")) == 1


async def test_cancel_from_someone_else_is_not_a_cancellation(erasure: World) -> None:
    await erasure.send(request())
    [ack] = erasure.relay.mails("acknowledgement")
    await erasure.send(reply_to(ack, "cancel", sender="mallory@evil.example"))
    ticket = await erasure.desk.tickets.get(await only_ticket(erasure.desk))
    assert ticket.status == TicketStatus.AWAITING_VERIFICATION


async def test_an_auto_reply_to_our_acknowledgement_gets_no_answer(erasure: World) -> None:
    await erasure.send(request())
    before = len(erasure.relay.received)
    [ack] = erasure.relay.mails("acknowledgement")
    ooo = request(
        body="I am on leave until Monday.",
        message_id="ooo@example.com",
        headers=f"Auto-Submitted: auto-replied\r\nIn-Reply-To: {ack['Message-ID']}\r\n",
    )
    await erasure.send(ooo)
    await erasure.send(ooo.replace(b"ooo@", b"ooo2@"))
    assert len(erasure.relay.received) == before


async def test_dpo_decisions_reach_the_requester(erasure: World) -> None:
    await erasure.send(request())
    public_id = await only_ticket(erasure.desk)
    desk = erasure.desk
    await desk.tickets.mark_verified(public_id, "cli:dpo", note="called the registered phone")
    await desk.tickets.extend(public_id, "cli:dpo", dt.date(2026, 3, 11), "backups to purge")
    await desk.tickets.deny(public_id, "cli:dpo", "Records must be kept 3 years by law.")
    await desk.sender.send_due()
    kinds = [m["X-Rightsdesk-Kind"] for m in erasure.relay.mails()]
    # The code and the acknowledgement leave together, in either order; then the decisions.
    assert sorted(kinds[:2]) == ["acknowledgement", "verification_code"]
    assert kinds[2:] == ["verified", "extended", "denied"]
    denied = text_of(erasure.relay.mails("denied")[0])
    assert "Records must be kept 3 years by law." in denied
    assert "第五十条" in denied
    # Every mail threads under the requester's own: References carry the whole thread.
    assert all("<req-1@example.com>" in m["References"] for m in erasure.relay.mails())


async def test_relay_outage_loses_nothing_and_sends_nothing_twice(erasure: World) -> None:
    await erasure.relay.stop()
    await erasure.send(request())  # ack + code queued; the relay refuses connections
    async with erasure.desk.db.transaction() as session:
        entries = (await session.exec(select(OutboxEntry))).all()
    assert [(e.status, e.attempts) for e in entries] == [("pending", 1), ("pending", 1)]
    assert all(e.last_error for e in entries)
    assert await erasure.desk.sender.send_due() == 0  # backing off, not hammering
    await erasure.relay.start()  # same port
    erasure.clock.advance(dt.timedelta(minutes=1))
    assert await erasure.desk.sender.send_due() == 2
    erasure.clock.advance(dt.timedelta(hours=2))
    assert await erasure.desk.sender.send_due() == 0
    assert sorted(m["X-Rightsdesk-Kind"] for m in erasure.relay.mails()) == [
        "acknowledgement",
        "verification_code",
    ]


async def test_a_relay_that_refuses_for_good_marks_the_mail_failed(erasure: World) -> None:
    erasure.relay.refuse_with = "550 5.1.1 no such user"
    await erasure.send(request())
    entries = await erasure.desk.sender.pending()
    assert {(e.status, e.attempts) for e in entries} == {("failed", 1)}
    assert all(e.last_error and e.last_error.startswith("550") for e in entries)


async def test_dpo_relabel_of_a_triage_ticket_starts_verification(
    settings: Settings, clock: FrozenClock
) -> None:
    world = await make_world(settings, clock, [RequestType.INQUIRY])
    try:
        await world.send(request())
        public_id = await only_ticket(world.desk)
        assert (await world.desk.tickets.get(public_id)).status == TicketStatus.OPEN
        await world.desk.tickets.relabel(public_id, "cli:dpo", [RequestType.ERASURE])
        assert await world.desk.verifier.reconsider(public_id, "cli:dpo") == "code"
        await world.desk.sender.send_due()
        assert len(world.relay.mails("verification_code")) == 1
        ticket = await world.desk.tickets.get(public_id)
        assert ticket.status == TicketStatus.AWAITING_VERIFICATION
    finally:
        await world.receiver.stop()
        await world.relay.stop()
        await world.desk.close()


async def test_names_and_subjects_cannot_inject_headers(erasure: World) -> None:
    evil_name = "=?utf-8?q?Zhang=0D=0ABcc:_victim@example.org?="
    await erasure.send(request(name=evil_name))
    for mail in erasure.relay.mails():
        assert mail["Bcc"] is None
        assert "victim@example.org" not in {
            a for _, rcpts, _ in erasure.relay.received for a in rcpts
        }


async def test_unanswered_codes_get_one_reminder_then_close(erasure: World) -> None:
    await erasure.send(request())
    public_id = await only_ticket(erasure.desk)
    verifier = erasure.desk.verifier
    erasure.clock.advance(dt.timedelta(days=1))
    assert await verifier.follow_up() == ([], [])
    erasure.clock.advance(dt.timedelta(days=1, minutes=1))
    assert await verifier.follow_up() == ([public_id], [])
    assert await verifier.follow_up() == ([], [])  # once
    erasure.clock.advance(dt.timedelta(days=12))
    assert await verifier.follow_up() == ([], [public_id])
    assert await verifier.follow_up() == ([], [])
    await erasure.desk.sender.send_due()
    [reminder] = erasure.relay.mails("verification_reminder")
    assert to_of(reminder) == OWNER
    assert "2026-02-24" in text_of(reminder)  # the day it will close
    assert len(erasure.relay.mails("auto_closed")) == 1
    assert (await erasure.desk.tickets.get(public_id)).status == TicketStatus.CLOSED


async def test_a_verified_request_is_neither_reminded_nor_closed(erasure: World) -> None:
    await erasure.send(request())
    [code_mail] = erasure.relay.mails("verification_code")
    await erasure.send(reply_to(code_mail, code_in(code_mail)))
    erasure.clock.advance(dt.timedelta(days=30))
    assert await erasure.desk.verifier.follow_up() == ([], [])


async def test_resends_are_limited(erasure: World) -> None:
    await erasure.send(request())
    public_id = await only_ticket(erasure.desk)
    await erasure.desk.verifier.resend_code(public_id, "cli:dpo")
    await erasure.desk.verifier.resend_code(public_id, "cli:dpo")
    with pytest.raises(TicketError, match="3 codes were sent already"):
        await erasure.desk.verifier.resend_code(public_id, "cli:dpo")
    await erasure.desk.sender.send_due()
    first, _, last = erasure.relay.mails("verification_code")
    assert code_in(first) != code_in(last)  # a fresh code (equal: a 1-in-a-million draw)
    await erasure.send(reply_to(last, code_in(first)))  # an old code no longer works...
    ticket = await erasure.desk.tickets.get(public_id)
    assert ticket.status == TicketStatus.AWAITING_VERIFICATION
    await erasure.send(reply_to(last, code_in(last), n=2))  # ...the newest does
    assert (await erasure.desk.tickets.get(public_id)).status == TicketStatus.OPEN


async def test_accounts_can_be_looked_up_in_the_company_database(
    settings: Settings, clock: FrozenClock, tmp_path: Path
) -> None:
    import sqlite3

    company = tmp_path / "company.db"
    with sqlite3.connect(company) as conn:
        conn.execute("CREATE TABLE users (id INTEGER PRIMARY KEY, mail TEXT, nick TEXT)")
        conn.execute("INSERT INTO users VALUES (77, 'Wang.Wu@Example.com', 'wangwu')")
    settings.verification.account_query = (
        "SELECT id AS account_id, mail AS email, nick AS username FROM users "
        "WHERE lower(mail) = :email"
    )
    settings.verification.account_database_url = SecretStr(f"sqlite+aiosqlite:///{company}")
    world = await make_world(settings, clock, [RequestType.ERASURE])
    try:
        await world.send(request(sender="wang.wu@example.com"))
        print(
            "DEBUG",
            [(t.verification, t.status) for t in await world.desk.tickets.find()],
            world.desk.verifier.directory,
        )
        [code_mail] = world.relay.mails("verification_code")
        assert to_of(code_mail) == "wang.wu@example.com"
        # Not in the company database, though imported locally: the company database decides.
        await world.send(request(message_id="r2@example.com"))
        tickets = {t.contact_value: t for t in await world.desk.tickets.find()}
        assert tickets[OWNER].verification == "no_account"
        account = await world.desk.accounts.find_by_email("wang.wu@example.com")
        assert account is not None
        assert (account.id, account.username) == ("77", "wangwu")
    finally:
        await world.receiver.stop()
        await world.relay.stop()
        await world.desk.close()
