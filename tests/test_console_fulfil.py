"""Fulfilment in the console over real HTTP, on SQLite and PostgreSQL, against a real company
database of the same kind (tests/company.py): the ticket page shows the dry-run plan, only a
DPO approves it (with the CSRF token), a plan that changed since it was shown is refused and
nothing runs, and the runs show their systems (a failed one until a person marks it)."""

from __future__ import annotations

import asyncio
import re
from collections.abc import Iterator

import pytest
from sqlmodel import select

from rightsdesk.config_systems import SystemSettings
from rightsdesk.models import Account, Channel, Requester, RequestType
from rightsdesk.models_fulfilment import FulfilmentRun
from rightsdesk.service import Desk
from rightsdesk.tickets import Contact, NewTicket
from tests.company import create_company, drop_company, email_of, example_systems
from tests.console_server import (
    ConsoleUnderTest,
    clean_after_test,
    csrf_of,
    logged_in,
    serve,
)
from tests.test_console_http import START, _token, events_of


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def server(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[ConsoleUnderTest]:
    folder = tmp_path_factory.mktemp("company")
    if request.param == "postgresql":
        request.getfixturevalue("postgres_database")  # skips when PostgreSQL is not there
    company = asyncio.run(create_company(request.param, folder))
    (folder / "chat.url").write_text(company)
    # A second SQL system that cannot be reached: its part of a run fails, and shows.
    (folder / "archive.url").write_text(f"sqlite+aiosqlite:///{folder}/missing/archive.db")
    systems = [
        {**s, "url_file": folder / "chat.url"} if s["name"] == "chat" else s
        for s in example_systems()
    ]
    systems.append(
        {
            "name": "archive",
            "kind": "sql",
            "owner_emails": ["dba@example.com"],
            "display_names": {"en": "old archive", "zh": "旧档案库", "zh-Hant": "舊檔案庫"},
            "url_file": folder / "archive.url",
            "erasure": [
                {"name": "rows", "sql": "DELETE FROM archive WHERE email = :email"},
            ],
        }
    )
    (folder / "package.key").write_text("k" * 16 + "a package key of the console tests")
    try:
        yield from serve(
            request,
            tmp_path_factory,
            START,
            systems=[SystemSettings(**s) for s in systems],
            portal={
                "public_base_url": "https://privacy.example.com",
                "package_key_file": folder / "package.key",
            },
        )
    finally:
        asyncio.run(drop_company(company))


@pytest.fixture(autouse=True)
def _clean(server: ConsoleUnderTest) -> Iterator[None]:
    yield
    clean_after_test(server, START)


def verified_ticket(server: ConsoleUnderTest, user: int, types: list[RequestType]) -> str:
    """A ticket whose requester proved they hold account `user` (as a code would)."""

    async def work(desk: Desk) -> str:
        async with desk.db.transaction() as session:
            if await session.get(Account, str(user)) is None:
                session.add(
                    Account(
                        id=str(user),
                        email=email_of(user),
                        phone=f"+86138000{user}",
                        username=f"user{user}",
                    )
                )
        ticket = await desk.tickets.open(
            NewTicket(
                channel=Channel.EMAIL,
                contact=Contact.email(email_of(user)),
                types=types,
                received_at=desk.clock.now(),
                subject=f"request of {user}",
                language="en",
            )
        )
        async with desk.db.transaction() as session:
            requester = await session.get_one(Requester, ticket.requester_id)
            requester.account_id = str(user)
            session.add(requester)
        await desk.tickets.mark_verified(ticket.public_id, "test", note="code confirmed")
        return ticket.public_id

    return server.call(work)


def plan_hash_on(page: str) -> str:
    found = re.search(r'name="plan_hash" value="([0-9a-f]{64})"', page)
    assert found is not None, page
    return found.group(1)


def runs_of(server: ConsoleUnderTest, public_id: str) -> list[FulfilmentRun]:
    async def work(desk: Desk) -> list[FulfilmentRun]:
        ticket = await desk.tickets.get(public_id)
        async with desk.db.reading() as session:
            found = await session.exec(
                select(FulfilmentRun).where(FulfilmentRun.ticket_id == ticket.id)
            )
            return list(found.all())

    return server.call(work)


def test_the_plan_on_the_ticket_page_and_only_a_dpo_approves_it(
    server: ConsoleUnderTest,
) -> None:
    ticket = verified_ticket(server, 1002, [RequestType.ERASURE])
    dora, alan = logged_in(server, "dora"), logged_in(server, "alan")
    page = dora.get(f"/tickets/{ticket}").text
    assert "Plan (dry run: nothing was changed)" in page
    # Per system the rows each statement would touch: user 1002 wrote 5 channel messages.
    assert re.search(r"<code>erasure\.messages</code></td>\s*<td class=\"num\">5</td>", page)
    assert "manual: a task is mailed to media-team@example.com" in page
    assert "cannot run" in page  # the archive cannot be reached
    first_hash = plan_hash_on(page)
    # An agent sees the plan, not the button, and may not approve it.
    agent_page = alan.get(f"/tickets/{ticket}").text
    assert "Plan (dry run" in agent_page
    assert 'action="/tickets/' + ticket + '/fulfil/approve"' not in agent_page
    assert "A DPO approves the plan." in agent_page
    refused = alan.post(
        f"/tickets/{ticket}/fulfil/approve",
        data={"csrf": csrf_of(agent_page), "plan_hash": first_hash},
    )
    assert refused.status_code == 403
    audrey = logged_in(server, "audrey")
    audited = audrey.post(
        f"/tickets/{ticket}/fulfil/approve",
        data={"csrf": csrf_of(audrey.get("/").text), "plan_hash": first_hash},
    )
    assert audited.status_code == 403
    # Without the CSRF token, or with a wrong one: refused, nothing runs.
    assert (
        dora.post(f"/tickets/{ticket}/fulfil/approve", data={"plan_hash": first_hash}).status_code
        == 403
    )
    wrong = dora.post(
        f"/tickets/{ticket}/fulfil/approve", data={"csrf": "forged", "plan_hash": first_hash}
    )
    assert wrong.status_code == 403
    assert runs_of(server, ticket) == []

    # The plan changes after it was shown (the ticket is relabelled): the old hash is refused.
    async def relabel(desk: Desk) -> None:
        await desk.tickets.relabel(
            ticket, "console:alan", [RequestType.ACCESS, RequestType.ERASURE]
        )

    server.call(relabel)
    stale = dora.post(
        f"/tickets/{ticket}/fulfil/approve",
        data={"csrf": csrf_of(page), "plan_hash": first_hash},
    )
    assert stale.status_code == 409
    assert "not the one approved" in stale.text
    assert runs_of(server, ticket) == []
    fresh_hash = plan_hash_on(stale.text)  # the page shows the plan as it is now
    assert fresh_hash != first_hash
    assert "package section: <strong>Your profile</strong>" in stale.text
    done = dora.post(
        f"/tickets/{ticket}/fulfil/approve",
        data={"csrf": csrf_of(page), "plan_hash": fresh_hash},
    )
    assert done.status_code == 303
    [run] = runs_of(server, ticket)
    assert run.plan_hash == fresh_hash
    assert run.approved_by == "console:dora"
    assert ("console:dora", "fulfilment_approved") in events_of(server, ticket)
    page = dora.get(done.headers["location"]).text
    assert "Done: the plan was approved and run" in page
    assert "/fulfil/approve" not in page  # the run is shown now, not a new dry run
    assert re.search(r'<tr class="step-done">\s*<td>chat', page)
    assert re.search(r'<tr class="step-open">\s*<td>recordings', page)  # the manual task
    assert re.search(r'<tr class="step-failed overdue">\s*<td>archive', page)

    # The DPO marks the failed system done by hand, with a reason.
    assert (
        dora.post(
            f"/tickets/{ticket}/fulfil/mark",
            data={"csrf": csrf_of(page), "system": "archive", "reason": ""},
        ).status_code
        == 400
    )
    marked = dora.post(
        f"/tickets/{ticket}/fulfil/mark",
        data={"csrf": csrf_of(page), "system": "archive", "reason": "archive retired in 2025"},
    )
    assert marked.status_code == 303
    page = dora.get(f"/tickets/{ticket}").text
    assert re.search(r'<tr class="step-marked">\s*<td>archive', page)
    assert "archive retired in 2025" in page
    assert ("console:dora", "fulfilment_marked") in events_of(server, ticket)


def test_the_api_shows_the_plan_and_refuses_a_stale_hash(server: ConsoleUnderTest) -> None:
    ticket = verified_ticket(server, 1003, [RequestType.ACCESS])
    _, agent = _token(server, "alan")
    _, dpo = _token(server, "dora")
    client = server.client()
    shown = client.get(
        f"/api/v1/tickets/{ticket}/fulfilment", headers={"authorization": f"Bearer {agent}"}
    )
    assert shown.status_code == 200
    plan = shown.json()["plan"]
    sections = {
        s["title"]: s["rows"]
        for system in plan["systems"]
        for s in system["statements"]
        if s["action"] == "access"
    }
    assert sections["Your profile"] == 1
    assert sections["Channel messages you wrote"] == 6  # user 1003 wrote six
    refused = client.post(
        f"/api/v1/tickets/{ticket}/fulfilment/approve",
        json={"plan_hash": plan["plan_hash"]},
        headers={"authorization": f"Bearer {agent}"},
    )
    assert refused.status_code == 403
    stale = client.post(
        f"/api/v1/tickets/{ticket}/fulfilment/approve",
        json={"plan_hash": "0" * 64},
        headers={"authorization": f"Bearer {dpo}"},
    )
    assert stale.status_code == 409
    assert stale.json()["error"]["code"] == "refused"
    assert runs_of(server, ticket) == []
    done = client.post(
        f"/api/v1/tickets/{ticket}/fulfilment/approve",
        json={"plan_hash": plan["plan_hash"]},
        headers={"authorization": f"Bearer {dpo}"},
    )
    assert done.status_code == 200, done.text
    systems = {s["system"]: s["status"] for s in done.json()["runs"][0]["systems"]}
    assert systems["chat"] == "done"
    assert systems["recordings"] == "open"


def test_the_dpo_delivers_the_package_and_sees_what_became_of_it(
    server: ConsoleUnderTest,
) -> None:
    ticket = verified_ticket(server, 1004, [RequestType.ACCESS])
    dora, alan = logged_in(server, "dora"), logged_in(server, "alan")
    page = dora.get(f"/tickets/{ticket}").text
    assert "No package yet." in page
    approved = dora.post(
        f"/tickets/{ticket}/fulfil/approve",
        data={"csrf": csrf_of(page), "plan_hash": plan_hash_on(page)},
    )
    assert approved.status_code == 303
    page = alan.get(f"/tickets/{ticket}").text
    assert f'action="/tickets/{ticket}/package/deliver"' in page
    audrey = logged_in(server, "audrey")
    audited = audrey.post(
        f"/tickets/{ticket}/package/deliver", data={"csrf": csrf_of(audrey.get("/").text)}
    )
    assert audited.status_code == 403
    assert alan.post(f"/tickets/{ticket}/package/deliver", data={}).status_code == 403
    delivered = alan.post(f"/tickets/{ticket}/package/deliver", data={"csrf": csrf_of(page)})
    assert delivered.status_code == 303
    page = alan.get(delivered.headers["location"]).text
    assert "Done: the package was delivered" in page
    state = re.search(r'<dl class="package-state">(.*?)</dl>', page, re.S)
    assert state is not None
    assert '<span class="status pk-delivered">Delivered</span>' in state.group(1)
    assert "<dt>Opened by the requester</dt><dd>not yet</dd>" in state.group(1)
    assert "<dt>Downloaded</dt><dd>0 / 5</dd>" in state.group(1)
    assert ("console:alan", "package_delivered") in events_of(server, ticket)
    # Delivered: the link can be revoked (with a reason), then delivered again.
    assert f'action="/tickets/{ticket}/package/deliver"' not in page
    no_reason = alan.post(f"/tickets/{ticket}/package/revoke", data={"csrf": csrf_of(page)})
    assert no_reason.status_code == 400
    revoked = alan.post(
        f"/tickets/{ticket}/package/revoke",
        data={"csrf": csrf_of(page), "reason": "sent to an old address"},
    )
    assert revoked.status_code == 303
    page = alan.get(f"/tickets/{ticket}").text
    assert "pk-revoked" in page
    again = alan.post(f"/tickets/{ticket}/package/deliver", data={"csrf": csrf_of(page)})
    assert again.status_code == 303
    assert "(2 times)" in alan.get(f"/tickets/{ticket}").text


def test_nothing_to_deliver_is_said_on_the_page(server: ConsoleUnderTest) -> None:
    ticket = verified_ticket(server, 1005, [RequestType.ACCESS])  # nothing fulfilled yet
    dora = logged_in(server, "dora")
    page = dora.get(f"/tickets/{ticket}").text
    refused = dora.post(f"/tickets/{ticket}/package/deliver", data={"csrf": csrf_of(page)})
    assert refused.status_code == 400
    assert "no package yet" in refused.text


def test_the_api_delivers_a_package(server: ConsoleUnderTest) -> None:
    ticket = verified_ticket(server, 1001, [RequestType.ACCESS])
    _, agent = _token(server, "alan")
    _, auditor = _token(server, "audrey")
    client = server.client()
    h = {"authorization": f"Bearer {agent}"}
    early = client.post(f"/api/v1/tickets/{ticket}/package/deliver", headers=h)
    assert early.status_code == 400
    assert "no package yet" in early.json()["error"]["message"]
    plan = client.get(f"/api/v1/tickets/{ticket}/fulfilment", headers=h).json()["plan"]
    _, dpo = _token(server, "dora")
    approved = client.post(
        f"/api/v1/tickets/{ticket}/fulfilment/approve",
        json={"plan_hash": plan["plan_hash"]},
        headers={"authorization": f"Bearer {dpo}"},
    )
    assert approved.status_code == 200
    refused = client.post(
        f"/api/v1/tickets/{ticket}/package/deliver",
        headers={"authorization": f"Bearer {auditor}"},
    )
    assert refused.status_code == 403
    done = client.post(f"/api/v1/tickets/{ticket}/package/deliver", headers=h)
    assert done.status_code == 200, done.text
    assert done.json()["package"]["status"] == "delivered"
    assert done.json()["package"]["opened_at"] is None
