"""The monthly report's text: what the DPO prints (`rightsdesk report`) and the PDF holds."""

from __future__ import annotations

import datetime as dt
from zoneinfo import ZoneInfo

from rightsdesk.reports import MonthReport, report_text


def test_the_report_says_when_it_was_made_in_beijing_time() -> None:
    made = dt.datetime(2026, 12, 1, 16, 18, 42, tzinfo=dt.UTC)
    text = report_text(MonthReport(month="2026-12"), "示例公司", made, ZoneInfo("Asia/Shanghai"))
    assert "生成于 2026-12-02T00:18+08:00" in text
    assert "made 2026-12-02T00:18+08:00" in text
    assert "+00:00" not in text


def test_request_types_are_named_for_staff_in_each_language() -> None:
    made = dt.datetime(2026, 12, 1, 8, 0, tzinfo=dt.UTC)
    report = MonthReport(month="2026-11", received_by_type={"access": 3, "account_deletion": 1})
    text = report_text(report, "示例公司", made, ZoneInfo("Asia/Shanghai"))
    chinese, english = text.split("生成于")
    assert "查阅复制" in chinese
    assert "注销账号" in chinese
    assert "account deletion" in english
    assert "account_deletion" not in text  # no raw ids, in Chinese or in English
