"""The tables of carrying a request out: the runs of an approved plan in the company's systems
(rightsdesk.fulfilment), and the package the requester receives through the portal
(rightsdesk.packages). The ticket's own tables are in rightsdesk.models."""

import datetime as dt
from typing import Any

from sqlalchemy import JSON, Column, Index, LargeBinary, UniqueConstraint
from sqlmodel import Field, SQLModel

from rightsdesk.models import utcnow


class FulfilmentRun(SQLModel, table=True):
    """An approved plan for a ticket (rightsdesk.fulfilment): what was approved, by whom, and
    whether every system has done its part."""

    id: int | None = Field(default=None, primary_key=True)
    ticket_id: int = Field(foreign_key="ticket.id", index=True)
    plan_hash: str = Field(max_length=64)
    plan: dict[str, Any] = Field(default_factory=dict, sa_column=Column(JSON, nullable=False))
    approved_by: str = Field(max_length=200)
    status: str = Field(default="running", max_length=16, index=True)  # running | done
    started_at: dt.datetime = Field(default_factory=utcnow)
    finished_at: dt.datetime | None = None
    notified_at: dt.datetime | None = None  # the requester was told what was done


class FulfilmentStep(SQLModel, table=True):
    """One system's part of a run: its statements (sql) or the task of its owners (manual).

    status: pending → running → done | failed (retried with back-off) | marked (a person said
    it is done, or the DPO overrode it with a reason); a manual task is open until its owners
    answer."""

    __table_args__ = (
        UniqueConstraint("run_id", "system"),
        Index("ix_fulfilmentstep_status_next_attempt_at", "status", "next_attempt_at"),
    )

    id: int | None = Field(default=None, primary_key=True)
    run_id: int = Field(foreign_key="fulfilmentrun.id", index=True)
    ticket_id: int = Field(foreign_key="ticket.id", index=True)
    system: str = Field(max_length=40)
    kind: str = Field(max_length=16)  # sql | manual
    status: str = Field(default="pending", max_length=16)
    attempts: int = 0
    next_attempt_at: dt.datetime | None = None
    last_error: str | None = None
    # Rows per statement ("action.name": n), from the first run that committed.
    rows: dict[str, Any] = Field(default_factory=dict, sa_column=Column(JSON, nullable=False))
    # The access sections read from the system before anything was changed (package input).
    export: dict[str, Any] | None = Field(default=None, sa_column=Column(JSON, nullable=True))
    exported_at: dt.datetime | None = None
    started_at: dt.datetime | None = None
    finished_at: dt.datetime | None = None
    # manual tasks: the link's nonce (a new one revokes older links), the owners' answer
    link_nonce: str | None = Field(default=None, max_length=32)
    outcome: str | None = Field(default=None, max_length=16)  # done | file | nothing
    note: str | None = None
    file_name: str | None = Field(default=None, max_length=255)
    file_type: str | None = Field(default=None, max_length=200)
    file_content: bytes | None = Field(default=None, sa_column=Column(LargeBinary, nullable=True))
    done_by: str | None = Field(default=None, max_length=200)


# ---- response packages and the requester portal (rightsdesk.packages, rightsdesk.webforms) ----


class Package(SQLModel, table=True):
    """What a ticket's requester receives through the portal: files, a summary, the data as
    JSON and CSV, each sealed (AES-GCM) with the package's own key, which is stored only
    wrapped by the desk's package key. Delivered as a link whose token is stored as a hash.

    status: draft (being put together) -> delivered -> revoked (by the DPO; files kept, may be
    delivered again) | locked (too many wrong codes) | expired | exhausted (the last download);
    the files of an expired or exhausted package are deleted (`files_deleted_at`)."""

    id: int | None = Field(default=None, primary_key=True)
    ticket_id: int = Field(foreign_key="ticket.id", index=True)
    status: str = Field(default="draft", max_length=16, index=True)
    note: str | None = None  # the DPO's words on the summary page
    wrapped_key: bytes | None = Field(default=None, sa_column=Column(LargeBinary, nullable=True))
    created_at: dt.datetime
    created_by: str = Field(max_length=200)
    # SHA-256 of the link's 128-bit token: the token itself is only in the message sent.
    token_hash: str | None = Field(default=None, max_length=64, unique=True)
    delivered_at: dt.datetime | None = None
    delivered_by: str | None = Field(default=None, max_length=200)
    deliveries: int = 0
    expires_at: dt.datetime | None = Field(default=None, index=True)
    max_downloads: int = 0
    downloads: int = 0
    opened_at: dt.datetime | None = None
    last_download_at: dt.datetime | None = None
    # The one-time code of the current link (HMAC bound to the package and the link)
    code_hash: str | None = Field(default=None, max_length=64)
    code_expires_at: dt.datetime | None = None
    code_mails: int = 0
    wrong_codes: int = 0
    # A requester who typed the code downloads for a while without another (cookie's SHA-256).
    session_hash: str | None = Field(default=None, max_length=64)
    session_expires_at: dt.datetime | None = None
    files_deleted_at: dt.datetime | None = None


class PackageFile(SQLModel, table=True):
    __tablename__ = "package_file"

    id: int | None = Field(default=None, primary_key=True)
    package_id: int = Field(foreign_key="package.id", index=True)
    name: str = Field(max_length=255)  # a plain file name, no folders
    content_type: str = Field(max_length=200)
    size: int
    sha256: str = Field(max_length=64)  # of the plaintext
    # Where it came from: "dpo" (tickets package --add), "system:NAME" (fulfilment),
    # "summary" (the readable page), "data" (JSON, CSV)
    source: str = Field(max_length=80)
    nonce: bytes = Field(sa_column=Column(LargeBinary, nullable=False))
    sealed: bytes | None = Field(default=None, sa_column=Column(LargeBinary, nullable=True))
    added_at: dt.datetime
    added_by: str = Field(max_length=200)
