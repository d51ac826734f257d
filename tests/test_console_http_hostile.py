"""The console over real HTTP against what a tester who never saw the code tried: huge texts,
months out of range, the last DPO, odd user names, replayed codes, a forged Host header,
far-off extensions, wrong assignees and field types, and errors in the reader's language.

The same server fixture as tests/test_console_http.py (tests/console_server.py)."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator

import pytest

from rightsdesk.service import Desk
from tests.conftest import SHANGHAI
from tests.console_server import ConsoleUnderTest, clean_after_test, logged_in, serve

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
