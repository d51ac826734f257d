"""The portal's security, proven against the real server: uvicorn on a free port, httpx, on
SQLite and on PostgreSQL (tests/portal_server.py)."""

from __future__ import annotations

import datetime as dt
import io
import re
import secrets
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import text
from sqlmodel import SQLModel, col, select

from rightsdesk.models import Account, Message, PortalCode, Ticket
from rightsdesk.models_fulfilment import Package, PackageFile
from rightsdesk.service import Desk
from tests.conftest import SHANGHAI
from tests.portal_server import PortalUnderTest, csrf_of, path_of, portal_settings

START = dt.datetime(2026, 12, 1, 10, 0, tzinfo=SHANGHAI)
MARKER = "MARKER-7f3a9c-个人信息-do-not-leak"
REGISTERED = "li.na@example.com"


@pytest.fixture
def server(database_url: str, tmp_path: Path) -> Iterator[PortalUnderTest]:
    from rightsdesk.clock import FrozenClock

    running = PortalUnderTest(portal_settings(database_url, tmp_path), FrozenClock(START))
    running.start()
    try:
        yield running
    finally:
        running.stop()


def delivered(server: PortalUnderTest, email: str = REGISTERED, account: str = "u1") -> str:
    tid = server.verified_access_ticket(email, account)
    server.package(tid, ("聊天记录.txt", f"{MARKER}\n第二行".encode()), note="<b>见附件</b>")
    return path_of(server.deliver(tid))


def open_with_code(client: httpx.Client, server: PortalUnderTest, link: str) -> httpx.Response:
    page = client.get(link)
    sent = client.post(f"{link}/send", data={"csrf": csrf_of(page.text)})
    assert sent.status_code == 200, sent.text
    _, code = server.last_code("package_code")
    return client.post(f"{link}/open", data={"csrf": csrf_of(sent.text), "code": code})


def file_ids(page: str) -> list[str]:
    return re.findall(r"/f/(\d+)\"", page)


def test_a_package_opens_only_with_the_code_sent_to_the_registered_address(
    server: PortalUnderTest, tmp_path: Path
) -> None:
    tid = server.verified_access_ticket("someone.else@example.org", "u1", registered=REGISTERED)
    original = f"{MARKER}\n第二行".encode()
    server.package(tid, ("../../etc/聊天记录.txt", original))
    link = path_of(server.deliver(tid))
    [(to, ready)] = server.mails("package_ready")
    assert to == "someone.else@example.org"  # the link goes where the request came from ...
    assert link in ready
    client = server.client()
    first = client.get(link)
    assert first.status_code == 200
    assert first.headers["cache-control"] == "no-store"
    assert "default-src 'none'" in first.headers["content-security-policy"]
    assert first.headers["x-content-type-options"] == "nosniff"
    assert "strict-transport-security" not in first.headers  # plain http here
    assert "/f/" not in first.text
    assert MARKER not in first.text
    # Without the code nothing downloads, whatever the URL.
    assert client.get(f"{link}/all").status_code == 404
    opened = open_with_code(client, server, link)
    to, _ = server.last_code("package_code")
    assert to == REGISTERED  # ... the code only to the account's registered address
    assert opened.status_code == 200, opened.text
    names = re.findall(r"<td>([^<]+)</td><td>\d+</td>", opened.text)
    assert "聊天记录.txt" in names  # the folders of the name are gone
    assert any(n.endswith(".html") for n in names)
    assert "data.json" in names
    got = client.get(f"{link}/f/{file_ids(opened.text)[0]}")
    assert got.status_code == 200
    assert got.content == original  # byte for byte
    assert got.headers["cache-control"] == "no-store"
    assert got.headers["content-disposition"].startswith("attachment;")
    assert "filename*=UTF-8''%E8%81%8A%E5%A4%A9" in got.headers["content-disposition"]
    assert got.headers["x-content-type-options"] == "nosniff"
    everything = client.get(f"{link}/all")
    assert everything.headers["content-disposition"].startswith("attachment;")
    with zipfile.ZipFile(io.BytesIO(everything.content)) as archive:
        assert archive.read("聊天记录.txt") == original
        data = archive.read("data.json").decode()
        assert f'"ticket": "{tid}"' in data
    # At rest: neither the data folder nor any table holds the plaintext.
    assert_nowhere(server, tmp_path, MARKER)
    events = [e["action"] for e in ticket_events(server, tid)]
    for action in ("package_viewed", "package_code_sent", "package_opened", "package_downloaded"):
        assert action in events
    status = server.call(lambda d: d.packages.status(tid))
    assert status is not None
    assert "opened" in status["line"]
    assert "downloaded 2/5" in status["line"]


def assert_nowhere(server: PortalUnderTest, folder: Path, marker: str) -> None:
    needles = (marker.encode(), marker.encode("utf-16-le"))
    for path in folder.rglob("*"):
        if path.is_file():
            content = path.read_bytes()
            assert not any(n in content for n in needles), path

    async def dump(desk: Desk) -> list[str]:
        found = []
        async with desk.db.reading() as session:
            connection = await session.connection()
            for table in SQLModel.metadata.sorted_tables:
                rows = (await connection.execute(text(f'SELECT * FROM "{table.name}"'))).all()
                blob = repr(rows)
                if marker in blob or repr(marker.encode())[2:-1] in blob:
                    found.append(table.name)
        return found

    assert server.call(dump) == []


def ticket_events(server: PortalUnderTest, tid: str) -> list[dict[str, Any]]:
    async def work(desk: Desk) -> list[dict[str, Any]]:
        detail = await desk.tickets.detail(tid)
        return [{"action": e.action, "after": e.after} for e in detail.events]

    return server.call(work)


def test_no_token_but_the_live_one_ever_gives_a_file_and_all_answer_alike(
    server: PortalUnderTest,
) -> None:
    live = delivered(server)
    token = live.rsplit("/", 1)[1]
    client = server.client()
    answers: set[tuple[int, str]] = set()

    def probe(path: str) -> None:
        for suffix in ("", "/all", "/f/1"):
            got = client.get(f"{path}{suffix}")
            assert got.headers["content-type"].startswith("text/html")
            assert "content-disposition" not in got.headers
            answers.add((got.status_code, got.text))
        posted = client.post(f"{path}/open", data={"csrf": "x", "code": "123456"})
        assert posted.status_code in (403, 404)

    guesses = [secrets.token_urlsafe(16) for _ in range(20)]
    guesses += [token[:-1] + ("A" if token[-1] != "A" else "B"), token.upper(), token + "x"]
    guesses += ["", "..%2F..%2Fetc%2Fpasswd", "A" * 22, "'; DROP TABLE package; --"]
    for guess in guesses:
        probe(f"/p/{guess}")
    # revoked
    tid = server.verified_access_ticket("wang@example.com", "u2")
    server.package(tid, ("a.txt", b"a"))
    revoked = path_of(server.deliver(tid))
    server.call(lambda d: d.packages.revoke(tid, "cli:dpo", "sent to the wrong person"))
    probe(revoked)
    # exhausted: five downloads, then nothing
    tid3 = server.verified_access_ticket("zhao@example.com", "u3")
    server.package(tid3, ("b.txt", b"b"))
    exhausted = path_of(server.deliver(tid3))
    other = server.client()
    opened = open_with_code(other, server, exhausted)
    first_file = file_ids(opened.text)[0]
    for _ in range(5):
        assert other.get(f"{exhausted}/f/{first_file}").status_code == 200
    probe(exhausted)
    assert other.get(f"{exhausted}/f/{first_file}").status_code == 404

    async def sealed_left(desk: Desk) -> int:
        async with desk.db.reading() as session:
            rows = await session.exec(
                select(PackageFile.id)
                .join(Package, col(Package.id) == col(PackageFile.package_id))
                .join(Ticket, col(Ticket.id) == col(Package.ticket_id))
                .where(Ticket.public_id == tid3)
                .where(col(PackageFile.sealed).is_not(None))
            )
            return len(rows.all())

    assert server.call(sealed_left) == 0  # the last download deleted the files
    # expired: a week later the live link is gone too, and its files with it
    server.advance(dt.timedelta(days=7, minutes=1))
    probe(live)
    assert len(answers) == 1, [a[0] for a in answers]  # the same 404 page for every one
    [(status, _)] = answers
    assert status == 404


def test_five_wrong_codes_lock_the_link_and_the_lock_survives_a_restart(
    database_url: str, tmp_path: Path
) -> None:
    from rightsdesk.clock import FrozenClock

    settings = portal_settings(database_url, tmp_path)
    first = PortalUnderTest(settings, FrozenClock(START)).start()
    try:
        link = delivered(first)
        client = first.client()
        page = client.get(link)
        sent = client.post(f"{link}/send", data={"csrf": csrf_of(page.text)})
        _, code = first.last_code("package_code")
        wrong = f"{(int(code) + 1) % 10**6:06d}"
        outcomes = []
        for _ in range(5):
            got = client.post(f"{link}/open", data={"csrf": csrf_of(sent.text), "code": wrong})
            outcomes.append(got.status_code)
        assert outcomes == [400] * 5
        assert "locked" in got.text
        csrf = csrf_of(sent.text)
    finally:
        first.stop()
    second = PortalUnderTest(settings, FrozenClock(START + dt.timedelta(minutes=1))).start()
    try:
        client = second.client()
        client.cookies.set("rd_pcsrf", csrf)
        right = client.post(f"{link}/open", data={"csrf": csrf, "code": code})
        assert right.status_code == 404  # even the right code: the link is locked for good
        assert client.get(link).status_code == 404
    finally:
        second.stop()


def test_your_code_does_not_open_another_requesters_link(server: PortalUnderTest) -> None:
    mine = delivered(server, "li.na@example.com", "u1")
    theirs = delivered(server, "wang.wu@example.com", "u2")
    client = server.client()
    page = client.get(mine)
    client.post(f"{mine}/send", data={"csrf": csrf_of(page.text)})
    to, code = server.last_code("package_code")
    assert to == "li.na@example.com"
    their_page = client.get(theirs)
    client.post(f"{theirs}/send", data={"csrf": csrf_of(their_page.text)})
    refused = client.post(f"{theirs}/open", data={"csrf": csrf_of(page.text), "code": code})
    assert refused.status_code == 400
    assert "/f/" not in refused.text
    # and a session of mine opens nothing of theirs
    opened = client.post(f"{mine}/open", data={"csrf": csrf_of(page.text), "code": code})
    assert opened.status_code == 200
    assert client.get(f"{theirs}/all").status_code == 404


def test_posts_without_csrf_huge_bodies_and_html_are_refused_or_escaped(
    server: PortalUnderTest,
) -> None:
    link = delivered(server)
    client = server.client()
    page = client.get(link)
    assert client.post(f"{link}/send", data={}).status_code == 403
    assert client.post(f"{link}/send", data={"csrf": "forged"}).status_code == 403
    fresh = server.client()  # no cookie at all: the field alone proves nothing
    assert fresh.post(f"{link}/send", data={"csrf": csrf_of(page.text)}).status_code == 403
    assert server.mails("package_code") == []
    form = client.get("/request")
    csrf = csrf_of(form.text)
    huge = client.post("/request", data={"csrf": csrf, "text": "x" * 200_000})
    assert huge.status_code == 413
    streamed = client.post(
        "/request",
        content=(b"x" * 70_000 for _ in range(1)),
        headers={"content-type": "application/x-www-form-urlencoded"},
    )
    assert streamed.status_code == 413
    evil = "<script>alert(1)</script>"
    bad = client.post(
        "/request",
        data={"csrf": csrf, "email": f"x{evil}@", "text": evil, "types": "access"},
    )
    assert bad.status_code == 400
    assert evil not in bad.text
    assert "&lt;script&gt;" in bad.text
    ok = client.post(
        "/request",
        data={"csrf": csrf, "email": "chen@example.com", "text": evil, "name": evil},
    )
    assert ok.status_code == 200
    assert evil not in ok.text
    status = client.post("/status", data={"csrf": csrf, "ticket": evil, "email": evil})
    assert status.status_code == 200
    assert evil not in status.text
    assert evil not in client.get(f"/p/{evil}").text


def test_hsts_when_the_portal_is_public_over_https(database_url: str, tmp_path: Path) -> None:
    from rightsdesk.clock import FrozenClock

    settings = portal_settings(
        database_url, tmp_path, public_base_url="https://privacy.example.com"
    )
    running = PortalUnderTest(settings, FrozenClock(START)).start()
    try:
        got = running.client().get("/request")
        assert got.headers["strict-transport-security"].startswith("max-age=")
        assert "Secure" in got.headers["set-cookie"]
    finally:
        running.stop()


def test_the_request_form_becomes_a_ticket_only_once_the_address_is_confirmed(
    server: PortalUnderTest,
) -> None:
    client = server.client()
    csrf = csrf_of(client.get("/request?lang=en").text)
    sent = client.post(
        "/request",
        data={
            "csrf": csrf,
            "email": "Chen.Jing@Example.com",
            "types": ["access", "bogus"],
            "text": "Please send me a copy.",
            "account": "chenjing88",
        },
    )
    assert sent.status_code == 200
    assert "chen.jing@example.com" in sent.text
    to, code = server.last_code("portal_code")
    assert to == "chen.jing@example.com"
    handle = re.search(r'name="handle" value="([^"]+)"', sent.text)
    assert handle is not None
    assert count(server, Ticket) == 0  # nothing before the code
    wrong = client.post(
        "/request/confirm", data={"csrf": csrf, "handle": handle.group(1), "code": "000000"}
    )
    assert wrong.status_code == 400
    assert count(server, Ticket) == 0
    done = client.post(
        "/request/confirm", data={"csrf": csrf, "handle": handle.group(1), "code": code}
    )
    assert done.status_code == 200, done.text
    ticket_id = re.search(r'id="ticket-id">([^<]+)<', done.text)
    assert ticket_id is not None
    detail = server.call(lambda d: d.tickets.detail(ticket_id.group(1)))
    assert detail.ticket.channel == "web"
    assert detail.ticket.contact_value == "chen.jing@example.com"
    assert [t.value for t in detail.ticket.types] == ["access"]
    [inbound] = [m for m in detail.messages if m.direction == "in"]
    assert "copy of it" in (inbound.text or "")
    assert "chenjing88" in (inbound.text or "")
    assert [k for k, _ in server.mails("acknowledgement")] != []  # the pipeline answered
    # the form's words are gone from the code row once they are the ticket's
    assert rows_with_payload(server) == 0
    again = client.post(
        "/request/confirm", data={"csrf": csrf, "handle": handle.group(1), "code": code}
    )
    assert again.status_code == 400
    assert count(server, Ticket) == 1


def _form_ticket(server: PortalUnderTest, email: str, types: list[str], text: str) -> str:
    client = server.client()
    csrf = csrf_of(client.get("/request?lang=zh").text)
    sent = client.post(
        "/request", data={"csrf": csrf, "email": email, "types": types, "text": text}
    )
    assert sent.status_code == 200
    handle = re.search(r'name="handle" value="([^"]+)"', sent.text)
    assert handle is not None
    _, code = server.last_code("portal_code")
    done = client.post(
        "/request/confirm", data={"csrf": csrf, "handle": handle.group(1), "code": code}
    )
    assert done.status_code == 200, done.text
    ticket_id = re.search(r'id="ticket-id">([^<]+)<', done.text)
    assert ticket_id is not None
    return ticket_id.group(1)


def test_the_ticked_choice_is_the_request_and_the_answer_names_it(
    server: PortalUnderTest,
) -> None:
    email = "zhou.min@example.com"

    async def register(desk: Desk) -> None:
        async with desk.db.transaction() as session:
            session.add(Account(id="u-form", email=email))

    server.call(register)
    # The classifier cannot tell what "the address is wrong" asks for (triage, by itself)...
    tid = _form_ticket(server, email, ["rectification"], "我的收货地址写错了。")
    detail = server.call(lambda d: d.tickets.detail(tid))
    # ...but the requester said it: their choice is the request, nobody needs to guess.
    assert [t.value for t in detail.ticket.types] == ["rectification"]
    assert detail.ticket.needs_review is False
    assert (detail.ticket.classification or {})["types_by"] == "requester"
    [(_, ack)] = [m for m in server.mails("acknowledgement") if tid in m[1]]
    assert "更正" in ack  # named, not "staff will decide"
    assert "工作人员会阅读" not in ack
    assert "邮件来自" not in ack
    assert "发件人" not in ack
    # What the classifier reads beyond the ticked box is a suggestion, for a person.
    other = _form_ticket(server, "wu.lei@example.com", ["rectification"], "另外请给我一份副本")
    ticket = server.call(lambda d: d.tickets.get(other))
    assert [t.value for t in ticket.types] == ["rectification"]
    assert ticket.suggested_types == ["access"]


def count(server: PortalUnderTest, model: type[Ticket] | type[Message]) -> int:
    async def work(desk: Desk) -> int:
        async with desk.db.reading() as session:
            return len((await session.exec(select(model.id))).all())

    return server.call(work)


def rows_with_payload(server: PortalUnderTest) -> int:
    async def work(desk: Desk) -> int:
        async with desk.db.reading() as session:
            found = await session.exec(
                select(PortalCode.id).where(col(PortalCode.payload).is_not(None))
            )
            return len(found.all())

    return server.call(work)


def test_the_form_is_rate_limited_and_a_robot_gets_the_same_page_but_no_mail(
    server: PortalUnderTest,
) -> None:
    client = server.client()
    csrf = csrf_of(client.get("/request").text)
    form = {"csrf": csrf, "email": "flood@example.com", "types": "erasure"}
    for _ in range(3):
        assert client.post("/request", data=form).status_code == 200
    assert client.post("/request", data=form).status_code == 429  # per address
    assert len(server.mails("portal_code")) == 3
    robot = client.post("/request", data={**form, "email": "bot@example.com", "website": "x"})
    assert robot.status_code == 200
    assert "bot@example.com" in robot.text
    assert len(server.mails("portal_code")) == 3  # no mail for the robot
    for n in range(6):  # per client: ten codes an hour from one address, whatever is typed
        client.post("/request", data={**form, "email": f"p{n}@example.com"})
    assert client.post("/request", data={**form, "email": "last@example.com"}).status_code == 429
    server.advance(dt.timedelta(hours=1, minutes=1))
    assert client.post("/request", data={**form, "email": "later@example.com"}).status_code == 200


def test_status_answers_an_unknown_ticket_and_a_wrong_address_as_a_right_one(
    server: PortalUnderTest,
) -> None:
    tid = server.verified_access_ticket("zhou@example.com", "u9")
    client = server.client()
    csrf = csrf_of(client.get("/status").text)

    def ask(ticket: str, email: str) -> str:
        got = client.post("/status", data={"csrf": csrf, "ticket": ticket, "email": email})
        assert got.status_code == 200
        return re.sub(r'name="handle" value="[^"]+"', "", got.text)

    right = ask(tid, "zhou@example.com")
    assert ask(tid, "attacker@example.com") == right
    assert ask("PRIV-2026-999999", "zhou@example.com") == right
    assert [to for to, _ in server.mails("portal_code")] == ["zhou@example.com"]
    _to, code = server.last_code("portal_code")
    handles = re.findall(
        r'name="handle" value="([^"]+)"',
        client.post("/status", data={"csrf": csrf, "ticket": tid, "email": "x@example.com"}).text,
    )
    # a code for the right pair does not open a sham one
    sham = client.post("/status/confirm", data={"csrf": csrf, "handle": handles[0], "code": code})
    assert sham.status_code == 400
    page = client.post("/status", data={"csrf": csrf, "ticket": tid, "email": "zhou@example.com"})
    handle = re.findall(r'name="handle" value="([^"]+)"', page.text)[0]
    _, code = server.last_code("portal_code")
    shown = client.post("/status/confirm", data={"csrf": csrf, "handle": handle, "code": code})
    assert shown.status_code == 200
    assert tid in shown.text
    assert 'id="status"' in shown.text


RECORDINGS = {
    "name": "recordings",
    "kind": "manual",
    "owner_emails": ["media-team@example.com"],
    "display_names": {"zh": "会议录像存储", "en": "meeting recordings store"},
    "instructions": "Bucket meet-recordings, prefix = the account id.",
}


def test_a_manual_task_is_answered_on_its_page_and_its_file_goes_into_the_package(
    database_url: str, tmp_path: Path
) -> None:
    from rightsdesk.clock import FrozenClock

    settings = portal_settings(database_url, tmp_path, systems=[RECORDINGS])
    server = PortalUnderTest(settings, FrozenClock(START)).start()
    try:
        tid = server.verified_access_ticket(REGISTERED, "u1")

        async def approve(desk: Desk) -> None:
            plan = await desk.fulfilment.plan(tid, count=False)
            await desk.fulfilment.approve(tid, plan.hash, "cli:dpo")

        server.call(approve)
        [(owner, mail)] = server.mails("fulfilment_task")
        assert owner == "media-team@example.com"
        link = re.search(r"http://portal\.test(/task/\S+)", mail)
        assert link is not None, mail  # the task's link is on the portal's own address
        task = link.group(1)
        client = server.client()
        page = client.get(task)
        assert page.status_code == 200
        assert "meeting recordings store" in page.text or "会议录像存储" in page.text
        forged = task[:-1] + ("0" if task[-1] != "0" else "1")
        assert client.get(forged).status_code == 404
        csrf = csrf_of(page.text)
        upload = {"file": ("../../../etc/passwd", f"{MARKER} recordings".encode(), "text/plain")}
        assert client.post(task, data={"outcome": "file"}, files=upload).status_code == 403
        missing = client.post(task, data={"csrf": csrf, "outcome": "file"})
        assert missing.status_code == 400  # "file" needs the file
        done = client.post(task, data={"csrf": csrf, "outcome": "file", "note": "3"}, files=upload)
        assert done.status_code == 200, done.text
        assert client.get(task).status_code == 404  # answered: the link is spent
        status = server.call(lambda d: d.packages.status(tid))
        assert status is not None
        [moved] = [f for f in status["files"] if f["source"] == "system:recordings"]
        assert moved["name"] == "passwd"  # no folders survive
        assert_nowhere(server, tmp_path, MARKER)  # sealed in the package, not left on the task
        delivered_link = path_of(server.deliver(tid))
        opened = open_with_code(client, server, delivered_link)
        names = re.findall(r"<td>([^<]+)</td><td>\d+</td>", opened.text)
        which = file_ids(opened.text)[names.index("passwd")]
        got = client.get(f"{delivered_link}/f/{which}")
        assert got.content == f"{MARKER} recordings".encode()
        server.call(lambda d: d.answers.resolve(tid, actor="cli:dpo", reply="copy delivered"))
        # a task link past its life is refused like a forged one
        other = server.verified_access_ticket("wang@example.com", "u2")
        server.call(lambda d: approve_for(d, other))
        late = re.search(r"http://portal\.test(/task/\S+)", server.mails("fulfilment_task")[-1][1])
        assert late is not None
        server.advance(dt.timedelta(days=31))
        assert client.get(late.group(1)).status_code == 404
    finally:
        server.stop()


def test_when_every_system_is_done_the_copy_is_delivered_by_the_portal_once(
    database_url: str, tmp_path: Path
) -> None:
    from rightsdesk.clock import FrozenClock
    from scheduler.jobs import run_due_jobs

    settings = portal_settings(database_url, tmp_path, systems=[RECORDINGS])
    server = PortalUnderTest(settings, FrozenClock(START)).start()
    try:
        tid = server.verified_access_ticket(REGISTERED, "u1")
        server.call(lambda d: approve_for(d, tid))
        assert server.call(run_due_jobs)["access_packages"] == []  # the owners have not answered
        [(_, mail)] = server.mails("fulfilment_task")
        link = re.search(r"http://portal\.test(/task/\S+)", mail)
        assert link is not None, mail
        client = server.client()
        page = client.get(link.group(1))
        upload = {"file": ("recordings.txt", f"{MARKER} recordings".encode(), "text/plain")}
        done = client.post(
            link.group(1), data={"csrf": csrf_of(page.text), "outcome": "file"}, files=upload
        )
        assert done.status_code == 200, done.text
        assert server.call(run_due_jobs)["access_packages"] == [tid]
        [(to, ready)] = server.mails("package_ready")
        assert to == REGISTERED
        assert "http://portal.test/p/" in ready
        assert server.call(run_due_jobs)["access_packages"] == []  # once
        status = server.call(lambda d: d.packages.status(tid))
        assert status is not None
        assert status["status"] == "delivered"
    finally:
        server.stop()


async def approve_for(desk: Desk, tid: str) -> None:
    plan = await desk.fulfilment.plan(tid, count=False)
    await desk.fulfilment.approve(tid, plan.hash, "cli:dpo")


def test_the_scheduler_ends_expired_links_and_deletes_their_files(server: PortalUnderTest) -> None:
    link = delivered(server)
    server.advance(dt.timedelta(days=6))
    from scheduler.jobs import run_due_jobs

    assert server.call(run_due_jobs)["packages"] == []  # not yet
    server.advance(dt.timedelta(days=1, minutes=1))
    done = server.call(run_due_jobs)["packages"]
    assert isinstance(done, list)
    [ended] = done
    assert isinstance(ended, str)
    status = server.call(lambda d: d.packages.status(ended))
    assert status is not None
    assert status["status"] == "expired"
    assert status["files_deleted_at"] is not None
    assert "files deleted" in status["line"]

    async def left(desk: Desk) -> tuple[int, int]:
        async with desk.db.reading() as session:
            sealed = await session.exec(
                select(PackageFile.id).where(col(PackageFile.sealed).is_not(None))
            )
            keys = await session.exec(
                select(Package.id).where(col(Package.wrapped_key).is_not(None))
            )
            return len(sealed.all()), len(keys.all())

    assert server.call(left) == (0, 0)
    assert server.client().get(link).status_code == 404
    assert "package_expired" in [e["action"] for e in ticket_events(server, ended)]


def test_a_trailing_slash_is_the_portals_404_not_a_redirect_to_the_host_header(
    server: PortalUnderTest,
) -> None:
    client = server.client()
    for path in ("/task/abc/", "/request/", "/p/abc/", "/status/"):
        response = client.get(path, headers={"host": "evil.example"})
        assert response.status_code == 404, path
        assert "location" not in response.headers
        assert "evil.example" not in response.text


def test_too_many_fields_is_the_portals_own_page_in_its_language(server: PortalUnderTest) -> None:
    client = server.client()
    fields = {f"f{i}": "x" for i in range(60)}
    response = client.post("/request", data=fields, headers={"accept-language": "en"})
    assert response.status_code == 400
    assert response.headers["content-type"].startswith("text/html")
    assert "too many fields, or a part too large" in response.text
    assert "Maximum number of fields" not in response.text
    chinese = client.post("/request", data=fields, headers={"accept-language": "zh-CN"})
    assert "字段过多" in chinese.text


def test_the_request_form_with_the_desks_own_address_mails_no_code_to_ourselves(
    server: PortalUnderTest,
) -> None:
    client = server.client()
    csrf = csrf_of(client.get("/request").text)
    own = client.post(
        "/request", data={"csrf": csrf, "email": "Privacy@localhost", "types": "erasure"}
    )
    assert own.status_code == 400  # the address field is refused, as any unmailable one
    assert server.mails("portal_code") == []
    assert rows_with_payload(server) == 0


FULL_WIDTH = str.maketrans("0123456789", "０１２３４５６７８９")


def test_codes_typed_full_width_or_spaced_open_the_form_and_the_package(
    server: PortalUnderTest,
) -> None:
    client = server.client()
    csrf = csrf_of(client.get("/request").text)
    sent = client.post(
        "/request", data={"csrf": csrf, "email": "wang.wu@example.com", "types": "access"}
    )
    handle = re.search(r'name="handle" value="([^"]+)"', sent.text)
    assert handle is not None
    _, code = server.last_code("portal_code")
    done = client.post(
        "/request/confirm",
        data={"csrf": csrf, "handle": handle.group(1), "code": code.translate(FULL_WIDTH)},
    )
    assert done.status_code == 200, done.text  # ７５６６８０ was a wrong code
    assert count(server, Ticket) == 1
    link = delivered(server)
    page = client.get(link)
    sent = client.post(f"{link}/send", data={"csrf": csrf_of(page.text)})
    _, code = server.last_code("package_code")
    spaced = f"{code[:3]} {code[3:]}".translate(FULL_WIDTH)
    opened = client.post(f"{link}/open", data={"csrf": csrf_of(sent.text), "code": spaced})
    assert opened.status_code == 200
    assert file_ids(opened.text)
