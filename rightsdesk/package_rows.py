"""The rows of a package: a file sealed into a row, a package ended (its files deleted), and
the plain views of a package for `tickets show`, `--json` and the console (rightsdesk.packages
builds and delivers; rightsdesk.package_access is the requester's side)."""

from __future__ import annotations

import datetime as dt
import hashlib
import mimetypes
import re
from dataclasses import dataclass
from typing import Any

from sqlmodel import select
from sqlmodel.ext.asyncio.session import AsyncSession

from rightsdesk.filenames import safe_name
from rightsdesk.models import Ticket
from rightsdesk.models_fulfilment import Package, PackageFile
from rightsdesk.sealing import seal
from rightsdesk.tickets import TicketService

ACTOR = "system:packages"
LIVE = "delivered"
# Not delivered now, files kept: files may be added, and it may be delivered (again).
OPEN_STATES = ("draft", "revoked", "locked")


@dataclass(frozen=True)
class PackageInput:
    """A file for the package: its name as the requester will see it, its type, its bytes, and
    where it came from ("dpo", "system:NAME")."""

    name: str
    content_type: str
    content: bytes
    source: str = "dpo"


def content_type_of(name: str, given: str | None = None) -> str:
    if given and re.fullmatch(r"[\w.+-]+/[\w.+-]+", given):
        return given.lower()
    return mimetypes.guess_type(name)[0] or "application/octet-stream"


def token_hash(token: str) -> str:
    return hashlib.sha256(f"package-link:{token}".encode()).hexdigest()


async def end_package(
    session: AsyncSession,
    tickets: TicketService,
    ticket: Ticket,
    package: Package,
    why: str,
    now: dt.datetime,
) -> None:
    """Expired or exhausted: the link stops and the files are deleted (their sealed bytes and
    the package's key: nothing of them is left to open)."""
    files = (
        await session.exec(select(PackageFile).where(PackageFile.package_id == package.id))
    ).all()
    for row in files:
        row.sealed = None
        session.add(row)
    package.status = why
    package.wrapped_key = None
    package.token_hash = None
    package.session_hash = package.session_expires_at = None
    package.files_deleted_at = now
    session.add(package)
    await tickets.note_in(
        session,
        ticket,
        ACTOR,
        f"package_{why}",
        {"package": package.id, "files_deleted": len(files), "downloads": package.downloads},
    )


def sealed_row(
    package_key: bytes, package_id: int, file: PackageInput, actor: str, now: dt.datetime
) -> PackageFile:
    name = safe_name(file.name)
    digest = hashlib.sha256(file.content).hexdigest()
    nonce, sealed = seal(package_key, package_id, digest, file.content)
    return PackageFile(
        package_id=package_id,
        name=name,
        content_type=content_type_of(name, file.content_type),
        size=len(file.content),
        sha256=digest,
        source=file.source[:80],
        nonce=nonce,
        sealed=sealed,
        added_at=now,
        added_by=actor,
    )


def _iso(value: dt.datetime | None, tz: dt.tzinfo) -> str | None:
    return value.astimezone(tz).isoformat(timespec="minutes") if value else None


def package_view(package: Package, files: list[PackageFile], tz: dt.tzinfo) -> dict[str, Any]:
    """Plain data: the package's state, dates, counts and files."""
    view: dict[str, Any] = {
        "package": package.id,
        "status": package.status,
        "delivered_at": _iso(package.delivered_at, tz),
        "deliveries": package.deliveries,
        "expires_at": _iso(package.expires_at, tz),
        "opened_at": _iso(package.opened_at, tz),
        "downloads": package.downloads,
        "max_downloads": package.max_downloads,
        "last_download_at": _iso(package.last_download_at, tz),
        "files_deleted_at": _iso(package.files_deleted_at, tz),
        "wrong_codes": package.wrong_codes,
        "files": [
            {"name": f.name, "bytes": f.size, "source": f.source, "sha256": f.sha256} for f in files
        ],
    }
    view["line"] = package_line(view)
    return view


def package_line(view: dict[str, Any]) -> str:
    """One line: "package 3: delivered 2026-12-01 10:00 · opened … · downloaded 1/5 · …"."""
    parts = [f"package {view['package']}: {view['status']}"]
    if view["delivered_at"]:
        parts.append(f"delivered {view['delivered_at'][:16].replace('T', ' ')}")
    parts.append(
        f"opened {view['opened_at'][:16].replace('T', ' ')}" if view["opened_at"] else "not opened"
    )
    if view["max_downloads"]:
        parts.append(f"downloaded {view['downloads']}/{view['max_downloads']}")
    if view["status"] == LIVE and view["expires_at"]:
        parts.append(f"link expires {view['expires_at'][:10]}")
    if view["files_deleted_at"]:
        parts.append(f"files deleted {view['files_deleted_at'][:10]}")
    else:
        parts.append(f"{len(view['files'])} file(s)")
    return " · ".join(parts)
