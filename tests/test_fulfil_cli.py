"""`rightsdesk systems` and `rightsdesk fulfil` as the DPO types them."""

from __future__ import annotations

import asyncio
import csv
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from rightsdesk.cli import app
from rightsdesk.config import load_settings
from rightsdesk.models import RequestType
from rightsdesk.service import Desk
from tests.company import (
    REQUESTER,
    USERS,
    create_company,
    drop_company,
    email_of,
    example_systems_toml,
    secret_of,
    table_rows,
)
from tests.conftest import REPO
from tests.test_fulfilment import open_ticket

runner = CliRunner()


@pytest.fixture
def config(
    database_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[tuple[Path, str]]:
    kind = "sqlite" if database_url.startswith("sqlite") else "postgresql"
    company = asyncio.run(create_company(kind, tmp_path))
    monkeypatch.setenv("RIGHTSDESK_SYSTEMS__CHAT__URL", company)
    monkeypatch.setenv(
        "RIGHTSDESK_PORTAL__PACKAGE_KEY", "a-package-key-for-the-cli-tests-0123456789"
    )
    path = tmp_path / "config.toml"
    path.write_text(
        f'[database]\nurl = "{database_url}"\n[desk]\ndata_dir = "{tmp_path / "var"}"\n'
        f'[outbound]\noutbox_dir = "{tmp_path / "outbox"}"\n[classifier]\nenabled = false\n'
        '[portal]\npublic_base_url = "https://privacy.example.com"\n' + example_systems_toml(),
        encoding="utf-8",
    )
    try:
        yield path, company
    finally:
        asyncio.run(drop_company(company))


def cli(config: Path, *args: str, code: int = 0) -> Any:
    result = runner.invoke(app, ["--config", str(config), "--actor", "cli:dpo", *args])
    assert result.exit_code == code, (result.stdout, result.stderr, result.exception)
    if "--json" in args and code == 0:
        return json.loads(result.stdout)
    return result


def ticket(config: Path, types: list[RequestType]) -> str:
    async def make() -> str:
        desk = Desk.build(load_settings(config))
        try:
            await desk.db.migrate()
            return await open_ticket(desk, REQUESTER, types)
        finally:
            await desk.close()

    return asyncio.run(make())


def test_the_dpo_fulfils_access_then_erasure_from_the_command_line(
    config: tuple[Path, str], tmp_path: Path
) -> None:
    path, company = config
    listed = cli(path, "systems", "list", "--json")
    assert [(s["name"], s["kind"], s["url_configured"]) for s in listed] == [
        ("chat", "sql", True),
        ("recordings", "manual", True),
    ]
    assert "every system and statement checked: ok" in cli(path, "systems", "check").stdout
    tid = ticket(path, [RequestType.ACCESS, RequestType.ERASURE])
    before = asyncio.run(table_rows(company))
    plan = cli(path, "fulfil", tid, "--dry-run", "--json")
    assert plan["actions"] == ["access", "erasure"]
    chat = plan["systems"][0]
    assert [f"{s['action']}.{s['name']}" for s in chat["statements"]][:2] == [
        "access.profile",
        "access.messages",
    ]
    assert all(isinstance(s["rows"], int) for s in chat["statements"])
    shown = cli(path, "fulfil", tid, "--dry-run").stdout
    assert f"--approve {plan['plan_hash']}" in shown
    assert asyncio.run(table_rows(company)) == before
    refused = cli(path, "fulfil", tid, "--approve", "ab" * 32, code=1)
    assert refused.stderr.count("\n") == 1
    assert "not the one approved" in refused.stderr
    runs = cli(path, "fulfil", tid, "--approve", plan["plan_hash"], "--json")
    assert {s["system"]: s["status"] for s in runs[0]["systems"]} == {
        "chat": "done",
        "recordings": "open",
    }
    shown = cli(path, "tickets", "show", tid, "--json")
    assert shown["status"] == "in_progress"
    assert shown["fulfilment"][0]["systems"][1]["status"] == "open"
    table = cli(path, "tickets", "show", tid).stdout
    assert "fulfilment: run 1 running" in table
    assert "recordings: open" in table
    resolve = cli(path, "tickets", "resolve", tid, "--reply", "done", code=1)
    assert "recordings" in resolve.stderr
    cli(path, "fulfil", "task-done", tid, "recordings", "--outcome", "nothing", "--note", "none")
    tasks = cli(path, "fulfil", "tasks", tid, "--json")
    assert tasks[0]["status"] == "done"
    # the export was read before the erasure ran: it holds the requester's rows, only theirs
    out = tmp_path / "export"
    cli(path, "fulfil", "export", tid, "--out", str(out))
    messages = json.loads((out / "chat" / "messages.json").read_text(encoding="utf-8"))
    assert messages["rows"]
    assert all(secret_of(REQUESTER) in r["Text"] for r in messages["rows"])
    with (out / "chat" / "profile.csv").open(encoding="utf-8-sig", newline="") as handle:
        assert [row["Email"] for row in csv.DictReader(handle)] == [email_of(REQUESTER)]
    every = "".join(p.read_text(encoding="utf-8-sig") for p in out.rglob("*.*"))
    assert all(secret_of(u) not in every for u in USERS if u != REQUESTER)
    after = asyncio.run(table_rows(company))
    assert secret_of(REQUESTER) not in repr(after)
    # The access export is the package: nothing is resolved before it is delivered.
    refused = cli(path, "tickets", "resolve", tid, "--reply", "copy sent, data deleted", code=1)
    assert "tickets deliver" in refused.stderr
    delivered = cli(path, "tickets", "deliver", tid, "--json")
    assert delivered["max_downloads"] == 5
    package = cli(path, "tickets", "show", tid, "--json")["package"]
    names = {f["name"] for f in package["files"]}
    assert {"data.json", "chat-messages.csv", "chat-profile.csv"} <= names
    assert package["status"] == "delivered"
    [ready] = [e for e in cli(path, "outbox", "list", "--json") if e["kind"] == "package_ready"]
    assert ready["recipient"] == email_of(REQUESTER)
    cli(path, "tickets", "resolve", tid, "--reply", "copy sent, data deleted")
    assert cli(path, "audit", "verify").exit_code == 0


def test_a_statement_using_message_text_stops_start_up_in_one_line(tmp_path: Path) -> None:
    path = tmp_path / "bad.toml"
    path.write_text(
        '[[systems]]\nname = "chat"\nkind = "sql"\n[[systems.erasure]]\nname = "m"\n'
        'sql = "DELETE FROM channel_messages WHERE body = :text"\n',
        encoding="utf-8",
    )
    result = runner.invoke(app, ["--config", str(path), "systems", "list"])
    assert result.exit_code == 2
    assert result.stderr.startswith("error: config: systems[chat].erasure[m]: :text is not allowed")
    assert result.stderr.count("\n") == 1


def test_the_readme_shows_the_example_the_tests_run() -> None:
    readme = (REPO / "README.md").read_text(encoding="utf-8")
    assert example_systems_toml().strip("\n") in readme
