"""The DPO's command line: every command works, listings speak JSON, errors are one line."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import pytest
import typer.main
from sqlalchemy import text
from typer.testing import CliRunner

from rightsdesk.cli import app
from rightsdesk.config_sections import DatabaseSettings
from rightsdesk.db import Database

runner = CliRunner()


@pytest.fixture
def config(database_url: str, tmp_path: Path) -> Path:
    path = tmp_path / "config.toml"
    path.write_text(f'[database]\nurl = "{database_url}"\n', encoding="utf-8")
    return path


def cli(config: Path, *args: str, code: int = 0) -> Any:
    result = runner.invoke(app, ["--config", str(config), "--actor", "cli:dpo", *args])
    assert result.exit_code == code, (result.stdout, result.stderr, result.exception)
    if "--json" in args and code == 0:
        return json.loads(result.stdout)
    return result


def add_user(config: Path, name: str, *more: str) -> None:
    """A console user a ticket may be assigned to."""
    result = runner.invoke(
        app,
        ["--config", str(config), "users", "add", name, "--email", f"{name}@example.com",
         "--role", "agent", *more],
        input="a long enough password 1\n",
    )  # fmt: skip
    assert result.exit_code == 0, result.output


def test_dpo_works_a_ticket_end_to_end(config: Path) -> None:
    add_user(config, "wang.fang")
    opened = cli(
        config,
        "tickets", "open", "--phone", "138 0013 8000", "--type", "erasure,account_deletion",
        "--text", "请注销我的账号并删除全部数据", "--received", "2026-02-10T10:00+08:00",
        "--lang", "zh", "--json",
    )  # fmt: skip
    tid = opened["id"]
    assert tid == "PRIV-2026-000001"
    assert opened["response_due"] == "2026-03-09"
    assert opened["completion_due"] == "2026-03-12"
    listed = cli(config, "tickets", "list", "--json")
    assert [row["id"] for row in listed] == [tid]
    row = listed[0]
    assert row["requester_contact"] == "+8613800138000" or row["requester_contact"] == "13800138000"
    assert row["types"] == ["erasure", "account_deletion"]
    assert row["received_at"] == "2026-02-10T10:00:00+08:00"
    assert row["status"] == "new"
    cli(config, "tickets", "assign", tid, "wang.fang")
    cli(config, "tickets", "verify", tid, "--note", "ID card checked at the front desk")
    cli(config, "tickets", "start", tid)
    # Past the 30-day completion date (2026-03-12): that date needs its own date and reason.
    refused = cli(config, "tickets", "extend", tid, "--until", "2026-03-20", "--reason", "backups",
                  code=1)  # fmt: skip
    assert "--completion-until" in refused.stderr
    cli(config, "tickets", "extend", tid, "--until", "2026-03-20", "--reason", "backups",
        "--completion-until", "2026-03-25", code=1)  # fmt: skip
    cli(config, "tickets", "extend", tid, "--until", "2026-03-20", "--reason", "backups",
        "--completion-until", "2026-03-25", "--completion-reason", "backup tapes")  # fmt: skip
    cli(config, "tickets", "relabel", tid, "--types", "account_deletion")
    resolved = cli(config, "tickets", "resolve", tid, "--reply", "account deleted", "--json")
    assert resolved["status"] == "resolved"
    shown = cli(config, "tickets", "show", tid, "--json")
    assert shown["messages"][0]["text"] == "请注销我的账号并删除全部数据"
    assert [e["action"] for e in shown["events"]] == [
        "opened", "assigned", "verified", "in_progress", "extended", "relabelled", "resolved",
    ]  # fmt: skip
    assert all(e["actor"] == "cli:dpo" for e in shown["events"])
    assert shown["extension_reason"] == "backups"
    assert shown["completion_due"] == "2026-03-25"
    assert shown["original_completion_due"] == "2026-03-12"
    assert shown["completion_extension_reason"] == "backup tapes"
    assert shown["types"] == ["account_deletion"]
    human = cli(config, "tickets", "show", tid)
    assert "请注销我的账号并删除全部数据" in human.stdout
    assert cli(config, "audit", "verify", "--json")["ok"] is True


def test_list_filters_and_empty_json(config: Path) -> None:
    assert cli(config, "tickets", "list", "--json") == []
    cli(config, "tickets", "open", "--email", "a@example.com", "--type", "access",
        "--received", "2026-02-10T10:00+08:00")  # fmt: skip
    cli(config, "tickets", "open", "--email", "b@example.com", "--type", "complaint")
    assert len(cli(config, "tickets", "list", "--type", "complaint", "--json")) == 1
    assert len(cli(config, "tickets", "list", "--overdue", "--json")) == 1  # due 2026-03-09
    assert len(cli(config, "tickets", "list", "--due-before", "2026-03-10", "--json")) == 1
    assert len(cli(config, "tickets", "list", "--status", "denied", "--json")) == 0
    table = cli(config, "tickets", "list")
    assert "PRIV-2026-000001" in table.stdout


@pytest.mark.parametrize(
    ("args", "code", "message"),
    [
        (["tickets", "deny", "PRIV-2026-000001", "--reason", "  "], 1, "reason for the denial"),
        (["tickets", "resolve", "PRIV-2026-000001", "--reply", "ok"], 1, "cannot become resolved"),
        (["tickets", "start", "PRIV-2026-424242"], 1, "no ticket PRIV-2026-424242"),
        (["tickets", "list", "--due-before", "soon"], 2, "--due-before: expected a date"),
        (["tickets", "relabel", "PRIV-2026-000001", "--types", "gossip"], 2, "unknown request"),
        (["tickets", "extend", "PRIV-2026-000001", "--until", "2026-03-01", "--reason", "x"],
         1, "must be after 2026-03-09"),
        (["tickets", "open", "--type", "access"], 2, "exactly one of --email or --phone"),
        (["tickets", "dismiss", "PRIV-2026-000001", "--reason", "spam"], 2, "give --force"),
        (["tickets", "assign", "PRIV-2026-000001", "wang.fang"], 1, "not a user of the console"),
    ],
)  # fmt: skip
def test_refusals_are_one_line(config: Path, args: list[str], code: int, message: str) -> None:
    cli(config, "tickets", "open", "--email", "a@example.com", "--type", "access",
        "--received", "2026-02-10T10:00+08:00")  # fmt: skip
    result = cli(config, *args, code=code)
    assert message in result.stderr
    assert result.stderr.strip().count("\n") == 0
    assert "Traceback" not in result.stderr


def test_dismissing_a_rights_request_needs_force_or_a_relabel(config: Path) -> None:
    cli(config, "tickets", "open", "--email", "a@example.com", "--type", "erasure")
    cli(config, "tickets", "open", "--email", "b@example.com", "--type", "access")
    refused = cli(config, "tickets", "dismiss", "PRIV-2026-000001", "--reason", "spam", code=2)
    assert "labelled erasure, a rights request" in refused.stderr
    assert cli(config, "tickets", "show", "PRIV-2026-000001", "--json")["status"] == "new"
    forced = cli(config, "tickets", "dismiss", "PRIV-2026-000001", "--reason", "a test mail",
                 "--force", "--json")  # fmt: skip
    assert forced["status"] == "dismissed"
    [event] = cli(config, "tickets", "show", "PRIV-2026-000001", "--json")["events"][-1:]
    assert event["after"]["despite_types"] == ["erasure"]
    cli(config, "tickets", "relabel", "PRIV-2026-000002", "--types", "not_rights_request")
    cli(config, "tickets", "dismiss", "PRIV-2026-000002", "--reason", "a delivery question")
    add_user(config, "li.na")
    cli(config, "users", "disable", "li.na")
    disabled = cli(config, "tickets", "assign", "PRIV-2026-000002", "li.na", code=1)
    assert "li.na is disabled" in disabled.stderr


def _tamper(database_url: str, statement: str) -> None:
    async def run() -> None:
        db = Database(DatabaseSettings(url=database_url))
        try:
            async with db.engine.begin() as conn:
                await conn.execute(text(statement))
        finally:
            await db.dispose()

    asyncio.run(run())


def test_tampering_makes_audit_verify_fail_naming_the_event(
    config: Path, database_url: str
) -> None:
    cli(config, "tickets", "open", "--email", "a@example.com", "--type", "access")
    add_user(config, "li.na")
    cli(config, "tickets", "assign", "PRIV-2026-000001", "li.na")
    _tamper(database_url, "UPDATE event SET action = 'deleted' WHERE seq = 2")
    result = cli(config, "audit", "verify", code=1)
    assert "PRIV-2026-000001 event #2" in result.stderr
    report = cli(config, "audit", "verify", "--json", code=1)
    assert json.loads(report.stdout)["broken"]["ticket"] == "PRIV-2026-000001"


def test_accounts_import_and_list(config: Path, tmp_path: Path) -> None:
    csv = tmp_path / "users.csv"
    csv.write_text("account_id,email,name\nu1,alice@example.com,Alice\nu2,bad,\n", "utf-8")
    report = cli(config, "accounts", "import", str(csv), "--json", code=1)  # one row rejected
    assert json.loads(report.stdout) == {
        "rows": 2,
        "imported": 1,
        "rejected": [{"line": 3, "reason": "not an email address in column email"}],
    }
    listed = cli(config, "accounts", "list", "--json")
    assert listed == [
        {"account_id": "u1", "email": "alice@example.com", "phone": None, "name": "Alice",
         "username": None}
    ]  # fmt: skip


def test_bad_config_is_one_line_exit_2(tmp_path: Path) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text("[smtp]\nport = 99999\n", encoding="utf-8")
    result = runner.invoke(app, ["--config", str(bad), "tickets", "list"])
    assert result.exit_code == 2
    assert result.stderr.startswith("error: config: smtp.port:")
    assert "Traceback" not in result.stderr


def _commands(command: Any, prefix: tuple[str, ...] = ()) -> list[tuple[str, ...]]:
    """Every command path of the CLI, from the click tree typer builds."""
    found = [prefix]
    for name, sub in getattr(command, "commands", {}).items():
        found += _commands(sub, (*prefix, name))
    return found


@pytest.mark.parametrize(
    "path", _commands(typer.main.get_command(app)), ids=lambda p: " ".join(p) or "rightsdesk"
)
def test_every_command_has_help(path: tuple[str, ...]) -> None:
    result = runner.invoke(app, [*path, "--help"])
    assert result.exit_code == 0, result.stderr
    assert "Usage" in result.stdout


def test_users_tokens_and_events_are_shown_in_beijing_time(config: Path) -> None:
    result = runner.invoke(
        app,
        ["--config", str(config), "users", "add", "dora", "--email", "d@example.com",
         "--role", "dpo", "--json"],
        input="a long enough password 1\n",
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    cli(config, "users", "token", "dora", "--label", "ci", "--json")
    [token] = cli(config, "users", "token", "dora", "--list", "--json")
    assert token["created_at"].endswith("+08:00")
    events = cli(config, "users", "events", "--json")
    assert events
    assert all(e["at"].endswith("+08:00") for e in events)


def test_help_agrees_with_the_readme_and_names_no_issue_numbers() -> None:
    """The README's `fulfil ID --dry-run` is in `fulfil --help`; no help text says "issue #N"
    (issue numbers mean nothing to the DPO)."""
    import re

    shown = runner.invoke(app, ["fulfil", "--help"], terminal_width=200)
    assert shown.exit_code == 0
    assert "fulfil ID --dry-run" in " ".join(shown.stdout.split())
    command = typer.main.get_command(app)
    seen: list[str] = []

    def walk(cmd: Any) -> None:
        seen.append(cmd.help or "")
        seen.extend(getattr(p, "help", None) or "" for p in cmd.params)
        for sub in getattr(cmd, "commands", {}).values():
            walk(sub)

    walk(command)
    assert not [h for h in seen if re.search(r"issue #\d", h)]


@pytest.mark.parametrize("month", ["0001-01", "9999-12"])
def test_a_report_month_out_of_range_is_one_line(config: Path, month: str) -> None:
    result = cli(config, "report", "--month", month, code=2)
    assert "a report covers 1970-01 to 2999-12" in result.stderr
    assert "Traceback" not in result.stderr


def test_users_add_keeps_to_the_same_names(config: Path) -> None:
    result = runner.invoke(
        app,
        ["--config", str(config), "users", "add", "a/b", "--email", "a@example.com",
         "--role", "agent"],
        input="a long enough password 1\n",
    )  # fmt: skip
    assert result.exit_code != 0
    assert "a user name is 1 to 64 of a-z" in result.stderr
    assert "Traceback" not in result.stderr
