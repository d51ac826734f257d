"""The console's people (rightsdesk.staff): users, their sessions and API tokens, the login
throttle, the desk-wide console settings and the staff's own trail. Not requesters."""

import datetime as dt
from enum import StrEnum
from typing import Any

from sqlalchemy import JSON, BigInteger, Column
from sqlmodel import Field, SQLModel

from rightsdesk.models import utcnow


class StaffRole(StrEnum):
    DPO = "dpo"  # everything: tickets, users, settings
    AGENT = "agent"  # works tickets
    AUDITOR = "auditor"  # reads everything, changes nothing


class StaffUser(SQLModel, table=True):
    """A person who logs in to the console (or uses its API). Not a requester."""

    __tablename__ = "staff_user"

    id: int | None = Field(default=None, primary_key=True)
    name: str = Field(unique=True, max_length=100)  # the login, and the actor of audit events
    email: str = Field(max_length=320)
    role: str = Field(max_length=16)  # StaffRole
    password_hash: str = Field(max_length=200)  # argon2id, with its parameters
    totp_secret: str | None = Field(default=None, max_length=64)
    # The time-step (30 s) of the last TOTP code accepted: a code at or before it is refused,
    # so one code logs in once, not as often as its window allows (migration 0018).
    totp_last_step: int | None = Field(default=None, sa_type=BigInteger)
    language: str = Field(default="zh", max_length=8)  # the console's interface language
    disabled: bool = False
    created_at: dt.datetime = Field(default_factory=utcnow)
    password_changed_at: dt.datetime = Field(default_factory=utcnow)


class StaffSession(SQLModel, table=True):
    """A console login. The cookie holds a random token; only its SHA-256 is stored here."""

    __tablename__ = "staff_session"

    id: str = Field(primary_key=True, max_length=64)  # sha256 hex of the cookie's token
    user_id: int = Field(foreign_key="staff_user.id", index=True)
    csrf_token: str = Field(max_length=64)
    address: str | None = Field(default=None, max_length=64)
    created_at: dt.datetime
    last_seen_at: dt.datetime
    revoked_at: dt.datetime | None = None


class ApiToken(SQLModel, table=True):
    """A bearer token of the JSON API, stored as its SHA-256; shown once, revocable."""

    __tablename__ = "api_token"

    id: int | None = Field(default=None, primary_key=True)
    user_id: int = Field(foreign_key="staff_user.id", index=True)
    token_hash: str = Field(unique=True, max_length=64)
    label: str = Field(default="", max_length=100)
    created_at: dt.datetime = Field(default_factory=utcnow)
    last_used_at: dt.datetime | None = None
    revoked_at: dt.datetime | None = None


class LoginThrottle(SQLModel, table=True):
    """Failed logins per key ("user:NAME" for any name typed, known or not, "addr:IP")."""

    __tablename__ = "login_throttle"

    key: str = Field(primary_key=True, max_length=200)
    failures: int = 0
    first_failure_at: dt.datetime | None = None
    locked_until: dt.datetime | None = None


class StaffSetting(SQLModel, table=True):
    """Desk-wide console settings a DPO changes at run time (e.g. TOTP required for all)."""

    __tablename__ = "staff_setting"

    key: str = Field(primary_key=True, max_length=64)
    value: dict[str, Any] = Field(default_factory=dict, sa_column=Column(JSON, nullable=False))


class StaffEvent(SQLModel, table=True):
    """Who changed the console's people and settings, and who logged in: the staff's own trail
    (ticket actions are in each ticket's hash chain)."""

    __tablename__ = "staff_event"

    id: int | None = Field(default=None, primary_key=True)
    at: dt.datetime = Field(index=True)
    actor: str = Field(max_length=200)
    action: str = Field(max_length=64)  # user_added, disabled, password_reset, login, ...
    subject: str = Field(default="", max_length=100)  # the user acted on
    details: dict[str, Any] = Field(default_factory=dict, sa_column=Column(JSON, nullable=False))
