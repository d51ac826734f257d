"""Response packages: what an access or portability request is answered with, delivered by a
link on the portal that opens only with a code mailed to the account's registered address.

    PackageService.add         files the DPO gathered (`tickets package ID --add FILE`)
    PackageService.deliver     seal summary, JSON, CSV; send the link (`tickets deliver`)
    PackageService.revoke      the link stops working; the files stay for a new delivery
    PackageService.status      what `tickets show` and the console's ticket page show
    PackageService.expire_due  the scheduler: expired links lose their files
    PackageService.check_resolve  an access/portability ticket is not resolved with nothing given

The requester's side (view, code, download) is `rightsdesk.package_access.PackageAccess`. Each
file is sealed with the package's own key (AES-256-GCM, rightsdesk.sealing), and that key is
stored only wrapped by the desk's package key (environment or file): the database and the data
folder hold no plaintext. The link's token (128 random bits) is stored as its SHA-256.
"""

from __future__ import annotations

import datetime as dt
import secrets
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from rightsdesk.config import ConfigError
from rightsdesk.desk_parts import DeskParts, OnDeskParts
from rightsdesk.filenames import safe_name
from rightsdesk.fulfilment import FulfilmentError, FulfilmentService
from rightsdesk.models import Account, ContactKind, Requester, RequestType, Ticket
from rightsdesk.models_fulfilment import FulfilmentStep, Package, PackageFile
from rightsdesk.offload import CpuPool
from rightsdesk.package_content import generated_files
from rightsdesk.package_rows import (
    LIVE,
    OPEN_STATES,
    PackageInput,
    content_type_of,
    end_package,
    package_line,
    package_view,
    sealed_row,
    token_hash,
)
from rightsdesk.sealing import PackageKey, SealingError
from rightsdesk.tickets import TicketError

ACTOR = "system:packages"
__all__ = [
    "LIVE",
    "OPEN_STATES",
    "Delivered",
    "PackageError",
    "PackageInput",
    "PackageService",
    "content_type_of",
    "end_package",
    "package_line",
    "package_view",
    "token_hash",
]
PACKAGE_TYPES = frozenset({RequestType.ACCESS, RequestType.PORTABILITY})
GENERATED_SOURCES = ("summary", "data")


# A delivered link that still opens; the others answer as if it never existed.
class PackageError(TicketError):
    """A package cannot be built, delivered or revoked; the message says why in one line."""


@dataclass(frozen=True)
class Delivered:
    """A delivery: the link (also in the message sent; only its hash is kept), its end."""

    public_id: str
    package_id: int
    link: str
    expires_at: dt.datetime
    max_downloads: int
    files: int


class PackageService(OnDeskParts):
    def __init__(
        self,
        parts: DeskParts,
        fulfilment: FulfilmentService,
        cpu: CpuPool,
    ) -> None:
        super().__init__(parts)
        self.fulfilment = fulfilment
        self.cpu = cpu
        self._key: PackageKey | None = None

    # ---- the desk's key --------------------------------------------------------------------

    @property
    def configured(self) -> bool:
        """Whether a package key is set (without one nothing is packaged)."""
        try:
            return bool(self.settings.secret("portal", "package_key"))
        except ConfigError:
            return False

    def key(self) -> PackageKey:
        if self._key is None:
            secret = self.settings.secret("portal", "package_key")
            if not secret:
                raise PackageError(
                    "no package key: set RIGHTSDESK_PORTAL__PACKAGE_KEY or portal.package_key_file "
                    "(packages are sealed with it; it is never read from the config file)"
                )
            try:
                self._key = PackageKey(secret)
            except SealingError as exc:
                raise PackageError(str(exc)) from None
        return self._key

    # ---- building --------------------------------------------------------------------------

    async def add(
        self,
        public_id: str,
        files: Sequence[PackageInput],
        note: str | None,
        actor: str,
    ) -> dict[str, Any]:
        """Add files (and the DPO's note for the summary) to the ticket's package, a new one
        unless there is one not yet delivered (a draft, or a revoked one whose files stay)."""
        key = self.key()
        if not files and not (note and note.strip()):
            raise PackageError("give at least one file (--add FILE) or a --note")
        async with self.db.transaction() as session:
            ticket = await self.tickets.load_in(session, public_id, lock=True)
            package = await self._open_package(session, ticket, actor)
            if note and note.strip():
                package.note = note.strip()
                session.add(package)
            package_id = _id(package)
            wrapped = package.wrapped_key
        assert wrapped is not None
        package_key = key.unwrap(package_id, wrapped)
        rows = [await self._sealed_row(package_key, package_id, f, actor) for f in files]
        async with self.db.transaction() as session:
            ticket = await self.tickets.load_in(session, public_id, lock=True)
            package = await session.get_one(Package, package_id, with_for_update=True)
            if package.status not in OPEN_STATES:
                raise PackageError(f"{public_id}: the package was delivered meanwhile; try again")
            await self._check_size(session, package_id, sum(r.size for r in rows))
            for row in rows:
                session.add(row)
            await self.tickets.note_in(
                session,
                ticket,
                actor,
                "package_files_added",
                {
                    "package": package_id,
                    "files": [
                        {"name": r.name, "bytes": r.size, "sha256": r.sha256, "source": r.source}
                        for r in rows
                    ],
                    "note": bool(note and note.strip()),
                },
            )
        found = await self.status(public_id)
        assert found is not None
        return found

    async def add_in(
        self, session: AsyncSession, ticket: Ticket, file: PackageInput, actor: str
    ) -> PackageFile:
        """One file into the ticket's open package, in the caller's transaction (a system
        owner's upload on the task page). Small files only: sealed on the loop."""
        package = await self._open_package(session, ticket, actor)
        assert package.wrapped_key is not None
        package_key = self.key().unwrap(_id(package), package.wrapped_key)
        row = sealed_row(package_key, _id(package), file, actor, self.clock.now())
        await self._check_size(session, _id(package), row.size)
        session.add(row)
        await self.tickets.note_in(
            session,
            ticket,
            actor,
            "package_files_added",
            {
                "package": package.id,
                "files": [{"name": row.name, "bytes": row.size, "sha256": row.sha256}],
                "source": row.source,
            },
        )
        return row

    async def take_task_file(
        self, session: AsyncSession, ticket: Ticket, file: Any, system: str
    ) -> bool:
        """The fulfilment task's file sink: an owner's upload goes straight into the ticket's
        package, sealed, so its plaintext is never written to the database. False without a
        package key (the task keeps it; `deliver` takes it later)."""
        if not self.configured:
            return False
        name = safe_name(file.name)
        await self.add_in(
            session,
            ticket,
            PackageInput(
                name, content_type_of(name, file.content_type), file.content, f"system:{system}"
            ),
            f"owner:{system}",
        )
        return True

    async def absorb_task_files(self, public_id: str) -> int:
        """Files the systems' owners uploaded (fulfilment tasks) move into the package, sealed;
        the plain copy on the task is removed. Returns how many moved."""
        if not self.configured:
            return 0
        async with self.db.transaction() as session:
            ticket = await self.tickets.load_in(session, public_id, lock=True)
            steps = (
                await session.exec(
                    select(FulfilmentStep)
                    .where(FulfilmentStep.ticket_id == ticket.id)
                    .where(col(FulfilmentStep.file_content).is_not(None))
                    .order_by(col(FulfilmentStep.id))
                    .with_for_update()
                )
            ).all()
            for step in steps:
                assert step.file_content is not None
                name = safe_name(step.file_name or f"{step.system}.bin")
                await self.add_in(
                    session,
                    ticket,
                    PackageInput(
                        name,
                        content_type_of(name, step.file_type),
                        step.file_content,
                        f"system:{step.system}",
                    ),
                    ACTOR,
                )
                step.file_content = None  # the sealed copy in the package is the one kept
                session.add(step)
            return len(steps)

    async def _open_package(self, session: AsyncSession, ticket: Ticket, actor: str) -> Package:
        found = (
            await session.exec(
                select(Package)
                .where(Package.ticket_id == ticket.id)
                .where(col(Package.status).in_(OPEN_STATES))
                .where(col(Package.files_deleted_at).is_(None))
                .order_by(col(Package.id).desc())
                .with_for_update()
            )
        ).first()
        if found is not None:
            return found
        if (await self._live(session, ticket)) is not None:
            raise PackageError(
                f"{ticket.public_id}: a package is delivered and its link works; "
                f"`rightsdesk tickets revoke-link {ticket.public_id}` first to change it"
            )
        package = Package(ticket_id=_id(ticket), created_at=self.clock.now(), created_by=actor)
        session.add(package)
        await session.flush()
        _, package.wrapped_key = self.key().new_package_key(_id(package))
        session.add(package)
        await self.tickets.note_in(
            session, ticket, actor, "package_created", {"package": package.id}
        )
        return package

    async def _sealed_row(
        self, package_key: bytes, package_id: int, file: PackageInput, actor: str
    ) -> PackageFile:
        """Sealing runs in the CPU pool: a large file takes milliseconds of AES."""
        return await self.cpu.run(
            sealed_row, package_key, package_id, file, actor, self.clock.now()
        )

    async def _check_size(self, session: AsyncSession, package_id: int, adding: int) -> None:
        sizes = (
            await session.exec(select(PackageFile.size).where(PackageFile.package_id == package_id))
        ).all()
        cap = self.settings.portal.max_package_bytes
        if sum(sizes) + adding > cap:
            raise PackageError(f"the package would hold more than {cap:,} bytes")

    # ---- delivering ------------------------------------------------------------------------

    async def deliver(self, public_id: str, actor: str) -> Delivered:
        """Seal the summary page, the data as JSON and CSV (from the files and the fulfilment
        export), and send the requester a link on the ticket's channel. A new link each time:
        delivering again replaces the old link (which stops working)."""
        base = self.settings.portal.base_url
        if not base.startswith(("https://", "http://")):
            raise PackageError(
                "portal.public_base_url is not set (e.g. https://privacy.example.com): the link "
                "must name the address requesters open"
            )
        key = self.key()
        await self.absorb_task_files(public_id)
        try:
            export = await self.fulfilment.export(public_id)
        except FulfilmentError:
            export = {"systems": {}}
        if export["systems"]:  # the fulfilment export alone makes a package
            async with self.db.transaction() as session:
                ticket = await self.tickets.load_in(session, public_id, lock=True)
                self._check_deliverable(ticket)
                await self.code_address(session, ticket)
                if await self._live(session, ticket) is None:
                    await self._open_package(session, ticket, actor)
        async with self.db.reading() as session:
            ticket = await self.tickets.load_in(session, public_id)
            self._check_deliverable(ticket)
            await self.code_address(session, ticket)  # refuses now, not when the code is asked
            package = await self._deliverable_package(session, ticket)
            files = (
                await session.exec(
                    select(PackageFile)
                    .where(PackageFile.package_id == package.id)
                    .where(col(PackageFile.source).not_in(GENERATED_SOURCES))
                    .order_by(col(PackageFile.id))
                )
            ).all()
        assert package.wrapped_key is not None
        package_id = _id(package)
        package_key = key.unwrap(package_id, package.wrapped_key)
        generated = generated_files(
            self.outbox.templates,
            ticket,
            package.note,
            list(files),
            export,
            self.settings,
            self.clock.now(),
        )
        if not files and not export["systems"]:
            raise PackageError(
                f"{public_id}: the package is empty; add files (`tickets package {public_id} "
                "--add FILE`) or run the fulfilment export first"
            )
        rows = [await self._sealed_row(package_key, package_id, g, ACTOR) for g in generated]
        token = secrets.token_urlsafe(16)  # 128 bits
        now = self.clock.now()
        portal = self.settings.portal
        expires = now + dt.timedelta(days=portal.link_days)
        link = f"{base}/p/{token}"
        async with self.db.transaction() as session:
            ticket = await self.tickets.load_in(session, public_id, lock=True)
            package = await session.get_one(Package, package_id, with_for_update=True)
            if package.status not in OPEN_STATES or package.files_deleted_at:
                raise PackageError(f"{public_id}: the package changed meanwhile; try again")
            old = (
                await session.exec(
                    select(PackageFile)
                    .where(PackageFile.package_id == package_id)
                    .where(col(PackageFile.source).in_(GENERATED_SOURCES))
                )
            ).all()
            for each in old:
                await session.delete(each)
            for row in rows:
                session.add(row)
            package.status = LIVE
            package.token_hash = token_hash(token)
            package.delivered_at = now
            package.delivered_by = actor
            package.deliveries += 1
            package.expires_at = expires
            package.max_downloads = portal.max_downloads
            package.downloads = 0
            package.opened_at = package.last_download_at = None
            package.code_hash = package.code_expires_at = None
            package.code_mails = package.wrong_codes = 0
            package.session_hash = package.session_expires_at = None
            session.add(package)
            requester = await session.get_one(Requester, ticket.requester_id)
            await self.outbox.tell_requester(
                session,
                ticket=ticket,
                kind="package_ready",
                lang=ticket.language or requester.language,
                to_name=requester.name,
                context={
                    "link": link,
                    "expires": expires.astimezone(self.settings.desk.tz).date().isoformat(),
                    "max_downloads": portal.max_downloads,
                },
            )
            await self.tickets.note_in(
                session,
                ticket,
                actor,
                "package_delivered",
                {
                    "package": package_id,
                    "delivery": package.deliveries,
                    "expires_at": expires,
                    "max_downloads": portal.max_downloads,
                    "files": len(files) + len(rows),
                    "channel": ticket.contact_kind,
                },
            )
        return Delivered(
            public_id, package_id, link, expires, portal.max_downloads, len(files) + len(rows)
        )

    def _check_deliverable(self, ticket: Ticket) -> None:
        if ticket.verification != "verified":
            raise PackageError(
                f"{ticket.public_id}: the requester's identity is not verified; a copy of their "
                "data goes only to a verified requester"
            )

    async def _deliverable_package(self, session: AsyncSession, ticket: Ticket) -> Package:
        found = (
            await session.exec(
                select(Package)
                .where(Package.ticket_id == ticket.id)
                .where(col(Package.files_deleted_at).is_(None))
                .order_by(col(Package.id).desc())
            )
        ).first()
        if found is None:
            raise PackageError(
                f"{ticket.public_id}: no package yet (`rightsdesk tickets package "
                f"{ticket.public_id} --add FILE`)"
            )
        if found.status == LIVE:
            raise PackageError(
                f"{ticket.public_id}: the package is delivered and its link works; "
                f"`rightsdesk tickets revoke-link {ticket.public_id}` first to deliver it again"
            )
        if found.status not in OPEN_STATES:
            raise PackageError(f"{ticket.public_id}: the package is {found.status}")
        return found

    async def code_address(self, session: AsyncSession, ticket: Ticket) -> str:
        """Where the link's codes go: the account's registered email; for a requester the
        DPO verified without an account, the address the request came from (by mail)."""
        requester = await session.get_one(Requester, ticket.requester_id)
        if requester.account_id:
            account = await session.get(Account, requester.account_id)
            if account is not None and account.email:
                return account.email
        if ticket.contact_kind == ContactKind.EMAIL:
            return ticket.contact_value
        raise PackageError(
            f"{ticket.public_id}: no registered email to send the link's code to (the requester "
            "has no linked account); verify them by code first"
        )

    async def revoke(self, public_id: str, actor: str, reason: str) -> None:
        """The link stops working at once; the files stay, so the package can be delivered
        again (a new link)."""
        if not reason.strip():
            raise PackageError("say why the link is revoked (--reason)")
        async with self.db.transaction() as session:
            ticket = await self.tickets.load_in(session, public_id, lock=True)
            package = await self._live(session, ticket, lock=True)
            if package is None:
                raise PackageError(f"{public_id}: no delivered link works now")
            package.status = "revoked"
            package.token_hash = None
            package.session_hash = package.session_expires_at = None
            session.add(package)
            await self.tickets.note_in(
                session,
                ticket,
                actor,
                "package_revoked",
                {"package": package.id, "reason": reason.strip()},
            )

    async def _live(
        self, session: AsyncSession, ticket: Ticket, *, lock: bool = False
    ) -> Package | None:
        query = (
            select(Package)
            .where(Package.ticket_id == ticket.id)
            .where(Package.status == LIVE)
            .order_by(col(Package.id).desc())
        )
        return (await session.exec(query.with_for_update() if lock else query)).first()

    # ---- ending ----------------------------------------------------------------------------

    async def expire_due(self) -> list[str]:
        """Delivered links past their expiry: marked expired and their files deleted. Returns
        the tickets. Safe to run as often as wanted (the scheduler's `packages` job)."""
        now = self.clock.now()
        async with self.db.reading() as session:
            due = (
                await session.exec(
                    select(Package.id)
                    .where(Package.status == LIVE)
                    .where(col(Package.expires_at) <= now)
                )
            ).all()
        done = []
        for package_id in due:
            async with self.db.transaction() as session:
                package = await session.get_one(Package, package_id, with_for_update=True)
                if package.status != LIVE or package.expires_at is None:
                    continue
                ticket = await session.get_one(Ticket, package.ticket_id)
                await end_package(session, self.tickets, ticket, package, "expired", now)
                done.append(ticket.public_id)
        return done

    # ---- reading ---------------------------------------------------------------------------

    async def status(self, public_id: str) -> dict[str, Any] | None:
        """The ticket's newest package: its state and files (no content), for `tickets show`,
        `--json` and the console's ticket page (`line` is that page's one line)."""
        async with self.db.reading() as session:
            ticket = await self.tickets.load_in(session, public_id)
            package = (
                await session.exec(
                    select(Package)
                    .where(Package.ticket_id == ticket.id)
                    .order_by(col(Package.id).desc())
                )
            ).first()
            if package is None:
                return None
            files = (
                await session.exec(
                    select(PackageFile)
                    .where(PackageFile.package_id == package.id)
                    .order_by(col(PackageFile.id))
                )
            ).all()
        return package_view(package, list(files), self.settings.desk.tz)

    async def check_resolve(
        self, session: AsyncSession, ticket: Ticket, without_package: str | None
    ) -> dict[str, Any] | None:
        """Answers.resolve's guard: an access or portability ticket is resolved only once a
        package was delivered, or with the DPO's reason why not (returned for the audit)."""
        if not PACKAGE_TYPES & set(ticket.types):
            return None
        delivered = (
            await session.exec(
                select(Package.id)
                .where(Package.ticket_id == ticket.id)
                .where(col(Package.delivered_at).is_not(None))
                .limit(1)
            )
        ).first()
        if delivered is not None:
            return None
        if without_package is None or not without_package.strip():
            raise PackageError(
                f"{ticket.public_id} asks for a copy of the requester's data and no package was "
                f"delivered: `rightsdesk tickets deliver {ticket.public_id}` first, or resolve "
                'with --without-package "why nothing is given"'
            )
        return {"without_package": without_package.strip()}


def _id(row: Package | Ticket) -> int:
    assert row.id is not None
    return row.id
