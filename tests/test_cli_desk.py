"""The CLI a DPO uses all day (issue #13): found from any folder, never an empty desk by
accident, listings readable at 100 columns, nothing secret on screen."""

from __future__ import annotations

import asyncio
import re
import uuid
from pathlib import Path
from typing import Any

import asyncpg
import pytest
from rich.cells import cell_len
from rich.console import Console

from rightsdesk.cli import app
from rightsdesk.clock import FrozenClock
from rightsdesk.config import Settings
from rightsdesk.models import RequestType
from rightsdesk.service import Desk
from tests.conftest import PG_DSN, _pg_url, deliver, mail
from tests.test_cli import cli, config, runner
from tests.test_verification_flow import FixedTypes

__all__ = ["config"]  # the fixture, shared with test_cli


def _open_one(config: Path) -> str:
    opened = cli(
        config, "tickets", "open", "--email", "a@example.com", "--type", "access",
        "--subject", "想要我的数据", "--text", "请给我一份我的个人信息副本", "--json",
    )  # fmt: skip
    return str(opened["id"])


def test_from_another_folder_the_config_finds_the_same_desk_and_without_it_refuses(
    config: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    public_id = _open_one(config)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    monkeypatch.setenv("RIGHTSDESK_CONFIG", str(config))
    result = runner.invoke(app, ["tickets", "show", public_id, "--json"])
    assert result.exit_code == 0, result.stderr
    assert public_id in result.stdout
    monkeypatch.delenv("RIGHTSDESK_CONFIG")
    result = runner.invoke(app, ["tickets", "show", public_id])
    assert result.exit_code == 2
    [line] = result.stderr.strip().splitlines()
    assert f"no desk database at {elsewhere}/var/rightsdesk.db" in line
    assert "RIGHTSDESK_CONFIG" in line
    assert "rightsdesk.toml" in line
    assert list(elsewhere.iterdir()) == []  # nothing was created here
    # A rightsdesk.toml in the folder is found without being named.
    (elsewhere / "rightsdesk.toml").write_text(config.read_text(), encoding="utf-8")
    result = runner.invoke(app, ["tickets", "list", "--json"])
    assert result.exit_code == 0, result.stderr
    assert public_id in result.stdout


def test_relative_paths_of_a_config_file_are_read_from_its_folder(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    desk_folder = tmp_path / "desk"
    desk_folder.mkdir()
    config = desk_folder / "rightsdesk.toml"
    config.write_text('[database]\nurl = "sqlite+aiosqlite:///var/desk.db"\n', encoding="utf-8")
    monkeypatch.chdir(tmp_path)
    assert runner.invoke(app, ["--config", str(config), "db", "upgrade"]).exit_code == 0
    assert (desk_folder / "var" / "desk.db").exists()
    public_id = _open_one(config)
    other = tmp_path / "other"
    other.mkdir()
    monkeypatch.chdir(other)
    result = runner.invoke(app, ["--config", str(config), "tickets", "list", "--json"])
    assert result.exit_code == 0, result.stderr
    assert public_id in result.stdout
    assert list(other.iterdir()) == []


def test_a_database_without_a_desk_is_refused_until_db_upgrade(
    database_url: str, tmp_path: Path
) -> None:
    if database_url.startswith("sqlite"):
        url = f"sqlite+aiosqlite:///{tmp_path / 'fresh' / 'desk.db'}"
        drop = None
    else:
        name = f"rightsdesk_fresh_{uuid.uuid4().hex[:8]}"
        asyncio.run(_admin(f'CREATE DATABASE "{name}"'))
        url, drop = _pg_url(name), name
    config = tmp_path / "fresh.toml"
    config.write_text(f'[database]\nurl = "{url}"\n', encoding="utf-8")
    try:
        result = runner.invoke(app, ["--config", str(config), "tickets", "list"])
        assert result.exit_code == 2
        assert "db upgrade" in result.stderr
        if drop is None:
            assert not (tmp_path / "fresh").exists()
        assert runner.invoke(app, ["--config", str(config), "db", "upgrade"]).exit_code == 0
        assert cli(config, "tickets", "list", "--json") == []
    finally:
        if drop is not None:
            asyncio.run(_admin(f'DROP DATABASE IF EXISTS "{drop}" WITH (FORCE)'))


async def _admin(sql: str) -> None:
    conn = await asyncpg.connect(PG_DSN, timeout=5)
    try:
        await conn.execute(sql)
    finally:
        await conn.close()


def test_the_list_is_readable_at_100_columns(config: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    for n in range(3):
        cli(
            config, "tickets", "open", "--email", f"a.very.long.address.{n}@example-company.com",
            "--type", "erasure,account_deletion,withdraw_consent", "--received",
            "2026-02-10T10:00+08:00", "--subject", "请删除我在贵公司所有系统中的全部个人信息" * 3,
        )  # fmt: skip
    public_id = _open_one(config)
    cli(config, "tickets", "deny", public_id, "--reason", "not the holder")
    monkeypatch.setattr("rightsdesk.cli.tickets.out", Console(width=100, soft_wrap=True))
    result = cli(config, "tickets", "list")
    lines = result.stdout.splitlines()
    assert max(cell_len(line) for line in lines) <= 100
    header = lines[0]
    for column in ("id", "status", "requester", "subject", "due", "left"):
        assert column in header
    rows = [line for line in lines if "PRIV-" in line]
    assert public_id in rows[-1]  # finished work after the active
    listed = cli(config, "tickets", "list", "--json")
    # Working days, as the digest counts them (today is the real today: a number or None).
    assert all("days_left" not in row for row in listed)
    assert listed[0]["requester_contact"].startswith("a.very.long.address")


def _seed(settings: Settings, clock: FrozenClock, csv: Path) -> tuple[str, str]:
    csv.write_text("account_id,email,name\nu-7,zhang.san@example.com,张三\n", "utf-8")

    async def seed() -> tuple[str, str]:
        desk = Desk.build(settings, clock, classifier=FixedTypes([RequestType.ERASURE]))
        try:
            await desk.accounts.import_csv(csv)
            await deliver(desk, mail("请删除我的全部个人信息。"))
            await deliver(
                desk,
                mail(
                    "请删除我的数据",
                    sender="nobody@example.com",
                    message_id="n-1@example.com",
                ),
            )
            known, unknown = sorted(t.public_id for t in await desk.tickets.find())
            return known, unknown
        finally:
            await desk.close()

    return asyncio.run(seed())


def test_show_masks_codes_speaks_beijing_time_and_says_why(
    config: Path, settings: Settings, clock: FrozenClock, tmp_path: Path
) -> None:
    known, unknown = _seed(settings, clock, tmp_path / "accounts.csv")
    shown: Any = cli(config, "tickets", "show", known, "--json")
    code_mail = next(
        m for m in shown["messages"] if m["direction"] == "out" and "******" in m["text"]
    )
    assert not re.search(r"(?<![\d-])\d{6}(?!\d)", code_mail["text"].replace(known, ""))
    assert all(m["received_at"].endswith("+08:00") for m in shown["messages"])
    assert all(e["at"].endswith("+08:00") for e in shown["events"])
    assert shown["account"]["account_id"] == "u-7"
    assert shown["account"]["verified"] is False
    human = cli(config, "tickets", "show", known).stdout
    assert "account: u-7 (zhang.san@example.com; matched, not verified for this ticket)" in human
    assert "+08:00" in human
    stranger: Any = cli(config, "tickets", "show", unknown, "--json")
    assert stranger["review_reasons"] == ["no account found"]
    assert "needs attention: no account found" in cli(config, "tickets", "show", unknown).stdout


def test_search_and_intake_show_from_the_cli(
    config: Path, settings: Settings, clock: FrozenClock, tmp_path: Path
) -> None:
    known, _ = _seed(settings, clock, tmp_path / "accounts.csv")
    found = cli(config, "tickets", "search", "zhang.san@example.com", "--json")
    assert [row["id"] for row in found] == [known]
    assert "email" in found[0]["matched"]
    words = cli(config, "tickets", "search", "全部个人信息", "--json")
    assert [row["id"] for row in words] == [known]
    assert "全部个人信息" in words[0]["snippet"]
    assert "PRIV-" in cli(config, "tickets", "search", "全部个人信息").stdout
    shown = cli(config, "intake", "show", "1", "--json")
    assert ["Subject", "Request"] in shown["headers"]
    assert shown["ticket"] == known
    cli(config, "intake", "show", "999", code=1)
    cli(config, "intake", "dismiss", "1", "--reason", "test", code=1)  # routed: not stuck


def test_run_takes_its_config_after_the_command_as_the_readme_writes_it(tmp_path: Path) -> None:
    missing = tmp_path / "nowhere.toml"
    result = runner.invoke(app, ["run", "--config", str(missing)])
    assert "No such option" not in result.output
    assert result.exit_code == 2
    assert "nowhere.toml" in result.output
