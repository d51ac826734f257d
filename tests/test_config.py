"""One typed settings object: TOML, environment overrides, secrets, one-line errors."""

from __future__ import annotations

import tomllib
from pathlib import Path

import pytest
from pydantic import BaseModel

from rightsdesk.config import SECRET_KEYS, ConfigError, Settings, anchor_paths, load_settings
from tests.conftest import REPO


def write(tmp_path: Path, body: str) -> Path:
    path = tmp_path / "config.toml"
    path.write_text(body, encoding="utf-8")
    return path


def test_embedded_defaults() -> None:
    settings = load_settings(None)
    assert settings.database.url == "sqlite+aiosqlite:///var/rightsdesk.db"
    assert (settings.smtp.host, settings.smtp.port, settings.smtp.enabled) == (
        "127.0.0.1",
        2525,
        True,
    )
    assert settings.desk.privacy_addresses == ["privacy@localhost"]
    assert settings.outbound.relay_host == ""
    assert settings.outbound.outbox_dir == Path("var/outbox")
    assert settings.imap.enabled is False
    assert settings.secret("telegram", "token") is None
    assert settings.deadlines.response_working_days == 15
    assert settings.deadlines.completion_calendar_days == 30


def test_toml_then_environment_wins(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = write(
        tmp_path,
        '[database]\nurl = "sqlite+aiosqlite:///from-file.db"\necho = true\n[smtp]\nport = 2600\n',
    )
    assert load_settings(path).smtp.port == 2600
    monkeypatch.setenv("RIGHTSDESK_DATABASE__URL", "postgresql+asyncpg://postgres@db/desk")
    monkeypatch.setenv("RIGHTSDESK_SMTP__PORT", "2700")
    settings = load_settings(path)
    assert settings.database.url == "postgresql+asyncpg://postgres@db/desk"
    assert settings.database.echo is True  # untouched keys of the section survive
    assert settings.smtp.port == 2700


def test_config_path_from_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RIGHTSDESK_CONFIG", str(write(tmp_path, "[smtp]\nport = 2601\n")))
    assert load_settings().smtp.port == 2601


@pytest.mark.parametrize(("section", "key"), sorted(SECRET_KEYS))
def test_secrets_are_refused_in_the_file(tmp_path: Path, section: str, key: str) -> None:
    path = write(tmp_path, f'[{section}]\n{key} = "hunter2"\n')
    with pytest.raises(ConfigError) as error:
        load_settings(path)
    message = str(error.value)
    assert message.startswith(f"{section}.{key}: secrets are not read from")
    assert f"RIGHTSDESK_{section.upper()}__{key.upper()}" in message
    assert "hunter2" not in message


def test_secrets_from_environment_or_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RIGHTSDESK_TELEGRAM__TOKEN", "123456:TEST")
    token_path = tmp_path / "imap_password"
    token_path.write_text("s3cret\n", encoding="utf-8")
    settings = load_settings(write(tmp_path, f'[imap]\npassword_file = "{token_path}"\n'))
    assert settings.secret("telegram", "token") == "123456:TEST"
    assert settings.secret("imap", "password") == "s3cret"
    assert "123456:TEST" not in repr(settings)


def test_unreadable_secret_file_is_one_line(tmp_path: Path) -> None:
    settings = load_settings(write(tmp_path, '[security]\nsigning_key_file = "/nonexistent/k"\n'))
    with pytest.raises(ConfigError, match=r"^security.signing_key_file: cannot read"):
        settings.secret("security", "signing_key")


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        ('[smtp]\nport = "twenty"\n', "smtp.port: "),
        ("[smtp]\nport = 70000\n", "smtp.port: "),
        ('[database]\nurl = "mysql://x/y"\n', "database.url: "),
        ('[desk]\ntimezone = "Mars/Olympus"\n', "desk.timezone: "),
        ('[deadlines]\nclock_starts = "never"\n', "deadlines.clock_starts: "),
        ('[deadlines]\nextra_holidays = ["someday"]\n', "deadlines.extra_holidays.0: "),
        ('[databse]\nurl = "x"\n', "databse: unknown key"),
        ("[smtp]\nprot = 25\n", "smtp.prot: unknown key"),
        ("[smtp\n", "is not valid TOML"),
    ],
)
def test_wrong_values_give_one_line_naming_the_key(
    tmp_path: Path, body: str, expected: str
) -> None:
    with pytest.raises(ConfigError) as error:
        load_settings(write(tmp_path, body))
    assert expected in str(error.value)
    assert "\n" not in str(error.value)


def test_wrong_environment_value_names_the_key(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RIGHTSDESK_SMTP__PORT", "lots")
    with pytest.raises(ConfigError, match=r"^smtp.port: "):
        load_settings(None)


def test_missing_file_is_one_line(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="does not exist"):
        load_settings(tmp_path / "nope.toml")


def _keys(model: BaseModel, prefix: str = "") -> set[str]:
    """Every leaf key of the settings tree, as 'section.key'."""
    keys: set[str] = set()
    for name in type(model).model_fields:
        value = getattr(model, name)
        if isinstance(value, BaseModel):
            keys |= _keys(value, f"{name}.")
        else:
            keys.add(f"{prefix}{name}")
    return keys


def test_example_config_documents_every_key_with_its_default() -> None:
    example_path = REPO / "config.example.toml"
    text = example_path.read_text(encoding="utf-8")
    example = tomllib.loads(text)
    from_example = load_settings(example_path)
    defaults_here = Settings()
    anchor_paths(defaults_here, REPO)  # a file's relative paths are read from its folder
    assert from_example == defaults_here, "config.example.toml must show the defaults"
    secrets = {f"{s}.{k}" for s, k in SECRET_KEYS}
    defaults = Settings()
    assert "[[systems]]" in text  # a list of tables: shown as a commented example
    for key in sorted(_keys(defaults) - {"systems"}):
        section, name = key.split(".")
        if key in secrets:
            assert f"RIGHTSDESK_{section.upper()}__{name.upper()}" in text, key
        elif getattr(getattr(defaults, section), name) is None:
            # TOML has no null: such keys are shown commented out, with an example.
            assert f"# {name} = " in text, f"{key} is not mentioned in config.example.toml"
        else:
            assert name in example.get(section, {}), f"{key} missing from config.example.toml"


SYSTEM = """
[[systems]]
name = "chat"
kind = "sql"

[[systems.erasure]]
name = "messages"
sql = "{sql}"
"""


@pytest.mark.parametrize(
    ("sql", "expected"),
    [
        (
            "UPDATE channel_messages SET body = NULL WHERE body LIKE :message_text",
            "systems[chat].erasure[messages]: :message_text is not allowed: statements take "
            "only :account_id, :email, :phone, :username, :pseudonym (from the verified "
            "account, never text from a message)",
        ),
        (
            "DELETE FROM login_logs WHERE ip = :ip AND user_id = :account_id",
            "systems[chat].erasure[messages]: :ip is not allowed",
        ),
        (
            "DELETE FROM login_logs",
            "systems[chat].erasure[messages]: names no :account_id, :email, :phone or "
            ":username, so it would touch everyone",
        ),
        (
            "UPDATE users SET name = :pseudonym",
            "so it would touch everyone",
        ),
        (
            "SELECT * FROM users WHERE id = :account_id",
            "systems[chat].erasure[messages]: must be an UPDATE or DELETE",
        ),
        (
            "DELETE FROM a WHERE id = :account_id; DROP TABLE users",
            "one statement each",
        ),
    ],
)
def test_a_statement_that_binds_anything_but_the_account_is_refused_at_start_up(
    tmp_path: Path, sql: str, expected: str
) -> None:
    with pytest.raises(ConfigError) as error:
        load_settings(write(tmp_path, SYSTEM.format(sql=sql)))
    assert str(error.value).startswith("systems[chat].erasure[messages]: ")
    assert expected in str(error.value)
    assert "\n" not in str(error.value)


def test_a_systems_url_comes_from_the_environment_or_a_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    body = SYSTEM.format(sql="DELETE FROM login_logs WHERE user_id = :account_id")
    with pytest.raises(ConfigError, match=r"^systems\[chat\].url: secrets are not read from"):
        load_settings(write(tmp_path, body.replace('kind = "sql"', 'kind = "sql"\nurl = "x"')))
    settings = load_settings(write(tmp_path, body))
    assert settings.system_url("chat") is None
    monkeypatch.setenv("RIGHTSDESK_SYSTEMS__CHAT__URL", "sqlite+aiosqlite:///company.db")
    settings = load_settings(write(tmp_path, body))  # the variable does not upset `systems`
    assert [s.name for s in settings.systems] == ["chat"]
    assert settings.system_url("chat") == "sqlite+aiosqlite:///company.db"
    monkeypatch.delenv("RIGHTSDESK_SYSTEMS__CHAT__URL")
    (tmp_path / "url").write_text("postgresql+asyncpg://ro@db/chat\n", encoding="utf-8")
    with_file = body.replace('kind = "sql"', f'kind = "sql"\nurl_file = "{tmp_path / "url"}"')
    assert load_settings(write(tmp_path, with_file)).system_url("chat") == (
        "postgresql+asyncpg://ro@db/chat"
    )


def test_two_systems_of_one_name_are_refused(tmp_path: Path) -> None:
    body = '[[systems]]\nname = "crm"\nkind = "manual"\n' * 2
    with pytest.raises(ConfigError, match="two systems are named 'crm'"):
        load_settings(write(tmp_path, body))
