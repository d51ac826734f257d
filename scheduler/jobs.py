"""The timed work. Each job is a plain async function of the desk, safe to call at any moment
and as often as wanted: what is due now is done once, recorded in `sentnotice` in the same
transaction as its mail. Tests call these directly with a moved clock.
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from functools import partial
from typing import TYPE_CHECKING

from sqlalchemy import select as sa_select
from sqlalchemy.exc import IntegrityError
from sqlmodel import col, func, select, update
from sqlmodel.ext.asyncio.session import AsyncSession
from sqlmodel.sql.expression import SelectOfScalar

from rightsdesk.models import (
    ACTIVE_STATUSES,
    Message,
    SentNotice,
    StoredAttachment,
    Ticket,
    TicketStatus,
    TicketType,
)
from rightsdesk.models_fulfilment import FulfilmentRun, FulfilmentStep, Package
from rightsdesk.tickets import TicketError
from scheduler.digest import DIGEST_LANGS, build_digest, render_digest

if TYPE_CHECKING:
    from rightsdesk.service import Desk

log = logging.getLogger("rightsdesk.scheduler")


Writer = Callable[[AsyncSession], Awaitable[None]]


async def _once(desk: Desk, kind: str, key: str, ticket_id: int | None, write: Writer) -> bool:
    """Run `write` and record (kind, key) in one transaction, unless it was done before.
    Two replicas racing for the same notice: one commits, the other's insert fails."""
    try:
        async with desk.db.transaction() as session:
            if await _sent(session, kind, key):
                return False
            notice = SentNotice(
                kind=kind, key=key, ticket_id=ticket_id, created_at=desk.clock.now()
            )
            session.add(notice)
            await session.flush()
            await write(session)
        return True
    except IntegrityError:
        return False


async def _sent(session: AsyncSession, kind: str, key: str) -> bool:
    found = await session.exec(
        select(SentNotice.id).where(SentNotice.kind == kind).where(SentNotice.key == key)
    )
    return found.first() is not None


def _is_working_day(desk: Desk, day: dt.date) -> bool:
    return desk.policy.calendar.is_working_day(day)[0]


# ---- the DPO's digest -------------------------------------------------------------------------


async def send_digest(desk: Desk) -> bool:
    """On a working day, from `digest_time` on: today's digest, once. A service that was down
    at 09:00 sends it when it comes back."""
    now_local = desk.clock.now().astimezone(desk.policy.tz)
    today = now_local.date()
    if not _is_working_day(desk, today) or now_local.time() < desk.settings.scheduler.digest_time:
        return False
    # Sent already (every tick after digest_time asks): the digest is not built again for
    # nothing (at a large desk that is seconds of queries, on every tick of the day).
    async with desk.db.reading() as session:
        if await _sent(session, "digest", today.isoformat()):
            return False
    digest = await build_digest(desk, today)
    subject, text, html = render_digest(digest, desk.outbox.templates)
    recipients = list(desk.settings.desk.dpo_emails)
    write = partial(
        desk.outbox.enqueue_internal_to_all,
        recipients=recipients,
        kind="digest",
        subject=subject,
        text=text,
        html=html,
    )
    return await _once(desk, "digest", today.isoformat(), None, write)


# ---- reminders and escalations ------------------------------------------------------------------


@dataclass(frozen=True)
class DueTicket:
    """The few columns a deadline notice needs (the scan must not build whole tickets)."""

    id: int
    public_id: str
    status: str
    assignee: str | None


@dataclass(frozen=True)
class DueNotice:
    ticket: DueTicket
    kind: str  # reminder | escalation
    deadline: str  # response | completion
    due: dt.date
    working_days_left: int  # negative when overdue


async def due_notices(desk: Desk, today: dt.date) -> list[DueNotice]:
    """What today owes: reminders N working days before each due date, and escalations every
    working day while a ticket is overdue. Computed from ticket state, so a ticket resolved a
    minute ago is owed nothing."""
    reminder_days = set(desk.settings.scheduler.reminder_working_days)
    calendar = desk.policy.calendar
    # The due dates that are exactly N working days away: an indexed IN, not a scan.
    targets = {today} | {calendar.add_working_days(today, n)[0] for n in reminder_days if n}
    active = col(Ticket.status).in_([str(s) for s in ACTIVE_STATUSES])
    async with desk.db.reading() as session:
        connection = await session.connection()
        rows = (
            await connection.execute(
                sa_select(  # six columns: more than sqlmodel's typed select takes
                    col(Ticket.id),
                    col(Ticket.public_id),
                    col(Ticket.status),
                    col(Ticket.assignee),
                    col(Ticket.response_due),
                    col(Ticket.completion_due),
                ).where(
                    active
                    & (
                        col(Ticket.response_due).in_(targets)
                        | (col(Ticket.response_due) < today)
                        | col(Ticket.completion_due).in_(targets)
                        | (col(Ticket.completion_due) < today)
                    )
                )
            )
        ).all()
    notices: list[DueNotice] = []
    for ticket_id, public_id, status, assignee, response_due, completion_due in rows:
        ticket = DueTicket(ticket_id or 0, public_id, status, assignee)
        for deadline, due in (("response", response_due), ("completion", completion_due)):
            if due is None:
                continue
            left = calendar.working_days_left(today, due)
            if left < 0:
                notices.append(DueNotice(ticket, "escalation", deadline, due, left))
            elif left in reminder_days:
                notices.append(DueNotice(ticket, "reminder", deadline, due, left))
    return notices


async def send_deadline_notices(desk: Desk) -> list[str]:
    """Reminders to the assignee (else the DPO), escalations to the DPO and the escalation
    addresses. Only on working days. Returns the keys of what was sent."""
    today = desk.clock.now().astimezone(desk.policy.tz).date()
    if not _is_working_day(desk, today):
        return []
    sent: list[str] = []
    for notice in await due_notices(desk, today):
        ticket = notice.ticket
        if notice.kind == "reminder":
            key = f"{ticket.public_id}:{notice.deadline}:{notice.due}:{notice.working_days_left}"
            assignee = [ticket.assignee] if ticket.assignee and "@" in ticket.assignee else []
            recipients = assignee or list(desk.settings.desk.dpo_emails)
        else:
            key = f"{ticket.public_id}:{notice.deadline}:{today}"
            scheduler = desk.settings.scheduler
            recipients = [*desk.settings.desk.dpo_emails, *scheduler.escalation_emails]
        subject, text = _deadline_mail(notice)
        write = partial(
            desk.outbox.enqueue_internal_to_all,
            recipients=recipients,
            kind=notice.kind,
            subject=subject,
            text=text,
            ticket_id=ticket.id,
        )
        if await _once(desk, notice.kind, key, ticket.id, write):
            sent.append(key)
    return sent


def _deadline_mail(notice: DueNotice) -> tuple[str, str]:
    t = notice.ticket
    what_zh = "答复期限" if notice.deadline == "response" else "完成删除期限"
    what_en = "answer" if notice.deadline == "response" else "completion (deletion)"
    if notice.kind == "escalation":
        late = -notice.working_days_left
        subject = f"[{t.public_id}] 已逾期 / OVERDUE: {what_en} was due {notice.due}"
        text = (
            f"{t.public_id} 的{what_zh}为 {notice.due}，已逾期 {late} 个工作日。"
            f"状态：{t.status}。\n"
            f"The {what_en} of {t.public_id} was due {notice.due}: {late} working day(s) late. "
            f"Status: {t.status}. Assignee: {t.assignee or '-'}.\n"
        )
    else:
        left = notice.working_days_left
        when_zh = "今天到期" if left == 0 else f"还剩 {left} 个工作日"
        when_en = "due today" if left == 0 else f"{left} working day(s) left"
        subject = f"[{t.public_id}] 提醒 / Reminder: {what_en} {when_en} ({notice.due})"
        text = (
            f"{t.public_id} 的{what_zh}为 {notice.due}，{when_zh}。状态：{t.status}。\n"
            f"The {what_en} of {t.public_id} is due {notice.due}: {when_en}. "
            f"Status: {t.status}. Assignee: {t.assignee or '-'}.\n"
        )
    return subject, text


async def send_unassigned_alerts(desk: Desk) -> list[str]:
    """Tickets nobody owns: each on its first working day, then every N working days, all
    that are due in one tick in one mail (with the count): a flood of N tickets is one mail,
    not N. Each ticket's (kind, key) is recorded in the mail's transaction. Returns the keys."""
    today = desk.clock.now().astimezone(desk.policy.tz).date()
    if not _is_working_day(desk, today):
        return []
    every = desk.settings.scheduler.unassigned_every_working_days
    async with desk.db.reading() as session:
        tickets = (
            await session.exec(
                select(Ticket)
                .where(col(Ticket.assignee).is_(None))
                .where(col(Ticket.status).in_([str(s) for s in ACTIVE_STATUSES]))
                .order_by(col(Ticket.id))
            )
        ).all()
    due: list[tuple[Ticket, int]] = []
    for ticket in tickets:
        received = ticket.received_at.astimezone(desk.policy.tz).date()
        age = desk.policy.calendar.working_days_between(received, today)
        if age >= 1 and (age - 1) % every == 0:
            due.append((ticket, age))
    if not due:
        return []
    keys = {f"{ticket.public_id}:{today}": (ticket, age) for ticket, age in due}
    try:
        async with desk.db.transaction() as session:
            done = set(
                (
                    await session.exec(
                        select(SentNotice.key)
                        .where(SentNotice.kind == "unassigned")
                        .where(col(SentNotice.key).in_(list(keys)))
                    )
                ).all()
            )
            fresh = [(key, *keys[key]) for key in keys if key not in done]
            if not fresh:
                return []
            for key, ticket, _ in fresh:
                session.add(
                    SentNotice(
                        kind="unassigned", key=key, ticket_id=ticket.id,
                        created_at=desk.clock.now(),
                    )
                )  # fmt: skip
            await session.flush()  # a replica that got there first: IntegrityError, below
            subject, text = _unassigned_mail(desk, [(t, age) for _, t, age in fresh])
            await desk.outbox.enqueue_internal_to_all(
                session,
                recipients=list(desk.settings.desk.dpo_emails),
                kind="unassigned",
                subject=subject,
                text=text,
            )
    except IntegrityError:
        return []
    return [key for key, _, _ in fresh]


def _unassigned_mail(desk: Desk, due: list[tuple[Ticket, int]]) -> tuple[str, str]:
    """(subject, text) in the digest's languages (unassigned.<lang>.j2): the headings in
    each, the lines once, in the last, as the digest does."""
    templates = desk.outbox.templates
    count = len(due)

    def each(what: str) -> str:
        return " / ".join(
            templates.phrase("unassigned", what, lang, count=count) for lang in DIGEST_LANGS
        )

    lines = [
        templates.phrase(
            "unassigned", "line", DIGEST_LANGS[-1], ticket_id=ticket.public_id, age=age,
            due=ticket.response_due or "-",
        )
        for ticket, age in due
    ]  # fmt: skip
    text = "\n".join([each("intro"), "", *(f"  {line}" for line in lines)]) + "\n"
    return each("subject"), text


# ---- retention -----------------------------------------------------------------------------


async def purge_closed(desk: Desk, *, dry_run: bool) -> list[str]:
    """Delete the raw mail, texts and attachments of tickets closed longer than the retention
    period; the ticket, its deadlines and its audit trail stay (the desk holds personal data
    too, and keeps no more of it than it must)."""
    days = desk.settings.scheduler.retention_days
    if days == 0:
        return []
    before = desk.clock.now() - dt.timedelta(days=days)
    async with desk.db.reading() as session:
        found = await session.exec(
            select(Ticket.id, Ticket.public_id)
            .where(Ticket.status == TicketStatus.CLOSED)
            .where(col(Ticket.closed_at) <= before)
            .where(
                select(Message.id)
                .where(Message.ticket_id == Ticket.id)
                .where(col(Message.raw).is_not(None) | col(Message.text).is_not(None))
                .exists()
            )
            .order_by(col(Ticket.id))
        )
        candidates = list(found.all())
    if dry_run:
        return [public_id for _, public_id in candidates]
    for ticket_id, public_id in candidates:
        async with desk.db.transaction() as session:
            await _empty(session, select(Message.id).where(Message.ticket_id == ticket_id))
            # The access export and the owners' files of its fulfilment are personal data too.
            await session.exec(
                update(FulfilmentStep)
                .where(col(FulfilmentStep.ticket_id) == ticket_id)
                .values(export=None, file_content=None)
            )
            # And any package not yet ended (a draft never delivered): its key goes.
            await session.exec(
                update(Package)
                .where(col(Package.ticket_id) == ticket_id)
                .values(wrapped_key=None, token_hash=None)
            )
            ticket = await desk.tickets.load_in(session, public_id, lock=True)
            await desk.tickets.note_in(
                session, ticket, "system:retention", "purged", {"days": days}
            )
    if candidates:
        log.info("retention: purged the messages of %d ticket(s)", len(candidates))
    return [public_id for _, public_id in candidates]


async def purge_unattached(desk: Desk, *, dry_run: bool) -> int:
    """The same for messages that belong to no ticket, once handled and past the retention
    period: chat small talk, product questions the bot pointed elsewhere, stray bounces.
    Returns how many."""
    days = desk.settings.scheduler.retention_days
    if days == 0:
        return 0
    before = desk.clock.now() - dt.timedelta(days=days)
    old = (
        select(Message.id)
        .where(col(Message.ticket_id).is_(None))
        .where(col(Message.processed_at).is_not(None))  # never what still waits to be routed
        .where(col(Message.received_at) <= before)
        .where(col(Message.raw).is_not(None) | col(Message.text).is_not(None))
    )
    async with desk.db.reading() as session:
        count = (await session.exec(select(func.count()).select_from(old.subquery()))).one()
    if dry_run or not count:
        return count
    async with desk.db.transaction() as session:
        await _empty(session, old)
    log.info("retention: purged %d message(s) that belong to no ticket", count)
    return count


async def _empty(
    session: AsyncSession, messages: SelectOfScalar[int] | SelectOfScalar[None]
) -> None:
    """What retention deletes of these messages: raw bytes, texts, attachments' contents."""
    await session.exec(
        update(StoredAttachment)
        .where(col(StoredAttachment.message_id).in_(messages))
        .values(content=None)
    )
    await session.exec(
        update(Message)
        .where(col(Message.id).in_(messages))
        .values(raw=None, text=None, new_text=None, details={})
    )


async def close_finished(desk: Desk) -> list[str]:
    """Resolved, denied, cancelled or dismissed tickets are closed after the grace period."""
    before = desk.clock.now() - dt.timedelta(days=desk.settings.desk.close_after_days)
    async with desk.db.reading() as session:
        found = await session.exec(
            select(Ticket.public_id)
            .where(col(Ticket.status).in_(["resolved", "denied", "cancelled", "dismissed"]))
            .where(col(Ticket.finished_at) <= before)
        )
        due = list(found.all())
    for public_id in due:
        await desk.tickets.close(public_id, "system:scheduler")
    return due


# ---- fulfilment ------------------------------------------------------------------------------


async def retry_fulfilment(desk: Desk) -> list[str]:
    """Failed systems whose back-off has passed, and steps a dead runner left behind."""
    return await desk.fulfilment.retry_due()


async def send_task_reminders(desk: Desk) -> list[str]:
    """A manual task still open: its owners are reminded on every working day after the day
    it was opened, once a day (with a fresh link). Returns "ticket/system" of each."""
    now_local = desk.clock.now().astimezone(desk.policy.tz)
    today = now_local.date()
    if not _is_working_day(desk, today):
        return []
    async with desk.db.reading() as session:
        connection = await session.connection()
        found = await connection.execute(
            sa_select(  # five columns: more than sqlmodel's typed select takes
                col(FulfilmentStep.id),
                col(FulfilmentStep.started_at),
                col(FulfilmentStep.system),
                col(Ticket.id),
                col(Ticket.public_id),
            )
            .join(Ticket, col(Ticket.id) == col(FulfilmentStep.ticket_id))
            .where(col(FulfilmentStep.status) == "open")
            .where(col(FulfilmentStep.kind) == "manual")
        )
        open_tasks = found.all()
    sent = []
    for step_id, started_at, system, ticket_id, public_id in open_tasks:
        if step_id is None or started_at is None:
            continue
        if started_at.astimezone(desk.policy.tz).date() >= today:
            continue  # opened today: the first mail is enough
        write = partial(desk.fulfilment.tasks.remind_in, step_id=step_id)
        if await _once(desk, "fulfilment_task_reminder", f"{step_id}:{today}", ticket_id, write):
            sent.append(f"{public_id}/{system}")
    return sent


async def deliver_fulfilled_access(desk: Desk) -> list[str]:
    """An access or portability ticket whose approved run is done in every system (its
    requester told so, "the copy will reach you through a separate, secure link") gets that
    link: the fulfilment export packaged and delivered through the portal, once. A ticket
    whose package went out already (the DPO delivered one) is left alone; without a portal or
    a package key nothing is delivered, and the DPO's `tickets deliver` says why."""
    if not desk.settings.portal.base_url.startswith(("https://", "http://")):
        return []
    async with desk.db.reading() as session:
        ready = (
            await session.exec(
                select(Ticket.public_id)
                .join(FulfilmentRun, col(FulfilmentRun.ticket_id) == col(Ticket.id))
                .where(FulfilmentRun.status == "done")
                .where(col(FulfilmentRun.notified_at).is_not(None))
                .where(col(Ticket.status).in_(list(ACTIVE_STATUSES)))
                .where(
                    col(Ticket.id).in_(
                        select(TicketType.ticket_id).where(
                            col(TicketType.type).in_(["access", "portability"])
                        )
                    )
                )
                # A draft (an owner's upload sealed into it) is delivered with the rest.
                .where(
                    col(Ticket.id).not_in(
                        select(Package.ticket_id).where(Package.status != "draft")
                    )
                )
                .distinct()
            )
        ).all()
    delivered = []
    for public_id in ready:
        try:
            await desk.packages.deliver(public_id, "system:fulfilment")
        except TicketError as exc:  # PackageError: no key, no registered address, ...
            # The reason's class only: its text may name an address. `tickets deliver` says it.
            log.warning("%s: the copy was not delivered (%s)", public_id, type(exc).__name__)
            continue
        delivered.append(public_id)
    return delivered


async def run_due_jobs(desk: Desk) -> dict[str, object]:
    """One tick: everything that is due now. Each job's failure is logged, not fatal."""
    results: dict[str, object] = {}
    jobs: dict[str, Callable[[], Awaitable[object]]] = {
        "digest": lambda: send_digest(desk),
        "deadlines": lambda: send_deadline_notices(desk),
        "unassigned": lambda: send_unassigned_alerts(desk),
        # Before verification's auto-close: a withdrawal the requester asked for wins.
        "withdrawals": desk.withdrawals.finalize_due,
        "verification": desk.verifier.follow_up,
        "close": lambda: close_finished(desk),
        "retention": lambda: purge_closed(desk, dry_run=False),
        "retention_unattached": lambda: purge_unattached(desk, dry_run=False),
        "fulfilment_retry": lambda: retry_fulfilment(desk),
        "fulfilment_reminders": lambda: send_task_reminders(desk),
        # Delivered links past their expiry lose their files; unconfirmed forms what they said.
        "packages": desk.packages.expire_due,
        "access_packages": lambda: deliver_fulfilled_access(desk),
        "portal_codes": desk.webforms.purge,
    }
    for name, job in jobs.items():
        try:
            results[name] = await job()
        except Exception as exc:
            log.error("job %s failed: %s", name, type(exc).__name__)
            results[name] = exc
    return results
