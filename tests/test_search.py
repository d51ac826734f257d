"""`tickets search`: by id, requester and words, Chinese too, on both databases."""

from __future__ import annotations

from pathlib import Path

import pytest

from rightsdesk.clock import FrozenClock
from rightsdesk.config import Settings
from rightsdesk.models import Channel, Requester, RequestType
from rightsdesk.service import Desk
from rightsdesk.tickets import Contact, NewTicket, TicketError
from tests.conftest import at, deliver, mail
from tests.test_verification_flow import FixedTypes


async def _phone_ticket(desk: Desk) -> str:
    ticket = await desk.tickets.open(
        NewTicket(
            channel=Channel.MANUAL,
            contact=Contact.phone("138 0013 8000"),
            types=[RequestType.ACCOUNT_DELETION],
            received_at=at("2026-02-10 10:00"),
            requester_name="王小明",
            text="电话来电：请注销我的账号。",
        )
    )
    return ticket.public_id


async def _ids(desk: Desk, query: str) -> list[str]:
    return [hit.ticket.public_id for hit in await desk.search.search(query)]


async def test_search_by_phone_id_email_name_and_words(desk: Desk, tmp_path: Path) -> None:
    phone = await _phone_ticket(desk)
    await deliver(
        desk,
        mail(
            "您好，我想查阅你们收集的关于我的全部个人信息，包括购物记录。"
            "My ID is 11010519491231002X and my other address is li@example.org.",
            sender="zhang.san@example.com",
            name="=?utf-8?b?5byg5LiJ?=",
        ),
    )
    [mailed] = [t.public_id for t in await desk.tickets.find() if t.public_id != phone]
    other = await desk.tickets.open(
        NewTicket(
            channel=Channel.MANUAL,
            contact=Contact.email("li.si@example.com"),
            types=[RequestType.COMPLAINT],
            received_at=at("2026-02-10 11:00"),
            text="I want to complain about the marketing emails.",
        )
    )
    assert await _ids(desk, "13800138000") == [phone]
    assert await _ids(desk, "138 0013 8000") == [phone]
    assert await _ids(desk, "+86 138-0013-8000") == [phone]
    assert await _ids(desk, phone.lower()) == [phone]
    assert await _ids(desk, "Zhang.San@Example.com") == [mailed]
    assert await _ids(desk, "王小明") == [phone]
    assert await _ids(desk, "张三") == [mailed]  # the display name of the mail
    # Words of the messages: Chinese through the trigram index (3+ characters) ...
    assert await _ids(desk, "购物记录") == [mailed]
    assert await _ids(desk, "注销我的账号") == [phone]
    # ... and a two-character word (below a trigram) by a scan, still found.
    assert await _ids(desk, "注销") == [phone]
    assert await _ids(desk, "marketing") == [other.public_id]
    assert await _ids(desk, "MARKETING emails") == [other.public_id]
    assert await _ids(desk, "nothing like this") == []
    with pytest.raises(TicketError):
        await desk.search.search("   ")
    # What is shown is masked: the ID number never appears in clear in a snippet.
    [hit] = await desk.search.search("My ID is")
    assert hit.snippet is not None
    assert "11010519491231002X" not in hit.snippet
    assert "110105********002X" in hit.snippet
    assert hit.matched == ["text"]


async def test_search_by_account_id(settings: Settings, clock: FrozenClock, tmp_path: Path) -> None:
    desk = Desk.build(settings, clock, classifier=FixedTypes([RequestType.ERASURE]))
    try:
        await _account_search(desk, tmp_path)
    finally:
        await desk.close()


async def _account_search(desk: Desk, tmp_path: Path) -> None:
    csv = tmp_path / "accounts.csv"
    csv.write_text("account_id,email,phone,name\nu-42,zhang.san@example.com,13900001111,张三\n")
    await desk.accounts.import_csv(csv)
    await deliver(desk, mail("请删除我的全部个人信息。"))
    [ticket] = await desk.tickets.find()
    # Before verification the account is only "matched" (a code went to it) ...
    assert await _ids(desk, "u-42") == [ticket.public_id]
    # ... and the account's registered phone finds it too once the requester proved it.
    await desk.tickets.mark_verified(ticket.public_id, "cli:dpo", note="checked")
    async with desk.db.transaction() as session:
        requester = await session.get_one(Requester, ticket.requester_id)
        requester.account_id = "u-42"
        session.add(requester)
    assert await _ids(desk, "13900001111") == [ticket.public_id]


async def test_our_own_mail_is_never_searched(desk: Desk) -> None:
    await deliver(desk, mail("请删除我的全部个人信息。"))
    # The acknowledgement (ours) says "我们已收到您关于个人信息的请求": not a match.
    assert await _ids(desk, "我们已收到") == []


async def test_simplified_and_traditional_characters_find_each_other(desk: Desk) -> None:
    hant = await desk.tickets.open(
        NewTicket(
            channel=Channel.MANUAL,
            contact=Contact.email("chan.tai.man@example.hk"),
            types=[RequestType.ACCOUNT_DELETION],
            received_at=at("2026-02-10 10:00"),
            requester_name="陳大文",
            text="您好，我想申請註銷帳號。",
        )
    )
    hans = await desk.tickets.open(
        NewTicket(
            channel=Channel.MANUAL,
            contact=Contact.email("chen.da@example.cn"),
            types=[RequestType.ACCOUNT_DELETION],
            received_at=at("2026-02-10 11:00"),
            text="请帮我注销账号",
        )
    )
    both = sorted([hant.public_id, hans.public_id], reverse=True)  # newest first
    assert await _ids(desk, "注销账号") == both
    assert await _ids(desk, "註銷帳號") == both
    assert await _ids(desk, "账号") == both  # two characters: the bigram index or a scan
    assert await _ids(desk, "陈大文") == [hant.public_id]
    [hit] = [
        h for h in await desk.search.search("注销账号") if h.ticket.public_id == hant.public_id
    ]
    assert hit.snippet is not None
    assert "註銷帳號" in hit.snippet


async def test_a_snippet_is_the_forty_characters_each_side_of_the_match(desk: Desk) -> None:
    # The database cuts the window around the match; the snippet is the same as one cut
    # from the whole text: ellipses only where the text goes on, spaces folded.
    long_text = "前" * 100 + " 营销短信 " + "后" * 100
    short_text = "Stop the MARKETING   texts now"
    for text in (long_text, short_text):
        await desk.tickets.open(
            NewTicket(channel=Channel.MANUAL, contact=Contact.email("w@example.com"),
                      types=[RequestType.WITHDRAW_CONSENT], received_at=at("2026-02-10 10:00"),
                      text=text)
        )  # fmt: skip
    [far] = await desk.search.search("营销短信")
    assert far.snippet == "…" + "前" * 39 + " 营销短信 " + "后" * 39 + "…"
    [near] = await desk.search.search("marketing")
    assert near.snippet == "Stop the MARKETING texts now"
    [hant] = await desk.search.search("營銷短信")  # the other spelling finds the same passage
    assert hant.snippet == far.snippet
