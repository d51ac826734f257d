"""Opening a batch's new requests together: a few statements for the whole batch.

OpenTicket leaves each plain new request of a batch in `Batch.openings` (pipeline.opening);
after the stages, `BulkOpening.open_all` opens them all in the batch's transaction:

    lookups    one query each for the batch: the senders' requesters, their active tickets
               (the same request again joins one; a request like an open one is linked to
               it), the registered accounts, the code mails each account had lately
    numbers    the ticket counter moved once per year by the number of tickets (gapless:
               inside the transaction, as `TicketService.open_in` takes one)
    compose    the code mails and the acknowledgements rendered in one trip to the CPU pool
               (templates and MIME are CPU work: off the loop)
    write      one INSERT per table for all the batch's rows (requesters, contacts, tickets,
               types, events with their hash chains computed here, challenges, outbound
               mail, outbox entries); the inbound rows' marks go with the session's one flush

It does what OpenTicket, StartVerification and Acknowledge do for a message alone, with the
same helpers (`new_ticket`, `acknowledgement_context`, `Outbox.compose`, `link_values`,
`Verifier.first_challenge`), and `tests/test_routing_bulk.py` holds the two ways to the same
rows. What is not plain goes back to those stages, one message at a time, after this:
the same request again (it joins), a second request of one sender in the batch, a
DKIM-verified sender of a registered address, an account out of codes; and mail with a file
too large to keep never comes here (OpenTicket.in_bulk: its acknowledgement names the file).
"""

from __future__ import annotations

import datetime as dt
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import bindparam
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlmodel import col, select, update
from sqlmodel.ext.asyncio.session import AsyncSession

from rightsdesk.audit import GENESIS_HASH, link_values
from rightsdesk.models import (
    Account,
    Channel,
    Event,
    Message,
    OutboxEntry,
    Requester,
    RequesterContact,
    RequestType,
    Ticket,
    TicketCounter,
    TicketStatus,
    TicketType,
    VerificationChallenge,
)
from rightsdesk.offload import CpuPool
from rightsdesk.outbound import Outbox, can_mail
from rightsdesk.pipeline.bulk_sql import active_of, insert_rows, requesters_of
from rightsdesk.pipeline.opening import NOT_MAILABLE, acknowledgement_context, new_ticket
from rightsdesk.pipeline.routing import SYSTEM, Routing
from rightsdesk.tickets import (
    NewTicket,
    TicketService,
    apply_deadlines,
    deadline_fields,
    format_public_id,
    validated_types,
)
from rightsdesk.verification import Step, Verifier
from rightsdesk.verification_codes import SYSTEM as VERIFICATION
from rightsdesk.verification_codes import new_code

_Mail = tuple[str, str, Message]  # (kind, to, the row that keeps it)


@dataclass
class _Opening:
    """One new request of the batch, as it is being opened."""

    routing: Routing
    new: NewTicket
    types: list[RequestType]
    requester_id: int | None  # None: a new requester
    duplicate_of: int | None
    account: Account | None = None
    method: str = "none"
    number: tuple[int, int] = (0, 0)  # (year, sequence), from `_number`
    ticket: Ticket | None = None  # built in the pool from the number (`_ticket`)
    events: list[dict[str, Any]] = field(default_factory=list)  # as row values (`link_values`)
    code: str | None = None
    step: Step = "none"  # the verification's first step (`_begin`)
    mails: list[tuple[str, str, Message]] = field(default_factory=list)  # (kind, to, row)


def _same(ahead: _Opening, now: _Opening) -> bool:
    """Whether the ticket, events and mails built ahead for a message are what it takes in
    the lock: everything `_ticket` and `_compose_all` read but the time (a ticket taken from
    ahead keeps the time it was built, a few milliseconds before the lock)."""
    return (
        ahead.number == now.number
        and ahead.new is now.new  # read ahead (`_plain`): the same text and classification
        and ahead.routing.inbound is now.routing.inbound
        and ahead.types == now.types
        and ahead.duplicate_of == now.duplicate_of
        and ahead.method == now.method
        and _account(ahead) == _account(now)
        and ahead.routing.row.acknowledge == now.routing.row.acknowledge
        and ahead.routing.row.message_id == now.routing.row.message_id
    )


def _account(opening: _Opening) -> tuple[str, str] | None:
    account = opening.account
    return None if account is None else (account.id, account.email)


class BulkOpening:
    def __init__(
        self, tickets: TicketService, verifier: Verifier, outbox: Outbox, cpu: CpuPool
    ) -> None:
        self.tickets = tickets
        self.verifier = verifier
        self.outbox = outbox
        self.cpu = cpu
        self._ready: dict[int, _Opening] = {}  # built and composed ahead, by message row id
        self._news: dict[int, NewTicket] = {}  # tickets read ahead, by message row id

    async def open_all(self, session: AsyncSession, routings: Sequence[Routing]) -> list[Routing]:
        """Open a ticket for each of `routings` (OpenTicket's, in message order) in the
        session's transaction; returns those left for the stages, OpenTicket on."""
        left: list[Routing] = []
        openings = await self._plain(session, routings, left)
        openings = await self._verification(session, openings, left)
        if not openings:
            return left
        await self._number(session, openings)
        now = self.tickets.clock.now()
        todo: list[_Opening] = []
        for opening in openings:
            ready = self._ready.pop(opening.routing.row.id or 0, None)
            if ready is not None and _same(ready, opening):
                opening.ticket, opening.events = ready.ticket, ready.events
                opening.code, opening.step, opening.mails = ready.code, ready.step, ready.mails
                _routed(opening)
            else:
                todo.append(opening)
        self._ready.clear()
        if todo:  # not built ahead, or for another number: now, in the lock
            # CPU work (ORM objects, deadlines, hash chains, mails): in the pool, where the
            # loop gets the GIL back every few milliseconds, not in one stretch on the loop.
            composed = await self.cpu.run(self._ahead, todo, now)
            for opening, mails in zip(todo, composed, strict=True):
                opening.mails = mails
        await self._write(session, openings, now)
        return left

    async def compose_ahead(self, session: AsyncSession, routings: Sequence[Routing]) -> None:
        """Before the batch's write transaction (SQLite: before its write lock; PostgreSQL:
        before it takes the ticket counter's row lock): build the tickets, events and mails
        of the messages that look like plain new requests, for the numbers they would take
        now. `open_all` takes each only if what it was built from is still so (`_same`: the
        number, the types, the account, ...): never a guess, at worst work done twice."""
        self._ready.clear()
        openings = await self._plain(session, routings, [], ahead=True)
        openings = await self._verification(session, openings, [])
        if not openings:
            return
        await self._number(session, openings, take=False)
        now = self.tickets.clock.now()
        composed = await self.cpu.run(self._ahead, openings, now)
        for opening, mails in zip(openings, composed, strict=True):
            opening.mails = mails
            self._ready[opening.routing.row.id or 0] = opening

    # ---- which are plain --------------------------------------------------------------------

    async def _plain(
        self,
        session: AsyncSession,
        routings: Sequence[Routing],
        left: list[Routing],
        ahead: bool = False,
    ) -> list[_Opening]:
        news: list[tuple[Routing, NewTicket, list[RequestType]]] = []
        if ahead:  # in the pool: the language is read from the text, which may be long
            tickets = await self.cpu.run(_new_tickets, list(routings))
            self._news = {r.row.id or 0: t for r, t in zip(routings, tickets, strict=True)}
        else:  # as read ahead (the same row, text and classification), else here
            tickets = [self._news.get(r.row.id or 0) or _new_tickets([r])[0] for r in routings]
            self._news.clear()
        for routing, new in zip(routings, tickets, strict=True):
            try:
                news.append((routing, new, validated_types(new.types)))
            except Exception:  # opened alone, it fails there, alone
                left.append(routing)
        senders = {new.contact.value for _, new, _ in news}
        requesters = await requesters_of(session, senders)
        active = await active_of(session, {rid for rid, _ in requesters.values()})
        openings: list[_Opening] = []
        seen: set[str] = set()
        for routing, new, types in news:
            sender = new.contact.value
            if sender in seen:  # the second of one sender may be the same request again
                left.append(routing)
                continue
            requester = requesters.get(sender)
            wanted = frozenset(str(t) for t in types)
            theirs = active.get(requester[0], []) if requester else []
            assert routing.classification is not None
            if not routing.classification.needs_review and any(t.types == wanted for t in theirs):
                left.append(routing)  # the same request again: OpenTicket joins it
                continue
            seen.add(sender)
            # As `TicketService.open_in` links one: the oldest of the first 20 not merged.
            unmerged = [t for t in theirs if t.merged_into is None][:20]
            duplicate = next((t.id for t in unmerged if t.types == wanted), None)
            openings.append(
                _Opening(routing, new, types, requester[0] if requester else None, duplicate)
            )
        return openings

    async def _verification(
        self, session: AsyncSession, openings: list[_Opening], left: list[Routing]
    ) -> list[_Opening]:
        """`Verifier.begin`'s decision for each; what it cannot take in bulk is left."""
        for opening in openings:
            opening.method = self.verifier.method_of(opening.types)
        needing = {o.new.contact.value for o in openings if o.method in _ACCOUNT_METHODS}
        accounts = await self.verifier.directory.find_registered_many(session, needing)
        sends = await self.verifier.sends_by_address(session, {a.email for a in accounts.values()})
        outstanding = await self.verifier.outstanding_accounts(
            session, {a.id for a in accounts.values()}
        )
        here: Counter[str] = Counter()
        taken: list[_Opening] = []
        for opening in openings:
            if opening.method in _ACCOUNT_METHODS:
                opening.account = accounts.get(opening.new.contact.value)
            account = opening.account
            if account is not None:
                proven = opening.routing.inbound.auth.from_aligned
                # Unproven mail sends no code while one of the account's is outstanding (one
                # sent earlier, or by this batch), and leaves the last ones alone
                # (rightsdesk.verification's docstring): the stages hold it back.
                held = not proven and (account.id in outstanding or here[account.email] > 0)
                if (
                    (opening.method == "registered_email" and proven)
                    or held
                    or sends[account.email] + here[account.email]
                    >= self.verifier.send_limit(proven)
                ):
                    left.append(opening.routing)  # verified at once, held back, out of codes
                    continue
                here[account.email] += 1
            taken.append(opening)
        return taken

    # ---- the rows ---------------------------------------------------------------------------

    async def _number(
        self, session: AsyncSession, openings: list[_Opening], take: bool = True
    ) -> None:
        """Ticket numbers, in message order: the counter moved once per year (`take`), or
        read only (the numbers they would take now: `compose_ahead`)."""
        policy = self.tickets.policy
        years: dict[int, list[_Opening]] = {}
        for opening in openings:
            years.setdefault(policy.local_day(opening.new.received_at).year, []).append(opening)
        insert_of = pg_insert if session.get_bind().dialect.name == "postgresql" else sqlite_insert
        for year, theirs in sorted(years.items()):
            taken = len(theirs)
            if not take:
                now_at = await session.exec(
                    select(TicketCounter.last_seq).where(TicketCounter.year == year)
                )
                last = (now_at.first() or 0) + taken
            else:
                last = (
                    await session.exec(
                        insert_of(TicketCounter)
                        .values(year=year, last_seq=taken)
                        .on_conflict_do_update(
                            index_elements=["year"],
                            set_={"last_seq": col(TicketCounter.last_seq) + taken},
                        )
                        .returning(col(TicketCounter.last_seq))
                    )
                ).scalar_one()
            for n, opening in enumerate(theirs, start=int(last) - taken + 1):
                opening.number = (year, n)

    def _tickets(self, openings: list[_Opening], now: dt.datetime) -> None:
        """In a pool thread: each one's ticket and events (`_ticket`)."""
        for opening in openings:
            self._ticket(opening, now)

    def _ahead(self, openings: list[_Opening], now: dt.datetime) -> list[list[_Mail]]:
        """In a pool thread: the tickets as they are opened now, and their mails."""
        self._tickets(openings, now)
        return self._compose_all(openings)

    def _ticket(self, opening: _Opening, now: dt.datetime) -> None:
        """The ticket as `open_in` and `Verifier.begin` leave it, with its events. Built here,
        in the pool, not in `_number`: a SQLModel object is 0.1-0.5 ms, and on the loop,
        inside the write lock, each was time that a door's 250 waited for."""
        new, policy = opening.new, self.tickets.policy
        year, n = opening.number
        ticket = opening.ticket = Ticket(
            public_id=format_public_id(year, n),
            year=year,
            seq=n,
            channel=new.channel,
            requester_id=0,
            contact_kind=new.contact.kind,
            contact_value=new.contact.value,
            received_at=new.received_at,
            # Every field with a default_factory given (the times are set below): pydantic
            # inspects the factory's signature on each object otherwise, a third of its time.
            created_at=now,
            updated_at=now,
            suggested_types=[],
        )
        ticket.status = TicketStatus.NEW
        ticket.subject = new.subject
        ticket.language = new.language
        ticket.needs_review = new.needs_review or opening.types == [RequestType.NOT_RIGHTS_REQUEST]
        ticket.classification = new.classification
        ticket.created_at = ticket.updated_at = now
        ticket.type_rows = [TicketType(type=t) for t in opening.types]
        ticket.duplicate_of = opening.duplicate_of
        if opening.duplicate_of is not None:
            ticket.needs_review = True
        if policy.settings.clock_starts == "receipt":
            ticket.clock_started_at = new.received_at
            apply_deadlines(ticket, policy.compute(new.received_at, opening.types))
        self._event(
            opening,
            now,
            SYSTEM,
            "opened",
            {},
            {
                "status": ticket.status,
                "types": opening.types,
                "channel": ticket.channel,
                **deadline_fields(ticket),
                **({"duplicate_of": ticket.duplicate_of} if ticket.duplicate_of else {}),
            },
        )
        opening.step = self._begin(opening, now)
        _routed(opening)

    def _begin(self, opening: _Opening, now: dt.datetime) -> Step:
        """`Verifier.begin` for a new ticket, in the cases `_verification` left here."""
        ticket = opening.ticket
        assert ticket is not None
        if opening.method == "none":
            ticket.verification = "none"
            self._transition(opening, now, TicketStatus.OPEN)
            return "none"
        if opening.method == "manual":
            ticket.verification = "manual"
            ticket.needs_review = True
            self._transition(opening, now, TicketStatus.AWAITING_VERIFICATION)
            return "manual"
        if opening.account is None:
            ticket.verification = "no_account"
            ticket.needs_review = True  # a person decides: another address, a username, ...
            return "no_account"
        opening.code = new_code()
        self._event(opening, now, VERIFICATION, "verification_code_sent", {}, {"send": 1})
        ticket.verification = "code"
        self._transition(opening, now, TicketStatus.AWAITING_VERIFICATION)
        return "code"

    def _transition(self, opening: _Opening, now: dt.datetime, to: TicketStatus) -> None:
        """`TicketService.transition_in` from NEW (which tells the requester nothing: the
        acknowledgement does)."""
        ticket, policy = opening.ticket, self.tickets.policy
        assert ticket is not None
        before = {"status": TicketStatus(ticket.status), **deadline_fields(ticket)}
        ticket.status = to
        if to is TicketStatus.AWAITING_VERIFICATION and policy.settings.pause_while_waiting:
            ticket.paused_since = now if ticket.response_due is not None else None
        if to is TicketStatus.OPEN and ticket.clock_started_at is None:
            ticket.clock_started_at = now
            apply_deadlines(ticket, policy.compute(now, opening.types))
        ticket.updated_at = now
        self._event(
            opening, now, VERIFICATION, to.value, before, {"status": to, **deadline_fields(ticket)}
        )

    def _event(
        self,
        opening: _Opening,
        now: dt.datetime,
        actor: str,
        action: str,
        before: dict[str, Any],
        after: dict[str, Any],
    ) -> None:
        ticket = opening.ticket
        assert ticket is not None
        last = opening.events[-1] if opening.events else None
        event = link_values(
            0,  # the ticket's id once inserted
            ticket.public_id,
            seq=last["seq"] + 1 if last else 1,
            prev_hash=last["hash"] if last else GENESIS_HASH,
            at=now,
            actor=actor,
            action=action,
            before=before,
            after=after,
        )
        opening.events.append(event)
        ticket.audit_head = event["hash"]

    def _compose_all(self, openings: list[_Opening]) -> list[list[_Mail]]:
        """In a pool thread: each one's code mail (first) and acknowledgement, threaded on
        the request as `Outbox.enqueue` threads them, as the rows that keep them."""
        found = []
        for opening in openings:
            ticket, routing = opening.ticket, opening.routing
            assert ticket is not None
            thread: list[tuple[str, str]] = []
            if routing.row.message_id:
                thread.append((routing.row.message_id, "in"))
            mails: list[tuple[str, str, Message]] = []
            account = opening.account
            if opening.code is not None and account is not None:
                code_mail = self.outbox.compose(
                    ticket=ticket,
                    kind="verification_code",
                    to=account.email,  # the registered address, whoever asked
                    lang=routing.language,
                    context=self.verifier.code_context(opening.code),
                    thread=thread,
                )
                row = self.outbox.out_row(code_mail, to=account.email, ticket_id=None)
                mails.append(("verification_code", account.email, row))
                thread = [*thread, (code_mail.message_id, "out")]
            sender = routing.inbound.sender
            if routing.row.acknowledge and sender and can_mail(sender):
                ack = self.outbox.compose(
                    ticket=ticket,
                    kind="acknowledgement",
                    to=sender,
                    to_name=routing.inbound.sender_name,
                    lang=routing.language,
                    context=acknowledgement_context(ticket, routing.triage, routing.step),
                    thread=thread,
                )
                row = self.outbox.out_row(ack, to=sender, ticket_id=None)
                mails.append(("acknowledgement", sender, row))
            found.append(mails)
        return found

    async def _write(
        self, session: AsyncSession, openings: list[_Opening], now: dt.datetime
    ) -> None:
        connection = await session.connection()
        # Requesters: the new ones inserted, the others' language brought up to date.
        new_requesters = [o for o in openings if o.requester_id is None]
        new_ids = {id(o) for o in new_requesters}  # by identity: == compares every field
        if new_requesters:
            ids = await insert_rows(
                session,
                Requester,
                [
                    Requester(name=o.new.requester_name, language=o.new.language, created_at=now)
                    for o in new_requesters
                ],
            )
            for opening, requester_id in zip(new_requesters, ids, strict=True):
                opening.requester_id = requester_id
            await insert_rows(
                session,
                RequesterContact,
                [
                    RequesterContact(
                        requester_id=o.requester_id or 0,
                        kind=o.new.contact.kind,
                        value=o.new.contact.value,
                    )
                    for o in new_requesters
                ],
                ids=False,
            )
        languages = [
            {"rid": o.requester_id, "language": o.new.language}
            for o in openings
            if id(o) not in new_ids and o.new.language
        ]
        if languages:
            await connection.execute(
                update(Requester)
                .where(col(Requester.id) == bindparam("rid"))
                .where(col(Requester.language).is_distinct_from(bindparam("language")))
                .values(language=bindparam("language")),
                languages,
            )
        tickets = [o.ticket for o in openings if o.ticket is not None]
        for opening, ticket in zip(openings, tickets, strict=True):
            ticket.requester_id = opening.requester_id or 0
        ticket_ids = await insert_rows(session, Ticket, tickets)
        types: list[TicketType] = []
        events: list[dict[str, Any]] = []
        challenges: list[VerificationChallenge] = []
        out: list[Message] = []
        kinds: list[tuple[str, str, int]] = []
        for opening, ticket_id in zip(openings, ticket_ids, strict=True):
            assert opening.ticket is not None
            opening.ticket.id = ticket_id
            opening.routing.row.ticket_id = ticket_id
            types += [TicketType(ticket_id=ticket_id, type=t) for t in opening.types]
            for event in opening.events:
                event["ticket_id"] = ticket_id
            events += opening.events
            if opening.code is not None and opening.account is not None:
                challenges.append(
                    self.verifier.first_challenge(ticket_id, opening.account, opening.code)
                )
            for kind, to, row in opening.mails:
                row.ticket_id = ticket_id
                out.append(row)
                kinds.append((kind, to, ticket_id))
        await insert_rows(session, TicketType, types, ids=False)
        await insert_rows(session, Event, events, ids=False)
        if challenges:
            await insert_rows(session, VerificationChallenge, challenges, ids=False)
        if out:
            message_ids = await insert_rows(session, Message, out)
            entries = [
                self.outbox.entry(
                    message_id, kind=kind, to=to, ticket_id=ticket_id, channel=Channel.EMAIL
                )
                for message_id, (kind, to, ticket_id) in zip(message_ids, kinds, strict=True)
            ]
            await insert_rows(session, OutboxEntry, entries, ids=False)
            self.outbox.wake_after_commit(session, Channel.EMAIL)


_ACCOUNT_METHODS = ("registered_email", "code")


def _routed(opening: _Opening) -> None:
    """What the stages after OpenTicket read of the ticket opened, on the message's routing
    (also for a ticket built ahead, for a stand-in of it)."""
    ticket, routing = opening.ticket, opening.routing
    assert ticket is not None
    routing.ticket = ticket.public_id
    routing.opened = True
    routing.language = ticket.language
    routing.triage = opening.new.needs_review
    routing.step = opening.step
    routing.outcome = "opened"
    if routing.row.acknowledge and not can_mail(routing.inbound.sender or ""):
        routing.outcome += NOT_MAILABLE


def _new_tickets(routings: list[Routing]) -> list[NewTicket]:
    found = []
    for routing in routings:
        assert routing.classification is not None
        found.append(new_ticket(routing, routing.classification))
    return found
