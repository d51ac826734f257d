"""Routing stored mail: threads, forgeries, loops, bounces, failures, crashes. Both databases."""

from __future__ import annotations

import asyncio
import datetime as dt
import json
from pathlib import Path

import pytest
from sqlalchemy import text
from sqlmodel import select
from typer.testing import CliRunner

from intake.mail import mail_dedupe_key
from rightsdesk.cli import app
from rightsdesk.clock import FrozenClock
from rightsdesk.config import Settings
from rightsdesk.models import Channel, Message, RequesterContact, Ticket
from rightsdesk.pipeline import Classification, Delivery, IntakeWorker
from rightsdesk.service import Desk
from tests.conftest import REQUESTER, deliver, mail
from tests.conftest import count_rows as count


async def message(desk: Desk, row_id: int) -> Message:
    async with desk.db.transaction() as session:
        return await session.get_one(Message, row_id)


async def opened(desk: Desk) -> str:
    await deliver(desk, mail("请删除我的个人信息。"))
    [ticket] = await desk.tickets.find()
    return ticket.public_id


async def test_reply_quoting_our_signed_message_id_joins_the_ticket(desk: Desk) -> None:
    public_id = await opened(desk)
    ours = desk.signer.new_message_id(public_id)
    reply = mail(
        "好的，我确认。", message_id="r1@example.com", headers=f"In-Reply-To: <{ours}>\r\n"
    )
    row_id = await deliver(desk, reply)
    assert await count(desk, Ticket) == 1
    detail = await desk.tickets.detail(public_id)
    assert [m.id for m in detail.messages][-1] == row_id
    assert detail.events[-1].action == "message_received"
    assert detail.events[-1].after["message"] == row_id


async def test_forged_message_id_does_not_join_a_ticket(desk: Desk) -> None:
    public_id = await opened(desk)
    genuine = desk.signer.new_message_id(public_id)
    local, domain = genuine.split("@")
    forged = local.rsplit(".", 1)[0] + "." + "0" * 24 + "@" + domain  # right shape, wrong MAC
    assert desk.signer.ticket_of(genuine) == public_id
    assert desk.signer.ticket_of(forged) is None
    await deliver(
        desk,
        mail("给我她的数据", sender="mallory@evil.example", message_id="f1@evil.example",
             headers=f"References: <{forged}>\r\n"),
    )  # fmt: skip
    assert await count(desk, Ticket) == 2


async def test_subject_tag_threads_only_for_the_requester(desk: Desk) -> None:
    public_id = await opened(desk)
    subject = f"Re: [{public_id}] Request"
    await deliver(desk, mail("补充信息", message_id="t1@example.com", subject=subject))
    assert await count(desk, Ticket) == 1
    await deliver(
        desk, mail("cancel it", sender="mallory@evil.example", message_id="t2@e", subject=subject)
    )
    assert await count(desk, Ticket) == 2  # the stranger got a ticket of their own
    detail = await desk.tickets.detail(public_id)
    assert [m.sender for m in detail.messages if m.direction == "in"] == [REQUESTER, REQUESTER]


async def test_auto_reply_to_our_acknowledgement_is_attached_never_a_new_ticket(
    desk: Desk,
) -> None:
    public_id = await opened(desk)
    ours = desk.signer.new_message_id(public_id)
    out_of_office = mail(
        "I am out of the office until Monday.",
        message_id="ooo@example.com",
        subject="Automatic reply: Request",
        headers=f"Auto-Submitted: auto-replied\r\nIn-Reply-To: <{ours}>\r\n",
    )
    row_id = await deliver(desk, out_of_office)
    assert await count(desk, Ticket) == 1
    row = await message(desk, row_id)
    assert (row.auto_generated, row.parse_status) == ("Auto-Submitted: auto-replied", "parsed")
    assert (await desk.tickets.detail(public_id)).events[-1].action == "auto_reply_received"


async def test_unthreaded_bulk_mail_is_stored_but_opens_nothing(desk: Desk) -> None:
    row_id = await deliver(desk, mail("Newsletter", headers="Precedence: bulk\r\n"))
    assert await count(desk, Ticket) == 0
    row = await message(desk, row_id)
    assert row.ticket_id is None
    assert row.auto_generated == "Precedence: bulk"


async def test_bounce_of_our_mail_marks_the_address_undeliverable(desk: Desk) -> None:
    public_id = await opened(desk)
    ours = desk.signer.new_message_id(public_id)
    bounce = (
        "From: MAILER-DAEMON@mx.example.com\r\nTo: privacy@localhost\r\n"
        "Subject: Undelivered Mail Returned to Sender\r\nMessage-ID: <b1@mx.example.com>\r\n"
        "Auto-Submitted: auto-replied\r\nMIME-Version: 1.0\r\n"
        'Content-Type: multipart/report; report-type=delivery-status; boundary="B"\r\n\r\n'
        "--B\r\nContent-Type: text/plain\r\n\r\nDelivery failed.\r\n"
        "--B\r\nContent-Type: message/delivery-status\r\n\r\n"
        "Reporting-MTA: dns; mx.example.com\r\n\r\n"
        f"Final-Recipient: rfc822; {REQUESTER}\r\nAction: failed\r\nStatus: 5.1.1\r\n\r\n"
        "--B\r\nContent-Type: text/rfc822-headers\r\n\r\n"
        f"Message-ID: <{ours}>\r\nTo: {REQUESTER}\r\n"
        "--B--\r\n"
    ).encode()
    await deliver(desk, bounce)
    assert await count(desk, Ticket) == 1
    async with desk.db.transaction() as session:
        contact = (await session.exec(select(RequesterContact))).one()
    assert contact.undeliverable is True
    assert (await desk.tickets.detail(public_id)).events[-1].action == "bounce_received"


async def test_a_flood_from_one_sender_is_acknowledged_five_times_an_hour(
    desk: Desk, clock: FrozenClock
) -> None:
    rows = [
        await deliver(desk, mail(f"请删除 {i}", message_id=f"flood-{i}@example.com"))
        for i in range(8)
    ]
    other = await deliver(desk, mail("请删除", sender="li.si@example.com", message_id="o@e"))
    assert [(await message(desk, r)).acknowledge for r in rows] == [True] * 5 + [False] * 3
    assert (await message(desk, other)).acknowledge is True
    assert await count(desk, Ticket) == 9  # every one is still a request, answered or not
    clock.advance(dt.timedelta(minutes=61))
    later = await deliver(desk, mail("again", message_id="later@example.com"))
    assert (await message(desk, later)).acknowledge is True


async def test_automatic_mail_is_never_acknowledged(desk: Desk) -> None:
    row_id = await deliver(desk, mail("Out of office", headers="Auto-Submitted: auto-replied\r\n"))
    assert (await message(desk, row_id)).acknowledge is False


async def test_our_own_mail_coming_back_is_ignored(desk: Desk) -> None:
    ours = desk.signer.new_message_id("PRIV-2026-000001")
    looped = mail("Your request was received.", sender="privacy@localhost", message_id=ours)
    row_id = await deliver(desk, looped)
    assert await count(desk, Ticket) == 0
    assert (await message(desk, row_id)).parse_status == "ignored"


async def test_a_failed_message_never_blocks_the_ones_behind_it(desk: Desk) -> None:
    nobody = b"Subject: no sender\r\nMessage-ID: <n1@x>\r\n\r\nplease delete"
    failed_id = await deliver(desk, nobody)
    await deliver(desk, mail("请删除"))
    assert await count(desk, Ticket) == 1
    failed = await message(desk, failed_id)
    assert failed.parse_status == "failed"
    assert failed.raw == nobody  # kept raw for the DPO
    assert [m.id for m in await desk.pipeline.problems()] == [failed_id]


class FlakyClassifier:
    """Fails the first `failures` times, like a model whose file was being replaced."""

    def __init__(self, failures: int = 1) -> None:
        self.failures = failures
        self.calls = 0

    def classify(self, subject: str, text: str) -> Classification:
        self.calls += 1
        if self.calls <= self.failures:
            raise RuntimeError("model not loaded")
        return Classification(types=["erasure"], needs_review=False)  # type: ignore[list-item]


async def test_a_failure_that_does_not_repeat_is_routed_by_the_next_try(
    settings: Settings,
) -> None:
    flaky = FlakyClassifier(failures=1)
    desk = Desk.build(settings, classifier=flaky)
    try:
        row_id = await deliver(desk, mail("请删除我的数据"))
        assert (await message(desk, row_id)).parse_status == "parsed"
        assert flaky.calls == 2
        assert await count(desk, Ticket) == 1
    finally:
        await desk.close()


async def test_retry_routes_a_failed_message_again(settings: Settings) -> None:
    # Failing as often as route_attempts allows (3): parked for a person, then retried by hand.
    desk = Desk.build(settings, classifier=FlakyClassifier(failures=3))
    try:
        row_id = await deliver(desk, mail("请删除我的数据"))
        assert (await message(desk, row_id)).parse_status == "failed"
        assert await count(desk, Ticket) == 0
        assert await desk.pipeline.retry(row_id) == "opened"
        [ticket] = await desk.tickets.find()
        assert [str(t) for t in ticket.types] == ["erasure"]
        assert await desk.pipeline.retry(row_id) is None  # nothing left to retry
    finally:
        await desk.close()


async def test_message_stored_before_a_crash_is_routed_once_after_restart(
    settings: Settings,
) -> None:
    first = Desk.build(settings)
    raw = mail("请删除我的数据")
    accepted = await first.inbox.accept(Delivery(Channel.EMAIL, raw, mail_dedupe_key(raw)))
    await first.close()  # "crash": acknowledged, never routed
    second = Desk.build(settings)
    try:
        await IntakeWorker(second.pipeline, second.inbox).drain()
        assert await second.pipeline.process(accepted.message_row_id) is None
        assert await count(second, Ticket) == 1
        assert (await message(second, accepted.message_row_id)).parse_status == "parsed"
    finally:
        await second.close()


async def test_two_workers_racing_for_one_message_open_one_ticket(desk: Desk) -> None:
    raw = mail("请删除我的数据")
    accepted = await desk.inbox.accept(Delivery(Channel.EMAIL, raw, mail_dedupe_key(raw)))
    outcomes = await asyncio.gather(
        *(desk.pipeline.process(accepted.message_row_id) for _ in range(5))
    )
    assert sorted(o or "" for o in outcomes) == ["", "", "", "", "opened"]
    assert await count(desk, Ticket) == 1


def test_cli_lists_failed_messages_and_retries(database_url: str, tmp_path: Path) -> None:
    config = tmp_path / "config.toml"
    config.write_text(
        f'[database]\nurl = "{database_url}"\n[desk]\ndata_dir = "{tmp_path}"\n', "utf-8"
    )

    async def store() -> None:
        desk = Desk.build(Settings(database={"url": database_url}, desk={"data_dir": tmp_path}))
        try:
            await deliver(desk, b"Subject: no sender\r\nMessage-ID: <n1@x>\r\n\r\nhello")
        finally:
            await desk.close()

    asyncio.run(store())
    runner = CliRunner()
    listed = runner.invoke(app, ["--config", str(config), "intake", "failed", "--json"])
    assert listed.exit_code == 0, listed.stderr
    [row] = json.loads(listed.stdout)
    assert row["parse_status"] == "failed"
    assert row["parse_error"] == "ValueError: no sender address to answer"
    retried = runner.invoke(app, ["--config", str(config), "intake", "retry", str(row["id"])])
    assert retried.exit_code == 1
    assert "failed" in retried.stdout
    missing = runner.invoke(app, ["--config", str(config), "intake", "retry", "999"])
    assert missing.exit_code == 1
    assert "not waiting or failed" in missing.stderr


async def test_stored_mail_reads_back_exactly_as_the_orm_writes_it(
    desk: Desk, clock: FrozenClock
) -> None:
    # On SQLite the inbox writes its batches past the ORM (one trip to the driver's thread):
    # the values must be stored in the ORM's own formats, or comparisons and ordering break.
    row_id = await deliver(desk, mail("请删除我的个人信息。"))
    stored = await message(desk, row_id)
    assert stored.received_at == clock.now()
    assert (stored.envelope_to, stored.sender_authenticated) == ([], False)
    if desk.db.is_sqlite:  # dates are text there: the inbound row and our acknowledgement
        async with desk.db.reading() as session:
            connection = await session.connection()
            lengths = await connection.execute(
                text("SELECT DISTINCT length(received_at) FROM message")
            )
            assert len(lengths.all()) == 1


async def test_routing_waits_while_a_delivery_waits_for_its_commit(desk: Desk) -> None:
    """Clients that all wait for one slow commit send nothing: not quiet (routing would take
    the write lock before their 250s)."""
    if desk.db._sqlite_writer is None:
        pytest.skip("the in-process writer lock is SQLite's")
    raw = mail("delete my data", message_id="slow-commit@example.com")
    async with desk.db._sqlite_writer:  # the commit cannot happen yet
        accepting = asyncio.create_task(
            desk.inbox.accept(Delivery(Channel.EMAIL, raw, mail_dedupe_key(raw)))
        )
        quiet = asyncio.create_task(desk.inbox.wait_for_quiet(0.01, at_most=60))
        await asyncio.sleep(0.2)  # many times quiet_seconds
        assert not quiet.done()
    await quiet
    assert accepting.done()
    assert not accepting.result().duplicate


async def test_after_a_full_batch_routing_goes_on_without_waiting_for_quiet(
    settings: Settings, clock: FrozenClock
) -> None:
    """The sustained test of #15 (33 deliveries a second for 10 minutes): a door that is never
    quiet for 50 ms made routing wait `max_deferral` before every batch, at most a batch per
    2 s, and the backlog grew without bound. Now it waits before the first batch only, then
    goes on while batches come back full."""
    settings.mail.route_batch_size = 4
    desk = Desk.build(settings, clock)
    try:
        for i in range(10):
            raw = mail(f"delete my data {i}", sender=f"u{i}@example.com", message_id=f"s{i}@x")
            await desk.inbox.accept(Delivery(Channel.EMAIL, raw, mail_dedupe_key(raw)))
        waits: list[float] = []
        real_wait = desk.inbox.wait_for_quiet

        async def counted(quiet_seconds: float, at_most: float) -> None:
            waits.append(at_most)
            await real_wait(quiet_seconds, at_most)

        desk.inbox.wait_for_quiet = counted  # type: ignore[method-assign]
        worker = IntakeWorker(desk.pipeline, desk.inbox, max_deferral=0.2)
        assert await worker.drain() == 10
        # Before the first batch (4), none before the second (4) or third (2, short), and
        # once more before finding nothing left: not once a batch.
        assert len(waits) == 2
        assert await count(desk, Ticket) == 10
    finally:
        await desk.close()
