"""The bytes of a mail we send, written directly: headers, multipart/alternative, attachments.

`compose_mail` writes what `email.message.EmailMessage` with the default policy wrote for the
same mail (set_content, add_alternative, add_attachment, as_bytes), to the same decoded values:

    To, From, Reply-To   a display name in RFC 2047 encoded-words when it is not ASCII (or
                         looks like an encoded-word itself), quoted when it holds specials
    Subject              ASCII words as they are, the others as encoded-words (UTF-8, base64)
    the rest             Date, Message-ID, In-Reply-To, References, Auto-Submitted, ... as given
    body                 multipart/alternative: text/plain and text/html in UTF-8, each 7bit,
                         8bit (short lines), or the shorter of quoted-printable and base64;
                         with files, multipart/mixed around it, a file in base64 with its name
                         as RFC 2231 (filename*=utf-8''...) when not plain ASCII
    lines                "\\n" between lines (as_bytes did), headers folded at 78 at spaces

Why not EmailMessage: its default policy parses every header it is given back into a tree
and folds it again, and set_content re-parses the Content-Type it wrote: 5-30 ms a mail, most
of routing's time for a new request (#15). This writes the same mail in a few hundred
microseconds; `tests/test_composing.py` holds the two to the same parsed values.
"""

from __future__ import annotations

import base64
import binascii
import datetime as dt
import functools
import re
import secrets
from collections.abc import Sequence
from dataclasses import dataclass
from email.errors import HeaderParseError
from email.headerregistry import Address
from email.utils import format_datetime
from urllib.parse import quote

from rightsdesk.templating import OutgoingAttachment

__all__ = [
    "Composed",
    "UnmailableAddress",
    "can_mail",
    "compose_mail",
    "mail_address",
    "one_line",
]

LINE = 78  # RFC 5322's "SHOULD" for a header line, and the default policy's fold
_WORD_BYTES = 45  # an encoded-word's payload: 60 base64 characters, 75 with =?utf-8?b?...?=
_SPECIALS = frozenset('()<>@,:;."[]\\')  # RFC 5322: a display name with one is quoted
_TOKEN = re.compile(r"^[a-z0-9!#$&^_.+-]+/[a-z0-9!#$&^_.+-]+$")  # type/subtype, RFC 2045
_CHARSET = re.compile(r'charset\s*=\s*"?([A-Za-z0-9._:+-]{1,40})"?', re.IGNORECASE)
# A file name that goes in a quoted-string as it is; any other is written as RFC 2231.
_PLAIN_NAME = re.compile(r"^[\x20-\x7e]+$")


class UnmailableAddress(ValueError):
    """An address that no standard mail header can carry: we cannot write to it."""


def mail_address(address: str, name: str | None = None) -> Address:
    """A header-safe address, or UnmailableAddress. A name that breaks the header is dropped;
    an address that does is refused."""
    try:
        return Address(one_line(name or ""), addr_spec=address)
    except (ValueError, IndexError, HeaderParseError):
        pass
    try:
        return Address(addr_spec=address)
    except (ValueError, IndexError, HeaderParseError):
        raise UnmailableAddress("the address cannot be written in a mail header") from None


@functools.lru_cache(maxsize=4096)  # asked of one sender several times while it is routed
def can_mail(address: str) -> bool:
    try:
        mail_address(address)
    except UnmailableAddress:
        return False
    return True


def one_line(value: str, limit: int = 200) -> str:
    """Header text from anything a requester wrote: CR/LF and control characters cannot
    survive, so nobody can add a header through a name or a subject."""
    return re.sub(r"[\x00-\x1f\x7f]+", " ", value).strip()[:limit]


@dataclass(frozen=True)
class Composed:
    """A mail composed and not queued yet: its bytes as stored and sent, and what the
    message row keeps beside them."""

    raw: bytes
    message_id: str  # without the angle brackets
    subject: str  # as the requester reads it (decoded)
    text: str  # the text/plain part


def compose_mail(
    *,
    to: Address,
    sender: Address,
    subject: str,
    date: dt.datetime,
    message_id: str,
    kind: str,
    text: str,
    html: str,
    reply_to: Address | None = None,
    in_reply_to: str | None = None,
    references: Sequence[str] = (),
    auto_submitted: str | None = None,
    attachments: Sequence[OutgoingAttachment] = (),
) -> Composed:
    """The mail's bytes. `subject` one line already (`one_line`); `message_id`,
    `in_reply_to` and `references` without angle brackets."""
    headers = [_fold(f"To: {_address(to)}"), _fold(f"From: {_address(sender)}")]
    if reply_to is not None:
        headers.append(_fold(f"Reply-To: {_address(reply_to)}"))
    headers.append(_fold(f"Subject: {_unstructured(subject)}"))
    headers.append(f"Date: {format_datetime(date)}")
    headers.append(_fold(f"Message-ID: <{message_id}>"))
    if in_reply_to is not None:
        headers.append(_fold(f"In-Reply-To: <{in_reply_to}>"))
    if references:
        headers.append(_fold("References: " + " ".join(f"<{r}>" for r in references)))
    if auto_submitted is not None:
        headers.append(f"Auto-Submitted: {auto_submitted}")
    headers.append("X-Auto-Response-Suppress: All")
    headers.append(_fold(f"X-Rightsdesk-Kind: {_unstructured(one_line(kind))}"))
    headers.append("MIME-Version: 1.0")
    parts = [_text_part("plain", text), _text_part("html", html)]
    body = _multipart("alternative", parts)
    if attachments:
        body = _multipart("mixed", [body, *(_attachment(a) for a in attachments)])
    raw = ("\n".join(headers) + "\n").encode("ascii") + body
    return Composed(raw, message_id, subject, text)


# ---- headers ----------------------------------------------------------------------------------


def _fold(line: str) -> str:
    """Fold a header line at its spaces so that lines keep to 78 where they can: unfolding
    (removing each line break) gives the line back, so the value is unchanged. Never right
    after the name: a reader keeps the space that begins a value on the next line (Python's
    parser reads "Subject:\n x" as " x")."""
    if len(line) <= LINE:
        return line
    words = line.split(" ")
    lines = [" ".join(words[:2])]
    for word in words[2:]:
        if word and lines[-1].strip() and len(lines[-1]) + 1 + len(word) > LINE:
            lines.append(" " + word)
        else:
            lines[-1] += " " + word
    return "\n".join(lines)


def _utf8(value: str) -> bytes:
    # A lone surrogate (an undecodable byte of a parsed header) becomes "?", never an error.
    return value.encode("utf-8", "replace")


def _needs_encoding(word: str) -> bool:
    # A word that looks like an encoded-word would be decoded by the reader: encoded too.
    return not word.isascii() or "=?" in word


def _encoded_words(value: str) -> str:
    """`value` as RFC 2047 encoded-words (UTF-8, base64), each whole characters: a reader
    joins adjacent ones and ignores the spaces between them."""
    words: list[str] = []
    chunk: list[str] = []
    size = 0
    for char in value:
        n = len(_utf8(char))
        if chunk and size + n > _WORD_BYTES:
            words.append("".join(chunk))
            chunk, size = [], 0
        chunk.append(char)
        size += n
    if chunk:
        words.append("".join(chunk))
    return " ".join("=?utf-8?b?" + base64.b64encode(_utf8(w)).decode("ascii") + "?=" for w in words)


def _unstructured(value: str) -> str:
    """An unstructured header's value (Subject): plain ASCII words as they are, each run of
    the others (with the spaces inside it) as encoded-words. Between an encoded-word and a
    plain word the space stays a space; between two encoded-words it would be dropped, so
    the spaces of a run are encoded inside it."""
    if not any(_needs_encoding(w) for w in value.split(" ")):
        return value
    tokens = value.split(" ")
    out: list[str] = []
    i = 0
    while i < len(tokens):
        if not _needs_encoding(tokens[i]):
            out.append(tokens[i])
            i += 1
            continue
        j = i  # the run: on over empty tokens (double spaces) to the next encoded word
        k = i + 1
        while k < len(tokens):
            while k < len(tokens) and tokens[k] == "":
                k += 1
            if k < len(tokens) and _needs_encoding(tokens[k]):
                j = k
                k += 1
            else:
                break
        out.append(_encoded_words(" ".join(tokens[i : j + 1])))
        i = j + 1
    return " ".join(out)


def _address(address: Address) -> str:
    """`Name <addr>` as the default policy writes it: a name that is not plain ASCII in
    encoded-words, one with specials in a quoted string."""
    name, spec = address.display_name, address.addr_spec
    if not name:
        return spec
    if _needs_encoding(name):
        phrase = _encoded_words(name)
    elif _SPECIALS.isdisjoint(name):
        phrase = name
    else:
        phrase = '"' + name.replace("\\", "\\\\").replace('"', '\\"') + '"'
    return f"{phrase} <{spec}>"


# ---- bodies -----------------------------------------------------------------------------------


def _text_part(subtype: str, content: str) -> bytes:
    cte, body = _encode_text(content)
    head = f'Content-Type: text/{subtype}; charset="utf-8"\nContent-Transfer-Encoding: {cte}\n\n'
    return head.encode("ascii") + body


def _encode_text(content: str) -> tuple[str, bytes]:
    """The transfer encoding the default policy picks, and the body in it: 7bit or 8bit
    when every line fits in 78 bytes, else the shorter of quoted-printable and base64 (as
    it does, judged by the first ten lines)."""
    lines = _utf8(content).splitlines()
    normal = b"\n".join(lines) + b"\n"
    if max((len(x) for x in lines), default=0) <= LINE:
        return ("7bit" if normal.isascii() else "8bit"), normal
    sniff = b"\n".join(lines[:10]) + b"\n"
    quoted = binascii.b2a_qp(sniff, istext=True)
    if len(quoted) > len(binascii.b2a_base64(sniff)):
        return "base64", base64.encodebytes(normal)
    return "quoted-printable", _qp(normal)


def _qp(data: bytes) -> bytes:
    """Quoted-printable, lines of at most 76 with soft breaks; a trailing space or tab on a
    line is encoded (binascii does both)."""
    encoded = binascii.b2a_qp(data, istext=True)
    return encoded if encoded.endswith(b"\n") else encoded + b"\n"


def _attachment(attachment: OutgoingAttachment) -> bytes:
    media, _, params = attachment.content_type.partition(";")
    media = media.strip().lower()
    charset = _CHARSET.search(params)
    if "/" not in media:  # as add_attachment took "type" alone: type/octet-stream
        media = f"{media}/octet-stream"
    if not _TOKEN.match(media) or media.startswith(("multipart/", "message/")):
        # A file in base64 cannot be a multipart or a message/* part (RFC 2045, 2046).
        media = "application/octet-stream"
    if charset is not None and media.startswith("text/"):  # the one parameter kept
        media += f'; charset="{charset.group(1).lower()}"'
    head = [
        f"Content-Type: {media}",
        "Content-Transfer-Encoding: base64",
        _disposition(one_line(attachment.filename, 255)),
    ]
    return ("\n".join(head) + "\n\n").encode("ascii") + base64.encodebytes(attachment.content)


def _disposition(filename: str) -> str:
    """Content-Disposition with the file's name: quoted as it is when plain ASCII, else as
    RFC 2231 (utf-8''%E5...), cut into numbered sections when it would not fit a line."""
    if _PLAIN_NAME.match(filename) and '"' not in filename and "\\" not in filename:
        return _fold(f'Content-Disposition: attachment; filename="{filename}"')
    encoded = "utf-8''" + quote(filename, safe="", encoding="utf-8")
    if len(encoded) + len(" filename*=;") <= LINE:
        return f"Content-Disposition: attachment;\n filename*={encoded}"
    sections: list[str] = []
    rest = encoded
    while rest:
        cut = min(len(rest), 60)
        while cut < len(rest) and "%" in rest[max(0, cut - 2) : cut]:
            cut -= 1  # never inside a %XX escape
        sections.append(rest[:cut])
        rest = rest[cut:]
    lines = [f" filename*{n}*={s}" for n, s in enumerate(sections)]
    return "Content-Disposition: attachment;\n" + ";\n".join(lines)


def _multipart(subtype: str, parts: Sequence[bytes]) -> bytes:
    boundary = _boundary(parts)
    head = f'Content-Type: multipart/{subtype};\n boundary="{boundary}"\n\n'.encode("ascii")
    mark = b"--" + boundary.encode("ascii")
    body = b"".join(mark + b"\n" + part + b"\n" for part in parts)
    return head + body + mark + b"--\n"


def _boundary(parts: Sequence[bytes]) -> str:
    """A random boundary that no part holds (as the generator makes one)."""
    while True:
        boundary = "=" * 15 + f"{secrets.randbelow(10**19):019d}" + "=="
        needle = b"--" + boundary.encode("ascii")
        if not any(needle in part for part in parts):
            return boundary
