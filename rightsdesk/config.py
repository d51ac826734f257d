"""One typed settings object, loaded from TOML with environment overrides.

Precedence, highest first: environment (`RIGHTSDESK_<SECTION>__<KEY>`), the TOML file, the
embedded defaults. Secrets are never read from the TOML file: only from the environment or from
a file named by the matching `*_file` key, so a config file can be committed or shared safely.

This module is the loading: `Settings` (the sections together and where their values come
from), secrets, finding the file, anchoring its paths. The sections themselves are in
`rightsdesk.config_sections`, the company's systems in `rightsdesk.config_systems`.
"""

from __future__ import annotations

import os
import tomllib
from pathlib import Path
from typing import Any

from pydantic import Field, SecretStr, ValidationError, field_validator
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict

from rightsdesk.config_sections import (
    ClassifierSettings,
    ConsoleSettings,
    DatabaseSettings,
    DeadlineSettings,
    DeskSettings,
    FulfilmentSettings,
    ImapSettings,
    LoggingSettings,
    MailSettings,
    OutboundSettings,
    PortalSettings,
    SchedulerSettings,
    SecuritySettings,
    ServiceSettings,
    SmtpSettings,
    TelegramSettings,
    VerificationSettings,
)
from rightsdesk.config_systems import SystemSettings

ENV_PREFIX = "RIGHTSDESK_"
CONFIG_ENV = "RIGHTSDESK_CONFIG"
# (section, key) pairs that hold secrets. Each has a sibling `<key>_file` that may be in TOML.
SECRET_KEYS: frozenset[tuple[str, str]] = frozenset(
    {
        ("imap", "password"),
        ("outbound", "relay_password"),
        ("telegram", "token"),
        ("telegram", "webhook_secret"),
        ("security", "signing_key"),
        ("verification", "account_database_url"),
        ("portal", "package_key"),
    }
)


# Found in the working directory when neither --config nor $RIGHTSDESK_CONFIG names a file.
LOCAL_CONFIG = "rightsdesk.toml"

# Paths that belong to a desk: with a config file, relative ones are read from the file's
# folder (not the working directory), so a command run anywhere finds the same desk.
_DESK_PATHS: tuple[tuple[str, str], ...] = (
    ("desk", "data_dir"),
    ("outbound", "outbox_dir"),
    ("outbound", "templates_dir"),
    ("classifier", "model_path"),
    *((section, f"{key}_file") for section, key in sorted(SECRET_KEYS)),
)


class ConfigError(Exception):
    """A configuration problem, phrased as one line that names the key."""


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix=ENV_PREFIX,
        env_nested_delimiter="__",
        extra="forbid",
        case_sensitive=False,
    )

    database: DatabaseSettings = Field(default_factory=DatabaseSettings)
    desk: DeskSettings = Field(default_factory=DeskSettings)
    deadlines: DeadlineSettings = Field(default_factory=DeadlineSettings)
    smtp: SmtpSettings = Field(default_factory=SmtpSettings)
    mail: MailSettings = Field(default_factory=MailSettings)
    verification: VerificationSettings = Field(default_factory=VerificationSettings)
    outbound: OutboundSettings = Field(default_factory=OutboundSettings)
    imap: ImapSettings = Field(default_factory=ImapSettings)
    classifier: ClassifierSettings = Field(default_factory=ClassifierSettings)
    telegram: TelegramSettings = Field(default_factory=TelegramSettings)
    security: SecuritySettings = Field(default_factory=SecuritySettings)
    scheduler: SchedulerSettings = Field(default_factory=SchedulerSettings)
    console: ConsoleSettings = Field(default_factory=ConsoleSettings)
    portal: PortalSettings = Field(default_factory=PortalSettings)
    service: ServiceSettings = Field(default_factory=ServiceSettings)
    logging: LoggingSettings = Field(default_factory=LoggingSettings)
    fulfilment: FulfilmentSettings = Field(default_factory=FulfilmentSettings)
    systems: list[SystemSettings] = Field(default_factory=list)

    def own_addresses(self) -> frozenset[str]:
        """The desk's own mail addresses (what it receives at and sends from): mail from one
        of them is the desk talking to itself, never a requester (a mail loop)."""
        found = [*self.desk.privacy_addresses, self.outbound.from_address]
        return frozenset(a.strip().lower() for a in found if a.strip())

    @field_validator("systems")
    @classmethod
    def _unique_systems(cls, value: list[SystemSettings]) -> list[SystemSettings]:
        seen: set[str] = set()
        for system in value:
            if system.name in seen:
                raise ValueError(f"two systems are named {system.name!r}")
            seen.add(system.name)
        return value

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        # The TOML file arrives as init kwargs; the environment must win over it.
        return (_WithoutSystemUrls(settings_cls, env_settings), init_settings)

    def system(self, name: str) -> SystemSettings:
        for system in self.systems:
            if system.name == name:
                return system
        known = ", ".join(s.name for s in self.systems) or "none configured"
        raise ConfigError(f"no system {name!r} (systems: {known})")

    def system_url(self, name: str) -> str | None:
        """A system's connection URL: RIGHTSDESK_SYSTEMS__<NAME>__URL, else its url_file."""
        value = os.environ.get(system_url_variable(name))
        if value:
            return value
        path = self.system(name).url_file
        if path is None:
            return None
        try:
            return path.read_text(encoding="utf-8").strip()
        except OSError as exc:
            raise ConfigError(
                f"systems[{name}].url_file: cannot read {path}: {exc.strerror}"
            ) from None

    def secret(self, section: str, key: str) -> str | None:
        """The secret's value from the environment, else from its `<key>_file`, else None."""
        if (section, key) not in SECRET_KEYS:
            raise KeyError(f"{section}.{key} is not a secret")
        part = getattr(self, section)
        value: SecretStr | None = getattr(part, key)
        if value is not None:
            return value.get_secret_value()
        path: Path | None = getattr(part, f"{key}_file")
        if path is None:
            return None
        try:
            return path.read_text(encoding="utf-8").strip()
        except OSError as exc:
            raise ConfigError(f"{section}.{key}_file: cannot read {path}: {exc.strerror}") from None


def system_url_variable(name: str) -> str:
    return f"{ENV_PREFIX}SYSTEMS__{name.upper()}__URL"


class _WithoutSystemUrls(PydanticBaseSettingsSource):
    """The environment, less RIGHTSDESK_SYSTEMS__<NAME>__URL: those are read by
    `Settings.system_url`, since `systems` is a list the nested-variable syntax cannot address."""

    def __init__(self, settings_cls: type[BaseSettings], inner: PydanticBaseSettingsSource):
        super().__init__(settings_cls)
        self.inner = inner

    def get_field_value(self, field: Any, field_name: str) -> tuple[Any, str, bool]:
        return None, field_name, False  # __call__ does the work

    def __call__(self) -> dict[str, Any]:
        data = self.inner()
        if isinstance(data.get("systems"), dict):
            del data["systems"]
        return data


def _reject_secrets_in_file(data: dict[str, Any], source: Path) -> None:
    for index, system in enumerate(data.get("systems") or []):
        if isinstance(system, dict) and "url" in system:
            name = str(system.get("name", index))
            raise ConfigError(
                f"systems[{name}].url: secrets are not read from {source}; "
                f"set {system_url_variable(name)} or url_file"
            )
    for section, key in sorted(SECRET_KEYS):
        part = data.get(section)
        if isinstance(part, dict) and key in part:
            env = f"{ENV_PREFIX}{section.upper()}__{key.upper()}"
            raise ConfigError(
                f"{section}.{key}: secrets are not read from {source}; "
                f"set {env} or {section}.{key}_file"
            )


def _describe(error: ValidationError) -> str:
    first = error.errors()[0]
    key = ".".join(str(part) for part in first["loc"]) or "(top level)"
    message = first["msg"]
    if first["type"] == "extra_forbidden":
        message = "unknown key"
    if first["type"] == "value_error" and key.startswith("systems"):
        message = message.removeprefix("Value error, ")
        if message.startswith("systems["):
            key, message = message.split(": ", 1)  # the system's name says more than its index
    more = len(error.errors()) - 1
    suffix = f" (and {more} more problem{'s' if more > 1 else ''})" if more else ""
    return f"{key}: {message}{suffix}"


def find_config(path: Path | str | None = None) -> tuple[Path | None, str]:
    """Which config file to read: `path` (--config), else $RIGHTSDESK_CONFIG, else
    ./rightsdesk.toml if there is one; and, in words, where that was looked for."""
    if path is not None:
        from_env = os.environ.get(CONFIG_ENV) == str(path)
        return Path(path), f"config {path}" + (f" (from ${CONFIG_ENV})" if from_env else "")
    if os.environ.get(CONFIG_ENV):
        return Path(os.environ[CONFIG_ENV]), f"config {os.environ[CONFIG_ENV]} (${CONFIG_ENV})"
    local = Path(LOCAL_CONFIG)
    if local.is_file():
        return local, f"config ./{LOCAL_CONFIG}"
    return None, (
        f"no config file (no --config, no ${CONFIG_ENV}, no {LOCAL_CONFIG} in {Path.cwd()})"
    )


def anchor_paths(settings: Settings, folder: Path) -> None:
    """Relative desk paths of a config file are relative to its folder (see _DESK_PATHS);
    what the environment sets stays relative to the working directory."""

    def from_env(section: str, key: str) -> bool:
        name = f"{ENV_PREFIX}{section}__{key}".upper()
        return any(k.upper() == name for k in os.environ)

    sqlite = settings.database.sqlite_path
    raw = settings.database.url.split("///", 1)[-1]
    if sqlite is not None and not Path(raw).is_absolute() and not from_env("database", "url"):
        settings.database.url = settings.database.url.replace(raw, str(folder / raw), 1)
    for section, key in _DESK_PATHS:
        part = getattr(settings, section)
        value = getattr(part, key)
        if isinstance(value, Path) and not value.is_absolute() and not from_env(section, key):
            setattr(part, key, folder / value)


def load_settings(path: Path | str | None = None) -> Settings:
    """Load settings from `path` (or $RIGHTSDESK_CONFIG, or ./rightsdesk.toml, or only the
    embedded defaults). With a file, relative desk paths are relative to its folder.

    Raises ConfigError with one line naming the offending key.
    """
    path, _ = find_config(path)
    data: dict[str, Any] = {}
    if path is not None:
        source = Path(path)
        try:
            data = tomllib.loads(source.read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise ConfigError(f"config file {source} does not exist") from None
        except OSError as exc:
            raise ConfigError(f"config file {source}: {exc.strerror}") from None
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"config file {source} is not valid TOML: {exc}") from None
        _reject_secrets_in_file(data, source)
    try:
        settings = Settings(**data)
    except ValidationError as exc:
        raise ConfigError(_describe(exc)) from None
    if path is not None:
        anchor_paths(settings, Path(path).absolute().parent)
    return settings
