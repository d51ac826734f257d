"""The SMTP door: mail for the privacy addresses, answered 250 only once it is durable.

Runs aiosmtpd inside the service's own event loop. Refuses other recipients (never an open
relay), refuses oversized mail with 552, offers STARTTLS when a certificate is configured, and
answers 451 (try again later) whenever the message could not be stored: the sender keeps it.

Limits (`[smtp]`, each a case a hostile client showed): lines of any length in mail under the
size limit; at most `max_recipients` RCPT TO a message (452 beyond); at most `max_connections`
sessions at once, and at most `max_connections_per_client` from one client address (an IPv6
client by its /64), 421 at the greeting beyond; a session lasts at most `session_seconds`,
NOOPs or not; `idle_seconds` without a command (before the first one or between two) and
`timeout_seconds` for a DATA end in 421. Every 4xx makes a real MTA retry later; nothing here
is a permanent refusal of a message that fits.
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import ssl
import time
from collections import Counter
from typing import Any

from aiosmtpd.smtp import SMTP, Envelope, Session, syntax

from intake.mail import OFFLOAD_OVER_BYTES, clean_text, mail_delivery
from rightsdesk.config_sections import MailSettings, SmtpSettings
from rightsdesk.offload import CpuPool
from rightsdesk.pipeline import Delivery, Inbox

log = logging.getLogger("rightsdesk.smtp")

TEMPORARY_FAILURE = "451 4.3.0 Temporary failure storing the message, please retry"
TOO_MANY_RECIPIENTS = "452 4.5.3 Too many recipients"
TOO_MANY_CONNECTIONS = "421 4.7.0 {host} Too many connections, try again later"
SESSION_TOO_LONG = "421 4.4.2 {host} Session too long, closing"
TIMED_OUT = "421 4.4.2 {host} Timeout, closing"
TOO_BIG = "552 5.3.4 Message too big"
LOG_REFUSALS_EVERY = 60.0  # seconds between two log lines about refused sessions


def client_key(peername: Any) -> str | None:
    """Whose connection it is, for the per-client limit: the IPv4 address, or the /64 of an
    IPv6 one (one subscriber has a whole /64, and could take a new address for each session)."""
    if not isinstance(peername, tuple) or not peername:
        return None  # a Unix socket: no client address to count
    try:
        address = ipaddress.ip_address(str(peername[0]).split("%")[0])
    except ValueError:
        return str(peername[0])
    if isinstance(address, ipaddress.IPv6Address):
        if address.ipv4_mapped is not None:
            return str(address.ipv4_mapped)
        return str(ipaddress.IPv6Network((address, 64), strict=False))
    return str(address)


class PrivacyMailHandler:
    """aiosmtpd handler: the protocol hooks, each small; storage is the Inbox's job."""

    def __init__(
        self,
        inbox: Inbox,
        addresses: list[str],
        max_recipients: int = 100,
        cpu: CpuPool | None = None,
    ) -> None:
        self.inbox = inbox
        self.addresses = {a.strip().lower() for a in addresses}
        # RFC 5321 4.5.1: every SMTP server takes mail for "postmaster", bare or at its domains.
        # Here that is mail to the desk: it goes to the first privacy address.
        self.postmaster = addresses[0].strip().lower() if addresses else None
        self.postmasters = {"postmaster"} | {
            "postmaster@" + a.rpartition("@")[2] for a in self.addresses if "@" in a
        }
        self.max_recipients = max_recipients
        self.cpu = cpu

    async def handle_RCPT(
        self, server: SMTP, session: Session, envelope: Envelope, address: str, options: Any
    ) -> str:
        wanted = address.strip().lower()
        if wanted in self.postmasters and wanted not in self.addresses and self.postmaster:
            address = self.postmaster
        elif wanted not in self.addresses:
            return "550 5.1.1 No such mailbox here (this server only receives privacy requests)"
        if len(envelope.rcpt_tos) >= self.max_recipients:
            return TOO_MANY_RECIPIENTS  # RFC 5321 4.5.3.1.10: the client sends the rest later
        envelope.rcpt_tos.append(address)
        return "250 2.1.5 OK"

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        raw = envelope.original_content or envelope.content
        if not isinstance(raw, bytes):
            raw = str(raw).encode("utf-8", errors="surrogateescape")
        # The envelope goes into text columns: no NUL, no undecodable bytes (PostgreSQL).
        envelope_from = clean_text((envelope.mail_from or "")[:320])
        envelope_to = [clean_text(a.lower()) for a in envelope.rcpt_tos]
        delivery: Delivery
        if self.cpu is not None and len(raw) > OFFLOAD_OVER_BYTES:
            delivery = await self.cpu.run(mail_delivery, raw, envelope_from, envelope_to)
        else:
            delivery = mail_delivery(raw, envelope_from, envelope_to)
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
    """aiosmtpd's SMTP with the door's limits. (It overrides `_timeout_cb` and
    `_handle_client`, aiosmtpd 1.4's; tests/test_hostile_smtp.py checks each limit.)"""

    def __init__(self, handler: PrivacyMailHandler, receiver: SmtpReceiver, **kwargs: Any) -> None:
        # RFC 5321 allows 1000 octets a line, but real clients send longer (one-line HTML,
        # bare-LF mail, which is one "line" to the end): any line of mail under the size limit
        # is accepted. Set before aiosmtpd builds its StreamReader, whose buffer limit it is.
        size_limit: int = kwargs["data_size_limit"]
        self.line_length_limit = size_limit + 1024
        self.receiver = receiver
        self._counted = False
        self._client: str | None = None
        self._over_capacity = False
        self._lifetime: asyncio.TimerHandle | None = None
        super().__init__(handler, **kwargs)

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        if not self._counted:  # not again for the same session after STARTTLS
            self._counted = True
            self._client = client_key(transport.get_extra_info("peername"))
            self._over_capacity = not self.receiver.admit(self._client)
            self._lifetime = self.loop.call_later(
                self.receiver.settings.session_seconds, self._close_with, SESSION_TOO_LONG
            )
        super().connection_made(transport)

    def connection_lost(self, error: Exception | None) -> None:
        if self._counted:
            self._counted = False
            self.receiver.release(self._client)
        if self._lifetime is not None:
            self._lifetime.cancel()
        super().connection_lost(error)

    async def _handle_client(self) -> None:
        if self._over_capacity:
            await self.push(TOO_MANY_CONNECTIONS.format(host=self.hostname))
            if self.transport is not None:
                self.transport.close()
            return
        await super()._handle_client()

    @syntax("DATA")
    async def smtp_DATA(self, arg: str) -> None:
        # The idle limit is short, for silence between commands; a message takes longer to
        # send (and to store): the DATA has `timeout_seconds`, then the idle limit again.
        self._reset_timeout(self.receiver.settings.timeout_seconds)
        try:
            await super().smtp_DATA(arg)
        finally:
            if self.transport is not None:
                self._reset_timeout()

    def _timeout_cb(self) -> None:
        # aiosmtpd closes without a word; a 421 tells the client to try again (RFC 5321 3.8).
        self._close_with(TIMED_OUT)

    def _close_with(self, reply: str) -> None:
        if self.transport is not None and not self.transport.is_closing():
            assert isinstance(self.transport, asyncio.WriteTransport)
            self.transport.write(reply.format(host=self.hostname).encode("ascii") + b"\r\n")
            self.transport.close()  # after the reply is written

    async def push(self, status: Any) -> None:
        # aiosmtpd answers a line over its buffer with a permanent "500 Line too long". The
        # buffer is larger than the size limit, so such a message is too big: say so.
        if isinstance(status, str) and status.startswith("500 Line too long"):
            status = TOO_BIG
        await super().push(status)


class SmtpReceiver:
    def __init__(
        self,
        settings: SmtpSettings,
        mail: MailSettings,
        inbox: Inbox,
        addresses: list[str],
        cpu: CpuPool | None = None,
    ) -> None:
        self.settings = settings
        self.mail = mail
        self.handler = PrivacyMailHandler(inbox, addresses, settings.max_recipients, cpu)
        self.sessions = 0  # open SMTP connections
        self.per_client: Counter[str] = Counter()  # open connections by client_key
        self.refused = 0  # sessions refused at the greeting, since the start
        self._unlogged = 0  # refused since the last log line
        self._logged_at = -LOG_REFUSALS_EVERY
        self._server: asyncio.Server | None = None

    def admit(self, client: str | None) -> bool:
        """Count a new connection; False if it is over a limit (it is counted all the same,
        until it is closed, and released by `release`)."""
        over_all = self.sessions >= self.settings.max_connections
        from_client = self.per_client[client] if client is not None else 0
        over_client = from_client >= self.settings.max_connections_per_client
        self.sessions += 1
        if client is not None:
            self.per_client[client] += 1
        if over_all or over_client:
            self._log_refusal(from_client)
        return not (over_all or over_client)

    def release(self, client: str | None) -> None:
        self.sessions -= 1
        if client is not None:
            self.per_client[client] -= 1
            if self.per_client[client] <= 0:
                del self.per_client[client]

    def _log_refusal(self, from_client: int) -> None:
        # A flood is thousands of refusals a second: one line a minute at most, with counts;
        # never the client's address (logs carry no personal data).
        self.refused += 1
        self._unlogged += 1
        now = time.monotonic()
        if now - self._logged_at < LOG_REFUSALS_EVERY:
            return
        log.warning(
            "SMTP: refused %d session(s) at the greeting since the last report (%d open in all,"
            " limit %d; %d open from the last refused client, limit %d a client)",
            self._unlogged,
            self.sessions,
            self.settings.max_connections,
            from_client,
            self.settings.max_connections_per_client,
        )
        self._unlogged = 0
        self._logged_at = now

    def _tls_context(self) -> ssl.SSLContext | None:
        if not (self.settings.tls_cert_file and self.settings.tls_key_file):
            return None
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.load_cert_chain(self.settings.tls_cert_file, self.settings.tls_key_file)
        return context

    def _protocol(self) -> SMTP:
        return PrivacySMTP(
            self.handler,
            self,
            timeout=self.settings.idle_seconds,  # smtp_DATA has timeout_seconds
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
