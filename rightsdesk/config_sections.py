"""The sections of the settings: one pydantic model per TOML table (`[database]`, `[desk]` ...).

Only what each section holds and checks of its own values; `rightsdesk.config` puts them
together as `Settings` and loads them (file, environment, secrets). The company's systems
(`[[systems]]`) are in `rightsdesk.config_systems`.
"""

from __future__ import annotations

import datetime as dt
import re
from pathlib import Path
from typing import Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_validator, model_validator

from rightsdesk.models import RequestType


class Section(BaseModel):
    model_config = ConfigDict(extra="forbid")


class DatabaseSettings(Section):
    url: str = "sqlite+aiosqlite:///var/rightsdesk.db"
    echo: bool = False
    pool_size: int = Field(default=5, ge=1, le=200)

    @field_validator("url")
    @classmethod
    def _supported_driver(cls, value: str) -> str:
        if not value.startswith(("sqlite+aiosqlite://", "postgresql+asyncpg://")):
            raise ValueError("must start with sqlite+aiosqlite:// or postgresql+asyncpg://")
        return value

    @property
    def sqlite_path(self) -> Path | None:
        """The SQLite file (absolute), or None for PostgreSQL and in-memory SQLite."""
        if not self.url.startswith("sqlite"):
            return None
        database = self.url.split("///", 1)[1].split("?", 1)[0] if "///" in self.url else ""
        if not database or database == ":memory:":
            return None
        return Path(database).absolute()


class DeskSettings(Section):
    timezone: str = "Asia/Shanghai"
    data_dir: Path = Path("var")
    company_name: str = "海口市印湉贸易有限公司"
    dpo_emails: list[str] = Field(default_factory=lambda: ["dpo@localhost"])
    privacy_addresses: list[str] = Field(default_factory=lambda: ["privacy@localhost"])
    # Days a resolved/denied/cancelled ticket stays before it is closed for good.
    close_after_days: int = Field(default=14, ge=0)
    # A withdrawal by mail ("cancel" / "取消") becomes final after this many days; until then
    # the requester can undo it (reply "undo" / "撤销") and the DPO too (tickets undo-withdrawal).
    withdrawal_undo_days: int = Field(default=14, ge=0, le=90)

    @field_validator("timezone")
    @classmethod
    def _known_zone(cls, value: str) -> str:
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(f"unknown time zone {value!r}") from None
        return value

    @property
    def tz(self) -> ZoneInfo:
        return ZoneInfo(self.timezone)


class DeadlineSettings(Section):
    response_working_days: int = Field(default=15, ge=1, le=60)
    completion_calendar_days: int = Field(default=30, ge=1, le=365)
    # How far an extension may move a date: the answer date by at most this many working days
    # past the first one promised (the privacy policy's 15 working days, once more), the
    # completion date by at most this many calendar days past its first.
    max_extension_working_days: int = Field(default=15, ge=0, le=60)
    max_completion_extension_days: int = Field(default=30, ge=0, le=365)
    # "receipt": the clock starts when the request arrives (the policy's promise);
    # "verification": it starts when the requester's identity is verified.
    clock_starts: Literal["receipt", "verification"] = "receipt"
    # Whether the clock stops while we wait for the requester (e.g. for a verification code).
    pause_while_waiting: bool = False
    # DPO overrides on top of the State Council calendar shipped by `chinese-calendar`.
    extra_holidays: list[dt.date] = Field(default_factory=list)
    extra_workdays: list[dt.date] = Field(default_factory=list)
    # Years whose whole official schedule is entered in the two lists above: deadlines that fall
    # in them are final, not provisional, even before `chinese-calendar` ships that year.
    complete_years: list[int] = Field(default_factory=list)


class SmtpSettings(Section):
    enabled: bool = True
    host: str = "127.0.0.1"
    port: int = Field(default=2525, ge=0, le=65535)
    hostname: str = "localhost"
    tls_cert_file: Path | None = None
    tls_key_file: Path | None = None
    # Limits (intake/smtp.py): RFC 5321's 100 recipients a message; sessions open at once, in
    # all and from one client address (421 beyond: one client's idle connections locked every
    # other sender out); a session's whole life, NOOPs or not; silence before the first command
    # or between two, and the time a DATA may take, before a 421 and close.
    max_recipients: int = Field(default=100, ge=1)
    max_connections: int = Field(default=100, ge=1)
    max_connections_per_client: int = Field(default=10, ge=1)
    session_seconds: float = Field(default=600.0, gt=0)
    idle_seconds: float = Field(default=30.0, gt=0)
    timeout_seconds: float = Field(default=300.0, gt=0)


class MailSettings(Section):
    """What both mail doors (SMTP and IMAP) share."""

    max_message_bytes: int = Field(default=25 * 1024 * 1024, ge=1024)
    # Attachments larger than this keep only their metadata and hash.
    max_attachment_bytes: int = Field(default=10 * 1024 * 1024, ge=0)
    # authserv-ids whose Authentication-Results headers we believe (our own MX, our provider).
    trusted_authserv_ids: list[str] = Field(default_factory=list)
    # At most this many acknowledgements to one sender an hour: a flood gets no flood back.
    acknowledgements_per_hour: int = Field(default=5, ge=0)
    # A message whose routing fails this many times in a row (a parser bug) waits for a person
    # in `intake failed`. A transient failure (disk full, database locked, connection lost) is
    # not counted: it is retried with back-off (doubling from 1 s up to the maximum).
    route_attempts: int = Field(default=3, ge=1, le=20)
    route_retry_max_seconds: float = Field(default=300.0, gt=0)
    # Routing goes a batch at a time, one transaction each (rightsdesk.pipeline.batches); on
    # SQLite a batch stops taking messages after route_batch_seconds of writing, since every
    # door's 250 waits for the one write lock meanwhile.
    route_batch_size: int = Field(default=64, ge=1, le=1000)
    route_batch_seconds: float = Field(default=0.02, gt=0)


VerificationMethod = Literal["none", "registered_email", "code", "manual"]


def _default_policy() -> dict[str, VerificationMethod]:
    return {
        "inquiry": "none",
        "complaint": "none",
        "not_rights_request": "none",
        "access": "registered_email",
        "portability": "registered_email",
        "rectification": "registered_email",
        "withdraw_consent": "registered_email",
        "restriction": "registered_email",
        "erasure": "code",
        "account_deletion": "code",
        "minor": "manual",
        "deceased": "manual",
    }


class VerificationSettings(Section):
    # Per request type: none | registered_email (DKIM/DMARC-aligned mail from the registered
    # address, else a code) | code (always a code to the registered address) | manual (the DPO).
    policy: dict[str, VerificationMethod] = Field(default_factory=_default_policy)
    code_ttl_minutes: int = Field(default=30, ge=1, le=24 * 60)
    max_attempts: int = Field(default=5, ge=1, le=20)
    max_sends: int = Field(default=3, ge=1, le=10)  # the first code and at most 2 resends
    # Per registered account, across all its tickets, within account_limit_hours: at most this
    # many code mails, and this many wrong codes (then every ticket of it waits for the DPO).
    account_max_sends: int = Field(default=5, ge=1, le=100)
    account_max_attempts: int = Field(default=5, ge=1, le=100)
    account_limit_hours: int = Field(default=24, ge=1, le=24 * 30)
    reminder_after_days: int = Field(default=2, ge=1)
    close_after_days: int = Field(default=14, ge=1)
    # Look accounts up in the company's own database instead of the imported `account` table:
    # a read-only SQL query with an :email parameter returning account_id, email[, phone, name,
    # username]. The connection URL is a secret (environment or account_database_url_file).
    account_query: str = ""
    # The same by username, for the chat bot (":username" parameter); empty: username lookups
    # find nobody and the DPO verifies by hand.
    account_username_query: str = ""
    account_database_url: SecretStr | None = None
    account_database_url_file: Path | None = None

    @field_validator("policy")
    @classmethod
    def _known_types(cls, value: dict[str, VerificationMethod]) -> dict[str, VerificationMethod]:
        unknown = set(value) - {t.value for t in RequestType}
        if unknown:
            raise ValueError(f"unknown request type(s): {', '.join(sorted(unknown))}")
        return {**_default_policy(), **value}


class OutboundSettings(Section):
    from_address: str = "privacy@localhost"
    from_name: str = "隐私保护团队 Privacy Team"
    # Templates here override the built-in ones file by file (same names).
    templates_dir: Path | None = None
    # Empty relay_host: outbound mail is written as .eml files to outbox_dir instead.
    relay_host: str = ""
    relay_port: int = Field(default=587, ge=1, le=65535)
    relay_username: str = ""
    relay_starttls: bool = True
    relay_password: SecretStr | None = None
    relay_password_file: Path | None = None
    outbox_dir: Path = Path("var/outbox")
    # At most this many bytes of files in one reply (`tickets reply --attach`), all together:
    # mail relays commonly refuse messages over 25 MB once encoded, Telegram files over 50 MB.
    max_attachment_bytes: int = Field(default=10 * 1024 * 1024, ge=1, le=50 * 1024 * 1024)


class ImapSettings(Section):
    # IMAP is off until a host is configured.
    host: str = ""
    port: int = Field(default=993, ge=1, le=65535)
    ssl: bool = True
    username: str = ""
    password: SecretStr | None = None
    password_file: Path | None = None
    folder: str = "INBOX"
    processed_folder: str = "Processed"  # empty: flag processed mail as seen instead
    poll_seconds: float = Field(default=60.0, gt=0)
    timeout_seconds: float = Field(default=30.0, gt=0)

    @property
    def enabled(self) -> bool:
        return bool(self.host)


class ClassifierSettings(Section):
    # Off: every request goes to the DPO's triage queue (rightsdesk.pipeline.TriageEverything).
    enabled: bool = True
    # Empty: the model `rightsdesk classifier train` builds inside the package (classifiers/model).
    model_path: Path | None = None
    # What the classifier reads of a message (rightsdesk.classifying): a prefix of the subject
    # and of the text, and no run without white space longer than max_run_chars.
    max_subject_chars: int = Field(default=1000, ge=1)
    max_text_chars: int = Field(default=20_000, ge=1)
    max_run_chars: int = Field(default=256, ge=16)


class TelegramSettings(Section):
    # The bot is off until a token is set (environment or token_file only).
    token: SecretStr | None = None
    token_file: Path | None = None
    # A local Bot API server can stand in for Telegram's own (tests do this).
    base_url: str = "https://api.telegram.org/bot"
    base_file_url: str = "https://api.telegram.org/file/bot"
    # polling: getUpdates (no inbound port). webhook: Telegram posts to webhook_url, which
    # must reach webhook_host:webhook_port (through a TLS-terminating proxy).
    mode: Literal["polling", "webhook"] = "polling"
    poll_timeout_seconds: int = Field(default=30, ge=0, le=50)
    webhook_url: str = ""
    webhook_host: str = "127.0.0.1"
    webhook_port: int = Field(default=8443, ge=0, le=65535)
    # Telegram sends it back in X-Telegram-Bot-Api-Secret-Token: a secret (environment only).
    webhook_secret: SecretStr | None = None
    webhook_secret_file: Path | None = None
    # More messages than this from one chat in a minute are stored, not answered.
    messages_per_minute: int = Field(default=20, ge=1)
    # Documents (guardians, relatives): what the bot accepts, and up to which size.
    max_document_bytes: int = Field(default=10 * 1024 * 1024, ge=1, le=20 * 1024 * 1024)
    document_types: list[str] = Field(
        default_factory=lambda: ["application/pdf", "image/jpeg", "image/png"]
    )
    privacy_policy_url: str = ""
    # Where the bot sends questions that are not about personal information.
    support_hint: str = ""
    # Optional: a chat of the DPO's that hears about urgent tickets (a child's data) at once.
    dpo_chat_id: str = ""

    @model_validator(mode="after")
    def _webhook_needs_url(self) -> TelegramSettings:
        if self.mode == "webhook" and not self.webhook_url.startswith("https://"):
            raise ValueError("mode = 'webhook' needs webhook_url, an https:// address")
        return self


class SecuritySettings(Section):
    signing_key: SecretStr | None = None
    signing_key_file: Path | None = None


class SchedulerSettings(Section):
    enabled: bool = True
    digest_time: dt.time = dt.time(9, 0)  # local time (desk.timezone), on working days
    # Reminders this many working days before a due date (0: on the day itself).
    reminder_working_days: list[int] = Field(default_factory=lambda: [5, 2, 1, 0])
    escalation_emails: list[str] = Field(default_factory=list)  # besides desk.dpo_emails
    unassigned_every_working_days: int = Field(default=5, ge=1)
    # Raw mail and text of tickets closed longer ago than this are deleted (0: never).
    retention_days: int = Field(default=365, ge=0)
    tick_seconds: float = Field(default=60.0, gt=0)


class FulfilmentSettings(Section):
    # A manual task's link is <portal.public_base_url>/task/<token> (one setting: the portal's);
    # with no public base URL the mail gives the token and the CLI command instead.
    task_link_days: int = Field(default=30, ge=1, le=365)
    # A failed system is retried after 1, 2, 4 ... minutes, at most this long apart.
    retry_max_minutes: int = Field(default=60, ge=1)
    # A table of ours in each SQL system, written in the same transaction as the statements,
    # so a crash between the system's commit and ours never applies a statement twice.
    # Empty: no table is created; statements must then be safe to repeat.
    ledger_table: str = "rightsdesk_ledger"

    @field_validator("ledger_table")
    @classmethod
    def _plain_name(cls, value: str) -> str:
        if value and not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]{0,62}", value):
            raise ValueError("letters, digits and _ only")
        return value


class ConsoleSettings(Section):
    """The DPO's web console (console/), served by `rightsdesk run` in the same event loop."""

    enabled: bool = True
    host: str = "127.0.0.1"
    port: int = Field(default=8080, ge=0, le=65535)  # 0: any free port (tests)
    # The address people type, e.g. https://privacy-desk.example.com (behind a reverse proxy).
    public_base_url: str = ""
    tls_cert_file: Path | None = None
    tls_key_file: Path | None = None
    # A session ends after this long without a request, and after `session_lifetime` in any case.
    session_idle_minutes: int = Field(default=30, ge=1)
    session_lifetime_hours: int = Field(default=12, ge=1)
    # Failed logins per user name before a lock, and how long the lock holds. An address is
    # locked only after more (`login_max_failures_per_address`): the people of an office behind
    # one NAT share an address, and one of them guessing must not lock all of them as fast.
    login_max_failures: int = Field(default=5, ge=1)
    login_max_failures_per_address: int = Field(default=20, ge=1)
    login_lock_minutes: int = Field(default=15, ge=1)
    page_size: int = Field(default=50, ge=5, le=500)
    # Queue counts (navigation, list totals) are reused this long: at a million tickets the
    # largest take tens of milliseconds, and several people share the queues. 0: always fresh.
    count_cache_seconds: float = Field(default=5.0, ge=0)
    # A font with Chinese characters for the monthly report's PDF (Debian: fonts-wqy-microhei).
    pdf_font_file: Path = Path("/usr/share/fonts/truetype/wqy/wqy-microhei.ttc")
    # Reverse proxies whose X-Forwarded-For is believed (their own address as they connect):
    # the login throttle then counts the browser's address, not the proxy's.
    trusted_proxies: list[str] = Field(default_factory=list)

    @property
    def tls(self) -> bool:
        return self.tls_cert_file is not None and self.tls_key_file is not None


class PortalSettings(Section):
    """The requester portal (portal/): a listener of its own, in the same process and loop as
    the console, facing the internet (through a reverse proxy) where the console never needs to."""

    enabled: bool = True
    host: str = "127.0.0.1"
    port: int = Field(default=8081, ge=0, le=65535)  # 0: any free port (tests)
    # The address requesters open, e.g. https://privacy.example.com: every link we send
    # (packages, manual tasks) starts with it. Empty: nothing can be delivered.
    public_base_url: str = ""
    tls_cert_file: Path | None = None
    tls_key_file: Path | None = None
    # Reverse proxies whose X-Forwarded-For is believed (their own address as they connect).
    trusted_proxies: list[str] = Field(default_factory=list)
    # A delivered package: its link's life, how many downloads it allows, how long a
    # requester who typed the code may download without typing another.
    link_days: int = Field(default=7, ge=1, le=90)
    max_downloads: int = Field(default=5, ge=1, le=100)
    session_minutes: int = Field(default=30, ge=1, le=24 * 60)
    # Code mails for one delivered link (each visit after the session ends needs one).
    max_code_mails: int = Field(default=10, ge=1, le=100)
    # All the files of one package together, and one file a system's owner uploads.
    max_package_bytes: int = Field(default=200 * 1024 * 1024, ge=1024)
    max_upload_bytes: int = Field(default=10 * 1024 * 1024, ge=1024)
    # The request and status forms: at most this many codes an hour per address typed and
    # per client address; and the size of a form post.
    codes_per_address_per_hour: int = Field(default=3, ge=1)
    codes_per_client_per_hour: int = Field(default=10, ge=1)
    max_form_bytes: int = Field(default=64 * 1024, ge=1024)
    # The key that wraps every package's own key (AES-256-GCM): a secret, from
    # RIGHTSDESK_PORTAL__PACKAGE_KEY or package_key_file, never from this file nor data_dir.
    package_key: SecretStr | None = None
    package_key_file: Path | None = None

    @property
    def tls(self) -> bool:
        return self.tls_cert_file is not None and self.tls_key_file is not None

    @property
    def base_url(self) -> str:
        return self.public_base_url.rstrip("/")


class ServiceSettings(Section):
    """How the running service looks after its own tasks (rightsdesk.supervision)."""

    # This replica's name in `rightsdesk status` and on the outbox claims it holds; empty: the
    # host name. Two replicas on one host need names of their own.
    replica_id: str = Field(default="", max_length=200)
    heartbeat_seconds: float = Field(default=10.0, gt=0)
    # A task that fails is restarted after restart_min_seconds, doubling to restart_max_seconds;
    # after failing_after failures in a row it shows as failing (status, digest).
    restart_min_seconds: float = Field(default=1.0, gt=0)
    restart_max_seconds: float = Field(default=60.0, gt=0)
    failing_after: int = Field(default=3, ge=1)


class LoggingSettings(Section):
    level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
