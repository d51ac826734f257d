"""The mail we send, written as bytes by rightsdesk.composing (#15), reads back exactly as the
mail Python's EmailMessage composed before (default policy: set_content, add_alternative,
add_attachment, as_bytes): the same headers, parts and files, decoded, by a reader using
`email.message_from_bytes(policy=default)`. The old composition lives here only, as the
reference."""

from __future__ import annotations

import datetime as dt
import email
import email.policy
from email.headerregistry import Address
from email.message import EmailMessage
from email.utils import format_datetime
from typing import Any

import pytest

from rightsdesk.clock import FrozenClock
from rightsdesk.composing import Composed, compose_mail, mail_address, one_line
from rightsdesk.config import Settings
from rightsdesk.models import Channel, ContactKind, Ticket
from rightsdesk.outbound import Outbox, sender_name
from rightsdesk.signing import MessageIdSigner
from rightsdesk.templating import OutgoingAttachment

NOW = dt.datetime(2026, 2, 10, 10, 0, tzinfo=dt.UTC)
FROM_NAME = "隐私保护团队 Privacy Team"  # outbound.from_name's default
HEADERS = (
    "To",
    "From",
    "Reply-To",
    "Subject",
    "Date",
    "Message-ID",
    "In-Reply-To",
    "References",
    "Auto-Submitted",
    "X-Auto-Response-Suppress",
    "X-Rightsdesk-Kind",
    "MIME-Version",
)


def _old(
    *,
    to: Address,
    sender: Address,
    reply_to: Address | None,
    subject: str,
    message_id: str,
    in_reply_to: str | None,
    references: list[str],
    auto_submitted: str | None,
    kind: str,
    text: str,
    html: str,
    attachments: list[OutgoingAttachment],
) -> bytes:
    """The mail as Outbox.compose wrote it with EmailMessage (before #15)."""
    mime = EmailMessage()
    mime["To"] = to
    mime["From"] = sender
    if reply_to is not None:
        mime["Reply-To"] = reply_to
    mime["Subject"] = subject
    mime["Date"] = format_datetime(NOW)
    mime["Message-ID"] = f"<{message_id}>"
    if in_reply_to is not None:
        mime["In-Reply-To"] = f"<{in_reply_to}>"
        mime["References"] = " ".join(f"<{r}>" for r in references)
    if auto_submitted is not None:
        mime["Auto-Submitted"] = auto_submitted
    mime["X-Auto-Response-Suppress"] = "All"
    mime["X-Rightsdesk-Kind"] = kind
    mime.set_content(text, charset="utf-8")
    mime.add_alternative(html, subtype="html", charset="utf-8")
    for attachment in attachments:
        maintype, _, subtype = attachment.content_type.partition("/")
        mime.add_attachment(
            attachment.content,
            maintype=maintype,
            subtype=subtype or "octet-stream",
            filename=one_line(attachment.filename, 255),
        )
    return mime.as_bytes()


def _read(raw: bytes) -> dict[str, Any]:
    """What a reader finds in the mail, decoded."""
    mail = email.message_from_bytes(raw, policy=email.policy.default)
    assert isinstance(mail, EmailMessage)
    assert not mail.defects
    headers = {h: str(mail[h]) if mail[h] is not None else None for h in HEADERS}
    addresses = {
        h: [(a.display_name, a.addr_spec) for a in mail[h].addresses]
        for h in ("To", "From", "Reply-To")
        if mail[h] is not None
    }
    plain, html = mail.get_body(("plain",)), mail.get_body(("html",))
    assert plain is not None
    assert html is not None
    parts = [
        (p.get_content_type(), p.get_content_charset(), p.get_content_disposition())
        for p in mail.walk()
    ]
    files = [
        (a.get_filename(), a.get_content_type(), a.get_payload(decode=True))
        for a in mail.iter_attachments()
    ]
    for part in mail.walk():
        assert not part.defects, (part.get_content_type(), part.defects)
    return {
        "headers": headers,
        "addresses": addresses,
        "text": plain.get_content(),
        "html": html.get_content(),
        "parts": parts,
        "files": files,
    }


def _same(found: dict[str, Any], old: dict[str, Any]) -> None:
    """The same values; but a header that EmailMessage folded right after its name reads
    back with a leading space (" <rd.PRIV-...>"), which this one never writes."""
    for header, value in old["headers"].items():
        assert found["headers"][header] == (value.lstrip() if value else value), header
    for key, value in old.items():
        if key != "headers":
            assert found[key] == value, key


def _both(**mail: Any) -> tuple[dict[str, Any], dict[str, Any], Composed]:
    composed = compose_mail(date=NOW, **mail)
    old = _old(
        to=mail["to"],
        sender=mail["sender"],
        reply_to=mail.get("reply_to"),
        subject=mail["subject"],
        message_id=mail["message_id"],
        in_reply_to=mail.get("in_reply_to"),
        references=list(mail.get("references", [])),
        auto_submitted=mail.get("auto_submitted"),
        kind=mail["kind"],
        text=mail["text"],
        html=mail["html"],
        attachments=list(mail.get("attachments", [])),
    )
    return _read(composed.raw), _read(old), composed


def _lines_fit(raw: bytes) -> None:
    head = raw.split(b"\n\n", 1)[0]
    for line in head.split(b"\n"):
        # A header line keeps to 78 unless it is one word that cannot be folded (a
        # Message-ID stays beside its name).
        assert len(line) <= 78 or b" " not in line.strip().split(b": ", 1)[-1], line
    assert all(len(line) <= 998 for line in raw.split(b"\n"))
    assert b"\r" not in raw  # "\n" between lines, as as_bytes() wrote them


@pytest.fixture
def outbox(tmp_path: Any) -> Outbox:
    settings = Settings(
        database={"url": f"sqlite+aiosqlite:///{tmp_path / 'unused.db'}"},
        desk={"data_dir": tmp_path / "var"},
    )
    return Outbox(settings, MessageIdSigner(b"k" * 32, "localhost"), FrozenClock(NOW))


def _ticket(language: str | None) -> Ticket:
    ticket = Ticket(
        public_id="PRIV-2026-000123",
        year=2026,
        seq=123,
        channel=Channel.EMAIL,
        requester_id=1,
        contact_kind=ContactKind.EMAIL,
        contact_value="chan@example.com.tw",
        received_at=NOW,
        language=language,
    )
    ticket.response_due = dt.date(2026, 3, 9)
    ticket.completion_due = dt.date(2026, 3, 31)
    return ticket


CSV = "姓名,電郵\n陳大文,a@b\n".encode()
LONG_NAME = "您的個人資料與帳號紀錄的完整副本" * 4 + ".zip"  # past one line: RFC 2231 sections
CHINESE_FILES = [
    OutgoingAttachment("個人資料副本（2026年）.csv", "text/csv", CSV),
    OutgoingAttachment(LONG_NAME, "application/zip", b"PK\x03\x04"),
    OutgoingAttachment("report 1.pdf", "application/pdf", bytes(range(256)) * 8),
    OutgoingAttachment('odd "name"; a\\b.txt', "text/plain", b"plain\n"),
]


def test_a_zh_hant_mail_with_chinese_files_reads_back_as_before(outbox: Outbox) -> None:
    """What Outbox.compose writes for a zh-Hant ticket: a traditional display name, a
    non-ASCII subject, Chinese file names (one long enough for RFC 2231 sections)."""
    ticket = _ticket("zh-Hant")
    context = {"text": "附件是您的資料副本。\n" + "請查收。" * 40, "channel": "email"}
    thread = [(f"m{i}.{'x' * 40}@mail.example.com.tw", "in" if i % 3 else "out") for i in range(12)]
    composed = outbox.compose(
        ticket=ticket,
        kind="reply",
        to="chan@example.com.tw",
        to_name="陳大文（台北辦公室）",
        lang="zh-Hant",
        context=context,
        thread=thread,
        attachments=CHINESE_FILES,
        automatic=False,
    )
    rendered = outbox._render("reply", "zh-Hant", ticket, context)
    found = _read(composed.raw)
    theirs = [m for m, d in thread if d == "in"]
    references = (theirs[:1] + [m for m, _ in thread if m not in theirs[:1]])[-10:]
    old = _read(
        _old(
            to=mail_address("chan@example.com.tw", "陳大文（台北辦公室）"),
            sender=mail_address("privacy@localhost", sender_name(FROM_NAME, "zh-Hant")),
            reply_to=mail_address("privacy@localhost"),
            subject=composed.subject,
            message_id=composed.message_id,
            in_reply_to=theirs[-1],
            references=references,
            auto_submitted=None,
            kind="reply",
            text=rendered.text,
            html=rendered.html,
            attachments=CHINESE_FILES,
        )
    )
    _same(found, old)
    assert found["addresses"]["To"] == [("陳大文（台北辦公室）", "chan@example.com.tw")]
    assert found["addresses"]["From"] == [("隱私保護團隊 Privacy Team", "privacy@localhost")]
    assert found["headers"]["Subject"] == composed.subject
    assert found["headers"]["Subject"].startswith("[PRIV-2026-000123] ")
    assert not composed.subject.isascii()
    assert (rendered.subject, rendered.text) == (composed.subject, composed.text)
    assert found["headers"]["Auto-Submitted"] is None  # a person's reply
    assert found["headers"]["References"].count("<") == 10
    assert [f[0] for f in found["files"]] == [one_line(a.filename, 255) for a in CHINESE_FILES]
    assert found["files"][0][2] == CHINESE_FILES[0].content
    assert [p[0] for p in found["parts"]][:4] == [
        "multipart/mixed",
        "multipart/alternative",
        "text/plain",
        "text/html",
    ]
    assert found["parts"][2][1] == found["parts"][3][1] == "utf-8"
    assert b"filename*0*=utf-8''" in composed.raw  # the long name, in sections
    _lines_fit(composed.raw)


@pytest.mark.parametrize(
    ("name", "subject", "text"),
    [
        ("王小明", "[PRIV-2026-000001] 我们已收到您的请求 / We received your request", "您好\n"),
        ("Smith, John", "[PRIV-2026-000002] We received your request", "Hello,\n\nthanks.\n"),
        ('He said "hi" \\o/', "Re: a  subject  with  double  spaces", "x\n"),
        ("王  小明 Jr.", "中文  双空格  主题 and  english", "Grüße\n"),
        ("José Müller", "Ünïcödé " * 20, ("A long English line, " * 20 + "\n") * 3),
        ("a" * 90 + " b", "word " * 40, "trailing space \nand tab\t\n=3D?\n"),
        ("", "[PRIV-2026-000003] 您的请求" + "很长的主题" * 30, "短\n" * 3 + "长" * 200 + "\n"),
    ],
)
def test_headers_and_bodies_read_back_as_before(name: str, subject: str, text: str) -> None:
    mail: dict[str, Any] = {
        "to": mail_address("user@example.com", name),
        "sender": mail_address("privacy@localhost", "隐私保护团队 Privacy Team"),
        "reply_to": mail_address("privacy@localhost"),
        "subject": one_line(subject, 500),
        "message_id": "rd.PRIV-2026-000001.0123456789abcdef.0123456789abcdef01234567@localhost",
        "in_reply_to": "theirs@mail.example.com",
        "references": ["theirs@mail.example.com", "ours@localhost"],
        "auto_submitted": "auto-replied",
        "kind": "acknowledgement",
        "text": text,
        "html": f"<p>{text}</p>\n",
    }
    found, old, composed = _both(**mail)
    _same(found, old)
    assert found["headers"]["Subject"] == one_line(subject, 500) == composed.subject
    assert found["text"] == text
    _lines_fit(composed.raw)


def test_a_name_that_looks_encoded_is_read_as_written() -> None:
    """A requester whose name is literally an encoded-word sees it as written (EmailMessage
    let the reader decode it to "x"); a subject cannot carry a header (CR/LF are gone)."""
    composed = compose_mail(
        to=mail_address("user@example.com", "=?utf-8?q?x?="),
        sender=mail_address("privacy@localhost"),
        subject=one_line("hello\r\nBcc: victim@example.com =?utf-8?q?y?=", 500),
        date=NOW,
        message_id="a@localhost",
        kind="acknowledgement",
        text="x\n",
        html="<p>x</p>\n",
    )
    found = _read(composed.raw)
    assert found["addresses"]["To"] == [("=?utf-8?q?x?=", "user@example.com")]
    assert found["headers"]["Subject"] == "hello Bcc: victim@example.com =?utf-8?q?y?="
    assert b"\nBcc:" not in composed.raw


def test_a_file_of_a_type_no_base64_part_may_have_goes_as_octet_stream() -> None:
    """A file's type as given (a text file's charset kept), unless a part in base64 cannot be
    of it (a multipart, a message/*) or it is not a type at all: then
    application/octet-stream, with its bytes as they were."""
    files = [
        OutgoingAttachment("a.csv", "text/csv; charset=utf-8", b"a,b\n"),
        OutgoingAttachment("b.eml", "message/rfc822", b"From: x\n\nhi\n"),
        OutgoingAttachment("c.bin", "multipart/mixed", b"--x--\n"),
        OutgoingAttachment("d.bin", "not a type\r\nBcc: x", b"\x00"),
    ]
    composed = compose_mail(
        to=mail_address("user@example.com"),
        sender=mail_address("privacy@localhost"),
        subject="files",
        date=NOW,
        message_id="f@localhost",
        kind="reply",
        text="x\n",
        html="<p>x</p>\n",
        attachments=files,
    )
    found = _read(composed.raw)
    assert [(name, kind) for name, kind, _ in found["files"]] == [
        ("a.csv", "text/csv"),
        ("b.eml", "application/octet-stream"),
        ("c.bin", "application/octet-stream"),
        ("d.bin", "application/octet-stream"),
    ]
    assert [content for _, _, content in found["files"]] == [f.content for f in files]
    first = email.message_from_bytes(composed.raw, policy=email.policy.default)
    assert isinstance(first, EmailMessage)
    assert next(first.iter_attachments()).get_content_charset() == "utf-8"


def test_internal_and_unthreaded_mail_has_no_thread_headers() -> None:
    """A mail outside any thread (the DPO's digest, the portal's code): no In-Reply-To or
    References, ASCII text in 7bit."""
    composed = compose_mail(
        to=mail_address("dpo@example.com"),
        sender=mail_address("privacy@localhost", "rightsdesk"),
        subject="Daily digest",
        date=NOW,
        message_id="rd-internal.0123@localhost",
        auto_submitted="auto-generated",
        kind="digest",
        text="3 tickets due\n",
        html="<pre>3 tickets due</pre>",
    )
    found = _read(composed.raw)
    assert found["headers"]["In-Reply-To"] is None
    assert found["headers"]["References"] is None
    assert found["headers"]["Auto-Submitted"] == "auto-generated"
    assert found["text"] == "3 tickets due\n"
    assert b"Content-Transfer-Encoding: 7bit" in composed.raw
    assert [p[0] for p in found["parts"]] == ["multipart/alternative", "text/plain", "text/html"]
