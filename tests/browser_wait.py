"""Waiting for the page a browser test clicked away from, in one place.

Selenium's `staleness_of` asks Chromium about the old node; while the new page is being
built, Chromium now and then answers "Node with given id does not belong to the document"
(an inspector error, not StaleElementReferenceException). That answer also means the page
is gone, so it counts as stale here instead of failing the test."""

from __future__ import annotations

from selenium.common.exceptions import StaleElementReferenceException, WebDriverException
from selenium.webdriver.remote.webdriver import WebDriver
from selenium.webdriver.remote.webelement import WebElement
from selenium.webdriver.support.wait import WebDriverWait

LEFT_PAGE = "does not belong to the document"


def wait_until_gone(driver: WebDriver, element: WebElement, timeout: float = 30) -> None:
    def gone(_: WebDriver) -> bool:
        try:
            element.is_enabled()  # any question about a node of a page we left
        except StaleElementReferenceException:
            return True
        except WebDriverException as exc:
            if LEFT_PAGE in (exc.msg or ""):
                return True
            raise
        return False

    WebDriverWait(driver, timeout).until(gone)
