"""Mutated mail, deterministically from a seed: what a hostile sender (or a broken client) sends.

A few base requests (UTF-8, GB2312/GBK, GB18030, Big5, quoted-printable English, multipart with
an attachment) each get one to four mutations of their headers, MIME structure, charset labels,
boundaries and transfer encodings. `mutated_mails(1000, seed)` is the flood of issue #12; the
same seed always gives the same bytes.
"""

from __future__ import annotations

import base64
import random
from collections.abc import Callable

CRLF = b"\r\n"


def _base_mails(n: int) -> list[tuple[list[bytes], bytes]]:
    """(header lines, body) of each base mail; `n` makes the Message-ID and sender unique."""
    # One sender, as one attacker: past 5 an hour it is no longer answered (the desk's own limit).
    sender = b"From: =?utf-8?b?5byg5LiJ?= <flood@example.com>"
    common = [sender, b"To: privacy@localhost", f"Message-ID: <flood-{n}@example.com>".encode()]
    date = b"Date: Tue, 10 Feb 2026 10:00:00 +0800"
    gbk = "请删除我的全部个人信息，我的手机号是13800138000。".encode("gbk")
    gb18030 = "我要求查阅并复制我的个人信息𠀀。".encode("gb18030")
    big5 = "請刪除我的帳號與所有個人資料。".encode("big5")
    words = {
        "gb2312": base64.b64encode("删除数据".encode("gbk")),
        "gb18030": base64.b64encode("查阅".encode("gb18030")),
        "big5": base64.b64encode("刪除帳號".encode("big5")),
    }
    return [
        (
            [*common, date, b"Subject: =?utf-8?b?5Yig6Zmk5oiR55qE5pWw5o2u?=",
             b"Content-Type: text/plain; charset=utf-8"],
            "请删除我的个人数据。\r\n谢谢\r\n".encode(),
        ),
        (
            [*common, date, b"Subject: =?gb2312?B?" + words["gb2312"] + b"?=",
             b"Content-Type: text/plain; charset=gb2312", b"Content-Transfer-Encoding: 8bit"],
            gbk + CRLF,
        ),
        (
            [*common, date, b"Subject: =?gb18030?B?" + words["gb18030"] + b"?=",
             b"Content-Type: text/plain; charset=gb18030", b"Content-Transfer-Encoding: base64"],
            base64.encodebytes(gb18030).replace(b"\n", CRLF),
        ),
        (
            [*common, date, b"Subject: =?big5?B?" + words["big5"] + b"?=",
             b'Content-Type: multipart/alternative; boundary="alt"'],
            b"--alt\r\nContent-Type: text/plain; charset=big5\r\n\r\n" + big5 + CRLF
            + b"--alt\r\nContent-Type: text/html; charset=big5\r\n\r\n<p>" + big5 + b"</p>\r\n"
            + b"--alt--\r\n",
        ),
        (
            [*common, date, b"Subject: Access request",
             b"Content-Type: text/plain; charset=iso-8859-1",
             b"Content-Transfer-Encoding: quoted-printable"],
            b"I would like a copy of my personal data, please. Gr=FC=DFe=\r\nJ=F6rg\r\n",
        ),
        (
            [*common, date, b"Subject: =?utf-8?q?=E6=B3=A8=E9=94=80=E8=B4=A6=E5=8F=B7?=",
             b'Content-Type: multipart/mixed; boundary="mix"'],
            b"--mix\r\nContent-Type: text/plain; charset=gbk\r\n\r\n" + gbk + CRLF
            + b"--mix\r\nContent-Type: application/pdf\r\n"
            + b"Content-Disposition: attachment; filename*=utf-8''%E8%BA%AB%E4%BB%BD.pdf\r\n"
            + b"Content-Transfer-Encoding: base64\r\n\r\nJVBERi0xLjQK\r\n--mix--\r\n",
        ),
    ]  # fmt: skip


Mail = tuple[list[bytes], bytes]
Mutation = Callable[[random.Random, list[bytes], bytes], Mail]

CHARSET_LABELS = [
    b"undefined", b"gb\x002312", b"", b"x-unknown", b"utf-7", b"x-gbk", b"big5", b"gb18030",
    b"utf-16", b"iso-2022-jp", b"base64", b"unicode_escape", b"\"gbk", b"utf-8'zh'", b"\xff\xfe",
    b"ks_c_5601-1987", b"windows-1252", b"idna", b"a" * 300,
]  # fmt: skip
BAD_DATES = [
    b"Mon, 1 Jan 99999999999 10:00:00 +0800", b"yesterday", b"", b"Tue, 31 Feb 2026 25:61:61 +9999",
    b"Tue, 10 Feb -2026 10:00:00 +0800", b"0", b"Tue, 10 Feb 2026 10:00:00 +99999999999999999999",
    b"\x00\x00",
]  # fmt: skip


def _set_header(headers: list[bytes], name: bytes, value: bytes) -> list[bytes]:
    kept = [h for h in headers if not h.lower().startswith(name.lower() + b":")]
    return [*kept, name + b": " + value]


def _content_type(headers: list[bytes]) -> bytes:
    for h in headers:
        if h.lower().startswith(b"content-type:"):
            return h.split(b":", 1)[1].strip()
    return b"text/plain"


# ---- header mutations ---------------------------------------------------------------------------


def bad_date(rng: random.Random, headers: list[bytes], body: bytes) -> Mail:
    return _set_header(headers, b"Date", rng.choice(BAD_DATES)), body


def nul_and_controls_in_a_header(rng: random.Random, headers: list[bytes], body: bytes) -> Mail:
    i = rng.randrange(len(headers))
    line = headers[i]
    at = rng.randint(min(len(line.split(b":", 1)[0]) + 1, len(line)), len(line))
    junk = rng.choice([b"\x00", b"\x1b]0;x\x07\x1b[2J", b"\x7f\x01", b"\r", b"\xff\xfe"])
    return [*headers[:i], line[:at] + junk + line[at:], *headers[i + 1 :]], body


def duplicate_headers(rng: random.Random, headers: list[bytes], body: bytes) -> Mail:
    return headers + [rng.choice(headers) for _ in range(rng.randint(1, 5))], body


def drop_a_header(rng: random.Random, headers: list[bytes], body: bytes) -> Mail:
    droppable = [h for h in headers if not h.lower().startswith(b"from:")]
    if not droppable:
        return headers, body
    victim = rng.choice(droppable)
    return [h for h in headers if h is not victim], body


def broken_folding(rng: random.Random, headers: list[bytes], body: bytes) -> Mail:
    return [*headers, b"X-Spam-Report: a long report", b"that lost its folding whitespace"], body


def long_header(rng: random.Random, headers: list[bytes], body: bytes) -> Mail:
    word = rng.choice([b"x", b"\xe4\xbd\xa0", b"=?utf-8?b?5L2g?= ", b"a@b."])
    return _set_header(headers, b"Subject", word * rng.randint(1_000, 40_000)), body


def bad_encoded_words(rng: random.Random, headers: list[bytes], body: bytes) -> Mail:
    label = rng.choice(CHARSET_LABELS)
    word = rng.choice(
        [
            b"=?%s?B?5Yig6Zmk?=",
            b"=?%s?Q?=ZZ=E5?=",
            b"=?%s?B?!!!?=",
            b"=?%s?X?abc?=",
            b"=?%s?B?5Yig6Zm?=",
        ]
    )
    name = rng.choice([b"Subject", b"From"])
    if name == b"From":
        return _set_header(headers, b"From", word % label + b" <zhang@example.com>"), body
    return _set_header(headers, b"Subject", word % label), body


def odd_message_id(rng: random.Random, headers: list[bytes], body: bytes) -> Mail:
    value = rng.choice(
        [
            b"<a\x00b@example.com>",
            b"",
            b"<>",
            b"<" + b"x" * 2000 + b"@y>",
            b"no brackets",
            b"<a b@c>",
        ]
    )
    return _set_header(headers, b"Message-ID", value), body


def odd_from(rng: random.Random, headers: list[bytes], body: bytes) -> Mail:
    value = rng.choice(
        [
            b"<<<>>>",
            b"zhang\x00@example.com",
            b'"=?utf-8?q?victim@example.org_=3Cv@example.org=3E?=" <z@example.com>',
            b"\xd5\xc5\xc8\xfd <z@example.com>",
            b"z@example.com, y@example.com",
            b"group: a@example.com, b@example.com;",
            b"",
        ]
    )
    return _set_header(headers, b"From", value), body


# ---- MIME, charset and encoding mutations -------------------------------------------------------


def relabel_charset(rng: random.Random, headers: list[bytes], body: bytes) -> Mail:
    label = rng.choice(CHARSET_LABELS)
    ctype = _content_type(headers).split(b";")[0]
    value = ctype + b'; charset="' + label + b'"' + _boundary_param(headers)
    return _set_header(headers, b"Content-Type", value), body


def _boundary_param(headers: list[bytes]) -> bytes:
    ctype = _content_type(headers)
    at = ctype.lower().find(b"boundary=")
    return b"; " + ctype[at:] if at >= 0 else b""


def reencode_body(rng: random.Random, headers: list[bytes], body: bytes) -> Mail:
    text = "我想删除我的账户和所有数据。請刪除。" * rng.randint(1, 20)
    codec = rng.choice(["gbk", "gb18030", "big5", "utf-8", "utf-16", "shift_jis", "gb2312"])
    label = rng.choice([codec.encode(), rng.choice(CHARSET_LABELS)])
    payload = text.encode(codec, errors="replace")
    headers = [h for h in headers if not h.lower().startswith(b"content-transfer-encoding")]
    return _set_header(headers, b"Content-Type", b"text/plain; charset=" + label), payload + CRLF


def bad_transfer_encoding(rng: random.Random, headers: list[bytes], body: bytes) -> Mail:
    cte = rng.choice([b"base64", b"quoted-printable", b"x-uuencode", b"8bit", b"x-foo", b"binary"])
    junk = rng.choice(
        [body, b"5Yig6Zmk5oiR===\r\n@@@\r\n", b"=ZZ=\r\n=E5=8", b"begin 644 x\r\n!!!\r\nend\r\n"]
    )
    return _set_header(headers, b"Content-Transfer-Encoding", cte), junk


def bad_boundary(rng: random.Random, headers: list[bytes], body: bytes) -> Mail:
    boundary = rng.choice([b"", b'"', b" spaced out ", b"x" * 200, b"\x00", b"=_=", b"--"])
    parts = (
        b"--real\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n"
        + "请删除我的数据".encode()
        + CRLF
        + rng.choice([b"--real--\r\n", b"", b"--real\r\n", b"--other--\r\n"])
    )
    value = b'multipart/mixed; boundary="' + boundary + b'"'
    return _set_header(headers, b"Content-Type", value), parts + body


def garbage_content_type(rng: random.Random, headers: list[bytes], body: bytes) -> Mail:
    value = rng.choice(
        [b"text/", b"/", b"multipart/mixed", b";;;;", b"text/plain; charset*=gb\x00k''x",
         b"multipart/digest; boundary=d", b"message/delivery-status", b"multipart/report",
         b"message/rfc822", b"text/html; charset=\"utf-8", b"application/octet-stream",
         b"text/plain; name*0*=utf-8''%E4; name*1=x"]
    )  # fmt: skip
    return _set_header(headers, b"Content-Type", value), body


def nest(rng: random.Random, headers: list[bytes], body: bytes) -> Mail:
    depth = rng.choice([2, 10, 40, 200, 1200, 1500])
    kind = rng.choice(["multipart", "message"])
    inner = b"Content-Type: " + _content_type(headers) + b"\r\n\r\n" + body
    for level in range(depth):
        if kind == "multipart":
            b = b"n%d" % level
            inner = (
                b'Content-Type: multipart/mixed; boundary="' + b + b'"\r\n\r\n--' + b + CRLF
                + inner + b"\r\n--" + b + b"--\r\n"
            )  # fmt: skip
        else:
            inner = b"Content-Type: message/rfc822\r\n\r\nSubject: fwd\r\n" + inner
    headers = [h for h in headers if not h.lower().startswith(b"content-")]
    outer = (
        b"--outer\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n"
        + "请删除我的数据（见转发）".encode()
        + b"\r\n--outer\r\n"
        + inner
        + b"\r\n--outer--\r\n"
    )
    return [*headers, b'Content-Type: multipart/mixed; boundary="outer"'], outer


def truncate(rng: random.Random, headers: list[bytes], body: bytes) -> Mail:
    return headers, body[: rng.randrange(len(body) + 1)]


def flip_bytes(rng: random.Random, headers: list[bytes], body: bytes) -> Mail:
    data = bytearray(body)
    for _ in range(rng.randint(1, 8)):
        if data:
            data[rng.randrange(len(data))] = rng.randrange(256)
    return headers, bytes(data)


MUTATIONS: list[Mutation] = [
    bad_date, nul_and_controls_in_a_header, duplicate_headers, drop_a_header, broken_folding,
    long_header, bad_encoded_words, odd_message_id, odd_from, relabel_charset, reencode_body,
    bad_transfer_encoding, bad_boundary, garbage_content_type, nest, truncate, flip_bytes,
]  # fmt: skip
# The four that broke the parser first, in the first mails of every flood.
FIRST = [bad_date, relabel_charset, nest, relabel_charset]


def _assemble(rng: random.Random, headers: list[bytes], body: bytes) -> bytes:
    eol = rng.choices([CRLF, b"\n", b"\r"], weights=[20, 3, 1])[0]
    head = eol.join(headers) + eol + eol
    if eol != CRLF:
        body = body.replace(CRLF, eol)
    raw = head + body
    return raw if raw.endswith(b"\n") else raw + CRLF


def mutated_mails(count: int, seed: int = 12) -> list[bytes]:
    rng = random.Random(seed)
    mails = []
    for n in range(count):
        headers, body = rng.choice(_base_mails(n))
        chosen = [FIRST[n]] if n < len(FIRST) else rng.sample(MUTATIONS, rng.randint(1, 4))
        for mutation in chosen:
            if n == 1 or n == 3:  # NUL inside the label, then charset=undefined
                headers = _set_header(
                    headers, b"Content-Type", b'text/plain; charset="gb\x002312"' if n == 1 else
                    b"text/plain; charset=undefined",
                )  # fmt: skip
                continue
            headers, body = mutation(rng, headers, body)
        mails.append(_assemble(rng, headers, body))
    return mails
