"""Fulfilment against a real company database (PostgreSQL and SQLite): the access export holds
exactly the requester's rows, erasure changes exactly theirs, the dry run changes nothing, a
crash between the two databases' commits applies nothing twice, manual tasks by signed link."""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import create_async_engine
from sqlmodel import col, select

from rightsdesk.audit import verify_chains
from rightsdesk.clock import FrozenClock
from rightsdesk.config import Settings
from rightsdesk.config_systems import SystemSettings
from rightsdesk.fulfilment import FulfilmentError, TaskFile
from rightsdesk.fulfilment.register import pseudonym
from rightsdesk.models import Account, Channel, Event, Message, OutboxEntry, Requester, RequestType
from rightsdesk.models_fulfilment import FulfilmentStep
from rightsdesk.service import Desk
from rightsdesk.signing import LinkExpired, LinkInvalid, load_signing_key
from rightsdesk.tickets import Contact, NewTicket, TicketError
from tests.company import (
    REQUESTER,
    USERS,
    checksum,
    company_database,
    email_of,
    example_systems,
    owned_by,
    secret_of,
    table_rows,
)

ERASURE = [RequestType.ERASURE]


@pytest.fixture
async def company(
    database_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> AsyncIterator[str]:
    kind = "sqlite" if database_url.startswith("sqlite") else "postgresql"
    async with company_database(kind, tmp_path) as url:
        monkeypatch.setenv("RIGHTSDESK_SYSTEMS__CHAT__URL", url)
        yield url


def with_systems(settings: Settings, systems: list[dict[str, Any]]) -> Settings:
    return settings.model_copy(update={"systems": [SystemSettings(**s) for s in systems]})


@pytest.fixture
async def fdesk(settings: Settings, clock: FrozenClock, company: str) -> AsyncIterator[Desk]:
    desk = Desk.build(with_systems(settings, example_systems()), clock)
    try:
        yield desk
    finally:
        await desk.close()


async def open_ticket(
    desk: Desk, user: int, types: list[RequestType], *, lang: str = "en", verify: bool = True
) -> str:
    async with desk.db.transaction() as session:
        if await session.get(Account, str(user)) is None:
            session.add(
                Account(
                    id=str(user),
                    email=email_of(user),
                    phone=f"+86138000{user}",
                    username=f"user{user}",
                )
            )
    ticket = await desk.tickets.open(
        NewTicket(
            channel=Channel.EMAIL,
            contact=Contact.email(email_of(user)),
            types=types,
            received_at=desk.clock.now(),
            language=lang,
        )
    )
    if verify:
        async with desk.db.transaction() as session:
            requester = await session.get_one(Requester, ticket.requester_id)
            requester.account_id = str(user)
            session.add(requester)
        await desk.tickets.mark_verified(ticket.public_id, "test", note="code confirmed")
    return ticket.public_id


async def events(desk: Desk, action: str) -> list[Event]:
    async with desk.db.reading() as session:
        found = await session.exec(
            select(Event).where(Event.action == action).order_by(col(Event.id))
        )
        return list(found.all())


async def outbox_texts(desk: Desk, kind: str) -> list[tuple[str, str]]:
    async with desk.db.reading() as session:
        found = await session.exec(
            select(OutboxEntry.recipient, Message.text)
            .join(Message, col(Message.id) == col(OutboxEntry.message_id))
            .where(OutboxEntry.kind == kind)
            .order_by(col(OutboxEntry.id))
        )
        return [(r, t or "") for r, t in found.all()]


async def test_access_export_holds_exactly_the_requesters_rows(fdesk: Desk, company: str) -> None:
    tid = await open_ticket(fdesk, REQUESTER, [RequestType.ACCESS])
    plan = await fdesk.fulfilment.plan(tid)
    before = await table_rows(company)
    counted = {p.name: p.rows for s in plan.systems for p in s.statements}
    mine = {t: [r for r in rows if owned_by(t, r, REQUESTER)] for t, rows in before.items()}
    assert counted == {
        "profile": 1,
        "messages": len(mine["channel_messages"]),
        "meetings": len(mine["meeting_participants"]),
        "files": len(mine["file_uploads"]),
        "logins": len(mine["login_logs"]),
        "marketing": 1,
    }
    await fdesk.fulfilment.approve(tid, plan.hash, "cli:dpo")
    export = await fdesk.fulfilment.export(tid)
    sections = export["systems"]["chat"]["sections"]
    messages = sections["messages"]
    assert messages["title"] == "Channel messages you wrote"
    assert messages["columns"] == ["Message id", "Channel", "Text", "Sent at"]
    wanted_ids = sorted(dict(r)["id"] for r in mine["channel_messages"])
    assert sorted(r["Message id"] for r in messages["rows"]) == wanted_ids
    assert {r["Text"] for r in messages["rows"]} == {
        dict(r)["body"] for r in mine["channel_messages"]
    }
    assert sections["profile"]["rows"][0]["Email"] == email_of(REQUESTER)
    assert len(sections["files"]["rows"]) == len(mine["file_uploads"])
    dumped = json.dumps(export, ensure_ascii=False)
    assert secret_of(REQUESTER) in dumped
    for other in USERS:
        if other != REQUESTER:
            assert secret_of(other) not in dumped
            assert email_of(other) not in dumped
    assert await table_rows(company) == before  # reading changed nothing
    # the recordings store is manual: the run waits for its owners
    status = (await fdesk.fulfilment.status(tid))[0]
    assert {s["system"]: s["status"] for s in status["systems"]} == {
        "chat": "done",
        "recordings": "open",
    }


async def test_erasure_changes_exactly_the_requesters_rows_and_the_dry_run_nothing(
    fdesk: Desk, company: str
) -> None:
    tid = await open_ticket(fdesk, REQUESTER, ERASURE)
    before = await table_rows(company)
    plan = await fdesk.fulfilment.plan(tid)
    assert await table_rows(company) == before, "the dry run changed the company's data"
    chat = next(s for s in plan.systems if s.name == "chat")
    mine = {t: [r for r in rows if owned_by(t, r, REQUESTER)] for t, rows in before.items()}
    assert {p.name: p.rows for p in chat.statements} == {
        "messages": len(mine["channel_messages"]),
        "meetings": len(mine["meeting_participants"]),
        "files": len(mine["file_uploads"]),
        "logins": len(mine["login_logs"]),
        "newsletter": 1,
        "profile": 1,
    }
    await fdesk.fulfilment.approve(tid, plan.hash, "cli:dpo")
    after = await table_rows(company)
    assert checksum(after, except_user=REQUESTER) == checksum(before, except_user=REQUESTER)
    alias = pseudonym(load_signing_key(fdesk.settings), str(REQUESTER))
    messages = [
        dict(r) for r in after["channel_messages"] if owned_by("channel_messages", r, REQUESTER)
    ]
    assert len(messages) == len(mine["channel_messages"])  # kept for the others' threads
    assert all(m["body"] is None and m["author_name"] == alias for m in messages)
    meetings = [
        dict(r)
        for r in after["meeting_participants"]
        if owned_by("meeting_participants", r, REQUESTER)
    ]
    assert meetings
    assert all(m["display_name"] == alias for m in meetings)
    for table in ("file_uploads", "login_logs", "newsletter_subscribers"):
        assert not [r for r in after[table] if owned_by(table, r, REQUESTER)], table
    profile = next(dict(r) for r in after["users"] if owned_by("users", r, REQUESTER))
    assert profile["phone"] is None
    assert profile["display_name"] == alias
    assert secret_of(REQUESTER) not in repr(after)
    # the audit chain holds the plan hash and each statement's rows
    approved = (await events(fdesk, "fulfilment_approved"))[0]
    assert approved.after["plan_hash"] == plan.hash
    done = (await events(fdesk, "fulfilment_system_done"))[0]
    assert done.after["rows"]["erasure.files"] == len(mine["file_uploads"])
    assert done.after["rows"]["erasure.messages"] == len(mine["channel_messages"])
    assert done.after["started_at"]
    assert done.after["finished_at"]
    assert done.after["from_ledger"] is False
    async with fdesk.db.reading() as session:
        assert (await verify_chains(session)).ok
    # approving the same plan again runs nothing again
    again = await fdesk.fulfilment.approve(tid, plan.hash, "cli:dpo")
    assert again[0]["systems"][0]["rows"] == done.after["rows"]
    assert await table_rows(company) == after


async def test_a_plan_runs_only_with_the_hash_of_the_dry_run(fdesk: Desk, company: str) -> None:
    tid = await open_ticket(fdesk, REQUESTER, ERASURE)
    before = await table_rows(company)
    plan = await fdesk.fulfilment.plan(tid)
    with pytest.raises(FulfilmentError, match="not the one approved"):
        await fdesk.fulfilment.approve(tid, "0" * 64, "cli:dpo")
    # the configuration changes after the dry run: the approved hash no longer matches
    fdesk.settings.systems[0].erasure.pop()
    with pytest.raises(FulfilmentError, match="dry-run"):
        await fdesk.fulfilment.approve(tid, plan.hash, "cli:dpo")
    assert await table_rows(company) == before


async def test_an_unverified_ticket_cannot_be_fulfilled(fdesk: Desk, company: str) -> None:
    tid = await open_ticket(fdesk, REQUESTER, ERASURE, verify=False)
    before = await table_rows(company)
    with pytest.raises(FulfilmentError, match="not verified"):
        await fdesk.fulfilment.plan(tid)
    with pytest.raises(FulfilmentError, match="not verified"):
        await fdesk.fulfilment.approve(tid, "0" * 64, "cli:dpo")
    assert await table_rows(company) == before


async def test_a_crash_after_the_company_commit_applies_nothing_twice(
    settings: Settings, clock: FrozenClock, company: str
) -> None:
    """The window between the two commits, exactly: the company's transaction committed
    (ledger row and all), ours never did. The next run records, it does not re-run."""
    systems = example_systems()
    systems[0]["erasure"].append(
        {
            "name": "counter",
            "sql": "UPDATE users SET erasure_count = erasure_count + 1 "
            "WHERE id = CAST(:account_id AS BIGINT)",
        }
    )
    desk = Desk.build(with_systems(settings, systems), clock)
    try:
        tid = await open_ticket(desk, REQUESTER, ERASURE)
        plan = await desk.fulfilment.plan(tid)
        service = desk.fulfilment
        # approve's bookkeeping, then the company side of the step as a runner did it before
        # it died: committed there, nothing recorded here.
        real_resume = service.resume

        async def dies_before_recording(run_id: int, *, take_over: bool) -> None:
            async with desk.db.reading() as session:
                step = (
                    await session.exec(
                        select(FulfilmentStep)
                        .where(FulfilmentStep.run_id == run_id)
                        .where(FulfilmentStep.system == "chat")
                    )
                ).one()
            claimed = await service.steps.claim(step.id or 0, take_over=True)
            assert claimed is not None
            _, identity = await service.subject(tid)
            system = desk.settings.system("chat")
            changes = [(a, s) for a, s in system.statements(("erasure",))]
            await service.steps.apply(system, f"{tid}/{run_id}/chat", changes, identity)

        service.resume = dies_before_recording  # type: ignore[method-assign]
        await service.approve(tid, plan.hash, "cli:dpo")
        service.resume = real_resume  # type: ignore[method-assign]
        status = await service.status(tid)
        assert status[0]["systems"][0]["status"] == "running"
        await service.approve(tid, plan.hash, "cli:dpo")  # the DPO runs it again
        status = await service.status(tid)
        assert status[0]["systems"][0]["status"] == "done"
        assert status[0]["systems"][0]["rows"]["erasure.counter"] == 1
        after = await table_rows(company)
        profile = next(dict(r) for r in after["users"] if owned_by("users", r, REQUESTER))
        assert profile["erasure_count"] == 1  # applied once
        done = (await events(desk, "fulfilment_system_done"))[0]
        assert done.after["from_ledger"] is True
        async with desk.db.reading() as session:
            assert (await verify_chains(session)).ok
    finally:
        await desk.close()


async def test_a_failed_system_is_retried_with_back_off_and_shown_until_it_succeeds(
    settings: Settings, clock: FrozenClock, company: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    systems = [s for s in example_systems() if s["kind"] == "sql"]
    desk = Desk.build(with_systems(settings, systems), clock)
    try:
        tid = await open_ticket(desk, REQUESTER, [RequestType.WITHDRAW_CONSENT])
        plan = await desk.fulfilment.plan(tid)
        # the company's database goes away between the dry run and the approval
        monkeypatch.setenv(
            "RIGHTSDESK_SYSTEMS__CHAT__URL", "postgresql+asyncpg://nobody@127.0.0.1:1/x"
        )
        await desk.fulfilment.register.dispose()
        runs = await desk.fulfilment.approve(tid, plan.hash, "cli:dpo")
        chat = runs[0]["systems"][0]
        assert chat["status"] == "failed"
        assert chat["attempts"] == 1
        assert chat["last_error"]
        with pytest.raises(TicketError, match="not finished in chat"):
            await desk.tickets.resolve(tid, "cli:dpo", "done")
        assert await desk.fulfilment.retry_due() == []  # not before its back-off
        clock.advance(dt.timedelta(minutes=1, seconds=1))
        assert await desk.fulfilment.retry_due() == [f"{tid}/chat"]
        chat = (await desk.fulfilment.status(tid))[0]["systems"][0]
        assert chat["status"] == "failed"
        assert chat["attempts"] == 2
        assert chat["next_attempt_at"] == (clock.now() + dt.timedelta(minutes=2)).isoformat()
        monkeypatch.setenv("RIGHTSDESK_SYSTEMS__CHAT__URL", company)
        await desk.fulfilment.register.dispose()
        clock.advance(dt.timedelta(minutes=2, seconds=1))
        assert await desk.fulfilment.retry_due() == [f"{tid}/chat"]
        chat = (await desk.fulfilment.status(tid))[0]["systems"][0]
        assert chat["status"] == "done"
        assert chat["rows"] == {"withdraw_consent.marketing": 1, "withdraw_consent.research": 1}
        assert len(await events(desk, "fulfilment_system_failed")) == 2
        await desk.tickets.resolve(tid, "cli:dpo", "done")
        told = await outbox_texts(desk, "fulfilled")
        assert told
        assert "chat and meetings service" in told[0][1]
    finally:
        await desk.close()


async def test_a_traditional_chinese_ticket_is_told_what_was_done_in_traditional_chinese(
    settings: Settings, clock: FrozenClock, company: str
) -> None:
    """The ticket's language (zh-Hant too) picks the `fulfilled` notice; the actions are named
    by names.zh-Hant.j2 and the systems by their zh-Hant display names."""
    systems = [s for s in example_systems() if s["kind"] == "sql"]
    desk = Desk.build(with_systems(settings, systems), clock)
    try:
        tid = await open_ticket(desk, REQUESTER, ERASURE, lang="zh-Hant")
        plan = await desk.fulfilment.plan(tid)
        await desk.fulfilment.approve(tid, plan.hash, "cli:dpo")
        told = await outbox_texts(desk, "fulfilled")
        assert [to for to, _ in told] == [email_of(REQUESTER)]
        text = told[0][1]
        assert "刪除您的個人資料" in text
        assert "聊天與會議服務" in text
        assert "個人資料保護團隊" in text  # the sign-off, in the same script
        for simplified in ("删除", "个人", "会议", "请"):
            assert simplified not in text, simplified
    finally:
        await desk.close()


async def test_a_manual_task_is_done_through_its_signed_link(
    fdesk: Desk, clock: FrozenClock
) -> None:
    tid = await open_ticket(fdesk, REQUESTER, [RequestType.ACCOUNT_DELETION], lang="zh")
    plan = await fdesk.fulfilment.plan(tid)
    await fdesk.fulfilment.approve(tid, plan.hash, "cli:dpo")
    mails = await outbox_texts(fdesk, "fulfilment_task")
    assert [to for to, _ in mails] == ["media-team@example.com"]
    body = mails[0][1]
    assert "会议录像存储" in body
    assert "meeting recordings store" in body
    token = body.split("--token ", 1)[1].split()[0]
    with pytest.raises(TicketError, match="not finished in recordings"):
        await fdesk.tickets.resolve(tid, "cli:dpo", "done")
    forged = token[:-1] + ("0" if token[-1] != "0" else "1")
    with pytest.raises(LinkInvalid, match="not valid"):
        await fdesk.fulfilment.tasks.verify_link(forged)
    other_step = token.replace(token.split("-", 1)[0], "999", 1)
    with pytest.raises(LinkInvalid):
        await fdesk.fulfilment.tasks.verify_link(other_step)
    view = await fdesk.fulfilment.tasks.verify_link(token)
    assert view.ticket == tid
    assert view.system == "recordings"
    assert view.status == "open"
    later = FrozenClock(clock.now() + dt.timedelta(days=31))
    fdesk.fulfilment.tasks.clock = later
    with pytest.raises(LinkExpired):
        await fdesk.fulfilment.tasks.verify_link(token)
    with pytest.raises(LinkExpired):
        await fdesk.fulfilment.complete_task_by_link(token, "nothing", "no recordings")
    fdesk.fulfilment.tasks.clock = clock
    pdf = TaskFile("recordings.pdf", "application/pdf", b"%PDF-1.4 list of recordings")
    await fdesk.fulfilment.complete_task_by_link(token, "file", "3 recordings deleted", pdf)
    with pytest.raises(LinkInvalid, match="already been answered"):
        await fdesk.fulfilment.tasks.verify_link(token)
    status = (await fdesk.fulfilment.status(tid))[0]
    assert status["status"] == "done"
    assert status["requester_told"]
    recordings = next(s for s in status["systems"] if s["system"] == "recordings")
    assert recordings["outcome"] == "file"
    assert recordings["file"] == "recordings.pdf"
    assert recordings["done_by"] == "owner:recordings"
    assert await fdesk.fulfilment.file_of(tid, "recordings") == ("recordings.pdf", pdf.content)
    told = await outbox_texts(fdesk, "fulfilled")
    assert [to for to, _ in told] == [email_of(REQUESTER)]
    assert "聊天与会议服务" in told[0][1]
    assert "会议录像存储" in told[0][1]
    assert "meeting recordings store" not in told[0][1]  # in the requester's language only
    await fdesk.tickets.resolve(tid, "cli:dpo", "done")


async def test_open_tasks_block_resolving_unless_the_dpo_overrides_with_a_reason(
    fdesk: Desk,
) -> None:
    tid = await open_ticket(fdesk, REQUESTER, [RequestType.RESTRICTION])
    plan = await fdesk.fulfilment.plan(tid)
    await fdesk.fulfilment.approve(tid, plan.hash, "cli:dpo")
    with pytest.raises(TicketError, match="not finished in recordings"):
        await fdesk.tickets.resolve(tid, "cli:dpo", "done")
    with pytest.raises(FulfilmentError, match="reason"):
        await fdesk.fulfilment.override(tid, " ", "cli:dpo")
    await fdesk.fulfilment.override(
        tid, "media team on leave; restriction noted on paper", "cli:dpo"
    )
    overridden = (await events(fdesk, "fulfilment_overridden"))[0]
    assert overridden.after["systems"] == ["recordings"]
    assert "on leave" in overridden.after["reason"]
    resolved = await fdesk.tickets.resolve(tid, "cli:dpo", "done")
    assert resolved.status == "resolved"
    told = await outbox_texts(fdesk, "fulfilled")
    assert "chat and meetings service" in told[0][1]
    assert "meeting recordings store" not in told[0][1]  # overridden is not done


async def test_systems_check_finds_each_problem_in_one_line(
    settings: Settings, clock: FrozenClock, company: str
) -> None:
    systems = example_systems()
    good = Desk.build(with_systems(settings, systems), clock)
    try:
        assert await good.fulfilment.register.check() == []
    finally:
        await good.close()
    systems[0]["access"][1]["sql"] = (
        "SELECT id FROM channel_mesages WHERE author_id = CAST(:account_id AS BIGINT)"
    )
    systems[0]["access"][2]["columns"]["nickname"] = "Nickname"
    systems[1]["owner_emails"] = []
    systems.append(
        {
            "name": "billing",
            "kind": "sql",
            "erasure": [{"name": "x", "sql": "DELETE FROM invoices WHERE user_id = :account_id"}],
        }
    )
    bad = Desk.build(with_systems(settings, systems), clock)
    try:
        problems = await bad.fulfilment.register.check()
    finally:
        await bad.close()
    assert len(problems) == 4, problems
    assert problems[0].startswith("systems[chat].access[messages]: ")
    assert "channel_mesages" in problems[0]
    assert problems[1].startswith("systems[chat].access[meetings]: columns names nickname")
    assert problems[2] == "systems[recordings]: a manual system needs owner_emails"
    assert "RIGHTSDESK_SYSTEMS__BILLING__URL" in problems[3]
    assert all("\n" not in p for p in problems)
    async with create_async_engine(company).connect() as conn:  # nothing was left behind
        assert (await conn.execute(text("SELECT COUNT(*) FROM users"))).scalar_one() == len(USERS)


async def test_owners_are_reminded_on_working_days_and_the_digest_shows_open_tasks(
    fdesk: Desk, clock: FrozenClock
) -> None:
    from scheduler.digest import build_digest, render_digest
    from scheduler.jobs import run_due_jobs, send_task_reminders

    tid = await open_ticket(fdesk, REQUESTER, [RequestType.RESTRICTION])
    plan = await fdesk.fulfilment.plan(tid)
    await fdesk.fulfilment.approve(tid, plan.hash, "cli:dpo")
    assert await send_task_reminders(fdesk) == []  # opened today: the first mail is enough
    calendar = fdesk.policy.calendar
    day = clock.now().astimezone(fdesk.policy.tz).date()
    while True:
        day += dt.timedelta(days=1)
        if not calendar.is_working_day(day)[0]:
            break
    clock.set(dt.datetime.combine(day, dt.time(10, 0), fdesk.policy.tz))
    assert await send_task_reminders(fdesk) == []  # not on a day off
    while not calendar.is_working_day(day)[0]:
        day += dt.timedelta(days=1)
    clock.set(dt.datetime.combine(day, dt.time(10, 0), fdesk.policy.tz))
    assert await send_task_reminders(fdesk) == [f"{tid}/recordings"]
    assert await send_task_reminders(fdesk) == []  # once a day
    reminders = await outbox_texts(fdesk, "fulfilment_task_reminder")
    assert [to for to, _ in reminders] == ["media-team@example.com"]
    assert "still open" in reminders[0][1]
    assert "仍未完成" in reminders[0][1]
    digest = await build_digest(fdesk, day)
    assert digest.counts["fulfilment"] == 1
    assert [line.ticket_id for line in digest.sections["fulfilment"]] == [tid]
    assert (
        "Fulfilment: tasks open or systems failed (1)"
        in render_digest(digest, fdesk.outbox.templates)[1]
    )
    results = await run_due_jobs(fdesk)
    assert results["fulfilment_retry"] == []
    assert results["fulfilment_reminders"] == []


async def test_retention_empties_the_export_of_a_closed_ticket(
    fdesk: Desk, clock: FrozenClock
) -> None:
    from scheduler.jobs import purge_closed

    tid = await open_ticket(fdesk, REQUESTER, [RequestType.ACCESS])
    async with fdesk.db.transaction() as session:  # the request as it came in, kept on the ticket
        ticket = await fdesk.tickets.load_in(session, tid)
        session.add(Message(ticket_id=ticket.id, direction="in", channel="email", text="copy"))
    plan = await fdesk.fulfilment.plan(tid)
    await fdesk.fulfilment.approve(tid, plan.hash, "cli:dpo")
    pdf = TaskFile("r.pdf", "application/pdf", b"%PDF recordings")
    await fdesk.fulfilment.complete_task(tid, "recordings", "file", "", pdf, "cli:dpo")
    assert (await fdesk.fulfilment.export(tid))["systems"]["chat"]["sections"]
    await fdesk.tickets.resolve(tid, "cli:dpo", "copy sent")
    await fdesk.tickets.close(tid, "cli:dpo")
    clock.advance(dt.timedelta(days=fdesk.settings.scheduler.retention_days + 1))
    assert await purge_closed(fdesk, dry_run=False) == [tid]
    assert (await fdesk.fulfilment.export(tid))["systems"] == {}
    assert await fdesk.fulfilment.file_of(tid, "recordings") is None
