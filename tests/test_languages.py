"""Which language a request was written in, and how clients name theirs."""

from __future__ import annotations

import pytest

from rightsdesk.languages import is_traditional, normalise, written_in


@pytest.mark.parametrize(
    ("text", "traditional"),
    [
        ("申請註銷帳號", True),
        ("請刪除我的個人資料，謝謝。", True),
        ("申请注销账号", False),
        ("请删除我的个人信息", False),
        ("我的", False),  # common to both scripts: the mainland default
        ("Please close my account", False),
        ("Dear team, " * 50 + "申請註銷帳號", True),  # English first, then the ask
    ],
)
def test_the_script_of_a_request(text: str, traditional: bool) -> None:
    assert is_traditional(text) is traditional
    assert written_in("zh", text) == ("zh-Hant" if traditional else "zh")


def test_english_stays_english_whatever_characters_it_quotes() -> None:
    assert written_in("en", "Under 《個人資料保護法》 I ask for a copy") == "en"
    assert written_in(None, "申請註銷帳號") is None


@pytest.mark.parametrize(
    ("code", "lang"),
    [
        ("zh", "zh"),
        ("zh-CN", "zh"),
        ("zh-hans", "zh"),
        ("zh_TW", "zh-Hant"),
        ("zh-HK", "zh-Hant"),
        ("zh-Hant-MO", "zh-Hant"),
        ("en-GB", "en"),
        ("fr", None),
        (None, None),
    ],
)
def test_language_codes(code: str | None, lang: str | None) -> None:
    assert normalise(code) == lang
