"""Changes of a ticket by mail need proof; a withdrawal waits out an undo window; codes are
limited per account; repeated requests join the open one. Real SMTP in and out (the worlds of
test_verification_flow), on both databases."""

from __future__ import annotations

import asyncio
import datetime as dt
import io
import json
import re
import zipfile
from collections.abc import AsyncIterator
from email.header import decode_header, make_header
from pathlib import Path

import pytest
from sqlmodel import col, func, select
from typer.testing import CliRunner, Result

from rightsdesk.cli import app
from rightsdesk.clock import FrozenClock
from rightsdesk.config import Settings
from rightsdesk.evidence import build_pack
from rightsdesk.models import Event, Message, Requester, RequestType, TicketStatus
from rightsdesk.service import Desk
from rightsdesk.verification_codes import UNPROVEN_ATTEMPTS
from rightsdesk.views import message_view
from rightsdesk.withdrawal_words import says_undo
from scheduler.jobs import run_due_jobs
from tests.conftest import deliver
from tests.conftest import mail as plain_mail
from tests.test_verification_flow import (
    OWNER,
    FixedTypes,
    World,
    code_in,
    make_world,
    only_ticket,
    reply_to,
    request,
    text_of,
    to_of,
)

ATTACKER = "attacker@evil.example"
TRUSTED_DKIM = "Authentication-Results: mx.privacy.test; dkim=pass header.d=example.com\r\n"


def tagged(public_id: str, body: str, n: int = 1, headers: str = "") -> bytes:
    """What the attacker of issue #12 sent: From: the requester, Re: [PRIV-…], no reference."""
    return plain_mail(
        body,
        sender=OWNER,
        message_id=f"tagged-{n}@evil.example",
        subject=f"Re: [{public_id}] 删除",
        headers=headers,
    )


async def messages_of(world: World, public_id: str) -> list[Message]:
    detail = await world.desk.tickets.detail(public_id)
    return [m for m in detail.messages if m.direction == "in"]


async def stop(world: World) -> None:
    await world.receiver.stop()
    await world.relay.stop()
    await world.desk.close()


@pytest.fixture
async def erasure(settings: Settings, clock: FrozenClock) -> AsyncIterator[World]:
    world = await make_world(settings, clock, [RequestType.ERASURE])
    yield world
    await stop(world)


@pytest.fixture
async def access(settings: Settings, clock: FrozenClock) -> AsyncIterator[World]:
    world = await make_world(settings, clock, [RequestType.ACCESS])
    yield world
    await stop(world)


# ---- item 1: proof for changes by mail -------------------------------------------------------


@pytest.mark.parametrize("word", ["cancel", "取消"])
async def test_the_forged_cancel_of_issue_12_changes_nothing(access: World, word: str) -> None:
    # A verified request (DKIM-aligned mail from the registered address)...
    await access.send(request(headers=TRUSTED_DKIM))
    public_id = await only_ticket(access.desk)
    assert (await access.desk.tickets.get(public_id)).status == TicketStatus.OPEN
    sent_before = len(access.relay.received)
    # ...and the forgery, sent from the attacker's server with the victim's From:.
    await access.send(tagged(public_id, word), envelope_from=ATTACKER)
    ticket = await access.desk.tickets.get(public_id)
    assert ticket.status == TicketStatus.OPEN
    assert ticket.withdrawal_final_at is None
    assert len(access.relay.received) == sent_before  # the victim is mailed nothing
    forged = (await messages_of(access, public_id))[-1]
    assert word in (forged.text or "")  # kept, for the DPO to see...
    assert forged.unauthenticated_thread is True  # ...flagged
    events = (await access.desk.tickets.detail(public_id)).events
    assert events[-1].action == "change_by_mail_refused"
    assert events[-1].after["why"] == "no proof of the sender"


async def test_a_cancel_quoting_our_message_id_is_pending_and_can_be_undone(
    erasure: World,
) -> None:
    await erasure.send(request())
    public_id = await only_ticket(erasure.desk)
    [ack] = erasure.relay.mails("acknowledgement")
    await erasure.send(reply_to(ack, "cancel"))
    ticket = await erasure.desk.tickets.get(public_id)
    assert ticket.status == TicketStatus.AWAITING_VERIFICATION
    assert ticket.withdrawal_final_at == erasure.clock.now() + dt.timedelta(days=14)
    assert erasure.relay.mails("cancelled") == []
    [pending] = erasure.relay.mails("withdrawal_pending")
    assert to_of(pending) == OWNER
    assert "2026-02-24" in text_of(pending)
    assert "撤销" in text_of(pending)  # the requester writes Chinese: told to reply 撤销
    # The reply tagged only by subject cannot undo it either: the same proof is needed.
    await erasure.send(tagged(public_id, "undo", n=1), envelope_from=ATTACKER)
    assert (await erasure.desk.tickets.get(public_id)).withdrawal_final_at is not None
    # The requester replies to the confirmation: undone, and told so.
    await erasure.send(reply_to(pending, "撤销", n=2))
    ticket = await erasure.desk.tickets.get(public_id)
    assert ticket.withdrawal_final_at is None
    assert ticket.status == TicketStatus.AWAITING_VERIFICATION
    assert len(erasure.relay.mails("withdrawal_undone")) == 1
    # Nothing becomes final later: the window passes with the request in place.
    erasure.clock.advance(dt.timedelta(days=15))
    assert await erasure.desk.withdrawals.finalize_due() == []
    assert (await erasure.desk.tickets.get(public_id)).status != TicketStatus.CANCELLED


@pytest.mark.parametrize(
    "body",
    [
        "取消。我不想删除了。",
        "取消\n\n张三",
        "Please cancel my request, I no longer need it.\n\n"
        "On Mon, Dec 1, 2026 at 10:00 AM Privacy Desk wrote:\n> 我们已收到您的请求\n",
        "撤回申請",
    ],
)
async def test_a_proven_cancel_sentence_is_a_withdrawal(erasure: World, body: str) -> None:
    await erasure.send(request())
    public_id = await only_ticket(erasure.desk)
    [ack] = erasure.relay.mails("acknowledgement")
    await erasure.send(reply_to(ack, body))
    ticket = await erasure.desk.tickets.get(public_id)
    assert ticket.withdrawal_final_at is not None
    assert ticket.suggested_types == []  # a withdrawal is not a new ask
    assert len(erasure.relay.mails("withdrawal_pending")) == 1


@pytest.mark.parametrize(
    "body",
    [
        "撤销。我改主意了，谢谢。",
        "撤銷\n\n王小明",
        "Undo, I've changed my mind. Thanks!\n-- \nAnna",
    ],
)
async def test_an_undo_sentence_with_a_reason_or_a_signature_takes_the_withdrawal_back(
    erasure: World, body: str
) -> None:
    await erasure.send(request())
    public_id = await only_ticket(erasure.desk)
    [ack] = erasure.relay.mails("acknowledgement")
    await erasure.send(reply_to(ack, "cancel"))
    [pending] = erasure.relay.mails("withdrawal_pending")
    await erasure.send(reply_to(pending, body, n=2))
    assert (await erasure.desk.tickets.get(public_id)).withdrawal_final_at is None
    assert len(erasure.relay.mails("withdrawal_undone")) == 1


@pytest.mark.parametrize(
    "body", ["撤销\n\n另外请删除我的手机号", "undo. And send me a copy of my data"]
)
def test_an_undo_word_followed_by_a_new_ask_is_no_undo(body: str) -> None:
    assert not says_undo(body)
    assert says_undo("撤销")


@pytest.mark.parametrize(
    "body",
    [
        "取消\n\n请删除我的邮箱",  # a new ask under the word, not a signature
        "我想取消订阅你们的营销邮件，但请删除我的账号和所有数据。",
        "Please cancel my newsletter and delete my account.",
    ],
)
async def test_a_message_that_merely_contains_the_word_is_no_withdrawal(
    erasure: World, body: str
) -> None:
    await erasure.send(request())
    public_id = await only_ticket(erasure.desk)
    [ack] = erasure.relay.mails("acknowledgement")
    await erasure.send(reply_to(ack, body))
    assert (await erasure.desk.tickets.get(public_id)).withdrawal_final_at is None


async def test_a_forged_cancel_sentence_is_refused_and_suggests_nothing(erasure: World) -> None:
    fixed = erasure.desk.classifier
    assert isinstance(fixed, FixedTypes)
    await erasure.send(request(headers=TRUSTED_DKIM))
    public_id = await only_ticket(erasure.desk)
    fixed.types = [RequestType.ACCOUNT_DELETION, RequestType.WITHDRAW_CONSENT]
    sent_before = len(erasure.relay.received)
    await erasure.send(tagged(public_id, "取消。我不想删除了。"), envelope_from=ATTACKER)
    ticket = await erasure.desk.tickets.get(public_id)
    assert ticket.withdrawal_final_at is None
    assert ticket.suggested_types == []
    assert len(erasure.relay.received) == sent_before  # nobody is mailed: not the DPO either
    events = (await erasure.desk.tickets.detail(public_id)).events
    assert events[-1].action == "change_by_mail_refused"
    assert events[-1].after["asked"] == "withdrawal"


async def test_withdrawal_notices_speak_the_tickets_language_not_the_requesters_latest(
    erasure: World,
) -> None:
    # A request in traditional characters: a zh-Hant ticket...
    await erasure.send(request(body="請刪除我的全部個人資料，謝謝。"))
    public_id = await only_ticket(erasure.desk)
    ticket = await erasure.desk.tickets.get(public_id)
    assert ticket.language == "zh-Hant"
    # ...whose requester's stored language later became English (a mail with an English
    # subject does that): the ticket's mails stay in the ticket's language.
    async with erasure.desk.db.transaction() as session:
        requester = await session.get_one(Requester, ticket.requester_id)
        requester.language = "en"
    [ack] = erasure.relay.mails("acknowledgement")
    await erasure.send(reply_to(ack, "000000", n=1))  # a wrong code
    [wrong] = erasure.relay.mails("code_not_accepted")
    assert "Hello" not in text_of(wrong)
    assert "驗證碼" in text_of(wrong)
    await erasure.send(reply_to(ack, "cancel", n=2))
    [pending] = erasure.relay.mails("withdrawal_pending")
    assert "撤銷" in text_of(pending)
    assert "隱私保護團隊" in str(make_header(decode_header(pending["From"])))  # not 隐私保护团队
    assert "Hello" not in text_of(pending)
    await erasure.desk.withdrawals.undo(public_id, "cli:dpo")
    await erasure.desk.sender.send_due()
    [undone] = erasure.relay.mails("withdrawal_undone")
    assert "繼續處理" in str(make_header(decode_header(undone["Subject"])))
    assert "Hello" not in text_of(undone)


async def test_after_fourteen_days_the_withdrawal_is_final(erasure: World) -> None:
    await erasure.send(request())
    public_id = await only_ticket(erasure.desk)
    [ack] = erasure.relay.mails("acknowledgement")
    await erasure.send(reply_to(ack, "取消"))
    erasure.clock.advance(dt.timedelta(days=13, hours=23))
    await run_due_jobs(erasure.desk)
    assert (await erasure.desk.tickets.get(public_id)).status == TicketStatus.AWAITING_VERIFICATION
    erasure.clock.advance(dt.timedelta(hours=2))
    results = await run_due_jobs(erasure.desk)  # the scheduler's tick does it
    assert results["withdrawals"] == [public_id]
    await erasure.desk.sender.send_due()
    ticket = await erasure.desk.tickets.get(public_id)
    assert (ticket.status, ticket.cancel_reason) == (
        TicketStatus.CANCELLED,
        "withdrawn by the requester",
    )
    assert ticket.withdrawal_final_at is None
    [cancelled] = erasure.relay.mails("cancelled")
    assert to_of(cancelled) == OWNER
    # Final means final: an undo now changes nothing.
    [pending] = erasure.relay.mails("withdrawal_pending")
    await erasure.send(reply_to(pending, "undo", n=5))
    assert (await erasure.desk.tickets.get(public_id)).status == TicketStatus.CANCELLED


@pytest.mark.parametrize(
    ("header", "counts"),
    [
        (TRUSTED_DKIM, True),
        ("Authentication-Results: mx.privacy.test; dmarc=pass header.from=example.com\r\n", True),
        ("Authentication-Results: mx.evil.example; dkim=pass header.d=example.com\r\n", False),
        ("Authentication-Results: mx.privacy.test; dkim=pass header.d=evil.example\r\n", False),
        ("Authentication-Results: mx.privacy.test; dkim=fail header.d=example.com\r\n", False),
    ],
    ids=["trusted-dkim", "trusted-dmarc", "untrusted-server", "unaligned-domain", "dkim-fail"],
)
async def test_an_aligned_pass_from_a_trusted_server_is_proof_enough(
    erasure: World, header: str, counts: bool
) -> None:
    await erasure.send(request())
    public_id = await only_ticket(erasure.desk)
    await erasure.send(tagged(public_id, "cancel", headers=header))
    ticket = await erasure.desk.tickets.get(public_id)
    assert (ticket.withdrawal_final_at is not None) is counts
    assert len(erasure.relay.mails("withdrawal_pending")) == (1 if counts else 0)
    latest = (await messages_of(erasure, public_id))[-1]
    assert latest.unauthenticated_thread is not counts


async def test_the_confirmation_goes_to_the_registered_address(
    settings: Settings, clock: FrozenClock
) -> None:
    # Verified with a code: the account's registered address is where the requester is known.
    world = await make_world(settings, clock, [RequestType.ERASURE])
    try:
        await world.send(request())
        public_id = await only_ticket(world.desk)
        [code_mail] = world.relay.mails("verification_code")
        await world.send(reply_to(code_mail, code_in(code_mail)))
        await world.send(reply_to(code_mail, "cancel", n=2))
        [pending] = world.relay.mails("withdrawal_pending")
        assert to_of(pending) == OWNER
        assert (await world.desk.tickets.get(public_id)).status == TicketStatus.OPEN
    finally:
        await stop(world)


# ---- item 4: codes per account, repeated requests -----------------------------------------------


async def test_fifty_identical_requests_send_one_code(erasure: World) -> None:
    for n in range(50):
        await erasure.send(request(message_id=f"same-{n}@example.com"))
    assert len(erasure.relay.mails("verification_code")) == 1
    public_id = await only_ticket(erasure.desk)  # one ticket: the others joined it
    assert len(await messages_of(erasure, public_id)) == 50
    events = (await erasure.desk.tickets.detail(public_id)).events
    assert sum(e.action == "duplicate_joined" for e in events) == 49


async def test_fifty_different_requests_send_at_most_the_limit_of_codes(erasure: World) -> None:
    fixed = erasure.desk.classifier
    assert isinstance(fixed, FixedTypes)
    others = [t for t in RequestType if t not in (RequestType.NOT_RIGHTS_REQUEST,)]
    for n in range(50):
        # Each a different set of types (so none joins another): an erasure, plus one more.
        fixed.types = (
            [RequestType.ERASURE, others[n % len(others)]]
            if n % 2
            else [
                RequestType.ACCOUNT_DELETION,
                others[n % len(others)],
            ]
        )
        await erasure.send(request(message_id=f"different-{n}@example.com"))
    # Unproven mail, all within one code's lifetime: the first code is outstanding, so the
    # others send none (rightsdesk.verification, the threat model in its docstring).
    assert len(erasure.relay.mails("verification_code")) == 1
    tickets = await erasure.desk.tickets.find()
    assert len(tickets) > erasure.desk.settings.verification.account_max_sends
    limited = [t for t in tickets if t.verification == "limited"]
    assert len(limited) > erasure.desk.settings.verification.account_max_sends
    assert all(t.needs_review for t in limited)  # the DPO decides those


async def test_a_forged_flood_cannot_use_up_the_codes_of_the_account_holder(
    erasure: World, clock: FrozenClock
) -> None:
    """A stranger mails a request "from" the owner's address every 31 minutes for a day, each
    with other types: the owner gets a few codes, not five, and a request the owner makes
    with proof (DKIM-aligned at our trusted server) still gets its code."""
    fixed = erasure.desk.classifier
    assert isinstance(fixed, FixedTypes)
    others = [t for t in RequestType if t not in (RequestType.NOT_RIGHTS_REQUEST,)]
    for n in range(46):
        first = RequestType.ERASURE if n % 2 else RequestType.ACCOUNT_DELETION
        fixed.types = [first, others[n % len(others)]]
        await erasure.send(request(message_id=f"flood-{n}@evil.example"), envelope_from=ATTACKER)
        clock.advance(dt.timedelta(minutes=31))  # each code expired before the next mail
    settings = erasure.desk.settings.verification
    flooded = len(erasure.relay.mails("verification_code"))
    assert flooded == settings.account_max_sends - 2 < settings.account_max_sends
    fixed.types = [RequestType.ERASURE, RequestType.RESTRICTION, RequestType.ACCESS]
    await erasure.send(
        request(message_id="the-owner@example.com", headers=TRUSTED_DKIM, body="请删除我的数据")
    )
    assert len(erasure.relay.mails("verification_code")) == flooded + 1
    owners = [t for t in await erasure.desk.tickets.find() if t.verification == "code"]
    assert owners  # waiting for the code just sent, not `limited`
    # Unproven mail still gets nothing now, even after the owner's code expired.
    clock.advance(dt.timedelta(minutes=31))
    fixed.types = [RequestType.ACCOUNT_DELETION, RequestType.RESTRICTION, RequestType.ACCESS]
    await erasure.send(request(message_id="flood-last@evil.example"), envelope_from=ATTACKER)
    assert len(erasure.relay.mails("verification_code")) == flooded + 1


async def _wrong_guesses(world: World) -> int:
    """Wrong codes compared, in proven mail and in unproven mail."""
    async with world.desk.db.reading() as session:
        found = await session.exec(
            select(func.count(col(Event.id))).where(
                col(Event.action).in_(
                    ["verification_code_wrong", "verification_code_wrong_unproven"]
                )
            )
        )
        return found.one()


async def test_forged_wrong_codes_cannot_lock_the_owner_out(
    erasure: World, clock: FrozenClock
) -> None:
    """The tester's lock-out: a forged request, then six wrong codes "from" the owner on it
    (tag only, no proof). Only UNPROVEN_ATTEMPTS are compared, the ticket goes to review, the
    account is not locked, and the owner's own request is verified by the right code."""
    await erasure.send(request(message_id="forged@evil.example"), envelope_from=ATTACKER)
    forged = await only_ticket(erasure.desk)
    [sent] = erasure.relay.mails("verification_code")
    guesses = [f"{d}" * 6 for d in range(1, 7) if f"{d}" * 6 != code_in(sent)]
    for n, guess in enumerate(guesses, 1):
        await erasure.send(tagged(forged, guess, n=n), envelope_from=ATTACKER)
    assert await _wrong_guesses(erasure) == UNPROVEN_ATTEMPTS
    ticket = await erasure.desk.tickets.get(forged)
    assert ticket.status == TicketStatus.AWAITING_VERIFICATION
    assert ticket.needs_review  # a person looks: someone guessed under a forged From
    actions = [e.action for e in (await erasure.desk.tickets.detail(forged)).events]
    assert "verification_unproven_codes_used_up" in actions
    assert "verification_account_locked" not in actions
    # The owner, later, with a request of their own, answers the code mail with the code.
    clock.advance(dt.timedelta(minutes=31))
    fixed = erasure.desk.classifier
    assert isinstance(fixed, FixedTypes)
    fixed.types = [RequestType.ERASURE, RequestType.ACCESS]
    await erasure.send(request(message_id="owner@example.com", body="请删除我的数据并给我副本"))
    mine = erasure.relay.mails("verification_code")[-1]
    await erasure.send(reply_to(mine, code_in(mine), n=99))
    [own] = [t for t in await erasure.desk.tickets.find() if t.public_id != forged]
    assert own.verification == "verified"
    assert own.status == TicketStatus.OPEN


async def test_an_account_lock_is_answered_and_shown_to_staff(
    erasure: World, clock: FrozenClock, tmp_path: Path
) -> None:
    """The shared budget used up by proven wrong codes (the owner's own replies) locks the
    account: the next code is answered (past the per-sender acknowledgement limit) with
    until when, and staff read the lock and its reason."""
    await erasure.send(request())
    first = await only_ticket(erasure.desk)
    [sent] = erasure.relay.mails("verification_code")
    wrong = [f"{n:06d}" for n in range(1, 8) if f"{n:06d}" != code_in(sent)][:5]
    for n, guess in enumerate(wrong, 1):
        await erasure.send(reply_to(sent, guess, n=n))
    clock.advance(dt.timedelta(minutes=31))
    fixed = erasure.desk.classifier
    assert isinstance(fixed, FixedTypes)
    fixed.types = [RequestType.ERASURE, RequestType.ACCESS]
    await erasure.send(request(message_id="second@example.com", body="请删除我的数据并给我副本"))
    [second] = [t.public_id for t in await erasure.desk.tickets.find() if t.public_id != first]
    mine = erasure.relay.mails("verification_code")[-1]
    answered = len(erasure.relay.mails("code_not_accepted"))
    await erasure.send(reply_to(mine, code_in(mine), n=50))
    ticket = await erasure.desk.tickets.get(second)
    assert ticket.verification == "code"
    assert ticket.needs_review
    answers = erasure.relay.mails("code_not_accepted")
    assert len(answers) == answered + 1  # the acknowledgement limit was used up: answered
    assert to_of(answers[-1]) == OWNER
    assert "前不能再试" in text_of(answers[-1])  # until when
    settings = erasure.desk.settings
    shown = json.loads((await _cli(settings, tmp_path, "tickets", "show", second, "--json")).stdout)
    assert shown["verification_hold"]["locked"] is True
    assert shown["verification_hold"]["until"]
    assert shown["account"]["verified"] is False
    [reason] = [r for r in shown["review_reasons"] if r.startswith("verification locked until")]
    assert "5 wrong codes" in reason
    table = (await _cli(settings, tmp_path, "tickets", "show", second)).stdout
    assert "verification locked until" in table
    assert "; verified)" not in table


async def test_ten_forged_requests_give_no_more_than_five_guesses(erasure: World) -> None:
    fixed = erasure.desk.classifier
    assert isinstance(fixed, FixedTypes)
    combos = [[RequestType.ERASURE], [RequestType.ACCOUNT_DELETION]] + [
        [RequestType.ERASURE, t]
        for t in RequestType
        if t not in (RequestType.ERASURE, RequestType.NOT_RIGHTS_REQUEST)
    ]
    for n in range(10):
        fixed.types = combos[n]
        await erasure.send(request(message_id=f"forged-{n}@evil.example"), envelope_from=ATTACKER)
    tickets = await erasure.desk.tickets.find()
    assert len(tickets) == 10
    codes = {code_in(m) for m in erasure.relay.mails("verification_code")}
    guess = 0
    for ticket in tickets:
        for attempt in range(5):
            while f"{guess:06d}" in codes:
                guess += 1
            await erasure.send(
                tagged(ticket.public_id, f"{guess:06d}", n=100 * ticket.seq + attempt),
                envelope_from=ATTACKER,
            )
            guess += 1
    assert await _wrong_guesses(erasure) <= 5
    statuses = {t.status for t in await erasure.desk.tickets.find()}
    assert statuses == {TicketStatus.AWAITING_VERIFICATION}


async def test_identical_requests_of_two_people_do_not_join(erasure: World) -> None:
    await erasure.send(request())
    await erasure.send(request(sender="li.si@example.com", message_id="b@example.com"))
    assert len(await erasure.desk.tickets.find()) == 2


async def test_a_request_after_the_first_finished_opens_a_new_ticket(erasure: World) -> None:
    await erasure.send(request())
    public_id = await only_ticket(erasure.desk)
    await erasure.desk.tickets.cancel(public_id, "cli:dpo", "asked by phone")
    await erasure.send(request(message_id="again@example.com"))
    assert len(await erasure.desk.tickets.find()) == 2


# ---- what a person reads: the flag, and no terminal escapes (item 7) ------------------------

runner = CliRunner()
_RAW_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f\u202a-\u202e]")


async def _cli(settings: Settings, tmp_path: Path, *args: str) -> Result:
    config = tmp_path / "cli.toml"
    config.write_text(
        f'[database]\nurl = "{settings.database.url}"\n'
        f'[desk]\ndata_dir = "{settings.desk.data_dir}"\n'
        "[classifier]\nenabled = false\n",
        "utf-8",
    )
    result = await asyncio.to_thread(runner.invoke, app, ["--config", str(config), *args])
    assert result.exit_code == 0, (result.stdout, result.stderr)
    return result


async def test_mail_threaded_by_its_tag_alone_is_flagged_where_people_read_it(
    desk: Desk, settings: Settings, tmp_path: Path
) -> None:
    await deliver(desk, plain_mail("请删除我的个人信息。"))
    [ticket] = await desk.tickets.find()
    ours = desk.signer.new_message_id(ticket.public_id)
    await deliver(
        desk,
        plain_mail("好的", message_id="r1@example.com", headers=f"In-Reply-To: <{ours}>\r\n"),
    )
    await deliver(
        desk,
        plain_mail(
            "请把数据发到我的新邮箱 new@evil.example",
            message_id="t1@evil.example",
            subject=f"Re: [{ticket.public_id}]",
        ),
    )
    shown = json.loads(
        (await _cli(settings, tmp_path, "tickets", "show", ticket.public_id, "--json")).stdout
    )
    flags = [m["unauthenticated_thread"] for m in shown["messages"] if m["direction"] == "in"]
    assert flags == [False, False, True]  # the request, the signed reply, the tag-only one
    view = message_view((await desk.tickets.detail(ticket.public_id)).messages[-1])
    assert view["unauthenticated_thread"] is True  # views.py: what the web console will show
    table = (await _cli(settings, tmp_path, "tickets", "show", ticket.public_id)).stdout
    assert table.count("UNVERIFIED SENDER") == 1


async def test_tickets_show_prints_no_control_characters(
    desk: Desk, settings: Settings, tmp_path: Path
) -> None:
    hostile = "\x1b]0;pwned\x07\x1b[2J"
    raw = (
        b"From: =?utf-8?q?Zhang=1B[31m?= <zhang.san@example.com>\r\n"
        b"To: privacy@localhost\r\nSubject: =?utf-8?q?=1B]0;pwned=07=1B[2J?=\r\n"
        b"Message-ID: <cc@example.com>\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n"
        + f"请删除 {hostile} 我的数据\x00 [bold]markup[/] \u202eevil \x9b2J\r\n".encode()
    )
    await deliver(desk, raw)
    [ticket] = await desk.tickets.find()
    stored = (await desk.tickets.detail(ticket.public_id)).messages[0]
    assert "\x1b" in (stored.subject or "")  # the hostile text is kept as it came...
    assert "\x1b" in (stored.text or "")
    table = (await _cli(settings, tmp_path, "tickets", "show", ticket.public_id)).stdout
    assert _RAW_CONTROL.findall(table) == []  # ...and never reaches the terminal raw
    assert "\\x1b]0;pwned\\x07\\x1b[2J" in table  # shown, escaped, for the DPO to see
    assert "[bold]markup[/]" in table  # Rich markup is taken literally
    listed = (await _cli(settings, tmp_path, "tickets", "list")).stdout
    assert _RAW_CONTROL.findall(listed) == []
    as_json = (await _cli(settings, tmp_path, "tickets", "show", ticket.public_id, "--json")).stdout
    assert _RAW_CONTROL.findall(as_json) == []
    assert json.loads(as_json)["subject"] == stored.subject  # escaped, not lost


async def test_the_dpo_can_undo_a_pending_withdrawal(
    erasure: World, settings: Settings, tmp_path: Path
) -> None:
    await erasure.send(request())
    public_id = await only_ticket(erasure.desk)
    [ack] = erasure.relay.mails("acknowledgement")
    await erasure.send(reply_to(ack, "cancel"))
    listed = json.loads((await _cli(settings, tmp_path, "tickets", "list", "--json")).stdout)
    assert [row["withdrawal_pending"] for row in listed] == [True]
    shown = await _cli(settings, tmp_path, "tickets", "show", public_id)
    assert "withdrawal pending" in shown.stdout
    undone = await _cli(
        settings, tmp_path, "--actor", "cli:dpo", "tickets", "undo-withdrawal", public_id, "--json"
    )
    assert json.loads(undone.stdout)["withdrawal_pending"] is False
    events = (await erasure.desk.tickets.detail(public_id)).events
    assert (events[-1].action, events[-1].actor) == ("withdrawal_undone", "cli:dpo")
    config = tmp_path / "cli.toml"
    again = await asyncio.to_thread(
        runner.invoke, app, ["--config", str(config), "tickets", "undo-withdrawal", public_id]
    )
    assert again.exit_code == 1
    assert "no withdrawal waiting" in again.stderr


async def test_a_forged_opener_merged_onto_a_verified_ticket_stays_unverified(
    access: World, tmp_path: Path
) -> None:
    """PRIV-1 verified (DKIM-aligned); PRIV-2 opened by a forged From: asking for another
    address. Merged, the forgery keeps its flag on PRIV-1 wherever a person reads it."""
    fixed = access.desk.classifier
    assert isinstance(fixed, FixedTypes)
    await access.send(request(headers=TRUSTED_DKIM))
    [verified] = await access.desk.tickets.find()
    fixed.types = [RequestType.RECTIFICATION]
    forged_body = "请把我账号的注册邮箱改为 evil@attacker.com"
    await access.send(
        request(message_id="forged@evil.example", body=forged_body), envelope_from=ATTACKER
    )
    forged = next(t for t in await access.desk.tickets.find() if t.id != verified.id)
    assert forged.verification != "verified"
    settings = access.desk.settings
    shown = json.loads(
        (await _cli(settings, tmp_path, "tickets", "show", forged.public_id, "--json")).stdout
    )
    assert shown["account"]["verified"] is False  # PRIV-1's proof is not this ticket's
    table = (await _cli(settings, tmp_path, "tickets", "show", forged.public_id)).stdout
    assert "matched, not verified for this ticket" in table
    await access.desk.merger.merge(verified.public_id, forged.public_id, "cli:dpo")
    shown = json.loads(
        (await _cli(settings, tmp_path, "tickets", "show", verified.public_id, "--json")).stdout
    )
    assert shown["account"]["verified"] is True
    flags = {
        m["text"]: m["unauthenticated_thread"] for m in shown["messages"] if m["direction"] == "in"
    }
    assert flags[forged_body] is True
    assert [v for t, v in flags.items() if t != forged_body] == [False]
    table = (await _cli(settings, tmp_path, "tickets", "show", verified.public_id)).stdout
    assert table.count("UNVERIFIED SENDER") == 1
    pack = zipfile.ZipFile(
        io.BytesIO(
            await build_pack(access.desk.db, verified.public_id, "cli:dpo", access.clock.now())
        )
    )
    listed = json.loads(pack.read("ticket.json"))["messages"]
    assert [m["unauthenticated_thread"] for m in listed if m["sender"] == OWNER] == [
        False,
        True,
    ]
