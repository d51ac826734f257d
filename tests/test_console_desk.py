"""The console's friction features over real HTTP (SQLite and PostgreSQL): the search in the
queue pages (email, phone, name, id, Chinese and English words), the unread queue and marks,
suggested types, dismiss with a reason, merge, bulk dismiss, capped counts, and the same in the
JSON API. Each action is the core's (the audit trail says who)."""

from __future__ import annotations

import re
from collections.abc import Iterator

import pytest
from sqlmodel import select

from console import queues
from rightsdesk.models import (
    Account,
    Channel,
    Message,
    RequestType,
    Ticket,
    TicketStatus,
    VerificationChallenge,
)
from rightsdesk.service import Desk
from rightsdesk.tickets import Contact
from tests.console_server import (
    ConsoleUnderTest,
    clean_after_test,
    csrf_of,
    form_tokens,
    logged_in,
    serve,
)
from tests.test_console_http import START, _token, events_of, status_of


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def server(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[ConsoleUnderTest]:
    yield from serve(request, tmp_path_factory, START)


@pytest.fixture(autouse=True)
def _clean(server: ConsoleUnderTest) -> Iterator[None]:
    yield
    clean_after_test(server, START)


def ids_on(page: str) -> list[str]:
    return re.findall(r'<a href="/tickets/(PRIV-[\d-]+)">', page)


def requester_writes(server: ConsoleUnderTest, public_id: str, text: str) -> None:
    async def work(desk: Desk) -> None:
        ticket = await desk.tickets.get(public_id)
        async with desk.db.transaction() as session:
            message = Message(
                direction="in",
                channel=Channel.EMAIL,
                sender=ticket.contact_value,
                subject="Re: your request",
                text=text,
                received_at=desk.clock.now(),
                processed_at=desk.clock.now(),
            )
            await desk.tickets.attach_message(session, public_id, message)

    server.call(work)


def test_the_search_finds_tickets_by_what_the_dpo_has_in_hand(server: ConsoleUnderTest) -> None:
    phone = server.open_ticket(
        subject="查询个人信息",
        requester_name="欧阳娜娜",
        contact=Contact.email("ouyang.nana@example.com"),
        text="我的手机号是13912345678，请告诉我你们保存了哪些信息。",
    )
    english = server.open_ticket(
        subject="Data request",
        contact=Contact.email("grace.hopper@example.org"),
        text="Please tell me which advertising partners received my browsing history.",
    )
    chinese = server.open_ticket(
        subject="营销",
        contact=Contact.email("li.ming@example.com"),
        text="我不同意你们继续发送营销短信，请停止。",
    )
    dora = logged_in(server, "dora")

    def found(q: str, **params: str) -> list[str]:
        page = dora.get("/", params={"q": q, **params})
        assert page.status_code == 200, page.text
        return ids_on(page.text)

    assert found("13912345678") == [phone]
    assert found("139 1234 5678") == [phone]  # typed as it is said
    assert found("ouyang.nana@example.com") == [phone]
    assert found("欧阳娜娜") == [phone]
    assert found(phone) == [phone]
    assert found("营销短信") == [chinese]
    assert found("browsing history") == [english]
    assert found("nobody-writes-this-zzq") == []
    # The queue and the filters apply to the hits.
    assert found("营销短信", queue="mine") == []
    assert found("营销短信", status="new") == [chinese]
    assert found("营销短信", status="resolved") == []
    page = dora.get("/", params={"q": "13912345678"}).text
    assert "Search: 13912345678" in page
    assert '<span class="tag">phone</span>' in page  # what matched
    assert 'name="q" value="13912345678"' in page  # the filters keep the search
    # The CSV of a search is the search's list.
    csv = dora.get("/export.csv", params={"q": "browsing history"}).text
    assert english in csv
    assert phone not in csv
    assert dora.get("/", params={"q": "x" * 300}).status_code == 400
    # The API searches the same way and says what matched.
    _, token = _token(server, "audrey")
    client = server.client()
    listing = client.get(
        "/api/v1/tickets", params={"q": "欧阳娜娜"}, headers={"authorization": f"Bearer {token}"}
    ).json()
    assert [item["id"] for item in listing["items"]] == [phone]
    assert listing["items"][0]["matched"] == ["name"]
    assert listing["q"] == "欧阳娜娜"


def test_the_unread_queue_and_marks(server: ConsoleUnderTest) -> None:
    ticket = server.open_ticket(subject="unread", contact=Contact.email("unread@example.com"))
    quiet = server.open_ticket(subject="quiet", contact=Contact.email("quiet@example.com"))
    dora = logged_in(server, "dora")
    assert ticket not in ids_on(dora.get("/?queue=unread").text)
    requester_writes(server, ticket, "Any news? 有进展吗？")
    listing = dora.get("/?queue=unread").text
    assert ticket in ids_on(listing)
    assert quiet not in ids_on(listing)
    assert '<span class="unread" title="new message">' in listing
    count = re.search(r'queue=unread"[^>]*>[^<]*<span class="count">(\d+)</span>', listing)
    assert count is not None
    assert int(count.group(1)) >= 1
    page = dora.get(f"/tickets/{ticket}").text
    assert "The requester wrote since a person last acted" in page
    # Any action of a person reads it.
    csrf, head = form_tokens(page)
    note = dora.post(
        f"/tickets/{ticket}/note", data={"csrf": csrf, "head": head, "text": "read it"}
    )
    assert note.status_code == 303
    assert ticket not in ids_on(dora.get("/?queue=unread").text)
    assert "The requester wrote since" not in dora.get(f"/tickets/{ticket}").text


def test_suggested_types_are_shown_and_accepted_or_kept(server: ConsoleUnderTest) -> None:
    accepted = server.open_ticket(subject="suggested 1", contact=Contact.email("s1@example.com"))
    kept = server.open_ticket(subject="suggested 2", contact=Contact.email("s2@example.com"))

    async def suggest(desk: Desk) -> None:
        # What FollowUps records when a later message asks for more (classified off the loop).
        async with desk.db.transaction() as session:
            for public_id in (accepted, kept):
                row = (
                    await session.exec(select(Ticket).where(Ticket.public_id == public_id))
                ).one()
                row.suggested_types = ["erasure"]
                row.needs_review = True
                session.add(row)

    server.call(suggest)
    dora = logged_in(server, "dora")
    listing = dora.get("/?queue=triage").text
    assert accepted in ids_on(listing)
    assert '<span class="tag suggested"' in listing
    page = dora.get(f"/tickets/{accepted}").text
    assert "Suggested by a later message" in page
    accept = re.search(r'<form[^>]*class="inline accept-suggested">(.*?)</form>', page, re.S)
    assert accept is not None
    values = re.findall(r'name="types" value="([^"]+)"', accept.group(1))
    assert values == ["access", "erasure"]
    csrf, head = form_tokens(page)
    done = dora.post(
        f"/tickets/{accepted}/relabel", data={"csrf": csrf, "head": head, "types": values}
    )
    assert done.status_code == 303

    async def state(desk: Desk, public_id: str) -> tuple[list[str], list[str]]:
        ticket = await desk.tickets.get(public_id)
        return [str(t) for t in ticket.types], list(ticket.suggested_types)

    assert server.call(lambda d: state(d, accepted)) == (["access", "erasure"], [])
    page = dora.get(f"/tickets/{kept}").text
    csrf, head = form_tokens(page)
    keep = dora.post(
        f"/tickets/{kept}/relabel", data={"csrf": csrf, "head": head, "types": ["access"]}
    )
    assert keep.status_code == 303
    assert server.call(lambda d: state(d, kept)) == (["access"], [])
    assert "Suggested by a later message" not in dora.get(f"/tickets/{kept}").text
    assert events_of(server, kept)[-1] == ("console:dora", "relabelled")


def test_dismiss_needs_a_reason_and_takes_the_ticket_out_of_triage(
    server: ConsoleUnderTest,
) -> None:
    ticket = server.open_ticket(
        subject="How do I change my avatar?",
        types=[RequestType.NOT_RIGHTS_REQUEST],
        contact=Contact.email("avatar@example.com"),
    )
    dora = logged_in(server, "dora")
    assert ticket in ids_on(dora.get("/?queue=triage").text)
    page = dora.get(f"/tickets/{ticket}").text
    assert f'action="/tickets/{ticket}/dismiss"' in page
    csrf, head = form_tokens(page)
    refused = dora.post(f"/tickets/{ticket}/dismiss", data={"csrf": csrf, "head": head})
    assert refused.status_code == 400
    assert "reason" in refused.text
    assert status_of(server, ticket) == TicketStatus.NEW
    done = dora.post(
        f"/tickets/{ticket}/dismiss",
        data={"csrf": csrf, "head": head, "reason": "a product question, answered by support"},
    )
    assert done.status_code == 303
    assert status_of(server, ticket) == TicketStatus.DISMISSED
    assert events_of(server, ticket)[-1] == ("console:dora", "dismissed")
    page = dora.get(f"/tickets/{ticket}").text
    assert "a product question, answered by support" in page
    assert f'action="/tickets/{ticket}/dismiss"' not in page  # done: no second dismissal
    assert ticket not in ids_on(dora.get("/?queue=triage").text)
    # An auditor cannot.
    audrey = logged_in(server, "audrey")
    other = server.open_ticket(subject="spam", contact=Contact.email("spam@example.com"))
    forbidden = audrey.post(
        f"/tickets/{other}/dismiss",
        data={"csrf": csrf_of(audrey.get("/").text), "reason": "spam"},
    )
    assert forbidden.status_code == 403


def test_a_rights_request_is_dismissed_only_when_the_dpo_confirms_it(
    server: ConsoleUnderTest,
) -> None:
    ticket = server.open_ticket(
        subject="please delete my data", types=[RequestType.ERASURE],
        contact=Contact.email("erase-me@example.com"),
    )  # fmt: skip
    dora = logged_in(server, "dora")
    page = dora.get(f"/tickets/{ticket}").text
    assert 'name="confirm_rights_request"' in page
    csrf, head = form_tokens(page)
    form = {"csrf": csrf, "head": head, "reason": "looks like spam"}
    refused = dora.post(f"/tickets/{ticket}/dismiss", data=form)
    assert refused.status_code == 400
    assert "is labelled deletion, which is a rights request, so it was not dismissed" in (
        refused.text
    )
    assert status_of(server, ticket) == TicketStatus.NEW
    done = dora.post(f"/tickets/{ticket}/dismiss", data={**form, "confirm_rights_request": "yes"})
    assert done.status_code == 303
    assert status_of(server, ticket) == TicketStatus.DISMISSED
    # In bulk: refused per ticket, in the interface's language, unless the box is ticked.
    tickets = [
        server.open_ticket(
            subject=f"BULK RIGHTS {k}",
            types=[RequestType.ACCESS],
            contact=Contact.email(f"bulk-rights{k}@example.com"),
        )
        for k in range(2)
    ]
    page = dora.get("/", params={"q": "BULK RIGHTS"}).text
    assert 'name="confirm_rights_request"' in page
    heads = dict(re.findall(r'name="head:(PRIV-[\d-]+)" value="([^"]*)"', page))
    bulk: dict[str, str | list[str]] = {
        "csrf": csrf_of(page), "action": "dismiss", "ids": tickets, "reason": "spam",
        **{f"head:{t}": heads[t] for t in tickets},
    }  # fmt: skip
    refused = dora.post("/bulk", data=bulk)
    assert refused.status_code == 409
    assert refused.text.count("which is a rights request, so it was not dismissed") == 2
    assert [status_of(server, t) for t in tickets] == [TicketStatus.NEW] * 2
    done = dora.post("/bulk", data={**bulk, "confirm_rights_request": "yes"})
    assert done.status_code == 200
    assert [status_of(server, t) for t in tickets] == [TicketStatus.DISMISSED] * 2


def test_assign_refuses_a_name_nobody_has(server: ConsoleUnderTest) -> None:
    ticket = server.open_ticket(subject="who works me", contact=Contact.email("who@example.com"))
    dora = logged_in(server, "dora")
    csrf, head = form_tokens(dora.get(f"/tickets/{ticket}").text)
    refused = dora.post(
        f"/tickets/{ticket}/assign", data={"csrf": csrf, "head": head, "assignee": "wang.fnag"}
    )
    assert refused.status_code == 400
    assert "Nobody named wang.fnag uses the console" in refused.text
    done = dora.post(
        f"/tickets/{ticket}/assign", data={"csrf": csrf, "head": head, "assignee": "alan"}
    )
    assert done.status_code == 303
    assert events_of(server, ticket)[-1] == ("console:dora", "assigned")


def test_merge_into_the_original_or_take_another_in(server: ConsoleUnderTest) -> None:
    contact = Contact.email("twice@example.com")
    original = server.open_ticket(subject="delete me", contact=contact)
    again = server.open_ticket(
        subject="delete me, again", contact=contact, text="Please delete my data, again."
    )
    third = server.open_ticket(subject="and once more", contact=contact)
    stranger = server.open_ticket(subject="not theirs", contact=Contact.email("x9@example.com"))
    dora = logged_in(server, "dora")
    page = dora.get(f"/tickets/{again}").text
    assert f'href="/tickets/{original}"' in page  # "possible duplicate of"
    assert f'name="into" size="18" placeholder="PRIV-2026-000123" value="{original}"' in page
    csrf, head = form_tokens(page)
    done = dora.post(f"/tickets/{again}/merge", data={"csrf": csrf, "head": head, "into": original})
    assert done.status_code == 303
    page = dora.get(f"/tickets/{again}").text
    assert "This ticket was merged" in page
    assert status_of(server, again) == TicketStatus.CLOSED
    assert ("console:dora", "merged") in events_of(server, original)
    kept = dora.get(f"/tickets/{original}").text
    assert "Please delete my data, again." in kept  # its messages moved over
    csrf, head = form_tokens(kept)
    taken = dora.post(
        f"/tickets/{original}/merge", data={"csrf": csrf, "head": head, "other": third}
    )
    assert taken.status_code == 303
    assert status_of(server, third) == TicketStatus.CLOSED
    csrf, head = form_tokens(dora.get(f"/tickets/{original}").text)
    refused = dora.post(
        f"/tickets/{original}/merge", data={"csrf": csrf, "head": head, "other": stranger}
    )
    assert refused.status_code == 400
    assert "different requesters" in refused.text
    both = dora.post(
        f"/tickets/{original}/merge",
        data={"csrf": csrf, "head": head, "other": stranger, "into": third},
    )
    assert both.status_code == 400


def test_bulk_dismiss_with_one_reason(server: ConsoleUnderTest) -> None:
    spam = [
        server.open_ticket(
            subject=f"WIN A PRIZE {k}",
            channel=Channel.MANUAL,
            contact=Contact.email(f"prize{k}@example.net"),
            types=[RequestType.NOT_RIGHTS_REQUEST],
        )
        for k in range(2)
    ]
    dora = logged_in(server, "dora")
    page = dora.get("/", params={"q": "WIN A PRIZE"}).text
    heads = dict(re.findall(r'name="head:(PRIV-[\d-]+)" value="([^"]*)"', page))
    assert set(spam) <= set(heads)
    form: dict[str, str | list[str]] = {
        "csrf": csrf_of(page),
        "action": "dismiss",
        "ids": spam,
        **{f"head:{t}": heads[t] for t in spam},
    }
    refused = dora.post("/bulk", data=form)  # no reason: the core refuses each
    assert refused.status_code == 409
    assert "reason" in refused.text
    done = dora.post("/bulk", data={**form, "reason": "spam"})
    assert done.status_code == 200
    assert [status_of(server, t) for t in spam] == [TicketStatus.DISMISSED] * 2
    assert [events_of(server, t)[-1] for t in spam] == [("console:dora", "dismissed")] * 2


def test_counts_and_pages_stop_at_the_cap(
    server: ConsoleUnderTest, monkeypatch: pytest.MonkeyPatch
) -> None:
    for k in range(4):
        server.open_ticket(subject=f"cap {k}", contact=Contact.email(f"cap{k}@example.com"))
    monkeypatch.setattr(queues, "COUNT_CAP", 3)
    dora = logged_in(server, "dora")
    page = dora.get("/?queue=all").text
    assert '<span class="count">3+</span>' in page
    assert "more than 3: narrow the filters" in page  # one page of 5 holds the 3 counted
    assert dora.get("/?queue=all&page=2").status_code == 400  # bounded pagination
    _, token = _token(server, "alan")
    api = server.client().get(
        "/api/v1/tickets?queue=all", headers={"authorization": f"Bearer {token}"}
    )
    assert api.json()["total"] == 3
    assert api.json()["total_capped"] is True
    counts = server.client().get("/api/v1/queues", headers={"authorization": f"Bearer {token}"})
    assert counts.json()["all"] == 4  # "more than 3": the cap plus one


def test_the_api_dismisses_and_merges(server: ConsoleUnderTest) -> None:
    contact = Contact.email("api-merge@example.com")
    first = server.open_ticket(subject="api merge 1", contact=contact)
    second = server.open_ticket(subject="api merge 2", contact=contact)
    _, token = _token(server, "alan")
    client = server.client()
    h = {"authorization": f"Bearer {token}"}
    merged = client.post(f"/api/v1/tickets/{second}/merge", json={"into": first}, headers=h)
    assert merged.status_code == 200, merged.text
    assert status_of(server, second) == TicketStatus.CLOSED
    refused = client.post(f"/api/v1/tickets/{first}/dismiss", json={}, headers=h)
    assert refused.status_code == 400
    # An access request: dismissed only with the override (or after a relabel).
    rights = client.post(f"/api/v1/tickets/{first}/dismiss", json={"reason": "a test"}, headers=h)
    assert rights.status_code == 400
    assert rights.json()["error"]["code"] == "rights_request", rights.text
    assert status_of(server, first) == TicketStatus.NEW
    dismissed = client.post(
        f"/api/v1/tickets/{first}/dismiss",
        json={"reason": "a test", "confirm_rights_request": True},
        headers=h,
    )
    assert dismissed.status_code == 200
    assert dismissed.json()["status"] == "dismissed"
    nobody = client.post(f"/api/v1/tickets/{first}/assign", json={"assignee": "zed"}, headers=h)
    assert (nobody.status_code, nobody.json()["error"]["code"]) == (400, "unknown_assignee")
    spec = client.get("/api/v1/openapi.json").json()
    action = spec["paths"]["/tickets/{public_id}/{action}"]["post"]["parameters"][1]
    assert {"dismiss", "merge"} <= set(action["schema"]["enum"])
    assert any(p["name"] == "q" for p in spec["paths"]["/tickets"]["get"]["parameters"])
    queue = spec["paths"]["/tickets"]["get"]["parameters"][0]
    assert "unread" in queue["schema"]["enum"]


def test_the_ticket_page_shows_the_matched_account_before_it_is_verified(
    server: ConsoleUnderTest,
) -> None:
    public_id = server.open_ticket(subject="matched", contact=Contact.email("m1@example.com"))

    async def match(desk: Desk) -> None:
        # What the verifier records when it sends a code to the account the request names.
        async with desk.db.transaction() as session:
            ticket = (await session.exec(select(Ticket).where(Ticket.public_id == public_id))).one()
            session.add(Account(id="acct-matched-1", email="registered@example.com"))
            await session.flush()
            session.add(
                VerificationChallenge(
                    ticket_id=ticket.id or 0,
                    account_id="acct-matched-1",
                    sent_to="registered@example.com",
                    code_hash="0" * 64,
                    expires_at=desk.clock.now(),
                )
            )

    server.call(match)
    page = logged_in(server, "dora").get(f"/tickets/{public_id}").text
    assert "acct-matched-1 (registered@example.com)" in page
    assert "matched, not verified for this ticket" in page
    assert "none matched" not in page


def test_the_ticket_page_flags_a_message_nothing_proved(server: ConsoleUnderTest) -> None:
    public_id = server.open_ticket(subject="flagged", contact=Contact.email("f1@example.com"))

    async def work(desk: Desk) -> None:
        async with desk.db.transaction() as session:
            for n, flagged in enumerate((False, True)):
                message = Message(
                    direction="in",
                    channel=Channel.EMAIL,
                    sender="f1@example.com",
                    text=f"message {n}",
                    unauthenticated_thread=flagged,
                    received_at=desk.clock.now(),
                    processed_at=desk.clock.now(),
                )
                await desk.tickets.attach_message(session, public_id, message)

    server.call(work)
    page = logged_in(server, "dora").get(f"/tickets/{public_id}").text
    assert page.count("UNVERIFIED SENDER") == 1


def test_the_ticket_page_says_until_when_verification_is_locked(server: ConsoleUnderTest) -> None:
    public_id = server.open_ticket(subject="locked", contact=Contact.email("l1@example.com"))

    async def work(desk: Desk) -> None:
        async with desk.db.transaction() as session:
            ticket = await desk.tickets.load_in(session, public_id, lock=True)
            ticket.needs_review = True
            reason = "5 wrong codes on the account's tickets within 24 hours"
            await desk.tickets.note_in(
                session,
                ticket,
                "system:verification",
                "verification_account_locked",
                {"until": "2026-03-01T08:30:00+00:00", "reason": reason},
            )

    server.call(work)
    page = logged_in(server, "dora").get(f"/tickets/{public_id}").text
    assert "verification locked until 2026-03-01" in page
    assert "5 wrong codes on the account&#39;s tickets" in page
