"""Identifiers in free text, and resident ID numbers masked wherever text is shown."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from rightsdesk.cli import app
from rightsdesk.identifiers import find_identifiers, mask_identifiers, valid_id_number

# The worked example of GB 11643-1999; changing its check character makes it invalid.
VALID_ID = "11010519491231002X"


def test_resident_id_check_character() -> None:
    assert valid_id_number(VALID_ID)
    assert valid_id_number(VALID_ID.lower())
    assert not valid_id_number("110105194912310021")
    assert not valid_id_number("11010519491231002")  # 17 characters


def test_only_valid_id_numbers_are_masked() -> None:
    text = f"身份证 {VALID_ID}，订单号 110105194912310021"
    assert mask_identifiers(text) == "身份证 110105********002X，订单号 110105194912310021"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("手机 13800138000", [("MOBILE", "13800138000")]),
        ("call +86 138-0013-8000 please", [("MOBILE", "13800138000")]),
        ("tel 86 138 0013 8000", [("MOBILE", "13800138000")]),
        ("订单 213800138000123", []),  # digits inside a longer number are not a phone
        ("邮箱：Zhang.San@Example.COM。", [("EMAIL", "zhang.san@example.com")]),
        ("关于 priv-2026-000042 的补充", [("TICKET", "PRIV-2026-000042")]),
        ("我的用户名是 zhangsan_88", [("USERNAME", "zhangsan_88")]),
        ("username: li.si-2", [("USERNAME", "li.si-2")]),
        (f"ID {VALID_ID}", [("ID_NUMBER", "110105********002X")]),
    ],
)
def test_identifiers_are_found(text: str, expected: list[tuple[str, str]]) -> None:
    assert [(i.label, i.text) for i in find_identifiers(text)] == expected


def test_tickets_show_masks_id_numbers(database_url: str, tmp_path: Path) -> None:
    config = tmp_path / "config.toml"
    config.write_text(f'[database]\nurl = "{database_url}"\n', "utf-8")
    runner = CliRunner()
    opened = runner.invoke(
        app,
        ["--config", str(config), "tickets", "open", "--email", "a@example.com",
         "--type", "erasure", "--text", f"我的身份证号是{VALID_ID}，请删除我的数据。"],
    )  # fmt: skip
    assert opened.exit_code == 0, opened.stderr
    shown = runner.invoke(
        app, ["--config", str(config), "tickets", "show", "PRIV-", "--json"]
    )  # not found: a clear error, not a crash
    assert shown.exit_code == 1
    listed = runner.invoke(app, ["--config", str(config), "tickets", "list", "--json"])
    ticket_id = json.loads(listed.stdout)[0]["id"]
    for args in (["--json"], []):
        shown = runner.invoke(app, ["--config", str(config), "tickets", "show", ticket_id, *args])
        assert shown.exit_code == 0, shown.stderr
        assert VALID_ID not in shown.stdout
        assert "110105********002X" in shown.stdout


@pytest.mark.parametrize(
    ("text", "code", "masked"),
    [
        ("７５６６８０", "756680", "******"),
        ("验证码：756 680。", "756680", "验证码：******。"),
        ("code 756-680", "756680", "code ******"),
        ("代码 ７５６　６８０", "756680", "代码 ******"),
        ("PRIV-2026-000001 的验证码 123456", "123456", "PRIV-2026-000001 的验证码 ******"),
        ("电话 138 0013 8000", None, "电话 138 0013 8000"),  # a phone number, not a code
        ("日期 2026-12-01", None, "日期 2026-12-01"),
    ],
)
def test_a_spaced_or_full_width_code_is_found_and_masked(
    text: str, code: str | None, masked: str
) -> None:
    from rightsdesk.identifiers import find_code, mask_codes

    assert find_code(text) == code
    assert mask_codes(text) == masked
