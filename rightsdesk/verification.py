"""Who may see, change or delete an account's data: the person who controls the account.

Policy per request type (config `[verification]`), strictest of a ticket's types wins:
    none              nothing to verify (questions, complaints)
    registered_email  mail from the account's registered address with DKIM/DMARC passing at a
                      server we trust; otherwise a one-time code
    code              always a one-time code sent to the registered address
    manual            the DPO checks documents (guardians, relatives)

Codes go only to the address already on the account, never to one the requester supplies.
They are stored as HMACs bound to their ticket, expire, lock after N wrong tries, and are
compared in constant time. Per registered account, across all its tickets, at most
`account_max_sends` code mails and `account_max_attempts` wrong codes are allowed within
`account_limit_hours`: requests opened in someone's name cannot flood them with codes, nor
buy an attacker fresh guesses.

Those limits must not become a way to lock someone out. A `From:` proves nothing, so anyone
can mail requests "from" a victim's registered address, each with other types (none joins
another) and each triggering a code to the victim; five of them in a day would use up the
victim's sends, and the victim's own request would then get no code. So a code triggered by
such unproven mail (`proven=False`) is sent only when the account has no unexpired code
outstanding (the flood waits out each code's lifetime, and the victim gets at most one code
mail per `code_ttl_minutes` from it), and never takes the last `PROVEN_RESERVE` sends of the
window: those are kept for a channel a stranger cannot use (mail DKIM/DMARC-aligned at a
trusted server, the portal's form, whose own code proved the address; the DPO's resend).
A request left without a code waits as `limited`, in the DPO's queue, and its acknowledgement
reads as if a code was sent, as always.

Guesses are the other way in. A code written back is its own proof, but a reply that carries
it may come from anyone: the `[PRIV-…]` subject tag and the requester's `From:` are easy to
forge, so a stranger could send `account_max_attempts` wrong codes "from" the victim and lock
every ticket of the account for `account_limit_hours`, the victim's real reply included. So
wrong codes in mail that proves nothing about its sender (no reference to one of our signed
Message-IDs, no DKIM/DMARC aligned at a trusted server) never count against the account's
shared budget: they have their own, `UNPROVEN_ATTEMPTS` per ticket, and, per account and
window, `account_max_attempts` more. Used up, unproven codes on the ticket are no longer
compared and the ticket goes to the DPO's review; nothing locks, and a proven reply (the
victim's own, answering our mail) still verifies. Guessing stays bounded: per account and
window at most `account_max_attempts` proven plus `account_max_attempts` unproven wrong codes
are compared, and codes to guess are few (the sending limits above). When the shared budget
is used up (proven replies only now), the account locks: the lock is answered to the
registered address once per ticket, whatever the per-sender acknowledgement limit, and staff
see it ("verification locked until …", `lock_of`).

Here: the policy and its steps (`Verifier`). The codes, their mails and replies and the
budgets that count them are `CodeVerification` (rightsdesk.verification_codes), which
`Verifier` extends.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable
from typing import Literal, Protocol

from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from rightsdesk.clock import Clock
from rightsdesk.config_sections import VerificationSettings
from rightsdesk.identifiers import find_identifiers
from rightsdesk.models import (
    Account,
    ContactKind,
    Message,
    Requester,
    RequestType,
    Ticket,
    TicketStatus,
)
from rightsdesk.outbound import Outbox
from rightsdesk.tickets import TicketService
from rightsdesk.verification_codes import SYSTEM, CodeLimitReached, CodeVerification

STRICTNESS = ("none", "registered_email", "code", "manual")

# What the acknowledgement says happens next is chosen by the step, in the template
# (acknowledgement.*.j2): "code" and "no_account" read the same, so the answer never tells a
# stranger whether an account exists for an address.

Step = Literal["none", "verified", "code", "manual", "no_account"]


class Verifier(CodeVerification):
    def __init__(
        self,
        settings: VerificationSettings,
        key: bytes,
        clock: Clock,
        tickets: TicketService,
        outbox: Outbox,
        directory: AccountLookup,
    ) -> None:
        self.settings = settings
        self.directory = directory
        self._key = key
        self.clock = clock
        self.tickets = tickets
        self.outbox = outbox

    def method_for(self, ticket: Ticket) -> str:
        return self.method_of(ticket.types)

    def method_of(self, types: Iterable[RequestType]) -> str:
        """The strictest method of these types."""
        methods = [self.settings.policy[t.value] for t in types]
        return max(methods, key=STRICTNESS.index, default="none")

    async def _begin_without_account(
        self, session: AsyncSession, ticket: Ticket, method: str
    ) -> Step | None:
        """The methods that need no account: nothing to prove, or documents for the DPO."""
        if method == "none":
            ticket.verification = "none"
            if ticket.status == TicketStatus.NEW:
                await self.tickets.transition_in(
                    session, ticket.public_id, TicketStatus.OPEN, SYSTEM
                )
            return "none"
        if method == "manual":
            ticket.verification = "manual"
            ticket.needs_review = True
            await self.tickets.transition_in(
                session, ticket.public_id, TicketStatus.AWAITING_VERIFICATION, SYSTEM
            )
            return "manual"
        return None

    async def begin(
        self,
        session: AsyncSession,
        ticket: Ticket,
        *,
        sender: str,
        sender_authenticated: bool,
        language: str | None,
    ) -> Step:
        """Decide how this new ticket's requester proves who they are, and start it."""
        method = self.method_for(ticket)
        if (step := await self._begin_without_account(session, ticket, method)) is not None:
            return step
        account = await self.directory.find_registered(session, sender)
        if account is None:
            ticket.verification = "no_account"
            ticket.needs_review = True  # a person decides: another address, a username, ...
            session.add(ticket)
            if ticket.status == TicketStatus.OPEN:  # relabelled: it must wait for proof now
                await self.tickets.transition_in(
                    session, ticket.public_id, TicketStatus.AWAITING_VERIFICATION, SYSTEM
                )
            return "no_account"
        if method == "registered_email" and sender_authenticated:
            await self._verified(
                session, ticket, account, "DKIM/DMARC-aligned mail from the registered address"
            )
            return "verified"
        try:
            await self._send_code(session, ticket, account, language, proven=sender_authenticated)
        except CodeLimitReached:
            # No more codes to this account for now; the DPO decides. The requester reads the
            # same acknowledgement as for a code sent: nothing tells them about the limit.
            ticket.verification = "limited"
            ticket.needs_review = True
            await self.tickets.note_in(session, ticket, SYSTEM, "verification_code_limited", {})
            await self.tickets.transition_in(
                session, ticket.public_id, TicketStatus.AWAITING_VERIFICATION, SYSTEM
            )
            return "code"
        ticket.verification = "code"
        await self.tickets.transition_in(
            session, ticket.public_id, TicketStatus.AWAITING_VERIFICATION, SYSTEM
        )
        return "code"

    async def begin_in_chat(
        self, session: AsyncSession, ticket: Ticket, *, linked_account_id: str | None
    ) -> Step | Literal["identity"]:
        """A chat has no address to look an account up by. A chat that proved it holds an
        account before (and has not unlinked) is verified at once; otherwise it is asked
        which account it holds ("identity"), then sent a code by `send_code_to_account`."""
        method = self.method_for(ticket)
        if (step := await self._begin_without_account(session, ticket, method)) is not None:
            return step
        account = await session.get(Account, linked_account_id) if linked_account_id else None
        if account is not None:
            await self._verified(
                session, ticket, account, "chat linked to the account by an earlier code"
            )
            return "verified"
        ticket.verification = "identity"
        await self.tickets.transition_in(
            session, ticket.public_id, TicketStatus.AWAITING_VERIFICATION, SYSTEM
        )
        return "identity"

    async def send_code_to_account(
        self, session: AsyncSession, ticket: Ticket, said: str, language: str | None
    ) -> None:
        """The chat named its account (registered email, or username): send a code to the
        account's registered email. When nobody matches, the ticket waits for a person. The
        caller answers the same either way: the chat never learns whether an account exists.
        Raises TicketError when the ticket has had all the codes it may have."""
        named = {found.label: found.text for found in reversed(find_identifiers(said))}
        if "EMAIL" in named:
            account = await self.directory.find_registered(session, named["EMAIL"])
        else:
            username = named.get("USERNAME") or (said.split() or [""])[-1].lstrip("@")
            account = await self.directory.find_by_username(session, username[:128])
        if account is None:
            ticket.verification = "no_account"
            ticket.needs_review = True
            session.add(ticket)
            await self.tickets.note_in(session, ticket, SYSTEM, "verification_no_account", {})
            return
        # The chat names an account; naming it proves nothing about its mailbox.
        await self._send_code(session, ticket, account, language, proven=False)
        ticket.verification = "code"
        session.add(ticket)

    async def reconsider(self, public_id: str, actor: str) -> Step | Literal["identity"] | None:
        """After the DPO relabels a ticket: if its types now need more proof than was asked
        for (a triage `inquiry` that is really an erasure), ask for it now."""
        async with self.tickets.db.transaction() as session:
            ticket = await self.tickets.load_in(session, public_id, lock=True)
            method = self.method_for(ticket)
            done = ticket.verification or "none"
            if done == "verified" or STRICTNESS.index(method) <= STRICTNESS.index(
                done if done in STRICTNESS else "none"
            ):
                return None
            if ticket.status not in (TicketStatus.NEW, TicketStatus.OPEN):
                return None
            first = (
                await session.exec(
                    select(Message)
                    .where(Message.ticket_id == ticket.id)
                    .where(Message.direction == "in")
                    .order_by(col(Message.id))
                    .limit(1)
                )
            ).first()
            requester = await session.get_one(Requester, ticket.requester_id)
            step: Step | Literal["identity"]
            if ticket.contact_kind == ContactKind.TELEGRAM:
                step = await self.begin_in_chat(session, ticket, linked_account_id=None)
            else:
                step = await self.begin(
                    session,
                    ticket,
                    sender=ticket.contact_value,
                    sender_authenticated=bool(first and first.sender_authenticated),
                    language=ticket.language or requester.language,
                )
            if step in ("manual", "identity"):
                # A code mail explains itself; these steps need the requester to act first.
                await self.outbox.tell_requester(
                    session,
                    ticket=ticket,
                    kind="verification_needed",
                    lang=ticket.language or requester.language,
                    context={"how": "documents" if step == "manual" else "account"},
                )
            await self.tickets.note_in(
                session,
                ticket,
                actor,
                "verification_reconsidered",
                {"method": method, "step": step},
            )
            return step


class AccountLookup(Protocol):
    """Who holds an address or a username: the imported `account` table (AccountDirectory),
    or the company's own database (CompanyDirectory)."""

    async def find_registered(self, session: AsyncSession, email: str) -> Account | None: ...

    async def find_by_username(self, session: AsyncSession, username: str) -> Account | None: ...

    async def find_registered_many(
        self, session: AsyncSession, emails: Collection[str]
    ) -> dict[str, Account]: ...
