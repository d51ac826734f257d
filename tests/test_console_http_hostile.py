"""The console over real HTTP against what a tester who never saw the code tried: huge texts,
months out of range, the last DPO, odd user names, replayed codes, a forged Host header,
far-off extensions, wrong assignees and field types, and errors in the reader's language.

The same server fixture as tests/test_console_http.py (tests/console_server.py)."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator

import pyotp
import pytest

from rightsdesk.service import Desk
from rightsdesk.staff import StaffError
from tests.conftest import SHANGHAI
from tests.console_server import (
    PASSWORD,
    ConsoleUnderTest,
    clean_after_test,
    csrf_of,
    logged_in,
    login,
    serve,
)

START = dt.datetime(2026, 11, 30, 10, 0, tzinfo=SHANGHAI)  # a Monday
ID_NUMBER = "11010519491231002X"  # the GB 11643 example: checksum-valid


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def server(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[ConsoleUnderTest]:
    yield from serve(request, tmp_path_factory, START)


@pytest.fixture(autouse=True)
def _clean_throttle(server: ConsoleUnderTest) -> Iterator[None]:
    yield
    clean_after_test(server, START)


def _token(server: ConsoleUnderTest, name: str) -> dict[str, str]:
    async def work(desk: Desk) -> tuple[int, str]:
        return await desk.staff.issue_token(name, "tests")

    return {"authorization": f"Bearer {server.call(work)[1]}"}


# ---- 1. very large texts ------------------------------------------------------------------


def test_the_api_refuses_a_body_over_the_forms_limit(server: ConsoleUnderTest) -> None:
    ticket = server.open_ticket(subject="big note")
    alan = _token(server, "alan")
    client = server.client()
    huge = client.post(
        f"/api/v1/tickets/{ticket}/note", headers=alan, json={"text": "x" * (1024 * 1024 + 10)}
    )
    assert huge.status_code == 413
    assert huge.json()["error"]["code"] == "too_large"
    # Streamed without a Content-Length, it is refused all the same.
    chunks = iter([b'{"text": "', b"y" * (1024 * 1024), b'"}'])
    streamed = client.post(f"/api/v1/tickets/{ticket}/note", headers=alan, content=chunks)
    assert streamed.status_code == 413
    fine = client.post(f"/api/v1/tickets/{ticket}/note", headers=alan, json={"text": "a note"})
    assert fine.status_code == 200, fine.text


def test_the_ticket_page_shows_the_start_of_a_long_text_masked(server: ConsoleUnderTest) -> None:
    ticket = server.open_ticket(subject="long mail")
    # An ID number across the cut (100,000 characters) must not show its first digits.
    text = "a" * (100_000 - 9) + " " + ID_NUMBER + " " + "b" * 400_000

    async def work(desk: Desk) -> int:
        return await desk.answers.note(ticket, actor="test", text=text)

    server.call(work)
    dora = logged_in(server, "dora")
    page = dora.get(f"/tickets/{ticket}")
    assert page.status_code == 200
    assert len(page.text) < 150_000
    assert "b" * 1000 not in page.text
    assert ID_NUMBER[:8] not in page.text
    assert "first 100,000 characters" in page.text
    data = dora.get(f"/api/v1/tickets/{ticket}", headers=_token(server, "dora")).json()
    note = next(m for m in data["messages"] if m["text_cut"])
    assert len(note["text"]) == 100_000
    assert note["text_chars"] == len(text)
    assert ID_NUMBER[:8] not in note["text"]


# ---- 2. a month out of range --------------------------------------------------------------


def test_a_month_out_of_range_is_a_400_in_the_readers_language(server: ConsoleUnderTest) -> None:
    dora = logged_in(server, "dora")  # English
    audrey = logged_in(server, "audrey")  # Chinese
    for month in ("0001-01", "9999-12"):
        for path in ("/reports/monthly", "/reports/monthly.pdf"):
            page = dora.get(path, params={"month": month})
            assert page.status_code == 400, (path, month)
            assert "A report covers a month from 1970-01 to 2999-12" in page.text
            assert "报告只能覆盖" in audrey.get(path, params={"month": month}).text
    assert "must be written like 2026-11" in dora.get("/reports/monthly?month=soon").text
    assert dora.get("/reports/monthly?month=2026-11").status_code == 200


# ---- 3. the last DPO ------------------------------------------------------------------------


def _role_of(server: ConsoleUnderTest, name: str) -> str:
    async def work(desk: Desk) -> str:
        return (await desk.staff.get(name)).role.value

    return server.call(work)


def test_the_last_active_dpo_cannot_demote_or_disable_itself(server: ConsoleUnderTest) -> None:
    dora = logged_in(server, "dora")
    csrf = csrf_of(dora.get("/users").text)
    refused = dora.post("/users/dora/role", data={"csrf": csrf, "role": "auditor"})
    assert refused.status_code == 400
    assert "dora is the last active DPO" in refused.text
    assert _role_of(server, "dora") == "dpo"

    async def disable(desk: Desk) -> str:
        try:
            await desk.staff.set_disabled("dora", True)
        except StaffError as exc:
            return exc.code
        return "disabled"

    assert server.call(disable) == "last_dpo"  # the CLI's door is the same core

    async def second(desk: Desk) -> None:
        await desk.staff.add("dana", "dana@example.com", "dpo", PASSWORD, "en")

    server.call(second)
    # With a second DPO, either may step down; then the other is the last again.
    assert dora.post("/users/dana/role", data={"csrf": csrf, "role": "agent"}).status_code == 303
    assert _role_of(server, "dana") == "agent"
    assert dora.post("/users/dora/role", data={"csrf": csrf, "role": "agent"}).status_code == 400
    assert server.call(disable) == "last_dpo"


# ---- 4. user names and emails -------------------------------------------------------------


def test_user_names_are_a_safe_set_and_emails_look_like_addresses(
    server: ConsoleUnderTest,
) -> None:
    dora = logged_in(server, "dora")
    csrf = csrf_of(dora.get("/users").text)

    def add(name: str, email: str = "x@example.com") -> str:
        form = {"csrf": csrf, "name": name, "email": email, "role": "agent", "language": "en"}
        response = dora.post("/users/add", data=form)
        assert response.status_code in (200, 400), response.status_code
        return response.text if response.status_code == 400 else "added"

    for bad in ("a/b", "..", "x?y#z", "<b>x</b>", "-dash", "a" * 65, "has space"):
        assert "cannot be a user name" in add(bad), bad
    assert "does not look like an email address" in add("goodname", "bad")
    assert "does not look like an email address" in add("goodname", "a@b")
    assert add("Mixed.Case_9") == "added"
    # Stored case-folded, and its row's forms reach it.
    assert _role_of(server, "mixed.case_9") == "agent"
    moved = dora.post("/users/mixed.case_9/role", data={"csrf": csrf, "role": "auditor"})
    assert moved.status_code == 303
    assert "already a user named mixed.case_9" in add("MIXED.case_9").replace("There is", "")


# ---- 5. a TOTP code logs in once ----------------------------------------------------------


def test_a_totp_code_cannot_be_replayed_in_its_window(server: ConsoleUnderTest) -> None:
    async def add(desk: Desk) -> str:
        await desk.staff.add("otto", "otto@example.com", "agent", PASSWORD, "en")
        return await desk.staff.enrol_totp("otto")

    totp = pyotp.TOTP(pyotp.parse_uri(server.call(add)).secret)
    code = totp.at(server.clock.now())
    assert login(server.client(), "otto", PASSWORD, code).status_code == 303
    assert login(server.client(), "otto", PASSWORD, code).status_code == 401  # the same code
    # Ten seconds on, still in the code's window (and the drift allowed): still refused.
    server.clock.advance(dt.timedelta(seconds=10))
    assert login(server.client(), "otto", PASSWORD, code).status_code == 401
    # An earlier step's code is at or before the one used: refused too.
    earlier = totp.at(server.clock.now() - dt.timedelta(seconds=30))
    if earlier != code:
        assert login(server.client(), "otto", PASSWORD, earlier).status_code == 401
    server.clock.advance(dt.timedelta(seconds=30))
    later = totp.at(server.clock.now())
    assert later != code
    assert login(server.client(), "otto", PASSWORD, later).status_code == 303


# ---- 6. no redirect built from the Host header ---------------------------------------------


def test_a_trailing_slash_is_the_consoles_404_not_a_redirect_to_the_host_header(
    server: ConsoleUnderTest,
) -> None:
    ticket = server.open_ticket(subject="slash")
    dora = logged_in(server, "dora")
    for path in (f"/tickets/{ticket}/", "/users/", "/login/", "/reports/monthly/"):
        response = dora.get(path, headers={"host": "evil.example"})
        assert response.status_code == 404, path
        assert "location" not in response.headers
        assert "evil.example" not in response.text
        assert "没有这个页面" in response.text  # the 404 page, in the cookie-less language


# ---- 7. an extension has a limit -----------------------------------------------------------


def test_an_extension_past_the_allowed_maximum_is_refused(server: ConsoleUnderTest) -> None:
    ticket = server.open_ticket(subject="extend")
    alan = _token(server, "alan")
    client = server.client()
    url = f"/api/v1/tickets/{ticket}/extend"
    far = client.post(url, headers=alan, json={"until": "2099-01-01", "reason": "busy"})
    assert far.status_code == 400
    assert far.json()["error"]["code"] == "refused"
    assert "at the latest" in far.json()["error"]["message"]
    # Received Monday 2026-11-30: due 15 working days on, and at most 15 more after that.
    data = client.get(f"/api/v1/tickets/{ticket}", headers=alan).json()
    due = dt.date.fromisoformat(data["response_due"])
    assert due == dt.date(2026, 12, 21)

    async def latest(desk: Desk) -> dt.date:
        return desk.policy.latest_extension(due)

    last = server.call(latest)
    assert (last - due).days >= 15 + 4  # fifteen working days, and their weekends
    ok = client.post(url, headers=alan, json={"until": last.isoformat(), "reason": "busy"})
    assert ok.status_code == 200, ok.text
    beyond = (last + dt.timedelta(days=1)).isoformat()
    again = client.post(url, headers=alan, json={"until": beyond, "reason": "busy"})
    assert again.status_code == 400  # measured from the first date, not the extended one
    dora = logged_in(server, "dora")
    page = dora.get(f"/tickets/{ticket}").text
    csrf = csrf_of(page)
    head = data["head"]
    form = {"csrf": csrf, "until": "2099-01-01", "reason": "busy"}
    refused = dora.post(f"/tickets/{ticket}/extend", data=form)
    assert refused.status_code == 400
    assert f"may move this date to {last.isoformat()} at the latest" in refused.text
    assert head  # the form needs no head to be refused


# ---- 8. who may be assigned, and what a field is --------------------------------------------


def test_a_ticket_goes_only_to_someone_who_works_tickets(server: ConsoleUnderTest) -> None:
    ticket = server.open_ticket(subject="assign")
    alan = _token(server, "alan")
    client = server.client()
    url = f"/api/v1/tickets/{ticket}/assign"
    auditor = client.post(url, headers=alan, json={"assignee": "audrey"})
    assert auditor.status_code == 400
    assert auditor.json()["error"]["code"] == "unknown_assignee"
    assert "may not work tickets" in auditor.json()["error"]["message"]
    by_email = client.post(url, headers=alan, json={"assignee": "audrey@example.com"})
    assert by_email.status_code == 400
    assert client.post(url, headers=alan, json={"assignee": "alan"}).status_code == 200
    dora = logged_in(server, "dora")
    csrf = csrf_of(dora.get(f"/tickets/{ticket}").text)
    page = dora.post(f"/tickets/{ticket}/assign", data={"csrf": csrf, "assignee": "audrey"})
    assert page.status_code == 400
    assert "audrey reads tickets but may not work them" in page.text


def test_the_api_refuses_a_field_that_is_not_a_string_naming_it(
    server: ConsoleUnderTest,
) -> None:
    ticket = server.open_ticket(subject="types")
    alan = _token(server, "alan")
    client = server.client()
    for body, name in (({"text": 123}, "text"), ({"text": "ok", "head": {"a": 1}}, "head")):
        refused = client.post(f"/api/v1/tickets/{ticket}/note", headers=alan, json=body)
        assert refused.status_code == 400
        assert refused.json()["error"] == {
            "code": "bad_field",
            "message": f"{name}: expected a string",
            "field": name,
        }
    listed = client.post(f"/api/v1/tickets/{ticket}/note", headers=alan, json={"text": ["x", 1]})
    assert listed.status_code == 400
    fine = client.post(f"/api/v1/tickets/{ticket}/note", headers=alan, json={"text": "fine"})
    assert fine.status_code == 200


# ---- 9. the core's refusals and the framework's in the interface's language ------------------


def _chinese_dpo(server: ConsoleUnderTest) -> None:
    async def work(desk: Desk) -> None:
        if "zhou" not in {s.name for s in await desk.staff.everyone()}:
            await desk.staff.add("zhou", "zhou@example.com", "dpo", PASSWORD, "zh")

    server.call(work)


def test_the_users_page_words_the_cores_refusals_in_chinese(server: ConsoleUnderTest) -> None:
    _chinese_dpo(server)
    zhou = logged_in(server, "zhou")
    csrf = csrf_of(zhou.get("/users").text)

    def add(**fields: str) -> str:
        form = {"csrf": csrf, "name": "newbie", "email": "n@example.com", "role": "agent"}
        form["language"] = "zh"
        response = zhou.post("/users/add", data={**form, **fields})
        assert response.status_code == 400, fields
        return response.text

    assert "已经有名为 alan 的用户" in add(name="alan")
    assert "没有“root”这个角色" in add(role="root")
    assert "界面语言只能是 zh, en 之一" in add(language="fr")
    assert "不能用作用户名" in add(name="a b")
    assert "不像是一个邮箱地址" in add(email="bad")
    moved = zhou.post("/users/alan/role", data={"csrf": csrf, "role": "root"})
    assert "没有“root”这个角色" in moved.text
    for page in (add(name="alan"), moved.text):
        assert "already" not in page
        assert "unknown role" not in page


def test_a_replys_attachments_over_the_limit_are_refused_in_chinese(
    server: ConsoleUnderTest,
) -> None:
    _chinese_dpo(server)
    ticket = server.open_ticket(subject="attachments")
    zhou = logged_in(server, "zhou")
    csrf = csrf_of(zhou.get(f"/tickets/{ticket}").text)
    big = b"x" * (10 * 1024 * 1024 + 1)
    response = zhou.post(
        f"/tickets/{ticket}/reply",
        data={"csrf": csrf, "text": "see attached"},
        files={"attachments": ("big.bin", big, "application/octet-stream")},
    )
    assert response.status_code == 400
    assert "而一封答复最多可带 10,485,760 字节" in response.text
    assert "max_attachment_bytes" not in response.text


def test_the_frameworks_form_refusals_are_the_consoles_page(server: ConsoleUnderTest) -> None:
    _chinese_dpo(server)
    ticket = server.open_ticket(subject="field size")
    zhou = logged_in(server, "zhou")
    csrf = csrf_of(zhou.get(f"/tickets/{ticket}").text)
    response = zhou.post(
        f"/tickets/{ticket}/note",
        data={"csrf": csrf, "text": "x" * (1024 * 1024 + 1)},
        files={"attachments": ("a.txt", b"a", "text/plain")},  # multipart: the 1 MB a field
    )
    assert response.status_code == 400
    assert response.headers["content-type"].startswith("text/html")
    assert "有一个字段超过 1 MB" in response.text
    assert "exceeded" not in response.text


# ---- 10. a refused filter is not echoed whole --------------------------------------------------


def test_a_refused_filter_repeats_only_the_start_of_its_value(server: ConsoleUnderTest) -> None:
    dora = logged_in(server, "dora")
    long = "v" * 60_000
    for params in ({"colour": long}, {"status": long}, {"k" * 5000: "x"}, {"due_before": long}):
        page = dora.get("/", params=params)
        assert page.status_code == 400, list(params)
        assert len(page.text) < 20_000
        assert "v" * 41 not in page.text
        assert "k" * 41 not in page.text
    api = dora.get("/api/v1/tickets", params={"colour": long}, headers=_token(server, "dora"))
    assert api.status_code == 400
    assert len(api.text) < 1000
    assert api.json()["error"]["field"] == "colour"


def test_a_dpo_cannot_disable_itself_by_another_case_of_its_name(
    server: ConsoleUnderTest,
) -> None:
    _chinese_dpo(server)  # a second DPO: the last-DPO rule alone would not refuse it
    dora = logged_in(server, "dora")
    csrf = csrf_of(dora.get("/users").text)
    refused = dora.post("/users/DORA/disable", data={"csrf": csrf})
    assert refused.status_code == 400
    assert "You cannot disable yourself." in refused.text
