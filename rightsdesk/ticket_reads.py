"""Reading tickets: a ticket with everything about it, filtered lists in the order work is owed,
and counts. No transaction here changes anything; `TicketService` (rightsdesk.tickets) is
these reads plus the rules that change tickets."""

from __future__ import annotations

import dataclasses
import datetime as dt
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeVar

from sqlalchemy import Integer, and_, any_, bindparam, case, true
from sqlalchemy.dialects import postgresql
from sqlalchemy.orm import defer, joinedload
from sqlmodel import col, func, or_, select
from sqlmodel.ext.asyncio.session import AsyncSession

from rightsdesk.clock import Clock
from rightsdesk.db import Database
from rightsdesk.deadlines import DeadlinePolicy
from rightsdesk.models import (
    ACTIVE_STATUSES,
    Account,
    Channel,
    Event,
    Message,
    Requester,
    RequestType,
    StoredAttachment,
    Ticket,
    TicketStatus,
    TicketType,
    VerificationChallenge,
)
from rightsdesk.ticket_errors import TicketNotFound
from rightsdesk.ticket_rows import TicketRow, row_select, ticket_row

R = TypeVar("R")


@dataclass(frozen=True)
class TicketFilter:
    statuses: Sequence[TicketStatus] = ()
    types: Sequence[RequestType] = ()
    due_before: dt.date | None = None
    overdue: bool = False
    assignee: str | None = None
    needs_review: bool | None = None  # True: the triage queue (active tickets only)
    unread: bool | None = None  # True: the requester wrote since a person last acted
    limit: int | None = None
    # The console's queues and filters.
    offset: int = 0
    due_from: dt.date | None = None  # response due on or after
    unassigned: bool = False
    channels: Sequence[Channel] = ()
    received_from: dt.date | None = None  # desk-local days, inclusive
    received_to: dt.date | None = None
    active_first: bool = False  # work still owed before finished tickets
    ids: Sequence[int] | None = None  # only these tickets (a search's hits); () is none


@dataclass
class TicketDetail:
    ticket: Ticket
    requester: Requester
    # Without their raw bytes (deferred, never loaded here): `raw_size` says how big.
    messages: list[Message] = field(default_factory=list)
    events: list[Event] = field(default_factory=list)
    # The account the requester proved they hold, else the one a code was sent to (matched,
    # not yet proven), else None. `account_verified`: this ticket's requester proved it.
    account: Account | None = None
    account_verified: bool = False
    # The files of each message (by message id): received, and sent with replies.
    attachments: dict[int, list[StoredAttachment]] = field(default_factory=dict)
    # The ids of those whose content was not kept (over `mail.max_attachment_bytes`, or
    # emptied by retention): only name, type, size and hash are left, and every view says so.
    not_kept: frozenset[int] = frozenset()


class TicketReads:
    """The reading half of `TicketService`: it needs the database, the clock and the
    deadline policy (for "today" and desk-local days), nothing that changes a ticket."""

    db: Database
    clock: Clock
    policy: DeadlinePolicy

    async def detail(self, public_id: str) -> TicketDetail:
        """The ticket with everything about it, in three statements that go at once on
        PostgreSQL (Database.read_each, a connection each): the ticket with its types,
        requester, contacts and account; its messages with their files; its events. A page
        waits for the server once. With twenty clients every wait is a turn behind the
        others' work on the event loop: five statements in two sessions were three waits,
        and the ticket page's p95 was 7x the trivial route's."""
        key = public_id.strip().upper()
        ticket_id = select(Ticket.id).where(Ticket.public_id == key).scalar_subquery()

        async def ticket_requester_account(session: AsyncSession) -> Any:
            # The account the requester proved they hold, else the one the newest code of
            # this ticket went to: joined to the ticket's row, not a statement of its own.
            coded = (
                select(VerificationChallenge.account_id)
                .where(col(VerificationChallenge.ticket_id) == col(Ticket.id))
                .order_by(col(VerificationChallenge.id).desc())
                .limit(1)
                .correlate(Ticket)
                .scalar_subquery()
            )
            wanted = func.coalesce(col(Requester.account_id), coded)
            result: Any = await session.exec(
                select(Ticket, Requester, Account)
                .join(Requester, col(Requester.id) == col(Ticket.requester_id))
                .outerjoin(Account, col(Account.id) == wanted)
                .where(Ticket.public_id == key)
                .options(
                    joinedload(Ticket.type_rows),  # type: ignore[arg-type]
                    joinedload(Requester.contacts),  # type: ignore[arg-type]
                )
            )
            return result.unique().first()  # joined collections: one row per ticket

        async def messages_files(session: AsyncSession) -> list[Any]:
            # Each message with its files (a row per file), without the bytes of either: a
            # page needs the raw mail's size (raw_size), the files' names, types, sizes and
            # hashes, and whether their bytes are there at all.
            found = await session.exec(
                select(Message, StoredAttachment, col(StoredAttachment.content).is_(None))
                .outerjoin(StoredAttachment, col(StoredAttachment.message_id) == col(Message.id))
                .where(col(Message.ticket_id) == ticket_id)
                .options(
                    defer(Message.raw),  # type: ignore[arg-type]
                    defer(StoredAttachment.content),  # type: ignore[arg-type]
                )
                .order_by(col(Message.received_at), col(Message.id), col(StoredAttachment.id))
            )
            return list(found.all())

        async def events(session: AsyncSession) -> list[Event]:
            found = await session.exec(
                select(Event).where(col(Event.ticket_id) == ticket_id).order_by(col(Event.seq))
            )
            return list(found.all())

        row, found_rows, found_events = await self.db.read_each(
            ticket_requester_account, messages_files, events
        )
        if row is None:
            raise TicketNotFound(f"no ticket {public_id}")
        ticket, requester, found_account = row
        messages: dict[int, Message] = {}
        attachments: dict[int, list[StoredAttachment]] = {}
        not_kept: set[int] = set()
        for message, attachment, missing in found_rows:
            messages.setdefault(message.id or 0, message)
            if attachment is None:
                continue
            attachments.setdefault(attachment.message_id, []).append(attachment)
            if missing:
                not_kept.add(attachment.id or 0)
        return TicketDetail(
            ticket,
            requester,
            list(messages.values()),
            found_events,
            found_account,
            # Proven on THIS ticket: the requester's other tickets prove nothing here.
            account_verified=found_account is not None
            and requester.account_id == found_account.id
            and ticket.verification == "verified",
            attachments=attachments,
            not_kept=frozenset(not_kept),
        )

    async def find(self, filters: TicketFilter = TicketFilter()) -> list[Ticket]:
        if filters.active_first:
            return await self._active_first(filters, lambda: select(Ticket), self._entities)
        query = self._filtered(select(Ticket), filters)
        # Work still owed before finished tickets (the CLI's list); the console's pages use
        # `active_first`, the same order in two indexed queries.
        owed_first = case((col(Ticket.status).in_([str(s) for s in ACTIVE_STATUSES]), 0), else_=1)
        query = query.order_by(
            owed_first,
            col(Ticket.response_due).is_(None),
            col(Ticket.response_due),
            col(Ticket.id),
        )
        if filters.offset:
            query = query.offset(filters.offset)
        if filters.limit is not None:
            query = query.limit(filters.limit)
        async with self.db.reading() as session:
            return list((await session.exec(query)).all())

    async def rows(self, filters: TicketFilter) -> list[TicketRow]:
        """`find` with `active_first`, as plain rows of what a listing shows (the console's
        queues, its API and CSV): the same tickets in the same order, without ORM entities."""
        sqlite = self.db.is_sqlite
        filters = dataclasses.replace(filters, active_first=True)
        return await self._active_first(filters, lambda: row_select(sqlite), self._plain_rows)

    async def _active_first(
        self,
        filters: TicketFilter,
        base: Callable[[], Any],
        read: Callable[[Any, int | None], Awaitable[list[R]]],
    ) -> list[R]:
        """Work still owed, most urgent first; then finished tickets, newest first. `base`
        makes the SELECT (entities or plain columns), `read` runs it with a LIMIT.

        Two queries, not one ORDER BY over both: a desk holds far more finished tickets than
        active ones, and sorting all of them for the first page is what made it slow (243 ms
        at 100,000 tickets). Active rows come in due-date order from the partial index
        `ix_ticket_active_due` (migration 0016), finished ones from the primary key walked
        backwards; neither is sorted, and a page reads about as many rows as it shows.
        Among a search's hits (`ids`: a few hundred at most) one sorted statement is the
        cheaper: one round trip instead of two or three."""
        plain = dataclasses.replace(filters, active_first=False, offset=0, limit=None)
        offset, limit = filters.offset, filters.limit
        if filters.ids is not None:
            active_sql = col(Ticket.status).in_(sorted(str(s) for s in ACTIVE_STATUSES))
            query = self._filtered(base(), plain).order_by(
                case((active_sql, 0), else_=1),
                case((active_sql, col(Ticket.response_due))).asc().nulls_last(),
                case((active_sql, col(Ticket.id)), else_=-col(Ticket.id)),
            )
            return await read(query.offset(offset) if offset else query, limit)
        wanted = set(filters.statuses) or set(TicketStatus)
        active = sorted(wanted & ACTIVE_STATUSES)
        finished = sorted(wanted - ACTIVE_STATUSES)
        found: list[R] = []
        if active:
            own = self._filtered(
                base(), dataclasses.replace(plain, statuses=tuple(active))
            ).order_by(col(Ticket.response_due).asc().nulls_last(), col(Ticket.id))
            if offset:
                # A later page: the active rows past the offset, if there are any (one round
                # trip: most pages lie inside the active work). Any found means more active
                # rows than the offset, so the finished ones start at their first; none, and
                # a count (stopped at the offset) says how many finished rows to skip.
                found = await read(own.offset(offset), limit)
                if found:
                    offset = 0
                else:
                    before = await self.count(
                        dataclasses.replace(plain, statuses=tuple(active)), cap=offset
                    )
                    offset -= before
            else:
                found = await read(own, limit)
        if finished and (limit is None or len(found) < limit):
            query = self._filtered(
                base(), dataclasses.replace(plain, statuses=tuple(finished))
            ).order_by(col(Ticket.id).desc())
            if offset:
                query = query.offset(offset)
            found.extend(await read(query, None if limit is None else limit - len(found)))
        return found

    async def _entities(self, query: Any, limit: int | None) -> list[Ticket]:
        # The types joined in (one query), not selected after (a second round trip).
        query = query.options(joinedload(Ticket.type_rows))  # type: ignore[arg-type]
        if limit is not None:
            query = query.limit(limit)
        async with self.db.reading() as session:
            return list((await session.exec(query)).unique().all())

    async def _plain_rows(self, query: Any, limit: int | None) -> list[TicketRow]:
        if limit is not None:
            query = query.limit(limit)
        async with self.db.reading_connection() as connection:
            return [ticket_row(values) for values in await connection.execute(query)]

    async def count(self, filters: TicketFilter = TicketFilter(), cap: int | None = None) -> int:
        """How many tickets match; with `cap`, counting stops there (the answer is at most
        `cap`: "more than" is all a page needs, and at a million tickets it is cheap)."""
        if cap is None:
            query = self._filtered(select(func.count()).select_from(Ticket), filters)
        else:
            matching = self._filtered(select(Ticket.id), filters).limit(cap).subquery()
            query = select(func.count()).select_from(matching)
        async with self.db.reading() as session:
            return int((await session.exec(query)).one())

    async def count_each(
        self, within: TicketFilter, named: Mapping[str, TicketFilter]
    ) -> dict[str, int]:
        """Several counts of tickets inside `within` in one query (one pass over them, with
        `count(*) FILTER (WHERE ...)` per name): the console's queue counts."""
        names = list(named)
        columns = [
            func.count().filter(and_(true(), *self._conditions(named[name]))) for name in names
        ]
        if not columns:
            return {}
        query = self._filtered(select(*columns).select_from(Ticket), within)
        async with self.db.reading() as session:
            row = (await session.exec(query)).one()
        values = row if isinstance(row, tuple) or hasattr(row, "__len__") else (row,)
        return {name: int(value or 0) for name, value in zip(names, values, strict=True)}

    def _filtered(self, query: Any, filters: TicketFilter) -> Any:
        conditions = self._conditions(filters)
        return query.where(*conditions) if conditions else query

    def _conditions(self, filters: TicketFilter) -> list[Any]:
        """The WHERE clauses of a filter (shared by lists, counts and grouped counts)."""
        found: list[Any] = []
        query = _Where(found)
        if filters.ids is not None:
            ids = [int(i) for i in filters.ids]
            if self.db.is_sqlite:
                query = query.where(col(Ticket.id).in_(ids))
            else:
                # One array parameter, not one per id: a search's 200 hits were 200 bound
                # parameters to render, cast and send in each of the page's statements.
                hits = bindparam(None, ids, type_=postgresql.ARRAY(Integer))
                query = query.where(col(Ticket.id) == any_(hits))
        # One status condition, however many rules restrict it: overdue and triage mean
        # active work (two IN lists on one column would make the planner guess far too few
        # rows, and walk the wrong index).
        statuses = set(filters.statuses)
        if filters.overdue or filters.needs_review:
            statuses = statuses & ACTIVE_STATUSES if statuses else set(ACTIVE_STATUSES)
        if statuses or filters.statuses:
            query = query.where(col(Ticket.status).in_(sorted(str(s) for s in statuses)))
        if filters.types:
            query = query.where(
                select(TicketType.ticket_id)
                .where(TicketType.ticket_id == Ticket.id)
                .where(col(TicketType.type).in_([str(t) for t in filters.types]))
                .exists()
            )
        if filters.due_before is not None:
            query = query.where(col(Ticket.response_due) < filters.due_before)
        if filters.due_from is not None:
            query = query.where(col(Ticket.response_due) >= filters.due_from)
        if filters.overdue:  # active only: see the statuses above
            today = self.today()
            query = query.where(
                or_(col(Ticket.response_due) < today, col(Ticket.completion_due) < today)
            )
        if filters.assignee is not None:
            query = query.where(Ticket.assignee == filters.assignee)
        if filters.unassigned:
            query = query.where(col(Ticket.assignee).is_(None))
        if filters.needs_review is not None:
            # True: finished work is out of the triage queue (the statuses above).
            query = query.where(Ticket.needs_review == filters.needs_review)
        if filters.unread is not None:
            query = query.where(Ticket.unread == filters.unread)
        if filters.channels:
            query = query.where(col(Ticket.channel).in_([str(c) for c in filters.channels]))
        if filters.received_from is not None:
            query = query.where(col(Ticket.received_at) >= self._day_start(filters.received_from))
        if filters.received_to is not None:
            end = self._day_start(filters.received_to + dt.timedelta(days=1))
            query = query.where(col(Ticket.received_at) < end)
        return found

    def _day_start(self, day: dt.date) -> dt.datetime:
        return dt.datetime.combine(day, dt.time(), self.policy.tz)

    async def links_of(self, tickets: Iterable[Ticket]) -> dict[int, str]:
        """The public ids of the tickets these point at (`duplicate_of`, `merged_into`)."""
        wanted = {t.duplicate_of for t in tickets} | {t.merged_into for t in tickets}
        ids = [i for i in wanted if i is not None]
        if not ids:
            return {}
        async with self.db.reading() as session:
            found = await session.exec(
                select(Ticket.id, Ticket.public_id).where(col(Ticket.id).in_(ids))
            )
            return {row_id: public_id for row_id, public_id in found.all() if row_id is not None}

    def today(self) -> dt.date:
        return self.policy.local_day(self.clock.now())


class _Where:
    """Collects `.where(...)` clauses, so the filter rules read as they did on a query."""

    def __init__(self, found: list[Any]) -> None:
        self.found = found

    def where(self, *clauses: Any) -> _Where:
        self.found.extend(clauses)
        return self
