"""`rightsdesk tickets package | deliver | revoke-link` as the DPO types them (and what each
refuses), on SQLite and PostgreSQL."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from rightsdesk.cli import app

OWNER = "li.na@example.com"


@pytest.fixture
def config(database_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    path = tmp_path / "config.toml"
    path.write_text(
        f'[database]\nurl = "{database_url}"\n[desk]\ndata_dir = "{tmp_path / "var"}"\n'
        f'[outbound]\noutbox_dir = "{tmp_path / "outbox"}"\n[classifier]\nenabled = false\n',
        encoding="utf-8",
    )
    return path


def run(config: Path, *args: str, code: int = 0) -> Any:
    result = CliRunner().invoke(app, ["--config", str(config), "--actor", "cli:dpo", *args])
    assert result.exit_code == code, (result.stdout, result.stderr, result.exception)
    return json.loads(result.stdout) if "--json" in args and code == 0 else result


def test_the_dpo_packages_delivers_revokes_and_delivers_again(
    config: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    tid = run(config, "tickets", "open", "--email", OWNER, "--type", "access", "--json")["id"]
    export = tmp_path / "我的资料.csv"
    export.write_bytes("姓名\n李娜\n".encode())
    # No key: nothing is packaged, and the message says where the key comes from.
    refused = run(config, "tickets", "package", tid, "--add", str(export), code=1)
    assert "RIGHTSDESK_PORTAL__PACKAGE_KEY" in refused.stderr
    path = tmp_path / "key.txt"
    path.write_text("a-package-key-read-from-a-file-0123456789\n", encoding="utf-8")
    with config.open("a", encoding="utf-8") as handle:
        handle.write(f'[portal]\npackage_key_file = "{path}"\n')
    built = run(config, "tickets", "package", tid, "--add", str(export), "--note", "hi", "--json")
    assert [f["name"] for f in built["files"]] == ["我的资料.csv"]
    assert built["status"] == "draft"
    # Not verified yet: a copy of someone's data goes only to a verified requester.
    no_url = run(config, "tickets", "deliver", tid, code=1)
    assert "public_base_url" in no_url.stderr
    monkeypatch.setenv("RIGHTSDESK_PORTAL__PUBLIC_BASE_URL", "https://privacy.example.com")
    unverified = run(config, "tickets", "deliver", tid, code=1)
    assert "not verified" in unverified.stderr
    run(config, "tickets", "verify", tid, "--note", "ID card by video call")
    first = run(config, "tickets", "deliver", tid, "--json")
    assert first["max_downloads"] == 5
    assert run(config, "tickets", "deliver", tid, code=1).stderr.count("revoke-link") == 1
    assert run(config, "tickets", "revoke-link", tid, code=2).exit_code == 2  # needs --reason
    run(config, "tickets", "revoke-link", tid, "--reason", "sent to an old address")
    run(config, "tickets", "deliver", tid)
    shown = run(config, "tickets", "show", tid, "--json")
    assert shown["package"]["status"] == "delivered"
    assert shown["package"]["deliveries"] == 2
    assert "package 1: delivered" in run(config, "tickets", "show", tid).stdout
    links = [e for e in run(config, "outbox", "list", "--json") if e["kind"] == "package_ready"]
    assert [e["recipient"] for e in links] == [OWNER, OWNER]
    actions = [e["action"] for e in shown["events"]]
    for action in ("package_files_added", "package_delivered", "package_revoked"):
        assert action in actions
    assert "--without-package" in run(config, "tickets", "resolve", "--help").stdout
