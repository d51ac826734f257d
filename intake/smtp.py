"""The SMTP door: mail for the privacy addresses, answered 250 only once it is durable.

Runs aiosmtpd inside the service's own event loop. Refuses other recipients (never an open
relay), refuses oversized mail with 552, offers STARTTLS when a certificate is configured, and
answers 451 (try again later) whenever the message could not be stored: the sender keeps it.
"""

from __future__ import annotations

import asyncio
import logging
import ssl
from typing import Any

from aiosmtpd.smtp import SMTP, Envelope, Session

from intake.mail import mail_delivery
from rightsdesk.config import MailSettings, SmtpSettings
from rightsdesk.pipeline import Inbox

log = logging.getLogger("rightsdesk.smtp")

TEMPORARY_FAILURE = "451 4.3.0 Temporary failure storing the message, please retry"


class PrivacyMailHandler:
    """aiosmtpd handler: the protocol hooks, each small; storage is the Inbox's job."""

    def __init__(self, inbox: Inbox, addresses: list[str]) -> None:
        self.inbox = inbox
        self.addresses = {a.strip().lower() for a in addresses}

    async def handle_RCPT(
        self, server: SMTP, session: Session, envelope: Envelope, address: str, options: Any
    ) -> str:
        if address.strip().lower() not in self.addresses:
            return "550 5.1.1 No such mailbox here (this server only receives privacy requests)"
        envelope.rcpt_tos.append(address)
        return "250 2.1.5 OK"

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        raw = envelope.original_content or envelope.content
        if not isinstance(raw, bytes):
            raw = str(raw).encode("utf-8", errors="surrogateescape")
        delivery = mail_delivery(
            raw,
            envelope_from=(envelope.mail_from or "")[:320],
            envelope_to=[a.lower() for a in envelope.rcpt_tos],
        )
        try:
            accepted = await self.inbox.accept(delivery)
        except Exception as exc:
            log.error("could not store a message: %s", type(exc).__name__)
            return TEMPORARY_FAILURE
        return f"250 2.0.0 OK stored as #{accepted.message_row_id}"

    async def handle_exception(self, error: Exception) -> str:
        # aiosmtpd's default answers 500, a permanent failure: the sender would drop the mail.
        log.error("SMTP session error: %s", type(error).__name__)
        return TEMPORARY_FAILURE


class PrivacySMTP(SMTP):
    # RFC 5321 allows 1000 octets a line, but real clients send longer (unwrapped HTML):
    # refusing them would lose requests, so the limit is the message size limit's business.
    line_length_limit = 1 << 20


class SmtpReceiver:
    def __init__(
        self, settings: SmtpSettings, mail: MailSettings, inbox: Inbox, addresses: list[str]
    ) -> None:
        self.settings = settings
        self.mail = mail
        self.handler = PrivacyMailHandler(inbox, addresses)
        self._server: asyncio.Server | None = None

    def _tls_context(self) -> ssl.SSLContext | None:
        if not (self.settings.tls_cert_file and self.settings.tls_key_file):
            return None
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.load_cert_chain(self.settings.tls_cert_file, self.settings.tls_key_file)
        return context

    def _protocol(self) -> SMTP:
        return PrivacySMTP(
            self.handler,
            hostname=self.settings.hostname,  # without it aiosmtpd calls a blocking getfqdn()
            ident="rightsdesk",
            data_size_limit=self.mail.max_message_bytes,
            enable_SMTPUTF8=True,
            decode_data=False,
            tls_context=self._tls_context(),
            require_starttls=False,
        )

    async def start(self) -> None:
        loop = asyncio.get_running_loop()
        self._server = await loop.create_server(
            self._protocol, host=self.settings.host, port=self.settings.port
        )
        log.info("SMTP receiver listening on %s:%d", self.settings.host, self.port)

    @property
    def port(self) -> int:
        assert self._server is not None
        assert self._server.sockets
        return int(self._server.sockets[0].getsockname()[1])

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
            self._server = None
