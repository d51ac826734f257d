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
