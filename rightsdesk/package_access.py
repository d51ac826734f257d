"""The requester's side of a delivered package (what the portal's /p/<token> pages call).

    view       the link's page: a code to ask for, or (after the code) the files
    send_code  a one-time code to the account's registered email, never to a typed address
    check_code the code, HMAC-compared in constant time; 5 wrong ones lock the link (in the
               database: a restart keeps the lock)
    download   one file, or all of them as a ZIP; the last allowed download deletes the files

A token that is malformed, unknown, revoked, expired, exhausted or locked raises the same
`PackageUnavailable`, so the portal answers each with the same page. Every view, code and
download is an audit event on the ticket with its time and a coarse client.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import io
import re
import secrets
import unicodedata
import zipfile
from dataclasses import dataclass, field
from typing import Any, Literal

from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from rightsdesk.clients import Client
from rightsdesk.desk_parts import DeskParts, OnDeskParts
from rightsdesk.models import Requester, Ticket
from rightsdesk.models_fulfilment import Package, PackageFile
from rightsdesk.offload import CpuPool
from rightsdesk.packages import LIVE, PackageService, end_package, token_hash
from rightsdesk.sealing import unseal

ACTOR = "requester:portal"
_TOKEN = re.compile(r"^[A-Za-z0-9_-]{22}$")
_CODE = re.compile(r"^([0-9]{6})$")

CodeOutcome = Literal["sent", "too_many", "right", "wrong", "locked", "expired", "no_code"]


class PackageUnavailable(Exception):
    """Not a link that opens a package now (whichever the reason: the answer is the same)."""


@dataclass(frozen=True)
class PackagePage:
    state: Literal["code", "files"]
    ticket: str
    lang: str | None
    expires: str
    downloads_left: int
    code_sent: bool = False
    attempts_left: int = 0
    outcome: CodeOutcome | None = None
    files: list[dict[str, Any]] = field(default_factory=list)


@dataclass(frozen=True)
class Download:
    name: str
    content_type: str
    content: bytes


class PackageAccess(OnDeskParts):
    def __init__(
        self,
        parts: DeskParts,
        packages: PackageService,
        cpu: CpuPool,
        key: bytes,
    ) -> None:
        super().__init__(parts)
        self.packages = packages
        self.cpu = cpu
        self._key = key

    # ---- finding the package ---------------------------------------------------------------

    async def _find(self, session: AsyncSession, token: str) -> tuple[Package, Ticket] | None:
        """The live package of a token (locked, with its ticket locked), or None. A link found
        past its expiry is ended here (files deleted) and then is None like any other."""
        if not _TOKEN.match(token):
            return None
        wanted = token_hash(token)
        package = (
            await session.exec(
                select(Package)
                .where(Package.token_hash == wanted)
                .where(Package.status == LIVE)
                .with_for_update()
            )
        ).first()
        if package is None or not hmac.compare_digest(package.token_hash or "", wanted):
            return None
        found = await session.get_one(Ticket, package.ticket_id)
        ticket = await self.tickets.load_in(session, found.public_id, lock=True)
        now = self.clock.now()
        if package.expires_at is None or now >= package.expires_at:
            await end_package(session, self.tickets, ticket, package, "expired", now)
            return None
        return package, ticket

    def _page(
        self,
        package: Package,
        ticket: Ticket,
        state: Literal["code", "files"],
        files: list[PackageFile] | None = None,
        outcome: CodeOutcome | None = None,
    ) -> PackagePage:
        tz = self.settings.desk.tz
        assert package.expires_at is not None
        return PackagePage(
            state=state,
            ticket=ticket.public_id,
            lang=ticket.language,
            expires=package.expires_at.astimezone(tz).strftime("%Y-%m-%d %H:%M"),
            downloads_left=max(0, package.max_downloads - package.downloads),
            code_sent=package.code_hash is not None,
            attempts_left=max(0, self.settings.verification.max_attempts - package.wrong_codes),
            outcome=outcome,
            files=[{"id": f.id, "name": f.name, "bytes": f.size} for f in files or []],
        )

    def _in_session(self, package: Package, session_token: str) -> bool:
        if not session_token or package.session_hash is None:
            return False
        if package.session_expires_at is None or self.clock.now() >= package.session_expires_at:
            return False
        return hmac.compare_digest(package.session_hash, _session_hash(session_token))

    async def _audit(
        self, session: AsyncSession, ticket: Ticket, action: str, client: Client, **more: Any
    ) -> None:
        details = {"client": client.coarse, "at": self.clock.now(), **more}
        await self.tickets.note_in(session, ticket, ACTOR, action, details)

    # ---- the requester's steps -------------------------------------------------------------

    async def view(self, token: str, session_token: str, client: Client) -> PackagePage:
        page: PackagePage | None = None
        async with self.db.transaction() as session:
            found = await self._find(session, token)
            if found is not None:
                package, ticket = found
                opened = self._in_session(package, session_token)
                files = await _files(session, package) if opened else None
                await self._audit(
                    session, ticket, "package_viewed", client, package=package.id, opened=opened
                )
                page = self._page(package, ticket, "files" if opened else "code", files)
        if page is None:
            raise PackageUnavailable()
        return page

    async def send_code(self, token: str, client: Client) -> PackagePage:
        """A fresh code to the registered address (the one `deliver` checked), replacing any
        earlier one; the count of wrong codes is the link's, a new code does not reset it."""
        page: PackagePage | None = None
        async with self.db.transaction() as session:
            found = await self._find(session, token)
            if found is not None:
                package, ticket = found
                if package.code_mails >= self.settings.portal.max_code_mails:
                    page = self._page(package, ticket, "code", outcome="too_many")
                else:
                    to = await self.packages.code_address(session, ticket)
                    code = f"{secrets.randbelow(10**6):06d}"
                    ttl = self.settings.verification.code_ttl_minutes
                    package.code_hash = self._code_hash(package, code)
                    package.code_expires_at = self.clock.now() + dt.timedelta(minutes=ttl)
                    package.code_mails += 1
                    session.add(package)
                    requester = await session.get_one(Requester, ticket.requester_id)
                    await self.outbox.enqueue(
                        session,
                        ticket=ticket,
                        kind="package_code",
                        to=to,  # the registered address, whoever opened the link
                        lang=ticket.language or requester.language,
                        context={"code": code, "ttl_minutes": ttl},
                    )
                    await self._audit(
                        session,
                        ticket,
                        "package_code_sent",
                        client,
                        package=package.id,
                        mail=package.code_mails,
                    )
                    page = self._page(package, ticket, "code", outcome="sent")
        if page is None:
            raise PackageUnavailable()
        return page

    def _code_hash(self, package: Package, code: str) -> str:
        # Bound to the package and to this link: a code opens nothing else.
        message = f"package-code:{package.id}:{package.token_hash}:{code}".encode()
        return hmac.new(self._key, message, hashlib.sha256).hexdigest()

    async def check_code(
        self, token: str, code: str, client: Client
    ) -> tuple[PackagePage, str | None]:
        """(the page, a session token when the code was right). Five wrong codes lock the
        link; the DPO delivers it again (a new link) if the requester asks."""
        result: tuple[PackagePage, str | None] | None = None
        async with self.db.transaction() as session:
            found = await self._find(session, token)
            if found is not None:
                result = await self._check(session, *found, code, client)
        if result is None:
            raise PackageUnavailable()
        return result

    async def _check(
        self, session: AsyncSession, package: Package, ticket: Ticket, code: str, client: Client
    ) -> tuple[PackagePage, str | None]:
        now = self.clock.now()
        limit = self.settings.verification.max_attempts
        if package.code_hash is None or package.code_expires_at is None:
            return self._page(package, ticket, "code", outcome="no_code"), None
        # Full-width digits (a Chinese input method), "756 680": the code as it looks.
        typed = _CODE.match(re.sub(r"[\s\-]", "", unicodedata.normalize("NFKC", code)))
        given = self._code_hash(package, typed.group(1) if typed else "-")
        right = hmac.compare_digest(given, package.code_hash)  # compared even when expired
        if now >= package.code_expires_at:
            package.code_hash = package.code_expires_at = None
            session.add(package)
            await self._audit(session, ticket, "package_code_expired", client, package=package.id)
            return self._page(package, ticket, "code", outcome="expired"), None
        if right:
            session_token = secrets.token_urlsafe(32)
            package.code_hash = package.code_expires_at = None
            package.session_hash = _session_hash(session_token)
            package.session_expires_at = now + dt.timedelta(
                minutes=self.settings.portal.session_minutes
            )
            first = package.opened_at is None
            package.opened_at = package.opened_at or now
            session.add(package)
            await self._audit(
                session, ticket, "package_opened", client, package=package.id, first=first
            )
            files = await _files(session, package)
            return self._page(package, ticket, "files", files, outcome="right"), session_token
        package.wrong_codes += 1
        locked = package.wrong_codes >= limit
        if locked:
            package.status = "locked"
            package.code_hash = package.code_expires_at = None
            package.token_hash = None
            package.session_hash = package.session_expires_at = None
        session.add(package)
        await self._audit(
            session,
            ticket,
            "package_code_wrong",
            client,
            package=package.id,
            wrong=package.wrong_codes,
            locked=locked,
        )
        if locked:
            ticket.needs_review = True
            session.add(ticket)
        return self._page(package, ticket, "code", outcome="locked" if locked else "wrong"), None

    async def download(
        self, token: str, session_token: str, file_id: int | None, client: Client
    ) -> Download:
        """One file (`file_id`) or all as a ZIP (None). Counted before it is sent; the last
        allowed download deletes the files in the same transaction."""
        taken: tuple[int, bytes, list[PackageFile]] | None = None
        async with self.db.transaction() as session:
            found = await self._find(session, token)
            if found is not None:
                package, ticket = found
                taken = await self._take(session, package, ticket, session_token, file_id, client)
        if taken is None:
            raise PackageUnavailable()
        package_id, wrapped, files = taken
        return await self.cpu.run(_open_files, self.packages, package_id, wrapped, files)

    async def _take(
        self,
        session: AsyncSession,
        package: Package,
        ticket: Ticket,
        session_token: str,
        file_id: int | None,
        client: Client,
    ) -> tuple[int, bytes, list[PackageFile]] | None:
        if not self._in_session(package, session_token):
            return None
        files = await _files(session, package)
        chosen = files if file_id is None else [f for f in files if f.id == file_id]
        if not chosen or package.wrapped_key is None or package.downloads >= package.max_downloads:
            return None
        for row in chosen:  # detached copies: end_package clears the rows' sealed bytes
            session.expunge(row)
        now = self.clock.now()
        package.downloads += 1
        package.last_download_at = now
        session.add(package)
        wrapped = package.wrapped_key
        await self._audit(
            session,
            ticket,
            "package_downloaded",
            client,
            package=package.id,
            file="(all, zip)" if file_id is None else chosen[0].name,
            download=package.downloads,
            of=package.max_downloads,
        )
        if package.downloads >= package.max_downloads:
            await end_package(session, self.tickets, ticket, package, "exhausted", now)
        return _id(package), wrapped, chosen


def _session_hash(session_token: str) -> str:
    return hashlib.sha256(f"package-session:{session_token}".encode()).hexdigest()


async def _files(session: AsyncSession, package: Package) -> list[PackageFile]:
    found = await session.exec(
        select(PackageFile)
        .where(PackageFile.package_id == package.id)
        .where(col(PackageFile.sealed).is_not(None))
        .order_by(col(PackageFile.id))
    )
    return list(found.all())


def _open_files(
    packages: PackageService, package_id: int, wrapped: bytes, files: list[PackageFile]
) -> Download:
    """In the CPU pool: unwrap the key, unseal, and zip when there are several."""
    key = packages.key().unwrap(package_id, wrapped)
    opened = [
        (f.name, f.content_type, unseal(key, package_id, f.sha256, f.nonce, f.sealed or b""))
        for f in files
    ]
    if len(opened) == 1:
        name, content_type, content = opened[0]
        return Download(name, content_type, content)
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        seen: set[str] = set()
        for name, _, content in opened:
            unique = name
            while unique in seen:
                unique = f"_{unique}"
            seen.add(unique)
            archive.writestr(unique, content)
    return Download("package.zip", "application/zip", buffer.getvalue())


def _id(row: Package) -> int:
    assert row.id is not None
    return row.id
