"""Real mail, parsed: each test is named after the kind of mail that breaks parsers."""

from __future__ import annotations

import base64
import re
from pathlib import Path

import pytest

from intake.charsets import decode_bytes, decode_header_value
from intake.mail import (
    derived_message_id,
    mail_dedupe_key,
    message_id_of,
    parse_email,
    split_quoted,
)
from tests.conftest import corpus_files

TRUSTED = frozenset({"mx.rightsdesk.example"})


def _yml_field(box: Path, name: str) -> str | None:
    yml = box.with_suffix(".yml")
    if not yml.exists():
        return None
    found = re.search(rf"^{name}: (.*)$", yml.read_text(encoding="utf-8"), re.MULTILINE)
    return found.group(1).strip().strip('"') if found else None


def test_every_corpus_mail_parses_with_readable_text() -> None:
    boxes = corpus_files()
    assert len(boxes) == 106
    empty = []
    for box in boxes:
        inbound = parse_email(box.read_bytes())
        if _yml_field(box, "body") != "no visible content":
            assert inbound.full_text.strip(), box.name
        if not inbound.full_text.strip():
            empty.append(box.name)
        assert "\ufffd" not in inbound.subject, box.name
        assert inbound.message_id
    # Attachment-only, encrypted or empty mail: nothing to read, as Zammad agrees.
    assert len(empty) == 13, empty


# Fragments of the text each Chinese mail shows in Zammad's own expectations (.yml).
CHINESE = {
    "mail016.box": "您好，这封信如果影响到您的生活和工作",
    "mail019.box": "投资移民简讯",
    "mail031.box": "最佳注塑工艺参數設定方法",
    "mail032.box": "全能型车间主任实战技能训练",
    "mail044.box": "标杆考察－丰田精益生产考察研修班(广州)",
}


@pytest.mark.parametrize("name", sorted(CHINESE))
def test_gb2312_mail_decodes_to_chinese_not_mojibake(name: str) -> None:
    box = next(b for b in corpus_files() if b.name == name)
    inbound = parse_email(box.read_bytes())
    assert CHINESE[name] in inbound.full_text
    assert inbound.subject == _yml_field(box, "subject")


def _corpus(name: str) -> bytes:
    return next(b for b in corpus_files() if b.name == name).read_bytes()


def test_raw_gbk_attachment_filename_mail015() -> None:
    inbound = parse_email(_corpus("mail015.box"))
    assert inbound.subject == "绩效管理,究竟谁错了"
    assert [a.filename for a in inbound.attachments] == ["绩效管理,究竟谁错了.xls"]


def test_raw_gbk_display_name_beside_latin1_body_mail046() -> None:
    inbound = parse_email(_corpus("mail046.box"))
    assert inbound.sender_name == "武兰成"  # Zammad's own .yml shows mojibake here
    assert inbound.subject == "转发：整体提升企业服务水平"


def test_utf8_and_latin1_mixed_under_unknown_label_mail060() -> None:
    inbound = parse_email(_corpus("mail060.box"))
    assert inbound.full_text.startswith("Here it goes - äöü - 差出人Here it goes - äöü")


def test_shift_jis_labelled_iso_2022_jp_mail093() -> None:
    inbound = parse_email(_corpus("mail093.box"))
    assert inbound.subject == "ツール"
    assert inbound.sender_name == "ツール EXAMPLE"


def test_iso_2022_jp_with_nec_special_characters_mail099() -> None:
    assert "①１都３県の鯵と、" in parse_email(_corpus("mail099.box")).full_text


def test_header_that_lost_its_folding_whitespace_mail054() -> None:
    # Zammad reads nothing here; the fold is repaired and the HTML part read.
    inbound = parse_email(_corpus("mail054.box"))
    assert inbound.full_text == "some text"
    assert inbound.sender == "karoline.smith@example.com"


def test_bounce_names_the_original_message_and_recipient_mail033() -> None:
    inbound = parse_email(_corpus("mail033-undelivered-mail-returned-to-sender.box"))
    assert inbound.auto_generated == "Auto-Submitted: auto-replied"
    assert inbound.bounce is not None
    assert inbound.bounce.failed_recipients == ("not_existing@znuny.com",)
    assert inbound.bounce.original_message_ids == ("20150830145601.30.608881@edenhofer.zammad.com",)


def test_uuencoded_attachment_mail078() -> None:
    inbound = parse_email(_corpus("mail078-content_transfer_encoding_x_uuencode.box"))
    assert inbound.attachments
    assert all(a.size > 0 for a in inbound.attachments)


# ---- hand-made mail, each the shape of a real client's ---------------------------------------


def mail(headers: str, body: bytes, charset: str | None = None) -> bytes:
    ctype = f"text/plain; charset={charset}" if charset else "text/plain"
    head = (
        "From: =?utf-8?b?5byg5LiJ?= <Zhang.San@Example.COM>\r\n"
        "To: privacy@localhost\r\n"
        "Message-ID: <m1@example.com>\r\n"
        f"Content-Type: {ctype}\r\n"
        "Content-Transfer-Encoding: 8bit\r\n"
    )
    return (head + headers + "\r\n").encode("ascii") + body


def test_gbk_body_labelled_latin1_from_an_old_outlook() -> None:
    raw = mail("Subject: hi\r\n", "请删除我的个人信息，谢谢。".encode("gbk"), "iso-8859-1")
    assert parse_email(raw).full_text == "请删除我的个人信息，谢谢。"


def test_big5_body_without_a_label() -> None:
    raw = mail("Subject: hi\r\n", "請刪除我的帳號資料，謝謝您的協助。".encode("big5"))
    assert parse_email(raw).full_text == "請刪除我的帳號資料，謝謝您的協助。"


def test_utf8_body_mislabelled_gb2312() -> None:
    raw = mail("Subject: hi\r\n", "我想查阅我的个人信息".encode(), "gb2312")
    assert parse_email(raw).full_text == "我想查阅我的个人信息"


def test_sender_is_lowercased_and_display_name_decoded() -> None:
    inbound = parse_email(mail("Subject: hi\r\n", b"x"))
    assert (inbound.sender, inbound.sender_name) == ("zhang.san@example.com", "张三")


def test_crlf_smuggled_into_an_encoded_subject_stays_in_the_subject() -> None:
    evil = "=?utf-8?q?hello=0D=0ABcc:_victim@example.com?="
    inbound = parse_email(mail(f"Subject: {evil}\r\n", b"x"))
    assert inbound.subject == "hello Bcc: victim@example.com"
    assert "\n" not in inbound.subject
    assert "\r" not in inbound.subject


def test_html_only_mail_from_qq_mail_becomes_text() -> None:
    html = "<html><body><div>您好：</div><div>请<b>删除</b>我的数据。</div><br></body></html>"
    raw = (
        b"From: a@qq.com\r\nSubject: =?gb18030?B?"
        + base64.b64encode("删除数据".encode("gb18030"))
        + b"?=\r\nContent-Type: text/html; charset=gb18030\r\nContent-Transfer-Encoding: base64"
        b"\r\n\r\n" + base64.b64encode(html.encode("gb18030"))
    )
    inbound = parse_email(raw)
    assert inbound.subject == "删除数据"
    assert "请删除我的数据。" in inbound.full_text
    assert "<" not in inbound.full_text


def test_empty_text_part_beside_html_uses_the_html() -> None:
    raw = (
        b"From: a@example.com\r\nSubject: x\r\nMIME-Version: 1.0\r\n"
        b'Content-Type: multipart/alternative; boundary="b"\r\n\r\n'
        b"--b\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n \r\n"
        b"--b\r\nContent-Type: text/html; charset=utf-8\r\n\r\n<p>Please erase my data</p>\r\n"
        b"--b--\r\n"
    )
    assert parse_email(raw).full_text == "Please erase my data"


@pytest.mark.parametrize(
    ("body", "new"),
    [
        (
            "我撤回同意。\n\n------------------ 原始邮件 ------------------\n"
            "发件人: privacy@localhost\n主题: 回复\n您的请求已受理",
            "我撤回同意。",
        ),
        (
            "取消\n\n发件人: 隐私团队 <privacy@localhost>\n发送时间: 2026年2月10日\n您好",
            "取消",
        ),
        (
            "Please go ahead.\n\nOn Tue, 10 Feb 2026 at 10:00, Privacy <privacy@localhost> wrote:\n"
            "> We received your request",
            "Please go ahead.",
        ),
        (
            "好的\n\n在 2026年2月10日 10:00，privacy@localhost 写道：\n> 我们已收到",
            "好的",
        ),
        ("Thanks\n> quoted line\n> another", "Thanks"),
        ("Only new text here.", "Only new text here."),
    ],
    ids=["qq-mail", "outlook-chinese", "gmail", "apple-mail-chinese", "bare-quotes", "none"],
)
def test_quoted_history_is_separated_from_the_new_text(body: str, new: str) -> None:
    assert split_quoted(body)[0] == new


def test_missing_message_id_is_derived_stably_from_the_content() -> None:
    raw = b"From: a@example.com\r\nSubject: x\r\n\r\nbody"
    assert message_id_of(raw) == derived_message_id(raw)
    assert message_id_of(raw) == message_id_of(bytes(raw))
    assert message_id_of(raw + b"!") != message_id_of(raw)
    assert mail_dedupe_key(raw).startswith("email:sha256-")


def test_one_message_by_two_relays_is_the_same_message() -> None:
    a = mail("Received: from mx1\r\nSubject: hi\r\n", b"x\r\n")
    b = mail("Return-Path: <a@b>\r\nReceived: from mx2\r\n  by mx3\r\nSubject: hi\r\n", b"x")
    lf_only = a.replace(b"\r\n", b"\n")
    assert mail_dedupe_key(a) == mail_dedupe_key(b) == mail_dedupe_key(lf_only)
    assert mail_dedupe_key(a).startswith("email:m1@example.com#")


def test_a_reused_message_id_does_not_swallow_a_different_request() -> None:
    first = mail("Subject: hi\r\n", "请删除我的数据".encode())
    other = mail("Subject: hi\r\n", "我要查阅我的数据".encode())
    assert mail_dedupe_key(first) != mail_dedupe_key(other)


@pytest.mark.parametrize(
    ("header", "reason"),
    [
        ("Auto-Submitted: auto-replied\r\n", "Auto-Submitted: auto-replied"),
        ("Precedence: bulk\r\n", "Precedence: bulk"),
        ("X-Autoreply: yes\r\n", "X-Autoreply: yes"),
        ("List-Id: <news.example.com>\r\n", "mailing list"),
        ("Return-Path: <>\r\n", "empty Return-Path"),
    ],
)
def test_auto_generated_mail_is_recognised(header: str, reason: str) -> None:
    assert (
        parse_email(mail(header + "Subject: Out of office\r\n", b"away")).auto_generated == reason
    )


def test_auto_submitted_no_is_a_person() -> None:
    raw = mail("Auto-Submitted: no\r\nSubject: hi\r\n", b"x")
    assert parse_email(raw).auto_generated is None


def test_mail_from_mailer_daemon_is_automatic() -> None:
    raw = b"From: MAILER-DAEMON@mx.example.com\r\nSubject: failure\r\n\r\nx"
    assert parse_email(raw).auto_generated == "sent by mailer-daemon"


def _authenticated(results: str, sender: str = "zhang.san@example.com") -> bool:
    raw = (f"Authentication-Results: {results}\r\nFrom: {sender}\r\nSubject: x\r\n\r\nx").encode()
    return parse_email(raw, trusted_authserv_ids=TRUSTED).auth.from_aligned


def test_dkim_pass_aligned_with_from_from_a_trusted_server() -> None:
    assert _authenticated("mx.rightsdesk.example; dkim=pass header.d=example.com; spf=pass")
    assert _authenticated("mx.rightsdesk.example; dmarc=pass header.from=example.com")


def test_authentication_results_from_an_untrusted_server_are_ignored() -> None:
    assert not _authenticated("evil.example; dkim=pass header.d=example.com")


def test_dkim_pass_for_another_domain_is_not_the_sender() -> None:
    assert not _authenticated("mx.rightsdesk.example; dkim=pass header.d=attacker.example")
    assert not _authenticated("mx.rightsdesk.example; dkim=fail header.d=example.com")


def test_rfc2231_filename() -> None:
    raw = (
        b"From: a@example.com\r\nSubject: x\r\nMIME-Version: 1.0\r\n"
        b'Content-Type: multipart/mixed; boundary="b"\r\n\r\n'
        b"--b\r\nContent-Type: text/plain\r\n\r\nsee attached\r\n"
        b"--b\r\nContent-Type: application/pdf\r\n"
        b"Content-Disposition: attachment; filename*=UTF-8''%E8%BA%AB%E4%BB%BD%E8%AF%81.pdf\r\n"
        b"Content-Transfer-Encoding: base64\r\n\r\nJVBERi0=\r\n--b--\r\n"
    )
    inbound = parse_email(raw, attachment_cap=2)
    assert [(a.filename, a.size, a.content) for a in inbound.attachments] == [
        ("身份证.pdf", 5, None)  # over the cap: metadata only
    ]


def test_broken_mime_never_raises() -> None:
    for raw in [
        b"",
        b"\x00\xff\xfe garbage",
        b"Content-Type: multipart/mixed; boundary=\r\n\r\n--\r\n",
        b"Subject: =?utf-8?b?!!!?=\r\nContent-Transfer-Encoding: base64\r\n\r\n@@@",
        b"From: <<<>>>\r\nDate: yesterday\r\n\r\nx",
    ]:
        parse_email(raw)


def test_charset_decoder_never_fails() -> None:
    for payload in [bytes(range(256)), b"\xff" * 10, "测试".encode("utf-16")]:
        text, _ = decode_bytes(payload, "x-nonsense")
        assert isinstance(text, str)
    assert decode_header_value("=?unknown-8bit?q?=E4=BD=A0?=") == "你"


@pytest.mark.parametrize(
    "name",
    [
        "=?utf-8?q?Zhang=0D=0ABcc:_victim@example.org?=",  # a group, once decoded
        "=?utf-8?q?victim@example.org_=3Cvictim@example.org=3E?=",  # an address, once decoded
    ],
)
def test_encoded_display_name_cannot_change_the_sender_address(name: str) -> None:
    raw = f"From: {name} <zhang.san@example.com>\r\nSubject: x\r\n\r\nbody".encode()
    inbound = parse_email(raw)
    assert inbound.sender == "zhang.san@example.com"
    assert inbound.sender_name is not None
    assert "\n" not in inbound.sender_name


@pytest.mark.parametrize(
    ("header", "sender", "name"),
    [
        # A client that writes the encoded name and then the bare address, no brackets.
        ("=?utf-8?b?5byg5LiJ?= zhang.san@example.com", "zhang.san@example.com", "张三"),
        # Brackets gone wrong: no address at all (the envelope sender is used instead).
        ("=?utf-8?b?5byg5LiJ?= <<<broken@@>", None, None),
        ("broken@@example.com", None, None),
        ("=?utf-8?B?!!!broken?=", None, None),
    ],
)
def test_a_from_header_a_client_broke_gives_its_address_or_none(
    header: str, sender: str | None, name: str | None
) -> None:
    inbound = parse_email(f"From: {header}\r\nSubject: x\r\n\r\nbody".encode())
    assert inbound.sender == sender
    if name is not None:
        assert inbound.sender_name == name


@pytest.mark.parametrize(
    ("head", "expected"),
    [
        (b"Message-ID: <a@b.example>\r\n", "a@b.example"),
        (b"message-id:<a@b.example>\r\n", "a@b.example"),
        (b"Message-ID:\r\n <folded@b.example>\r\n", "folded@b.example"),
        (b"Subject: x\r\nMessage-Id: a@b.example\r\n", "a@b.example"),
        (b"Message-ID: <first@x>\r\nMessage-ID: <second@x>\r\n", "first@x"),
        (b"Subject: no id\r\n", None),  # derived from the content
        (b"Message-ID: <\xe4\xb8\xad@x>\r\n", None),  # not ASCII: derived
    ],
)
def test_the_message_id_is_read_from_the_header_block_only(
    head: bytes, expected: str | None
) -> None:
    raw = head + b"\r\nMessage-ID: <in-the-body@x>\r\n"
    found = message_id_of(raw)
    assert found == (expected or derived_message_id(raw))
