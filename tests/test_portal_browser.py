"""The portal in a real headless Chromium (the console's browser-test helpers): a requester
sends the form, types the mailed code and gets a ticket; after the DPO delivers a package they
open the link, type the code and download the file. Screenshots are kept under the test's tmp
dir (and copied to $CONSOLE_SCREENSHOTS when it is set)."""

from __future__ import annotations

import datetime as dt
import shutil
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from selenium.webdriver.common.by import By
from selenium.webdriver.remote.webdriver import WebDriver
from selenium.webdriver.support.expected_conditions import (
    presence_of_element_located,
)
from selenium.webdriver.support.wait import WebDriverWait

from rightsdesk.clock import FrozenClock
from rightsdesk.models import Account
from rightsdesk.service import Desk
from tests.browser_wait import wait_until_gone
from tests.conftest import SHANGHAI
from tests.portal_server import PortalUnderTest, portal_settings
from tests.test_console_browser import browser, shoot

__all__ = ["browser"]  # the console's Chromium fixture, used here as it is

pytestmark = pytest.mark.slow

START = dt.datetime(2026, 12, 1, 10, 0, tzinfo=SHANGHAI)
REGISTERED = "li.na@example.com"
CONTENT = "姓名,手机号,注册时间\n李娜,13800138000,2024-03-01\n".encode("utf-8-sig")


@pytest.fixture
def server(sqlite_template: Path, tmp_path: Path) -> Iterator[PortalUnderTest]:
    folder = tmp_path / "desk"
    folder.mkdir()
    shutil.copyfile(sqlite_template, folder / "desk.db")
    settings = portal_settings(f"sqlite+aiosqlite:///{folder / 'desk.db'}", folder)
    running = PortalUnderTest(settings, FrozenClock(START)).start()

    async def register(desk: Desk) -> None:
        async with desk.db.transaction() as session:
            session.add(Account(id="u-1001", email=REGISTERED, name="李娜"))

    running.call(register)
    try:
        yield running
    finally:
        running.stop()


def click(driver: WebDriver, css: str) -> None:
    button = driver.find_element(By.CSS_SELECTOR, css)
    button.click()
    wait_until_gone(driver, button)


def test_a_requester_asks_confirms_gets_a_ticket_then_downloads_the_copy(
    server: PortalUnderTest, browser: WebDriver, tmp_path: Path
) -> None:
    downloads = tmp_path / "downloads"
    downloads.mkdir()
    browser.execute_cdp_cmd(
        "Browser.setDownloadBehavior", {"behavior": "allow", "downloadPath": str(downloads)}
    )
    # The form, in simplified Chinese.
    browser.get(server.url + "/request?lang=zh")
    WebDriverWait(browser, 30).until(presence_of_element_located((By.ID, "email")))
    browser.find_element(By.CSS_SELECTOR, "input[name=types][value=access]").click()
    browser.find_element(By.ID, "text").send_keys("请把我的个人信息副本发给我。")
    browser.find_element(By.ID, "email").send_keys(REGISTERED)
    shoot(browser, tmp_path, "1-request-form")
    click(browser, "#send-request")
    assert REGISTERED in browser.find_element(By.TAG_NAME, "main").text
    shoot(browser, tmp_path, "2-request-code")
    to, code = server.last_code("portal_code")
    assert to == REGISTERED
    browser.find_element(By.ID, "code").send_keys(code)
    click(browser, "#confirm")
    ticket_id = browser.find_element(By.ID, "ticket-id").text
    assert ticket_id.startswith("PRIV-2026-")
    shoot(browser, tmp_path, "3-request-done")
    detail = server.call(lambda d: d.tickets.detail(ticket_id))
    assert detail.ticket.channel == "web"
    # The address was proven by the code and is the account's: verified at once.
    assert detail.ticket.verification == "verified"

    # The DPO builds and delivers the package (the CLI's calls).
    server.package(ticket_id, ("个人信息副本.csv", CONTENT), note="这是您账号的注册信息。")
    link = server.deliver(ticket_id)
    [(to, ready)] = server.mails("package_ready")
    assert to == REGISTERED
    assert link in ready

    # The requester opens the link from the mail.
    browser.get(server.url + link.removeprefix("http://portal.test"))
    WebDriverWait(browser, 30).until(presence_of_element_located((By.ID, "send-code")))
    assert "个人信息副本" in browser.find_element(By.TAG_NAME, "h1").text
    shoot(browser, tmp_path, "4-package-link")
    click(browser, "#send-code")
    to, code = server.last_code("package_code")
    assert to == REGISTERED
    browser.find_element(By.ID, "code").send_keys(code)
    shoot(browser, tmp_path, "5-package-code")
    click(browser, "form.code button")
    rows = browser.find_elements(By.CSS_SELECTOR, "table.files tr")
    assert any("个人信息副本.csv" in r.text for r in rows)
    shoot(browser, tmp_path, "6-package-files")
    row = next(r for r in rows if "个人信息副本.csv" in r.text)
    row.find_element(By.CSS_SELECTOR, "a.download").click()
    target = downloads / "个人信息副本.csv"
    deadline = time.monotonic() + 30
    while not target.exists() and time.monotonic() < deadline:
        time.sleep(0.2)
    assert target.read_bytes() == CONTENT  # byte for byte
    status = server.call(lambda d: d.packages.status(ticket_id))
    assert status is not None
    assert status["downloads"] == 1
    assert status["opened_at"] is not None
    browser.get(server.url + "/status?lang=en")
    shoot(browser, tmp_path, "7-status-form-en")
