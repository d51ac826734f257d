"""What every channel hands the core: one InboundMessage per message received."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field

from rightsdesk.models import Channel


@dataclass(frozen=True)
class Attachment:
    filename: str | None
    content_type: str
    size: int
    sha256: str
    content: bytes | None  # None when larger than the configured cap (metadata kept)


@dataclass(frozen=True)
class Authentication:
    """What trusted Authentication-Results say about the From address."""

    spf: str | None = None
    dkim: str | None = None
    dmarc: str | None = None
    # True only if a trusted server saw DKIM pass for the From domain, or DMARC pass.
    from_aligned: bool = False


@dataclass(frozen=True)
class Bounce:
    """A delivery-status report: which of our messages did not arrive, and to whom."""

    original_message_ids: tuple[str, ...] = ()
    failed_recipients: tuple[str, ...] = ()


@dataclass
class InboundMessage:
    channel: Channel
    message_id: str  # without angle brackets; derived from the content when missing
    sender: str | None  # address (lower-cased) or chat id
    sender_name: str | None = None
    # The Return-Path header's address (the envelope sender the last server saw), for mail
    # whose From has no usable address.
    return_path: str | None = None
    recipients: list[str] = field(default_factory=list)
    subject: str = ""
    text: str = ""  # the new text, quoted history removed: what the classifier reads
    full_text: str = ""  # everything readable, kept on the ticket
    references: list[str] = field(default_factory=list)  # In-Reply-To then References
    sent_at: dt.datetime | None = None
    auto_generated: str | None = None  # why we must never answer it, if so
    bounce: Bounce | None = None
    auth: Authentication = field(default_factory=Authentication)
    attachments: list[Attachment] = field(default_factory=list)
    defects: list[str] = field(default_factory=list)  # parse problems that were survived
    # The request types the requester chose themselves (the portal form's boxes): they are the
    # request, whatever the classifier reads in the text.
    chosen_types: list[str] = field(default_factory=list)

    @property
    def cut(self) -> bool:
        """The parser kept part of the mail unread (a limit of its own, e.g. MIME nesting):
        what the classifier read is not the whole request, so a person must."""
        return any(d in PARSER_CUTS for d in self.defects)


# The domain of the Message-ID given to mail that had none (intake.mail.derived_message_id):
# no one's real Message-ID, so our mail never quotes it in In-Reply-To or References.
DERIVED_ID_DOMAIN = "rightsdesk.invalid"


def is_derived_message_id(message_id: str) -> bool:
    return message_id.endswith("@" + DERIVED_ID_DOMAIN)


# The defects (intake.mail) that mean part of the mail was left unread.
PARSER_CUTS = frozenset({"MimeTooDeepDefect", "HeaderTooLongDefect", "MultipartUnreadDefect"})
