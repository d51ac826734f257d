"""Raw RFC 5322 bytes to an InboundMessage. Every hard case of real mail is handled here.

The parser never raises on bad input it can survive: problems become `defects`. Parsing uses
the lenient compat32 policy because the strict one rejects headers that real clients send.
The hostile cases (tests/test_hostile_smtp.py) are handled here and in intake/charsets.py: a
Date in year 99999999999, MIME nested 1,000 deep, NUL bytes in labels, ids and text.
"""

from __future__ import annotations

import email
import email.utils
import hashlib
import re
from collections.abc import Sequence
from email import errors as mime_errors
from email.feedparser import BytesFeedParser
from email.message import Message as MimePart

from inscriptis import get_text

from intake.charsets import MAX_HEADER_CHARS, decode_bytes, decode_header_value
from rightsdesk.inbound import (
    DERIVED_ID_DOMAIN,
    Attachment,
    Authentication,
    Bounce,
    InboundMessage,
)
from rightsdesk.models import Channel
from rightsdesk.pipeline import Delivery

_MSGID = re.compile(r"<([^<>\s]+)>")
_ADDR_CLEAN = re.compile(r"[\x00-\x20<>]")
_ANGLE_ADDR = re.compile(r"<([^<>]*)>\s*$")
# What we take for an address: a dot-atom local part, a domain of labels (localhost too).
# Anything else ("broken@@", an encoded word run into an address) is no address: the envelope
# sender is used.
_ADDR_SPEC = re.compile(
    r"^[a-z0-9!#$%&'*+/?^_`{|}~-]+(\.[a-z0-9!#$%&'*+/?^_`{|}~-]+)*"
    r"@[a-z0-9]([a-z0-9-]*[a-z0-9])?(\.[a-z0-9]([a-z0-9-]*[a-z0-9])?)*$"
)
# A bare address written after a name without angle brackets: "=?utf-8?b?5byg5LiJ?= a@b.cn".
_BARE_ADDR = re.compile(r"[^\s<>\"()]+@[^\s<>\"()]+")


# ---- identity of a message -----------------------------------------------------------------


def derived_message_id(raw: bytes) -> str:
    """A stable id for mail without a Message-ID: the hash of its content."""
    return f"sha256-{hashlib.sha256(raw).hexdigest()[:40]}@{DERIVED_ID_DOMAIN}"


_HEADER_BLOCK_END = re.compile(rb"\r?\n\r?\n")
_MESSAGE_ID_FIELD = re.compile(rb"^message-id[ \t]*:(.*(?:\r?\n[ \t].*)*)", re.I | re.M)


def message_id_of(raw: bytes) -> str:
    """The Message-ID (without brackets). Every door calls this before it may answer, so it
    is a scan of the header block for the first Message-ID field, not a parse of the mail."""
    end = _HEADER_BLOCK_END.search(raw)
    field = _MESSAGE_ID_FIELD.search(raw, 0, end.start() if end else len(raw))
    value = b" ".join(field.group(1).split()).decode("ascii", "replace") if field else ""
    if value:
        found = _MSGID.search(value)
        candidate = found.group(1) if found else value.strip("<>")
        # Printable ASCII only: a NUL in a Message-ID once made every PostgreSQL insert fail,
        # so the sender was told 451 for ever.
        if candidate and len(candidate) <= 500 and candidate.isascii() and candidate.isprintable():
            return candidate
    return derived_message_id(raw)


_STABLE_HEADERS = (b"from", b"to", b"cc", b"subject", b"date")


def content_digest(raw: bytes) -> str:
    """A digest of what no relay changes: From/To/Cc/Subject/Date and the body.

    Trace headers (Received, Return-Path, Delivered-To, X-…) and line endings are left out,
    so one message fetched over IMAP and delivered over SMTP has one digest.
    """
    normal = raw.replace(b"\r\n", b"\n")
    head, _, body = normal.partition(b"\n\n")
    digest = hashlib.sha256()
    for line in re.sub(rb"\n[ \t]+", b" ", head).split(b"\n"):
        name = line.split(b":", 1)[0].strip().lower()
        if name in _STABLE_HEADERS:
            digest.update(line.strip() + b"\n")
    digest.update(b"\n" + body.rstrip(b"\n"))
    return digest.hexdigest()[:16]


def mail_dedupe_key(raw: bytes, message_id: str | None = None) -> str:
    """One message, however often and by whichever door it arrives: its Message-ID and the
    digest of its content. (A Message-ID alone is not enough: clients reuse them, and one
    reused id must never swallow a different request.)"""
    message_id = message_id or message_id_of(raw)
    if len(message_id) > 400:
        message_id = hashlib.sha256(message_id.encode()).hexdigest()
    return f"email:{message_id}#{content_digest(raw)}"


# Mail larger than this has its identity (Message-ID, digests) computed off the event loop.
OFFLOAD_OVER_BYTES = 256 * 1024


def mail_delivery(
    raw: bytes, envelope_from: str | None = None, envelope_to: Sequence[str] = ()
) -> Delivery:
    """What either mail door hands the Inbox for one message."""
    message_id = message_id_of(raw)
    return Delivery(
        channel=Channel.EMAIL,
        raw=raw,
        dedupe_key=mail_dedupe_key(raw, message_id),
        message_id=message_id,
        envelope_from=envelope_from,
        envelope_to=envelope_to,
        raw_sha256=hashlib.sha256(raw).hexdigest(),
    )


# ---- the MIME tree, depth-capped --------------------------------------------------------------

# Real mail nests a few levels (a forward of a forward); the feed parser recurses once per level
# and raised RecursionError at about 330, on mail nested 1,000 deep.
MAX_MIME_DEPTH = 32


class MimeTooDeepDefect(mime_errors.MessageDefect):
    """Parts nested deeper than MAX_MIME_DEPTH were kept as one opaque attachment."""


# The defect of a Subject longer than intake.charsets.MAX_HEADER_CHARS: read up to the limit.
HEADER_CUT = "HeaderTooLongDefect"
# The defect of a multipart body that could not be split into its parts (its boundary is not
# in it): the body is kept whole, as an attachment, and a person reads it.
MULTIPART_UNREAD = "MultipartUnreadDefect"


class UnclosedQuoteDefect(mime_errors.MessageDefect):
    """A quoted boundary parameter without its closing quote (`boundary="XYZ`), read as XYZ."""


class _DepthCappedParser(BytesFeedParser):
    """compat32's feed parser, except that a multipart or message/* part deeper than
    MAX_MIME_DEPTH is read as application/octet-stream: its content is kept (as an
    attachment), the parser does not descend, and the outer text stays readable."""

    def _parse_headers(self, lines: list[str]) -> None:
        super()._parse_headers(lines)  # type: ignore[misc]
        stack: list[MimePart] = self._msgstack  # type: ignore[attr-defined]
        current: MimePart = self._cur  # type: ignore[attr-defined]
        boundary = current.get_boundary() if current.get_content_maintype() == "multipart" else None
        if boundary and boundary.startswith('"') != boundary.endswith('"'):
            # `boundary="XYZ` (the quote never closed) is kept with its quote, a boundary no
            # line has: the whole body became one opaque part and its text was lost.
            current.set_param("boundary", boundary.strip('"'))
            stack[0].defects.append(UnclosedQuoteDefect())
        if len(stack) > MAX_MIME_DEPTH and current.get_content_maintype() in (
            "multipart",
            "message",
        ):
            del current["Content-Type"]
            current["Content-Type"] = "application/octet-stream"
            if not any(isinstance(d, MimeTooDeepDefect) for d in stack[0].defects):
                stack[0].defects.append(MimeTooDeepDefect())


def mime_tree(raw: bytes) -> MimePart:
    parser = _DepthCappedParser()
    parser.feed(raw)
    return parser.close()


def clean_text(text: str) -> str:
    """Text any database stores: NUL (PostgreSQL refuses it) becomes U+FFFD, lone surrogates
    (not UTF-8; asyncpg refuses them) become "?"."""
    if "\x00" in text:
        text = text.replace("\x00", "\ufffd")
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        text = text.encode("utf-8", errors="replace").decode("utf-8")
    return text


def _header(part: MimePart, name: str, hint: str | None = None) -> str:
    """A header as text, whatever compat32 hands back (str, or Header for 8-bit bytes)."""
    value = part.get(name)
    return "" if value is None else clean_text(decode_header_value(value, hint))


def _charset(part: MimePart) -> str | None:
    """The part's declared charset, or None when the label cannot even be read (a NUL in an
    RFC 2231 charset makes the email package raise ValueError)."""
    try:
        return part.get_content_charset()
    except Exception:
        return None


def _declared_charset(mime: MimePart) -> str | None:
    for part in mime.walk():
        charset = _charset(part)
        if charset and charset not in ("us-ascii", "ascii"):
            return charset
    return None


def _ids(value: str | None) -> list[str]:
    return [
        found for found in _MSGID.findall(value or "") if found.isascii() and found.isprintable()
    ]


def _raw_header(part: MimePart, name: str) -> str:
    """A header as it was sent (encoded words intact, 8-bit bytes as surrogates), unfolded."""
    for header, value in part.raw_items():
        if header.lower() == name.lower():
            return " ".join(str(value).split())
    return ""


def _address(raw: str, hint: str | None) -> tuple[str | None, str | None]:
    """(display name, address) of a From header.

    The address is split off the header as sent, and only then is the name decoded: an
    encoded word can hold any text, e.g. "x\r\nBcc: victim@example.org" or "a <b@c>", and
    decoding first would let it change which address is the sender.
    """
    angle = _ANGLE_ADDR.search(raw)
    if angle:  # "name <addr>": whatever the name holds, the address is the final <...>
        name, addr = raw[: angle.start()].strip().strip('"'), angle.group(1)
    else:
        name, addr = email.utils.parseaddr(raw)
        if not _ADDR_SPEC.match(_ADDR_CLEAN.sub("", addr).lower()):
            bare = _BARE_ADDR.findall(raw)
            if bare:  # the last word that is an address; the rest is the name
                addr = bare[-1]
                name = raw[: raw.rfind(addr)].strip().strip('"')
    addr = _ADDR_CLEAN.sub("", addr).lower()
    return (decode_header_value(name, hint) or None), (addr if _ADDR_SPEC.match(addr) else None)


# ---- the whole message ---------------------------------------------------------------------


def parse_email(
    raw: bytes,
    *,
    trusted_authserv_ids: frozenset[str] = frozenset(),
    attachment_cap: int = 10 * 1024 * 1024,
) -> InboundMessage:
    mime = mime_tree(raw)
    if any(type(d).__name__ == "MissingHeaderBodySeparatorDefect" for d in mime.defects):
        mime = mime_tree(repair_header_folding(raw))
    defects = [type(d).__name__ for d in mime.defects]
    hint = _declared_charset(mime)
    sender_name, sender = _address(_raw_header(mime, "From"), hint)
    date = None
    try:
        if _header(mime, "Date"):
            date = email.utils.parsedate_to_datetime(_header(mime, "Date"))
            if date.tzinfo is None:
                date = None
    except (TypeError, ValueError, IndexError, OverflowError):  # "1 Jan 99999999999": Overflow
        defects.append("BadDate")
    if len(str(mime.get("Subject") or "")) > MAX_HEADER_CHARS:
        defects.append(HEADER_CUT)  # the subject is read up to the limit: a person reads on
    texts, attachments = _walk(mime, attachment_cap, defects)
    if any(a.content_type.startswith("multipart/") for a in attachments):
        defects.append(MULTIPART_UNREAD)  # a multipart kept whole: its text is not read
    full_text = "\n\n".join(t for t in texts if t.strip()).strip()
    full_text = clean_text(full_text)
    inbound = InboundMessage(
        channel=Channel.EMAIL,
        message_id=message_id_of(raw),
        sender=sender,
        sender_name=clean_text(sender_name) if sender_name else None,
        return_path=_address(_raw_header(mime, "Return-Path"), hint)[1],
        recipients=_recipients(mime, hint),
        subject=clean_text(_header(mime, "Subject", hint)),
        text=split_quoted(full_text)[0],
        full_text=full_text,
        references=_ids(_header(mime, "In-Reply-To")) + _ids(_header(mime, "References")),
        sent_at=date,
        attachments=attachments,
        defects=defects,
        auth=authentication(mime, sender, trusted_authserv_ids),
    )
    inbound.bounce = bounce_report(mime)
    inbound.auto_generated = auto_generated_reason(mime, sender)
    if inbound.bounce is not None and inbound.auto_generated is None:
        inbound.auto_generated = "delivery-status report"
    return inbound


_HEADER_LINE = re.compile(rb"^(?:From |[!-9;-~]+:)")


def repair_header_folding(raw: bytes) -> bytes:
    """Join header lines that lost their folding whitespace (seen from spam filters that wrap
    long X- headers at a fixed width): otherwise the header block ends early and the MIME
    structure is read as body text."""
    match = re.search(rb"\r?\n\r?\n", raw)
    end = match.start() if match else len(raw)
    lines = raw[:end].split(b"\n")
    fixed = [
        line if i == 0 or line[:1] in (b" ", b"\t") or _HEADER_LINE.match(line) else b" " + line
        for i, line in enumerate(lines)
    ]
    return b"\n".join(fixed) + raw[end:]


def _recipients(mime: MimePart, hint: str | None) -> list[str]:
    values = [decode_header_value(v, hint) for v in mime.get_all("To", []) + mime.get_all("Cc", [])]
    return [clean_text(a.lower()) for _, a in email.utils.getaddresses(values) if "@" in a]


def _walk(
    mime: MimePart, attachment_cap: int, defects: list[str]
) -> tuple[list[str], list[Attachment]]:
    """The readable text of the message and its attachments."""
    texts: list[str] = []
    attachments: list[Attachment] = []
    _collect(mime, texts, attachments, attachment_cap, defects)
    return texts, attachments


def _collect(
    part: MimePart,
    texts: list[str],
    attachments: list[Attachment],
    cap: int,
    defects: list[str],
) -> None:
    ctype = part.get_content_type()
    if part.is_multipart():
        children = part.get_payload()
        if not isinstance(children, list):
            return
        if ctype == "multipart/alternative":
            chosen = _best_alternative([c for c in children if isinstance(c, MimePart)])
            if chosen is not None:
                _collect(chosen, texts, attachments, cap, defects)
            return
        for child in children:
            if isinstance(child, MimePart):
                _collect(child, texts, attachments, cap, defects)
        return
    disposition = _header(part, "Content-Disposition").split(";")[0].strip().lower()
    filename = _filename(part)
    if ctype in ("text/plain", "text/html") and disposition != "attachment" and not filename:
        text = _part_text(part, defects)
        texts.append(html_to_text(text) if ctype == "text/html" else text)
        return
    if ctype in ("message/delivery-status", "text/rfc822-headers"):
        return  # machine-readable report parts; see bounce_report
    payload = _payload_bytes(part, defects)
    attachments.append(
        Attachment(
            filename=clean_text(filename) if filename else None,
            content_type=clean_text(ctype),
            size=len(payload),
            sha256=hashlib.sha256(payload).hexdigest(),
            content=payload if len(payload) <= cap else None,
        )
    )


def _best_alternative(children: list[MimePart]) -> MimePart | None:
    """Prefer plain text when it has words; many clients send an empty text/plain beside HTML."""
    by_type: dict[str, MimePart] = {}
    for child in children:
        by_type.setdefault(child.get_content_type(), child)
    plain = by_type.get("text/plain")
    if plain is not None and (_payload_bytes(plain, []).strip()):
        return plain
    for preferred in ("text/html", "multipart/related", "multipart/mixed"):
        if preferred in by_type:
            return by_type[preferred]
    return plain or (children[-1] if children else None)


def _payload_bytes(part: MimePart, defects: list[str]) -> bytes:
    try:
        payload = part.get_payload(decode=True)  # base64, quoted-printable, x-uuencode
    except Exception:
        defects.append("UndecodablePayload")
        payload = None
    if isinstance(payload, bytes):
        return payload
    raw = part.get_payload()
    if isinstance(raw, str):  # an unknown transfer encoding: keep the bytes as they came
        return raw.encode("ascii", errors="surrogateescape")
    return b""


def _part_text(part: MimePart, defects: list[str]) -> str:
    payload = _payload_bytes(part, defects)
    text, used = decode_bytes(payload, _charset(part))
    if used == "utf-8-replace":
        defects.append("UndecodableText")
    return text.replace("\r\n", "\n")


_RAW_NAME = re.compile(r'(?:file)?name\s*=\s*"?([^";]+)"?', re.IGNORECASE)


def _filename(part: MimePart) -> str | None:
    # Raw 8-bit names (GBK from Chinese clients) are lost to U+FFFD inside get_filename():
    # take them from the raw header and decode them like any other 8-bit text.
    for header, value in part.raw_items():
        if header.lower() in ("content-disposition", "content-type") and not value.isascii():
            found = _RAW_NAME.search(value)
            if found and "*=" not in found.group(0):
                return decode_header_value(found.group(1)) or None
    try:
        name = part.get_filename()  # RFC 2231 parameters are decoded here
    except Exception:
        return None
    if not name:
        return None
    return decode_header_value(str(name)) or None  # and RFC 2047 words, which clients also use


def html_to_text(html: str) -> str:
    try:
        text = get_text(html)
    except Exception:  # lxml refuses some fragments; strip tags rather than lose the text
        text = re.sub(r"<[^>]+>", " ", html)
    lines = [line.rstrip() for line in text.splitlines()]
    return re.sub(r"\n{3,}", "\n\n", "\n".join(lines)).strip()


# ---- quoted history ------------------------------------------------------------------------

# Lines that start the quoted history in the clients used here: Outlook, Foxmail, QQ Mail,
# NetEase (163/126), Gmail, Apple Mail, Thunderbird, in Chinese and English.
_QUOTE_HEADERS = re.compile(
    r"^\s*(?:"
    r"-{2,}\s*(?:original message|原始邮件|原始郵件|forwarded message|转发邮件)\s*-{2,}"
    r"|_{8,}"
    r"|(?:from|发件人|發件人|寄件者)\s*[:：].*"
    r"|on .{4,200}wrote:\s*"
    r"|在\s*.{2,200}(?:写道|寫道)\s*[:：]?\s*"
    r"|.{0,200}\d{4}[年/-]\d{1,2}[月/-]\d{1,2}.{0,80}(?:写道|寫道)\s*[:：]?\s*"
    r")$",
    re.IGNORECASE,
)


def split_quoted(text: str) -> tuple[str, str]:
    """(new text, quoted history). The new text is what the sender wrote this time."""
    lines = text.splitlines()
    for index, line in enumerate(lines):
        if _QUOTE_HEADERS.match(line) and index > 0:
            new = "\n".join(lines[:index]).strip()
            if new:
                return _drop_quote_marks(new), "\n".join(lines[index:]).strip()
    new = _drop_quote_marks(text)
    return (new or text.strip()), ""


def _drop_quote_marks(text: str) -> str:
    kept = [line for line in text.splitlines() if not line.lstrip().startswith(">")]
    return "\n".join(kept).strip()


# ---- mail we must never answer ---------------------------------------------------------------

_DAEMONS = ("mailer-daemon", "postmaster", "noreply", "no-reply", "do-not-reply", "donotreply")


def auto_generated_reason(mime: MimePart, sender: str | None) -> str | None:
    """Why this mail is automatic (RFC 3834 and the de-facto headers), or None."""
    auto = _header(mime, "Auto-Submitted").strip().lower()
    if auto and auto != "no":
        return f"Auto-Submitted: {auto.split(';')[0]}"
    precedence = _header(mime, "Precedence").strip().lower()
    if precedence in ("bulk", "junk", "list", "auto_reply"):
        return f"Precedence: {precedence}"
    for header in ("X-Autoreply", "X-Autorespond", "X-Auto-Response-Suppress"):
        value = _header(mime, header).strip().lower()
        if value and (header != "X-Auto-Response-Suppress" or "all" in value or "oof" in value):
            return f"{header}: {value[:40]}"
    if mime.get("List-Id") or mime.get("List-Unsubscribe"):
        return "mailing list"
    return_path = mime.get("Return-Path")
    if return_path is not None and str(return_path).strip() in ("<>", ""):
        return "empty Return-Path"
    if sender and sender.split("@")[0] in _DAEMONS:
        return f"sent by {sender.split('@')[0]}"
    if mime.get_content_type() == "multipart/report":
        return "delivery report"
    return None


def bounce_report(mime: MimePart) -> Bounce | None:
    """The original Message-IDs and failed recipients of a delivery-status report."""
    if mime.get_content_type() != "multipart/report":
        return None
    recipients: list[str] = []
    originals: list[str] = []
    for part in mime.walk():
        ctype = part.get_content_type()
        if ctype == "message/delivery-status":
            for block in part.get_payload() or []:
                if not isinstance(block, MimePart):
                    continue
                action = _header(block, "Action").strip().lower()
                final = _header(block, "Final-Recipient") or _header(block, "Original-Recipient")
                if action in ("failed", "") and ";" in final:
                    recipient = final.split(";", 1)[1].strip().strip("<>").lower()
                    recipients.append(clean_text(recipient))
        elif ctype == "message/rfc822":
            inner = part.get_payload()
            if isinstance(inner, list) and inner and isinstance(inner[0], MimePart):
                originals += _ids(_header(inner[0], "Message-ID"))
        elif ctype == "text/rfc822-headers":
            originals += _ids(str(part.get_payload()))
    return Bounce(tuple(dict.fromkeys(originals)), tuple(dict.fromkeys(recipients)))


# ---- sender authentication -----------------------------------------------------------------

_RESULT = re.compile(r"\b(spf|dkim|dmarc)\s*=\s*([a-z]+)([^;]*)", re.IGNORECASE)
_PROP = re.compile(r"\b(header\.d|header\.i|header\.from|smtp\.mailfrom)\s*=\s*([^\s;]+)", re.I)


def authentication(
    mime: MimePart, sender: str | None, trusted_authserv_ids: frozenset[str]
) -> Authentication:
    """SPF/DKIM/DMARC from Authentication-Results added by servers we trust (RFC 8601).

    Headers from other authserv-ids are ignored: anyone can write an Authentication-Results
    header into the mail they send.
    """
    if not trusted_authserv_ids or sender is None:
        return Authentication()
    from_domain = sender.rsplit("@", 1)[-1]
    results: dict[str, str] = {}
    aligned = False
    for header in mime.get_all("Authentication-Results", []):
        value = " ".join(str(header).split())
        authserv_id = value.split(";", 1)[0].strip().split()[0].lower() if value else ""
        if authserv_id not in trusted_authserv_ids:
            continue
        for method, result, rest in _RESULT.findall(value):
            method, result = method.lower(), result.lower()
            results.setdefault(method, result)
            props = {k.lower(): v.strip("\"'").lower() for k, v in _PROP.findall(rest)}
            if result != "pass":
                continue
            if method == "dmarc" and props.get("header.from", from_domain) == from_domain:
                aligned = True
            if method == "dkim":
                domain = props.get("header.d") or props.get("header.i", "").rsplit("@", 1)[-1]
                if domain and (from_domain == domain or from_domain.endswith("." + domain)):
                    aligned = True
    return Authentication(
        spf=results.get("spf"),
        dkim=results.get("dkim"),
        dmarc=results.get("dmarc"),
        from_aligned=aligned,
    )
