"""A real portal server for the portal's HTTP and browser tests: the console's test harness
(tests/console_server.py: its own thread and loop, a real database, a frozen clock, `call`),
serving the portal instead, with a classifier that reads the form's words."""

from __future__ import annotations

import asyncio
import datetime as dt
import re
from dataclasses import dataclass
from typing import Any

import httpx
from sqlmodel import col, select

from portal.app import build_portal
from portal.server import PortalServer
from rightsdesk.config import Settings
from rightsdesk.models import Account, Channel, Message, OutboxEntry, Requester, RequestType
from rightsdesk.packages import PackageInput
from rightsdesk.pipeline import Classification
from rightsdesk.service import Desk, portal_core
from rightsdesk.tickets import Contact, NewTicket
from tests.console_server import ConsoleUnderTest

PACKAGE_KEY = "k" * 16 + "test-package-key-of-the-portal-tests"


@dataclass
class WordsClassifier:
    """Stands in for the model: "copy"/"副本" asks for access, anything else is a question."""

    def classify(self, subject: str, text: str) -> Classification:
        wanted = [RequestType.ACCESS] if ("副本" in text or "copy" in text) else []
        return Classification(
            types=wanted or [RequestType.INQUIRY], needs_review=not wanted, language="zh"
        )


class PortalUnderTest(ConsoleUnderTest):
    def start(self) -> PortalUnderTest:
        super().start()
        return self

    async def _serve(self) -> None:
        self.loop = asyncio.get_running_loop()
        self._stop = asyncio.Event()
        desk = Desk.build(self.settings, self.clock, classifier=WordsClassifier())
        self.desk = desk
        try:
            await desk.db.migrate()
            server = PortalServer(self.settings.portal, build_portal(portal_core(desk)))
            self.port = server.bind()
            self._ready.set()
            await server.run(self._stop)
        finally:
            await desk.close()

    def client(
        self, local_address: str | None = None, forwarded_for: str | None = None
    ) -> httpx.Client:
        made = super().client(local_address, forwarded_for)
        made.follow_redirects = False
        return made

    # ---- setting up the desk -----------------------------------------------------------------

    def verified_access_ticket(self, email: str, account_id: str, *, registered: str = "") -> str:
        """An access ticket from `email`, its requester proven to hold account `account_id`
        (registered at `registered`, else the same address)."""

        async def work(desk: Desk) -> str:
            async with desk.db.transaction() as session:
                if await session.get(Account, account_id) is None:
                    session.add(Account(id=account_id, email=registered or email))
            ticket = await desk.tickets.open(
                NewTicket(
                    channel=Channel.EMAIL,
                    contact=Contact.email(email),
                    types=[RequestType.ACCESS],
                    received_at=self.clock.now(),
                    subject="copy of my data",
                    language="en",
                ),
                actor="test",
            )
            await desk.tickets.mark_verified(ticket.public_id, "cli:dpo", "code by phone")
            async with desk.db.transaction() as session:
                requester = await session.get_one(Requester, ticket.requester_id)
                requester.account_id = account_id  # what a code to the account records
                session.add(requester)
            return ticket.public_id

        return self.call(work)

    def package(self, public_id: str, *files: tuple[str, bytes], note: str | None = None) -> Any:
        inputs = [PackageInput(name, "", content) for name, content in files]
        return self.call(lambda d: d.packages.add(public_id, inputs, note, "cli:dpo"))

    def deliver(self, public_id: str) -> str:
        """The link (read back from the message sent, as the requester would)."""
        done = self.call(lambda d: d.packages.deliver(public_id, "cli:dpo"))
        return str(done.link)

    def mails(self, kind: str) -> list[tuple[str, str]]:
        """(recipient, text) of every queued mail of a kind, oldest first."""

        async def work(desk: Desk) -> list[tuple[str, str]]:
            async with desk.db.reading() as session:
                found = await session.exec(
                    select(OutboxEntry.recipient, Message.text)
                    .join(Message, col(Message.id) == col(OutboxEntry.message_id))
                    .where(OutboxEntry.kind == kind)
                    .order_by(col(OutboxEntry.id))
                )
                return [(r, t or "") for r, t in found.all()]

        return self.call(work)

    def last_code(self, kind: str) -> tuple[str, str]:
        """(recipient, code) of the newest mail of a kind that carries a code."""
        recipient, text = self.mails(kind)[-1]
        found = re.search(r"(?<!\d)(\d{6})(?!\d)", re.sub(r"PRIV-\d{4}-\d+", "", text))
        assert found is not None, text
        return recipient, found.group(1)

    def advance(self, delta: dt.timedelta) -> None:
        self.clock.advance(delta)


def portal_settings(
    database_url: str, folder: Any, systems: list[dict[str, Any]] | None = None, **portal: Any
) -> Settings:
    return Settings(
        systems=systems or [],
        database={"url": database_url},
        desk={"data_dir": folder / "var"},
        outbound={"outbox_dir": folder / "var" / "outbox"},
        classifier={"enabled": False},
        console={"enabled": False},
        portal={
            "port": 0,
            "public_base_url": "http://portal.test",
            "package_key": PACKAGE_KEY,
            **portal,
        },
        scheduler={"enabled": False},
    )


def csrf_of(page: str) -> str:
    found = re.search(r'name="csrf" value="([^"]+)"', page)
    assert found is not None, page
    return found.group(1)


def path_of(link: str) -> str:
    return link.removeprefix("http://portal.test")
