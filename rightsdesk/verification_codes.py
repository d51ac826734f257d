"""Verification by one-time code: a code made, stored as an HMAC bound to its ticket, sent to
the account's registered address, found in a reply and checked, reminded of and closed when
unanswered; and the account's budgets of code mails and wrong codes within
`account_limit_hours`, counted here.

Why the budgets are what they are (a stranger must neither lock the account's owner out nor
buy fresh guesses, whatever `From:` they write) is the threat model in rightsdesk.verification's
docstring. `Verifier` there is this plus the policy: which proof a ticket needs, and starting it.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import secrets
from collections import Counter
from collections.abc import Collection
from dataclasses import dataclass
from typing import Any, Literal

from sqlmodel import col, func, select
from sqlmodel.ext.asyncio.session import AsyncSession

from rightsdesk.clock import Clock
from rightsdesk.config_sections import VerificationSettings
from rightsdesk.identifiers import find_code
from rightsdesk.models import (
    Account,
    Event,
    OutboxEntry,
    Requester,
    Ticket,
    TicketStatus,
    VerificationChallenge,
)
from rightsdesk.outbound import Outbox
from rightsdesk.tickets import TicketError, TicketService

SYSTEM = "system:verification"
# Code mails of an account's window that unproven mail may not take (rightsdesk.verification).
PROVEN_RESERVE = 2
# Wrong codes per ticket from mail that proves nothing about its sender (ditto).
UNPROVEN_ATTEMPTS = 3

ReplyOutcome = Literal["verified", "wrong_code", "locked", "expired", "review"]


def new_code() -> str:
    return f"{secrets.randbelow(10**6):06d}"


class CodeLimitReached(TicketError):
    """The account has had all the code mails it may have for now."""


@dataclass(frozen=True)
class CodeCheck:
    outcome: ReplyOutcome
    attempts_left: int
    # Locked by this very reply: its answer goes out whatever the acknowledgement limit.
    just_locked: bool = False
    locked_until: dt.datetime | None = None


class CodeVerification:
    """The code half of `Verifier` (rightsdesk.verification), which sets these."""

    settings: VerificationSettings
    clock: Clock
    tickets: TicketService
    outbox: Outbox
    _key: bytes

    def _hash(self, ticket_id: int, code: str) -> str:
        # Bound to the ticket: a code for one request can never verify another.
        message = f"verification:{ticket_id}:{code}".encode()
        return hmac.new(self._key, message, hashlib.sha256).hexdigest()

    async def _send_code(
        self,
        session: AsyncSession,
        ticket: Ticket,
        account: Account,
        language: str | None,
        *,
        proven: bool = True,
    ) -> None:
        """`proven`: whoever triggered it showed they hold the address (or is the DPO);
        unproven triggers (a `From:`, a name typed in a chat) are held back as
        rightsdesk.verification's docstring says, so a stranger cannot use up the account's
        codes."""
        assert ticket.id is not None
        limit = self.send_limit(proven)
        if not proven and await self._outstanding_code(session, account, ticket.id):
            raise CodeLimitReached(
                f"{ticket.public_id}: a code of the account is still outstanding; "
                "unproven mail does not send another"
            )
        if await self._account_sends(session, account) >= limit:
            raise CodeLimitReached(
                f"{ticket.public_id}: the account has had {limit} "
                f"codes in {self.settings.account_limit_hours} hours; verify by hand instead"
            )
        code = new_code()
        now = self.clock.now()
        expires = now + dt.timedelta(minutes=self.settings.code_ttl_minutes)
        # Any earlier challenge, locked ones included: a resend must not reset the limits.
        challenge = await _open_challenge(session, ticket.id, any_status=True)
        if challenge is None:
            challenge = self.first_challenge(ticket.id, account, code)
        else:
            if challenge.sends >= self.settings.max_sends:
                raise TicketError(
                    f"{ticket.public_id}: {challenge.sends} codes were sent already; "
                    "verify by hand instead"
                )
            challenge.sends += 1
            challenge.attempts = 0
            challenge.code_hash = self._hash(ticket.id, code)
            challenge.expires_at = expires
            challenge.status = "pending"
        session.add(challenge)
        await self.outbox.enqueue(
            session,
            ticket=ticket,
            kind="verification_code",
            to=account.email,  # the registered address, whoever asked
            lang=language,
            context=self.code_context(code),
        )
        await self.tickets.note_in(
            session, ticket, SYSTEM, "verification_code_sent", {"send": challenge.sends}
        )

    async def resend_code(self, public_id: str, actor: str) -> None:
        async with self.tickets.db.transaction() as session:
            ticket = await self.tickets.load_in(session, public_id, lock=True)
            if ticket.status != TicketStatus.AWAITING_VERIFICATION or ticket.verification != "code":
                raise TicketError(f"{public_id} is not waiting for a verification code")
            challenge = await _open_challenge(session, ticket.id or 0, any_status=True)
            assert challenge is not None
            account = await session.get_one(Account, challenge.account_id)
            requester = await session.get_one(Requester, ticket.requester_id)
            await self._send_code(session, ticket, account, ticket.language or requester.language)

    async def check_reply(
        self, session: AsyncSession, ticket: Ticket, text: str, *, proven: bool = True
    ) -> CodeCheck | None:
        """A reply on a ticket waiting for a code: check the first 6-digit number in it.
        `proven`: the mail showed who sent it (our signed Message-ID, aligned DKIM/DMARC);
        without that its wrong codes use their own budget (rightsdesk.verification's
        docstring)."""
        if ticket.status != TicketStatus.AWAITING_VERIFICATION or ticket.verification != "code":
            return None
        code = find_code(text)
        if code is None:
            return None
        assert ticket.id is not None
        challenge = await _open_challenge(session, ticket.id, any_status=True)
        if challenge is None:
            return None
        left = self.settings.max_attempts - challenge.attempts
        if challenge.status == "locked" or left <= 0:
            return CodeCheck("locked", 0)
        if self.clock.now() > challenge.expires_at:
            challenge.status = "expired"
            session.add(challenge)
            await self.tickets.note_in(session, ticket, SYSTEM, "verification_code_expired", {})
            return CodeCheck("expired", left)
        if not proven and await self._unproven_used_up(session, ticket, challenge.account_id):
            # Someone may be guessing with a forged From:; a person looks, nothing locks.
            if not ticket.needs_review:
                ticket.needs_review = True
                session.add(ticket)
                await self.tickets.note_in(
                    session,
                    ticket,
                    SYSTEM,
                    "verification_unproven_codes_used_up",
                    {"reason": f"{UNPROVEN_ATTEMPTS} wrong codes in mail that proved no sender"},
                )
            return CodeCheck("review", 0)
        if proven and (until := await self._account_locked_until(session, challenge.account_id)):
            # Guesses spread over many tickets of one account: no more are even compared.
            challenge.status = "locked"
            ticket.needs_review = True
            session.add(challenge)
            hours = self.settings.account_limit_hours
            await self.tickets.note_in(
                session,
                ticket,
                SYSTEM,
                "verification_account_locked",
                {
                    "until": until.isoformat(),
                    "reason": f"{self.settings.account_max_attempts} wrong codes on the "
                    f"account's tickets within {hours} hours",
                },
            )
            return CodeCheck("locked", 0, just_locked=True, locked_until=until)
        if hmac.compare_digest(self._hash(ticket.id, code), challenge.code_hash):
            challenge.status = "verified"
            session.add(challenge)
            account = await session.get_one(Account, challenge.account_id)
            await self._verified(
                session, ticket, account, "one-time code sent to the registered address"
            )
            return CodeCheck("verified", left)
        if not proven:
            await self.tickets.note_in(
                session, ticket, SYSTEM, "verification_code_wrong_unproven", {}
            )
            return CodeCheck("wrong_code", left)
        challenge.attempts += 1
        left -= 1
        if left <= 0:
            challenge.status = "locked"
            ticket.needs_review = True
        session.add(challenge)
        await self.tickets.note_in(
            session,
            ticket,
            SYSTEM,
            "verification_code_wrong",
            {"attempts": challenge.attempts, "locked": left <= 0},
        )
        return CodeCheck("locked" if left <= 0 else "wrong_code", left, just_locked=left <= 0)

    async def answer_code_reply(
        self, session: AsyncSession, ticket: Ticket, text: str, checked: CodeCheck | None
    ) -> CodeCheck | None:
        """Tell the requester that a code they sent was not accepted, how many tries are
        left and how to get a new one. A ticket whose address matched no account was sent
        no code: a number sent back is answered, and counted, exactly as a wrong code would
        be, so the answer never tells whether an account exists."""
        if checked is None:
            if (
                ticket.verification != "no_account"
                or ticket.status not in (TicketStatus.NEW, TicketStatus.AWAITING_VERIFICATION)
                or find_code(text) is None
            ):
                return None
            wrong = (
                await session.exec(
                    select(func.count(col(Event.id)))
                    .where(Event.ticket_id == ticket.id)
                    .where(Event.action == "verification_code_wrong")
                )
            ).one()
            if wrong >= self.settings.max_attempts:
                checked = CodeCheck("locked", 0)
            else:
                left = self.settings.max_attempts - wrong - 1
                await self.tickets.note_in(
                    session,
                    ticket,
                    SYSTEM,
                    "verification_code_wrong",
                    {"attempts": wrong + 1, "locked": left <= 0},
                )
                checked = CodeCheck("locked" if left <= 0 else "wrong_code", left)
        if checked.outcome in ("verified", "review"):
            return checked  # verified: the opening notice says so; review: a person answers
        await self.tell_not_accepted(session, ticket, checked)
        return checked

    async def tell_not_accepted(
        self, session: AsyncSession, ticket: Ticket, checked: CodeCheck
    ) -> None:
        """The answer to a code not accepted. For mail the requester's address is the
        registered one: the code went there because they matched."""
        requester = await session.get_one(Requester, ticket.requester_id)
        until = checked.locked_until
        await self.outbox.tell_requester(
            session,
            ticket=ticket,
            kind="code_not_accepted",
            lang=requester.language,
            context={
                "outcome": checked.outcome,
                "attempts_left": checked.attempts_left,
                "ttl_minutes": self.settings.code_ttl_minutes,
                "locked_until": (
                    until.astimezone(self.tickets.policy.tz).strftime("%Y-%m-%d %H:%M")
                    if until
                    else ""
                ),
            },
        )

    async def follow_up(self) -> tuple[list[str], list[str]]:
        """Unanswered codes: one reminder after `reminder_after_days`, closing with a notice
        after `close_after_days`. Safe to run as often as wanted: each happens once.
        Returns (reminded, closed) ticket ids."""
        now = self.clock.now()
        remind_before = now - dt.timedelta(days=self.settings.reminder_after_days)
        close_before = now - dt.timedelta(days=self.settings.close_after_days)
        async with self.tickets.db.reading() as session:
            waiting = (
                await session.exec(
                    select(Ticket.public_id, VerificationChallenge.created_at)
                    .join(VerificationChallenge, col(VerificationChallenge.ticket_id) == Ticket.id)
                    .where(Ticket.status == TicketStatus.AWAITING_VERIFICATION)
                    .where(Ticket.verification == "code")
                    .where(col(VerificationChallenge.created_at) <= remind_before)
                )
            ).all()
        reminded: list[str] = []
        closed: list[str] = []
        for public_id, created_at in waiting:
            async with self.tickets.db.transaction() as session:
                ticket = await self.tickets.load_in(session, public_id, lock=True)
                if ticket.status != TicketStatus.AWAITING_VERIFICATION:
                    continue  # answered meanwhile
                if created_at <= close_before:
                    await self.tickets.transition_in(
                        session, public_id, TicketStatus.CLOSED, SYSTEM, action="closed"
                    )  # the requester is told by the auto_closed notice
                    closed.append(public_id)
                    continue
                challenge = await _open_challenge(session, ticket.id or 0, any_status=True)
                if challenge is None or challenge.reminded_at is not None:
                    continue
                challenge.reminded_at = now
                session.add(challenge)
                requester = await session.get_one(Requester, ticket.requester_id)
                close_on = (created_at + dt.timedelta(days=self.settings.close_after_days)).date()
                await self.outbox.tell_requester(
                    session,
                    ticket=ticket,
                    kind="verification_reminder",
                    lang=ticket.language or requester.language,
                    context={"close_on": close_on.isoformat()},
                )
                await self.tickets.note_in(session, ticket, SYSTEM, "verification_reminded", {})
                reminded.append(public_id)
        return reminded, closed

    async def _verified(
        self, session: AsyncSession, ticket: Ticket, account: Account, how: str
    ) -> None:
        requester = await session.get_one(Requester, ticket.requester_id)
        requester.account_id = account.id
        session.add(requester)
        ticket.verification = "verified"
        if ticket.status == TicketStatus.OPEN:  # opened earlier with too little proof
            await self.tickets.note_in(session, ticket, SYSTEM, "verified", {"note": how})
            return
        await self.tickets.transition_in(
            session,
            ticket.public_id,
            TicketStatus.OPEN,
            SYSTEM,
            action="verified",
            note=how,
            verified_at=self.clock.now(),
        )

    def _window_start(self) -> dt.datetime:
        return self.clock.now() - dt.timedelta(hours=self.settings.account_limit_hours)

    def first_challenge(self, ticket_id: int, account: Account, code: str) -> VerificationChallenge:
        """A ticket's first code: to the account's registered address, expiring."""
        now = self.clock.now()
        return VerificationChallenge(
            ticket_id=ticket_id,
            account_id=account.id,
            sent_to=account.email,
            code_hash=self._hash(ticket_id, code),
            expires_at=now + dt.timedelta(minutes=self.settings.code_ttl_minutes),
            created_at=now,
        )

    def code_context(self, code: str) -> dict[str, Any]:
        """What the code mail's template is given."""
        return {"code": code, "ttl_minutes": self.settings.code_ttl_minutes}

    async def sends_by_address(
        self, session: AsyncSession, emails: Collection[str]
    ) -> Counter[str]:
        """`_account_sends` for many registered addresses in one query (the pipeline's
        batches): code mails to each lately, whichever ticket."""
        if not emails:
            return Counter()
        found = await session.exec(
            select(OutboxEntry.recipient, func.count(col(OutboxEntry.id)))
            .where(OutboxEntry.kind == "verification_code")
            .where(col(OutboxEntry.recipient).in_(sorted(emails)))
            .where(col(OutboxEntry.created_at) >= self._window_start())
            .group_by(col(OutboxEntry.recipient))
        )
        return Counter({to: int(n) for to, n in found.all()})

    async def _account_sends(self, session: AsyncSession, account: Account) -> int:
        """Code mails to the account's registered address lately, whichever ticket."""
        found = await session.exec(
            select(func.count(col(OutboxEntry.id)))
            .where(OutboxEntry.kind == "verification_code")
            .where(OutboxEntry.recipient == account.email)
            .where(col(OutboxEntry.created_at) >= self._window_start())
        )
        return int(found.one())

    def send_limit(self, proven: bool) -> int:
        """Code mails an account may have in its window for a trigger of this kind (the
        threat model in rightsdesk.verification: unproven triggers leave the last
        `PROVEN_RESERVE` alone)."""
        limit = self.settings.account_max_sends
        return limit if proven else max(1, limit - PROVEN_RESERVE)

    async def outstanding_accounts(
        self, session: AsyncSession, account_ids: Collection[str]
    ) -> set[str]:
        """`_outstanding_code` for many accounts in one query (the pipeline's batches, whose
        tickets are new: no code of theirs can be outstanding yet)."""
        if not account_ids:
            return set()
        found = await session.exec(
            select(VerificationChallenge.account_id)
            .where(col(VerificationChallenge.account_id).in_(sorted(account_ids)))
            .where(VerificationChallenge.status == "pending")
            .where(col(VerificationChallenge.expires_at) > self.clock.now())
            .distinct()
        )
        return set(found.all())

    async def _outstanding_code(
        self, session: AsyncSession, account: Account, ticket_id: int
    ) -> bool:
        """A code of the account, on another ticket, not used and not expired yet."""
        found = await session.exec(
            select(VerificationChallenge.id)
            .where(VerificationChallenge.account_id == account.id)
            .where(VerificationChallenge.ticket_id != ticket_id)
            .where(VerificationChallenge.status == "pending")
            .where(col(VerificationChallenge.expires_at) > self.clock.now())
            .limit(1)
        )
        return found.first() is not None

    async def _account_wrong_at(
        self, session: AsyncSession, account_id: str, action: str
    ) -> list[dt.datetime]:
        """When the wrong codes (`action`: proven or unproven) of the window were written, on
        any ticket whose code went to this account, oldest first (from the audit trail: a
        resend resets a ticket's own count, never this one)."""
        tickets = select(VerificationChallenge.ticket_id).where(
            VerificationChallenge.account_id == account_id
        )
        found = await session.exec(
            select(Event.at)
            .where(Event.action == action)
            .where(col(Event.ticket_id).in_(tickets))
            .where(col(Event.at) >= self._window_start())
            .order_by(col(Event.at))
        )
        return list(found.all())

    async def _account_locked_until(
        self, session: AsyncSession, account_id: str
    ) -> dt.datetime | None:
        """When the account's shared budget of wrong codes is used up: the instant enough of
        them have left the window for one more guess."""
        wrong = await self._account_wrong_at(session, account_id, "verification_code_wrong")
        over = len(wrong) - self.settings.account_max_attempts
        if over < 0:
            return None
        at = wrong[over]
        at = at if at.tzinfo is not None else at.replace(tzinfo=dt.UTC)
        return at + dt.timedelta(hours=self.settings.account_limit_hours)

    async def _unproven_used_up(
        self, session: AsyncSession, ticket: Ticket, account_id: str
    ) -> bool:
        """The unproven budgets: UNPROVEN_ATTEMPTS on this ticket (ever), and
        `account_max_attempts` on the account's tickets within the window."""
        on_ticket = await session.exec(
            select(func.count(col(Event.id)))
            .where(Event.ticket_id == ticket.id)
            .where(Event.action == "verification_code_wrong_unproven")
        )
        if int(on_ticket.one()) >= UNPROVEN_ATTEMPTS:
            return True
        wrong = await self._account_wrong_at(
            session, account_id, "verification_code_wrong_unproven"
        )
        return len(wrong) >= self.settings.account_max_attempts


async def _open_challenge(
    session: AsyncSession, ticket_id: int, *, any_status: bool = False
) -> VerificationChallenge | None:
    query = select(VerificationChallenge).where(VerificationChallenge.ticket_id == ticket_id)
    if not any_status:
        query = query.where(col(VerificationChallenge.status).in_(["pending", "expired"]))
    query = query.order_by(col(VerificationChallenge.id).desc()).limit(1).with_for_update()
    return (await session.exec(query)).first()
