"""The desk's tables: requests, tickets, messages, the audit trail, the outbox, verification
and the portal's codes, chats, notices and the service's heartbeats. Carrying requests out
(fulfilment runs, packages) is in rightsdesk.models_fulfilment, the console's people in
rightsdesk.models_staff; rightsdesk/migrations/env.py imports all three, so SQLModel.metadata
holds every table. Schema changes go through an Alembic migration in rightsdesk/migrations."""

import datetime as dt
import hashlib
from enum import StrEnum
from typing import Any

from sqlalchemy import JSON, Column, Index, LargeBinary, UniqueConstraint, false, text
from sqlmodel import Field, Relationship, SQLModel


class RequestType(StrEnum):
    ACCESS = "access"
    PORTABILITY = "portability"
    RECTIFICATION = "rectification"
    ERASURE = "erasure"
    ACCOUNT_DELETION = "account_deletion"
    WITHDRAW_CONSENT = "withdraw_consent"
    RESTRICTION = "restriction"
    INQUIRY = "inquiry"
    MINOR = "minor"
    DECEASED = "deceased"
    COMPLAINT = "complaint"
    NOT_RIGHTS_REQUEST = "not_rights_request"


# Types whose completion (not only the answer) has a deadline: the policy's "delete within 30 days".
COMPLETION_TYPES: frozenset[RequestType] = frozenset(
    {RequestType.ERASURE, RequestType.ACCOUNT_DELETION}
)


class TicketStatus(StrEnum):
    NEW = "new"
    AWAITING_VERIFICATION = "awaiting_verification"
    OPEN = "open"
    IN_PROGRESS = "in_progress"
    RESOLVED = "resolved"
    DENIED = "denied"
    CANCELLED = "cancelled"
    CLOSED = "closed"
    REOPENED = "reopened"
    # Not a request about personal information (a product question, spam): closed by the DPO
    # in one step (`tickets dismiss`). Terminal like resolved/denied; no mail to the requester.
    DISMISSED = "dismissed"


# Statuses in which the desk still owes the requester something (deadlines run, reminders go).
ACTIVE_STATUSES: frozenset[TicketStatus] = frozenset(
    {
        TicketStatus.NEW,
        TicketStatus.AWAITING_VERIFICATION,
        TicketStatus.OPEN,
        TicketStatus.IN_PROGRESS,
        TicketStatus.REOPENED,
    }
)
# The same, as the predicate of the partial index the console's queues read (migration 0016).
ACTIVE_STATUS_SQL = "status IN ('new', 'awaiting_verification', 'open', 'in_progress', 'reopened')"
ACTIVE_INDEX_INCLUDES = ("status", "completion_due", "needs_review", "assignee", "unread")


class Channel(StrEnum):
    EMAIL = "email"
    TELEGRAM = "telegram"
    MANUAL = "manual"  # entered by the DPO: a phone call, a letter, a walk-in
    INTERNAL = "internal"  # a note of the team's on a ticket: never sent to anyone
    WEB = "web"  # the portal's request form, from an address confirmed by a code


class ContactKind(StrEnum):
    EMAIL = "email"
    PHONE = "phone"
    TELEGRAM = "telegram"


def utcnow() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


class Account(SQLModel, table=True):
    """A row of the company's user directory (imported; the desk does not own these accounts)."""

    id: str = Field(primary_key=True, max_length=128)
    email: str = Field(index=True, max_length=320)  # registered email, lower-cased
    phone: str | None = Field(default=None, index=True, max_length=32)
    name: str | None = Field(default=None, max_length=200)
    username: str | None = Field(default=None, index=True, max_length=128)
    updated_at: dt.datetime = Field(default_factory=utcnow)


class Requester(SQLModel, table=True):
    id: int | None = Field(default=None, primary_key=True)
    name: str | None = Field(default=None, max_length=200)
    # The language of their newest request ("zh" | "zh-Hant" | "en" | None): a default only;
    # each ticket keeps its own (Ticket.language).
    language: str | None = Field(default=None, max_length=8)
    # Set only once the requester has proven control of the account (verification).
    account_id: str | None = Field(default=None, foreign_key="account.id", index=True)
    created_at: dt.datetime = Field(default_factory=utcnow)

    contacts: list["RequesterContact"] = Relationship(
        back_populates="requester", sa_relationship_kwargs={"lazy": "selectin"}
    )


class RequesterContact(SQLModel, table=True):
    """An address at which a requester reached us: email address, phone, chat id."""

    __table_args__ = (UniqueConstraint("kind", "value"),)

    id: int | None = Field(default=None, primary_key=True)
    requester_id: int = Field(foreign_key="requester.id", index=True)
    kind: str = Field(max_length=16)  # ContactKind
    value: str = Field(max_length=320)  # normalised (emails lower-cased)
    undeliverable: bool = False

    requester: Requester | None = Relationship(back_populates="contacts")


class TicketCounter(SQLModel, table=True):
    """The last sequence number handed out per year, for PRIV-YYYY-NNNNNN."""

    year: int = Field(primary_key=True)
    last_seq: int = 0


class Ticket(SQLModel, table=True):
    __table_args__ = (
        UniqueConstraint("year", "seq"),
        Index("ix_ticket_status_response_due", "status", "response_due"),
        # The scheduler's scans: completion deadlines, "new since", "finished since".
        Index("ix_ticket_status_completion_due", "status", "completion_due"),
        Index("ix_ticket_created_at", "created_at"),
        Index("ix_ticket_finished_at", "finished_at"),
        # The search's exact matches (rightsdesk.search).
        Index("ix_ticket_contact_value", "contact_value"),
        # The console's queues: active work in due-date order, read a page at a time; on
        # PostgreSQL it carries what the queue counts test, so they never visit the table
        # (migration 0016).
        Index(
            "ix_ticket_active_due",
            "response_due",
            "id",
            postgresql_where=text(ACTIVE_STATUS_SQL),
            postgresql_include=list(ACTIVE_INDEX_INCLUDES),
            sqlite_where=text(ACTIVE_STATUS_SQL),
        ),
    )

    id: int | None = Field(default=None, primary_key=True)
    public_id: str = Field(unique=True, max_length=20)
    year: int
    seq: int
    status: str = Field(default=TicketStatus.NEW, max_length=32, index=True)
    channel: str = Field(max_length=16)
    requester_id: int = Field(foreign_key="requester.id", index=True)
    # The address the request came from, to which we answer (email address or chat id).
    contact_kind: str = Field(max_length=16)
    contact_value: str = Field(max_length=320)
    subject: str | None = Field(default=None, max_length=998)
    # What we answer in: the language the request was written in, or the one the requester
    # chose ("zh" simplified, "zh-Hant" traditional, "en"); None: unknown, both zh and en.
    language: str | None = Field(default=None, max_length=8)
    received_at: dt.datetime
    clock_started_at: dt.datetime | None = None
    response_due: dt.date | None = Field(default=None, index=True)
    completion_due: dt.date | None = Field(default=None, index=True)
    deadlines_provisional: bool = False
    paused_since: dt.datetime | None = None
    original_response_due: dt.date | None = None
    extension_reason: str | None = None
    needs_review: bool = False
    classification: dict[str, Any] | None = Field(default=None, sa_column=Column(JSON))
    assignee: str | None = Field(default=None, max_length=200, index=True)
    verified_at: dt.datetime | None = None
    resolution_note: str | None = None
    denial_reason: str | None = None
    cancel_reason: str | None = None
    finished_at: dt.datetime | None = None  # entered resolved/denied/cancelled
    closed_at: dt.datetime | None = None
    # How identity is being established: none | registered_email | code | manual |
    # identity (the chat was asked which account it holds) |
    # no_account (nobody matched; the DPO decides) | verified
    verification: str | None = Field(default=None, max_length=32)
    # The requester wrote since a person last acted on the ticket (rightsdesk.followups).
    unread: bool = Field(default=False, index=True, sa_column_kwargs={"server_default": false()})
    unread_since: dt.datetime | None = None
    # Request types a later message asked for that the ticket does not have yet: the DPO
    # relabels (or not); never added silently.
    suggested_types: list[str] = Field(
        default_factory=list, sa_column=Column(JSON, nullable=False, server_default="[]")
    )
    # An open ticket of the same requester with the same types when this one opened.
    duplicate_of: int | None = Field(default=None, foreign_key="ticket.id")
    # `tickets merge`: this ticket's messages now live on that one.
    merged_into: int | None = Field(default=None, foreign_key="ticket.id")
    dismissal_reason: str | None = None
    # An extension of the completion date (erasure, account deletion): its own date and reason.
    original_completion_due: dt.date | None = None
    completion_extension_reason: str | None = None
    # Hash of the newest audit event: lets `audit verify` notice a chain cut short at its end.
    audit_head: str = Field(default="", max_length=64)
    # A withdrawal by mail waits here until it is final (the requester may undo it until then);
    # the ticket keeps its status meanwhile (rightsdesk.withdrawal).
    withdrawal_requested_at: dt.datetime | None = None
    withdrawal_final_at: dt.datetime | None = Field(default=None, index=True)
    created_at: dt.datetime = Field(default_factory=utcnow)
    updated_at: dt.datetime = Field(default_factory=utcnow)

    type_rows: list["TicketType"] = Relationship(
        sa_relationship_kwargs={"lazy": "selectin", "cascade": "all, delete-orphan"}
    )

    @property
    def types(self) -> list[RequestType]:
        present = {row.type for row in self.type_rows}
        return [t for t in RequestType if t.value in present]  # in the enum's order


class TicketType(SQLModel, table=True):
    """One request type of a ticket (a ticket can ask for several things)."""

    ticket_id: int | None = Field(default=None, foreign_key="ticket.id", primary_key=True)
    type: str = Field(primary_key=True, max_length=32, index=True)


class Message(SQLModel, table=True):
    """Every message in or out, on any channel, with its raw bytes as received or sent.

    Inbound messages are stored raw first (`parse_status="stored"`, `processed_at` empty) and
    acknowledged; the intake worker then parses and routes them (see rightsdesk.pipeline).
    """

    id: int | None = Field(default=None, primary_key=True)
    ticket_id: int | None = Field(default=None, foreign_key="ticket.id", index=True)
    direction: str = Field(max_length=3)  # "in" | "out"
    channel: str = Field(max_length=16)
    # What makes a delivery the same message: the Message-ID, a chat update id, a content hash.
    dedupe_key: str | None = Field(default=None, unique=True, max_length=512)
    message_id: str | None = Field(default=None, max_length=512, index=True)
    envelope_from: str | None = Field(default=None, max_length=320)
    envelope_to: list[str] = Field(
        default_factory=list, sa_column=Column(JSON, nullable=False, server_default="[]")
    )
    sender: str | None = Field(default=None, max_length=320, index=True)
    subject: str | None = Field(default=None, max_length=998)
    text: str | None = None  # decoded, readable text
    # Whether the requester may be sent an acknowledgement for this message (rate limited).
    acknowledge: bool = Field(default=False, sa_column_kwargs={"server_default": false()})
    new_text: str | None = None  # the text without quoted history: what the classifier read
    raw: bytes | None = Field(default=None, sa_column=Column(LargeBinary, nullable=True))
    raw_size: int = Field(default=0, sa_column_kwargs={"server_default": "0"})
    raw_sha256: str | None = Field(default=None, max_length=64, index=True)
    # "stored" (waiting), "parsed", "failed", "too_large" (never downloaded), "ignored",
    # "dismissed" (the DPO decided it needs nothing: `intake dismiss`, reason in details)
    parse_status: str = Field(default="parsed", max_length=16, index=True)
    parse_error: str | None = None
    auto_generated: str | None = Field(default=None, max_length=200)
    # DKIM/DMARC aligned with From, per trusted servers.
    sender_authenticated: bool = Field(default=False, sa_column_kwargs={"server_default": false()})
    # Joined its ticket by something anyone can type (the [PRIV-…] subject tag, or a repeated
    # request from the same address), from a sender nothing authenticated: it may be an
    # impostor. Shown wherever a person reads the message.
    unauthenticated_thread: bool = Field(
        default=False, sa_column_kwargs={"server_default": false()}
    )
    details: dict[str, Any] = Field(
        default_factory=dict, sa_column=Column(JSON, nullable=False, server_default="{}")
    )
    received_at: dt.datetime = Field(default_factory=utcnow)
    processed_at: dt.datetime | None = None


class StoredAttachment(SQLModel, table=True):
    __tablename__ = "attachment"

    id: int | None = Field(default=None, primary_key=True)
    message_id: int = Field(foreign_key="message.id", index=True)
    filename: str | None = Field(default=None, max_length=500)
    content_type: str = Field(max_length=200)
    size: int
    sha256: str = Field(max_length=64)
    content: bytes | None = Field(default=None, sa_column=Column(LargeBinary, nullable=True))

    @classmethod
    def of(
        cls, message_id: int, filename: str | None, content_type: str, content: bytes
    ) -> "StoredAttachment":
        """A file kept whole on a message: one received in the chat, one sent with a reply."""
        return cls(
            message_id=message_id,
            filename=(filename or "")[:500] or None,
            content_type=content_type,
            size=len(content),
            sha256=hashlib.sha256(content).hexdigest(),
            content=content,
        )


class MailboxState(SQLModel, table=True):
    """How far the IMAP watcher has read a folder (RFC 3501 UIDVALIDITY + last UID)."""

    folder: str = Field(primary_key=True, max_length=200)
    uidvalidity: int
    last_uid: int = 0


class Event(SQLModel, table=True):
    """The audit trail. A ticket's events form a SHA-256 hash chain (see rightsdesk.audit)."""

    __table_args__ = (UniqueConstraint("ticket_id", "seq"),)

    id: int | None = Field(default=None, primary_key=True)
    ticket_id: int = Field(foreign_key="ticket.id", index=True)
    seq: int
    at: dt.datetime
    actor: str = Field(max_length=200)
    action: str = Field(max_length=64)
    before: dict[str, Any] = Field(default_factory=dict, sa_column=Column(JSON, nullable=False))
    after: dict[str, Any] = Field(default_factory=dict, sa_column=Column(JSON, nullable=False))
    prev_hash: str = Field(max_length=64)
    hash: str = Field(max_length=64)


class OutboxEntry(SQLModel, table=True):
    """A message of ours waiting to be sent (the content is the `message` row, direction out).

    Written in the same transaction as whatever caused it, sent after, marked sent only on the
    relay's 250: a relay outage delays mail, it never loses it.
    """

    id: int | None = Field(default=None, primary_key=True)
    message_id: int = Field(foreign_key="message.id", unique=True)
    ticket_id: int | None = Field(default=None, foreign_key="ticket.id", index=True)
    kind: str = Field(max_length=32)  # acknowledgement, verification_code, resolved, ...
    # Who sends it: "email" (OutboundSender, raw MIME) or "telegram" (the bot, a JSON payload).
    channel: str = Field(
        default=Channel.EMAIL, max_length=16, sa_column_kwargs={"server_default": "email"}
    )
    recipient: str = Field(max_length=320)
    status: str = Field(default="pending", max_length=16, index=True)  # pending|sent|failed
    attempts: int = 0
    next_attempt_at: dt.datetime = Field(default_factory=utcnow, index=True)
    last_error: str | None = None
    # The replica whose sender holds the entry's lease: a restart releases its own dead
    # predecessor's claims, and those of replicas whose heartbeats stopped.
    claimed_by: str | None = Field(default=None, max_length=200)
    created_at: dt.datetime = Field(default_factory=utcnow)
    sent_at: dt.datetime | None = None


class VerificationChallenge(SQLModel, table=True):
    """A one-time code sent to an account's registered email for one ticket."""

    id: int | None = Field(default=None, primary_key=True)
    ticket_id: int = Field(foreign_key="ticket.id", index=True)
    account_id: str = Field(foreign_key="account.id", index=True)  # searched by account
    sent_to: str = Field(max_length=320)  # the registered address, never one the requester gave
    code_hash: str = Field(max_length=64)  # HMAC-SHA256 of the code; the code is never stored
    expires_at: dt.datetime
    attempts: int = 0
    sends: int = 1
    status: str = Field(default="pending", max_length=16)  # pending|verified|locked|expired
    created_at: dt.datetime = Field(default_factory=utcnow)
    reminded_at: dt.datetime | None = None  # the one reminder to an unanswered challenge


class SentNotice(SQLModel, table=True):
    """Every reminder, escalation and digest, once: the unique (kind, key) is the guarantee,
    written in the same transaction as the mail, whichever replica gets there first."""

    __table_args__ = (UniqueConstraint("kind", "key"),)

    id: int | None = Field(default=None, primary_key=True)
    kind: str = Field(max_length=32)  # digest, reminder, escalation, unassigned, ...
    key: str = Field(max_length=200)  # e.g. the date, or ticket + due date + days left
    ticket_id: int | None = Field(default=None, foreign_key="ticket.id", index=True)
    created_at: dt.datetime = Field(default_factory=utcnow)


class ChatConversation(SQLModel, table=True):
    """Where one chat user is in their conversation with the bot. Kept in the database, so a
    restart resumes the conversation where the user left it."""

    __table_args__ = (UniqueConstraint("channel", "chat_id"),)

    id: int | None = Field(default=None, primary_key=True)
    channel: str = Field(default=Channel.TELEGRAM, max_length=16)
    chat_id: str = Field(max_length=64)
    language: str = Field(default="zh", max_length=8)  # "zh" | "zh-Hant" | "en"
    # idle | confirming (buttons shown) | identity (asked for the account) | code | documents
    state: str = Field(default="idle", max_length=16)
    ticket_id: int | None = Field(default=None, foreign_key="ticket.id")  # the one in progress
    # confirming: the message being confirmed and what the classifier found in it
    pending: dict[str, Any] = Field(
        default_factory=dict, sa_column=Column(JSON, nullable=False, server_default="{}")
    )
    # The account this chat proved it holds (a code sent to its registered email), remembered
    # until /unlink: later requests from the chat need no new code.
    account_id: str | None = Field(default=None, max_length=128)
    wrong_codes: int = 0  # for a ticket whose account was not found: the same lock applies
    created_at: dt.datetime = Field(default_factory=utcnow)
    updated_at: dt.datetime = Field(default_factory=utcnow)


class PortalCode(SQLModel, table=True):
    """A one-time code of the portal's forms (`request`: confirm an address before it becomes a
    ticket; `status`: see a ticket's status). Found by its handle's SHA-256; the code is an
    HMAC; addresses and clients only as keyed hashes (for the rate limits)."""

    __tablename__ = "portal_code"
    __table_args__ = (
        Index("ix_portal_code_email_key_created_at", "email_key", "created_at"),
        Index("ix_portal_code_client_key_created_at", "client_key", "created_at"),
    )

    id: int | None = Field(default=None, primary_key=True)
    handle_hash: str = Field(max_length=64, unique=True)
    purpose: str = Field(max_length=16)  # request | status
    email_key: str = Field(max_length=64)
    client_key: str = Field(max_length=64)
    code_hash: str = Field(max_length=64)
    attempts: int = 0
    status: str = Field(default="pending", max_length=16)  # pending|used|locked|expired|sham
    expires_at: dt.datetime
    created_at: dt.datetime
    used_at: dt.datetime | None = None
    ticket_id: int | None = Field(default=None, foreign_key="ticket.id")
    # request: what the form said, until the address is confirmed (then it is the ticket's)
    payload: dict[str, Any] | None = Field(default=None, sa_column=Column(JSON, nullable=True))


# Database objects that the migrations create but the models cannot describe: the search
# indexes (SQLite FTS5 tables, PostgreSQL trigram and bigram indexes). Schema comparisons skip
# them.
UNMODELLED_PREFIXES = ("message_fts", "ix_trgm_", "ix_bigrams_")


def modelled(obj: Any, name: str | None, type_: str, reflected: bool, compare_to: Any) -> bool:
    """Alembic's include_object: False for the objects of UNMODELLED_PREFIXES."""
    return not (name or "").startswith(UNMODELLED_PREFIXES)


class TaskHeartbeat(SQLModel, table=True):
    """What each long-running task of each replica is doing, for `rightsdesk status` and the
    DPO's digest: written by the running service (rightsdesk.supervision)."""

    replica: str = Field(primary_key=True, max_length=200)
    task: str = Field(primary_key=True, max_length=64)
    state: str = Field(max_length=16)  # up | backing_off | failing | stopped
    since: dt.datetime  # in this state since
    failures: int = 0  # consecutive failures (0 while healthy)
    failing_since: dt.datetime | None = None  # the first of the consecutive failures
    last_error: str | None = Field(default=None, max_length=300)  # exception type, no data
    detail: str | None = Field(default=None, max_length=200)  # e.g. the port a door listens on
    beat_at: dt.datetime  # the replica was alive then
