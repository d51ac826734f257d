"""The portal's two forms for people who do not write: a request, and a request's status.

    WebForms.start_request / confirm_request
        a code to the address typed; only a confirmed address becomes a ticket, and it does so
        as a delivery on the `web` channel through the same Inbox and pipeline as mail
        (`parse_web` is that channel's parser): classified, verified, acknowledged alike
    WebForms.start_status / check_status
        ticket id + email: a code to the ticket's own address if they match (and the same
        answer when they do not); the right code shows the status, due date and our messages

Codes live in `portal_code`: found by their handle's SHA-256, compared as HMACs in constant
time, 5 tries, an expiry (the verification settings), at most N an hour per address and per
client (the portal settings), counted from the table, so every replica and every restart sees
the same limits. Addresses and clients are kept only as keyed hashes there.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import json
import secrets
from dataclasses import dataclass, field
from typing import Any, Literal

from sqlalchemy import null
from sqlmodel import col, delete, func, select, update
from sqlmodel.ext.asyncio.session import AsyncSession

from rightsdesk.clients import Client
from rightsdesk.desk_parts import DeskParts, OnDeskParts
from rightsdesk.identifiers import mask_codes, mask_identifiers, typed_code
from rightsdesk.inbound import Authentication, InboundMessage
from rightsdesk.languages import LANGS
from rightsdesk.models import (
    Channel,
    ContactKind,
    Message,
    PortalCode,
    RequesterContact,
    RequestType,
    Ticket,
)
from rightsdesk.outbound import can_mail
from rightsdesk.pipeline import Delivery, Inbox, IntakePipeline
from rightsdesk.templating import Templates

# What the form offers, in plain words (names.<lang>.j2 "ask_<type>" blocks say each one).
FORM_TYPES: tuple[str, ...] = (
    RequestType.ACCESS.value,
    RequestType.PORTABILITY.value,
    RequestType.RECTIFICATION.value,
    RequestType.ERASURE.value,
    RequestType.ACCOUNT_DELETION.value,
    RequestType.WITHDRAW_CONSENT.value,
    RequestType.RESTRICTION.value,
    RequestType.INQUIRY.value,
    RequestType.COMPLAINT.value,
)
MAX_TEXT = 5000
Outcome = Literal["right", "wrong", "locked", "expired", "unknown"]


class RateLimited(Exception):
    """Too many codes for this address or this client in the last hour."""


class FormInvalid(ValueError):
    """What was typed cannot be a request (the message names the field)."""

    def __init__(self, field_name: str) -> None:
        super().__init__(field_name)
        self.field = field_name


@dataclass(frozen=True)
class RequestForm:
    email: str
    types: list[str]
    text: str
    lang: str
    name: str = ""
    account: str = ""  # an account id, user name or phone, as the person knows it
    phone: str = ""


@dataclass(frozen=True)
class Confirmed:
    outcome: Outcome
    ticket: str | None = None
    attempts_left: int = 0


@dataclass(frozen=True)
class StatusView:
    ticket: str
    status: str
    types: list[str]
    received: str
    response_due: str | None
    completion_due: str | None
    lang: str | None
    messages: list[dict[str, Any]] = field(default_factory=list)


@dataclass(frozen=True)
class StatusCheck:
    outcome: Outcome
    view: StatusView | None = None
    attempts_left: int = 0


class WebForms(OnDeskParts):
    def __init__(
        self,
        parts: DeskParts,
        inbox: Inbox,
        pipeline: IntakePipeline,
        key: bytes,
    ) -> None:
        super().__init__(parts)
        self.inbox = inbox
        self.pipeline = pipeline
        self._key = key

    # ---- codes -----------------------------------------------------------------------------

    def _mac(self, label: str, value: str) -> str:
        return hmac.new(self._key, f"portal-{label}:{value}".encode(), hashlib.sha256).hexdigest()

    async def _limit(self, session: AsyncSession, email_key: str, client: Client) -> None:
        since = self.clock.now() - dt.timedelta(hours=1)
        portal = self.settings.portal
        for column, value, cap in (
            (PortalCode.email_key, email_key, portal.codes_per_address_per_hour),
            (PortalCode.client_key, client.key, portal.codes_per_client_per_hour),
        ):
            count = (
                await session.exec(
                    select(func.count(col(PortalCode.id)))
                    .where(col(column) == value)
                    .where(col(PortalCode.created_at) >= since)
                )
            ).one()
            if count >= cap:
                raise RateLimited()

    async def _new_code(
        self,
        session: AsyncSession,
        purpose: str,
        email: str,
        client: Client,
        *,
        payload: dict[str, Any] | None = None,
        ticket_id: int | None = None,
        sham: bool = False,
    ) -> tuple[str, str]:
        """(handle, code) of a fresh challenge. A sham one (honeypot, no such ticket) looks
        the same to the caller but no code opens it."""
        email_key = self._mac("email", email)
        await self._limit(session, email_key, client)
        handle = secrets.token_urlsafe(16)
        code = f"{secrets.randbelow(10**6):06d}"
        now = self.clock.now()
        ttl = self.settings.verification.code_ttl_minutes
        session.add(
            PortalCode(
                handle_hash=_handle_hash(handle),
                purpose=purpose,
                email_key=email_key,
                client_key=client.key,
                code_hash=self._mac("code", f"{purpose}:{handle}:{code}"),
                status="sham" if sham else "pending",
                expires_at=now + dt.timedelta(minutes=ttl),
                created_at=now,
                payload=payload,
                ticket_id=ticket_id,
            )
        )
        return handle, code

    async def _check(
        self, session: AsyncSession, purpose: str, handle: str, code: str
    ) -> tuple[Outcome, PortalCode | None, int]:
        row = (
            await session.exec(
                select(PortalCode)
                .where(PortalCode.handle_hash == _handle_hash(handle))
                .where(PortalCode.purpose == purpose)
                .with_for_update()
            )
        ).first()
        limit = self.settings.verification.max_attempts
        if row is None:
            return "unknown", None, 0
        typed = typed_code(code)
        given = self._mac("code", f"{purpose}:{handle}:{typed}")
        right = hmac.compare_digest(given, row.code_hash) and row.status == "pending"
        if row.status in ("locked", "used") or row.attempts >= limit:
            return "locked", row, 0
        if self.clock.now() >= row.expires_at:
            row.status = "expired" if row.status == "pending" else row.status
            session.add(row)
            return "expired", row, 0
        if right:
            return "right", row, limit - row.attempts
        row.attempts += 1
        if row.attempts >= limit:
            row.status = "locked"
        session.add(row)
        left = limit - row.attempts
        return ("locked" if left <= 0 else "wrong"), row, left

    # ---- the request form ------------------------------------------------------------------

    async def start_request(self, form: RequestForm, client: Client, *, honeypot: bool) -> str:
        """Check the form, send a code to the address typed; returns the handle the code
        page carries. `honeypot`: a robot filled the hidden field: the same answer, no mail."""
        email = form.email.strip().lower()
        if not can_mail(email) or len(email) > 254 or email in self.settings.own_addresses():
            raise FormInvalid("email")  # our own address: the desk would mail a code to itself
        types = [t for t in form.types if t in FORM_TYPES]
        text = form.text.strip()
        if not types and not text:
            raise FormInvalid("what")
        if len(text) > MAX_TEXT:
            raise FormInvalid("text")
        lang = form.lang if form.lang in LANGS else "zh"
        payload = {
            "email": email,
            "types": types,
            "text": text,
            "lang": lang,
            "name": form.name.strip()[:200],
            "account": form.account.strip()[:200],
            "phone": form.phone.strip()[:40],
        }
        async with self.db.transaction() as session:
            handle, code = await self._new_code(
                session, "request", email, client, payload=payload, sham=honeypot
            )
            if not honeypot:
                await self.outbox.enqueue_unthreaded(
                    session,
                    kind="portal_code",
                    to=email,  # the address typed: this code proves only that it is theirs
                    lang=lang,
                    context={
                        "code": code,
                        "purpose": "request",
                        "ttl_minutes": self.settings.verification.code_ttl_minutes,
                    },
                )
        return handle

    async def confirm_request(self, handle: str, code: str) -> Confirmed:
        """The right code: the form becomes a delivery on the `web` channel, stored by the
        Inbox and routed by the pipeline now; returns the ticket it opened (or joined)."""
        async with self.db.transaction() as session:
            outcome, row, left = await self._check(session, "request", handle, code)
            payload = dict(row.payload or {}) if row is not None else {}
            handle_hash = row.handle_hash if row is not None else ""
        if outcome != "right":
            return Confirmed(outcome, attempts_left=left)
        payload["confirmed_at"] = self.clock.now().isoformat()
        accepted = await self.inbox.accept(
            Delivery(
                channel=Channel.WEB,
                raw=json.dumps(payload, ensure_ascii=False, sort_keys=True).encode(),
                dedupe_key=f"web:{handle_hash}",
                message_id=f"web.{handle_hash[:32]}@portal",
                envelope_from=payload.get("email"),
            )
        )
        await self.pipeline.process(accepted.message_row_id)
        async with self.db.transaction() as session:
            await session.exec(
                update(PortalCode)
                .where(col(PortalCode.handle_hash) == handle_hash)
                .values(status="used", used_at=self.clock.now(), payload=null())
            )
            found = await session.exec(
                select(Ticket.public_id)
                .join(Message, col(Message.ticket_id) == col(Ticket.id))
                .where(Message.id == accepted.message_row_id)
            )
            public_id = found.first()
        return Confirmed("right", ticket=public_id, attempts_left=left)

    # ---- the status page -------------------------------------------------------------------

    async def start_status(self, ticket_id: str, email: str, client: Client) -> str:
        """A code to the ticket's own address when the ticket exists and the address is one
        its requester wrote from; the same handle and page either way."""
        email = email.strip().lower()
        public_id = ticket_id.strip().upper()[:20]
        async with self.db.transaction() as session:
            ticket = (
                await session.exec(select(Ticket).where(Ticket.public_id == public_id))
            ).first()
            matches = ticket is not None and await _wrote_from(session, ticket, email)
            handle, code = await self._new_code(
                session,
                "status",
                email,
                client,
                ticket_id=ticket.id if ticket is not None and matches else None,
                sham=not matches,
            )
            if ticket is not None and matches:
                await self.outbox.enqueue(
                    session,
                    ticket=ticket,
                    kind="portal_code",
                    to=email,  # one of the requester's own addresses, not just any typed
                    lang=ticket.language,
                    context={
                        "code": code,
                        "purpose": "status",
                        "ttl_minutes": self.settings.verification.code_ttl_minutes,
                    },
                )
        return handle

    async def check_status(self, handle: str, code: str) -> StatusCheck:
        async with self.db.transaction() as session:
            outcome, row, left = await self._check(session, "status", handle, code)
            if outcome != "right" or row is None or row.ticket_id is None:
                return StatusCheck("wrong" if outcome == "right" else outcome, attempts_left=left)
            row.status = "used"
            row.used_at = self.clock.now()
            session.add(row)
            ticket = await session.get_one(Ticket, row.ticket_id)
            messages = (
                await session.exec(
                    select(Message)
                    .where(Message.ticket_id == ticket.id)
                    .where(Message.direction == "out")
                    .where(col(Message.channel).in_([Channel.EMAIL, Channel.TELEGRAM]))
                    .order_by(col(Message.id))
                    .limit(100)
                )
            ).all()
        tz = self.settings.desk.tz
        view = StatusView(
            ticket=ticket.public_id,
            status=ticket.status,
            types=[t.value for t in ticket.types],
            received=ticket.received_at.astimezone(tz).date().isoformat(),
            response_due=ticket.response_due.isoformat() if ticket.response_due else None,
            completion_due=ticket.completion_due.isoformat() if ticket.completion_due else None,
            lang=ticket.language,
            messages=[
                {
                    "at": m.received_at.astimezone(tz).strftime("%Y-%m-%d %H:%M"),
                    "subject": mask_codes(m.subject or ""),
                    "text": mask_codes(mask_identifiers(m.text or "")),
                }
                for m in messages
            ],
        )
        return StatusCheck("right", view, left)

    async def purge(self, older_than_hours: int = 24) -> int:
        """Forms never confirmed lose what they said; old code rows go (the scheduler)."""
        now = self.clock.now()
        async with self.db.transaction() as session:
            await session.exec(
                update(PortalCode)
                .where(col(PortalCode.expires_at) < now)
                .where(col(PortalCode.payload).is_not(None))
                .values(payload=null())
            )
            gone = await session.exec(
                delete(PortalCode).where(
                    col(PortalCode.created_at) < now - dt.timedelta(hours=older_than_hours)
                )
            )
        return int(gone.rowcount or 0)


async def _wrote_from(session: AsyncSession, ticket: Ticket, email: str) -> bool:
    if ticket.contact_kind == ContactKind.EMAIL and hmac.compare_digest(
        ticket.contact_value.lower().encode(), email.encode()
    ):
        return True
    found = await session.exec(
        select(RequesterContact.id)
        .where(RequesterContact.requester_id == ticket.requester_id)
        .where(RequesterContact.kind == ContactKind.EMAIL)
        .where(RequesterContact.value == email)
    )
    return found.first() is not None


def _handle_hash(handle: str) -> str:
    return hashlib.sha256(f"portal-handle:{handle[:64]}".encode()).hexdigest()


def parse_web(raw: bytes, templates: Templates) -> InboundMessage:
    """The `web` channel's parser: a confirmed form as an inbound message. Its sender proved
    the address with a code, which is what DKIM/DMARC alignment proves for mail: the
    registered-email policy accepts it alike (erasure still gets a code to the account)."""
    data = json.loads(raw)
    lang = data.get("lang") if data.get("lang") in LANGS else "zh"
    asked = [templates.name("ask", t, lang) for t in data.get("types", []) if t in FORM_TYPES]
    lines = [*asked]
    if data.get("text"):
        lines += ["", data["text"]]
    details = [
        (templates.name("form", key, lang), data.get(key, ""))
        for key in ("name", "account", "phone")
        if data.get(key)
    ]
    if details:
        lines += ["", *(f"{label}: {value}" for label, value in details)]
    text = "\n".join(lines).strip()
    subject = templates.name("form", "subject", lang)
    return InboundMessage(
        channel=Channel.WEB,
        message_id=f"web.{hashlib.sha256(raw).hexdigest()[:32]}@portal",
        sender=str(data["email"]).lower(),
        sender_name=data.get("name") or None,
        subject=subject,
        text=text,
        full_text=text,
        auth=Authentication(from_aligned=True),
        chosen_types=[t for t in data.get("types", []) if t in FORM_TYPES],
    )
