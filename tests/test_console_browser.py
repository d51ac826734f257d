"""The console in a real headless Chromium (Debian's chromium and chromium-driver, selenium),
over SQLite and PostgreSQL.

Every test saves screenshots under its tmp dir; with CONSOLE_SCREENSHOTS=DIR they are also
copied there (that is how docs/screenshots/ was made). Without chromium the tests skip with
the reason, except under CI=true, where they fail.
"""

from __future__ import annotations

import datetime as dt
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from selenium import webdriver
from selenium.common.exceptions import WebDriverException
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.remote.webdriver import WebDriver
from selenium.webdriver.remote.webelement import WebElement
from selenium.webdriver.support.expected_conditions import (
    presence_of_element_located,
)
from selenium.webdriver.support.wait import WebDriverWait

from rightsdesk.clock import FrozenClock
from rightsdesk.config import Settings
from rightsdesk.models import Channel, RequestType
from rightsdesk.service import Desk
from rightsdesk.tickets import Contact
from tests.browser_wait import wait_until_gone
from tests.conftest import IN_CI, SHANGHAI
from tests.console_server import PASSWORD, ConsoleUnderTest, database_for

CHROMIUM = Path("/usr/bin/chromium")
CHROMEDRIVER = Path("/usr/bin/chromedriver")
START = dt.datetime(2026, 11, 30, 10, 0, tzinfo=SHANGHAI)

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def server(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[ConsoleUnderTest]:
    folder = tmp_path_factory.mktemp("browser")
    settings = Settings(
        database={"url": database_for(request, folder)},
        desk={"data_dir": folder / "var"},
        outbound={"outbox_dir": folder / "var" / "outbox"},
        classifier={"enabled": False},
        console={"port": 0},
    )
    running = ConsoleUnderTest(settings, FrozenClock(START - dt.timedelta(days=120))).start()
    try:
        _a_desk_with_history(running)
        yield running
    finally:
        running.stop()


def _a_desk_with_history(server: ConsoleUnderTest) -> None:
    """Four months of requests, some answered on time, some late, so the charts have data."""
    samples = [
        ("请删除我的账号和所有数据", RequestType.ACCOUNT_DELETION, Channel.EMAIL),
        ("Copy of my personal data", RequestType.ACCESS, Channel.EMAIL),
        ("我要查询你们收集了我哪些个人信息", RequestType.ACCESS, Channel.TELEGRAM),
        ("撤回营销短信的同意", RequestType.WITHDRAW_CONSENT, Channel.EMAIL),
        ("我的手机号登记错了，请更正", RequestType.RECTIFICATION, Channel.MANUAL),
        ("Complaint about marketing calls", RequestType.COMPLAINT, Channel.EMAIL),
    ]
    for week in range(16):
        for k in range(1 + week % 3):
            subject, kind, channel = samples[(week + k) % len(samples)]
            contact = (
                Contact.telegram(1000 + week)
                if channel is Channel.TELEGRAM
                else Contact.email(f"user{week}-{k}@example.com")
            )
            public_id = server.open_ticket(
                subject=subject, types=[kind], channel=channel, contact=contact
            )
            if week < 13:

                async def answer(
                    desk: Desk, public_id: str = public_id, late: bool = k == 1
                ) -> None:
                    await desk.tickets.mark_verified(public_id, "console:dora", "ID checked")
                    await desk.tickets.start(public_id, "console:dora")

                server.call(answer)
                server.clock.advance(dt.timedelta(days=25 if k == 1 else 6))

                async def finish(desk: Desk, public_id: str = public_id) -> None:
                    await desk.tickets.resolve(public_id, "console:dora", "done")

                server.call(finish)
                server.clock.advance(dt.timedelta(days=-(25 if k == 1 else 6)))
        server.clock.advance(dt.timedelta(days=7))
    server.clock.set(START)


@pytest.fixture
def browser(tmp_path: Path) -> Iterator[WebDriver]:
    if not CHROMIUM.exists() or not CHROMEDRIVER.exists():
        reason = (
            f"no Chromium at {CHROMIUM} / {CHROMEDRIVER} (apt-get install chromium chromium-driver)"
        )
        if IN_CI:
            pytest.fail(reason)
        pytest.skip(reason)
    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    profile = tempfile.mkdtemp(prefix="chromium-", dir=tmp_path)
    for flag in (
        "--headless=new",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-dev-shm-usage",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--no-first-run",
        "--window-size=1400,1000",
        f"--user-data-dir={profile}",
    ):
        options.add_argument(flag)
    driver = webdriver.Chrome(service=Service(str(CHROMEDRIVER)), options=options)
    driver.set_page_load_timeout(60)
    try:
        yield driver
    finally:
        driver.quit()


def shoot(driver: WebDriver, tmp_path: Path, name: str) -> Path:
    """The whole page (up to 2,400 px tall), not only the window."""
    path = tmp_path / f"{name}.png"
    height = int(driver.execute_script("return document.documentElement.scrollHeight"))
    metrics = {"width": 1400, "height": min(max(height, 800), 2400), "deviceScaleFactor": 1}
    driver.execute_cdp_cmd("Emulation.setDeviceMetricsOverride", {**metrics, "mobile": False})
    try:
        assert driver.save_screenshot(str(path))
    finally:
        driver.execute_cdp_cmd("Emulation.clearDeviceMetricsOverride", {})
    if folder := os.environ.get("CONSOLE_SCREENSHOTS"):
        Path(folder).mkdir(parents=True, exist_ok=True)
        shutil.copyfile(path, Path(folder) / path.name)
    return path


def log_in(driver: WebDriver, server: ConsoleUnderTest, name: str) -> None:
    for attempt in range(3):
        try:
            driver.get(server.url + "/login")
            box = WebDriverWait(driver, 30).until(presence_of_element_located((By.NAME, "name")))
            box.send_keys(name)
            driver.find_element(By.NAME, "password").send_keys(PASSWORD)
            button = driver.find_element(By.CSS_SELECTOR, "section.login button[type=submit]")
            button.click()
            wait_until_gone(driver, button)
            break
        except WebDriverException:
            # Chromium now and then reports a node of the page it was leaving; start again.
            if attempt == 2:
                raise
    assert driver.find_elements(By.CSS_SELECTOR, "aside.queues"), driver.page_source


def submit(driver: WebDriver, action: str, **fields: str) -> None:
    form = driver.find_element(By.CSS_SELECTOR, f"form[action$='/{action}']")
    for name, value in fields.items():
        box = form.find_element(By.NAME, name)
        box.clear()
        box.send_keys(value)
    form.find_element(By.TAG_NAME, "button").click()
    wait_until_gone(driver, form)


def follow(driver: WebDriver, element: WebElement) -> None:
    element.click()
    wait_until_gone(driver, element)


def test_a_dpo_finds_a_ticket_replies_with_a_file_and_resolves_it(
    server: ConsoleUnderTest, browser: WebDriver, tmp_path: Path
) -> None:
    ticket = server.open_ticket(
        subject="请提供我的个人信息副本（手机号 13800138000）",
        requester_name="张伟",
        contact=Contact.email("zhang.wei@example.com"),
        types=[RequestType.ACCESS],
        text="您好，我想要一份你们保存的关于我的全部个人信息。我的注册手机号是 13800138000。",
    )
    log_in(browser, server, "dora")
    shoot(browser, tmp_path, "login-queue")
    # The queue of unassigned work lists it.
    follow(browser, browser.find_element(By.CSS_SELECTOR, "a[href='/?queue=unassigned']"))
    assert browser.find_elements(By.LINK_TEXT, ticket)
    # The DPO has the requester on the phone: the number, typed as they say it, finds it.
    box = browser.find_element(By.CSS_SELECTOR, "form.search input[name=q]")
    box.send_keys("138 0013 8000")
    button = browser.find_element(By.CSS_SELECTOR, "form.search button")
    follow(browser, button)
    assert "138 0013 8000" in browser.find_element(By.TAG_NAME, "h1").text
    found = browser.find_elements(By.CSS_SELECTOR, "table.tickets tbody tr")
    assert [row.find_element(By.CSS_SELECTOR, "td a").text for row in found] == [ticket]
    assert "phone" in found[0].find_element(By.CSS_SELECTOR, "td.matched").text
    shoot(browser, tmp_path, "search-phone")
    follow(browser, browser.find_element(By.LINK_TEXT, ticket))
    assert ticket in browser.find_element(By.TAG_NAME, "h1").text
    shoot(browser, tmp_path, "ticket")
    submit(browser, "assign", assignee="dora")
    assert "Done" in browser.find_element(By.CSS_SELECTOR, ".notice").text
    copy = tmp_path / "个人信息副本.csv"
    copy.write_text("field,value\nphone,13800138000\n", encoding="utf-8")
    form = browser.find_element(By.CSS_SELECTOR, "form[action$='/reply']")
    form.find_element(By.NAME, "text").send_keys("您好，您的个人信息副本见附件。")
    form.find_element(By.NAME, "attachments").send_keys(str(copy))
    form.find_element(By.TAG_NAME, "button").click()
    wait_until_gone(browser, form)
    timeline = browser.find_element(By.CSS_SELECTOR, "section.timeline").text
    assert "您好，您的个人信息副本见附件。" in timeline
    assert "个人信息副本.csv" in timeline
    submit(browser, "verify", note="ID card checked by phone")
    submit(browser, "start")
    submit(
        browser,
        "resolve",
        note="A copy of your data is attached to our mail.",
        without_package="The copy went as an attachment to our reply.",
    )
    status = browser.find_element(By.CSS_SELECTOR, "h1 .status").text
    assert status == "resolved"
    timeline = browser.find_element(By.CSS_SELECTOR, "section.timeline").text
    for word in ("assigned", "replied", "verified", "work started", "resolved", "console:dora"):
        assert word in timeline
    shoot(browser, tmp_path, "ticket-resolved")


def test_an_agent_cannot_see_the_users_page(
    server: ConsoleUnderTest, browser: WebDriver, tmp_path: Path
) -> None:
    log_in(browser, server, "alan")
    assert not browser.find_elements(By.CSS_SELECTOR, "nav.main a[href='/users']")
    browser.get(server.url + "/users")
    assert "Not allowed" in browser.find_element(By.TAG_NAME, "h1").text
    assert not browser.find_elements(By.CSS_SELECTOR, "table.users")
    shoot(browser, tmp_path, "agent-users-forbidden")


def test_the_dashboard_renders_its_charts(
    server: ConsoleUnderTest, browser: WebDriver, tmp_path: Path
) -> None:
    log_in(browser, server, "dora")
    browser.get(server.url + "/dashboard")
    images = browser.find_elements(By.CSS_SELECTOR, ".charts img")
    assert len(images) == 6
    for image in images:
        loaded = browser.execute_script(
            "return arguments[0].complete && arguments[0].naturalWidth", image
        )
        assert loaded, image.get_attribute("src")
        assert int(loaded) > 100, image.get_attribute("src")
    shoot(browser, tmp_path, "dashboard")


def test_the_chinese_interface(
    server: ConsoleUnderTest, browser: WebDriver, tmp_path: Path
) -> None:
    log_in(browser, server, "audrey")  # an auditor who reads Chinese
    assert "工单队列" in browser.find_element(By.CSS_SELECTOR, "aside.queues h2").text
    follow(browser, browser.find_element(By.CSS_SELECTOR, "a[href='/?queue=all']"))
    follow(browser, browser.find_element(By.CSS_SELECTOR, "table.tickets td a"))
    assert not browser.find_elements(By.CSS_SELECTOR, "section.actions")  # reads only
    shoot(browser, tmp_path, "ticket-zh-auditor")
