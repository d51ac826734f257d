"""Unforgeable Message-IDs for the mail we send, so that replies find their ticket.

An id looks like `rd.PRIV-2026-000001.<nonce>.<mac>@<our domain>`; the MAC is an HMAC-SHA256
over the ticket id and the nonce. A reply that quotes it in In-Reply-To/References threads into
that ticket; someone who merely knows a ticket id cannot make one up.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import os
import re
import secrets
from pathlib import Path

from rightsdesk.config import Settings

_OUR_ID = re.compile(r"^rd\.(PRIV-\d{4}-\d{6,})\.([0-9a-f]{16})\.([0-9a-f]{24})@(.+)$")
KEY_FILE_NAME = "signing.key"


class MessageIdSigner:
    def __init__(self, key: bytes, domain: str) -> None:
        if len(key) < 16:
            raise ValueError("the signing key must be at least 16 bytes")
        self._key = key
        self.domain = domain.lower()

    def _mac(self, public_id: str, nonce: str) -> str:
        digest = hmac.new(self._key, f"{public_id}.{nonce}".encode(), hashlib.sha256)
        return digest.hexdigest()[:24]

    def new_message_id(self, public_id: str) -> str:
        """A fresh Message-ID (without angle brackets) that names `public_id`."""
        nonce = secrets.token_hex(8)
        return f"rd.{public_id}.{nonce}.{self._mac(public_id, nonce)}@{self.domain}"

    def ticket_of(self, message_id: str) -> str | None:
        """The ticket a Message-ID of ours names, or None if it is not ours (or forged)."""
        found = _OUR_ID.match(message_id.strip().strip("<>"))
        if not found:
            return None
        public_id, nonce, mac, domain = found.groups()
        if domain.lower() != self.domain:
            return None
        if not hmac.compare_digest(mac, self._mac(public_id, nonce)):
            return None
        return public_id


def load_signing_key(settings: Settings) -> bytes:
    """The key from the environment or `security.signing_key_file`; else one kept in data_dir.

    The generated key is created once (mode 0600) so that a restart keeps threading replies.
    Replicas must share one key: set it explicitly when running more than one.
    """
    configured = settings.secret("security", "signing_key")
    if configured:
        return configured.encode("utf-8")
    path = Path(settings.desk.data_dir) / KEY_FILE_NAME
    try:
        return path.read_bytes().strip()
    except FileNotFoundError:
        pass
    path.parent.mkdir(parents=True, exist_ok=True)
    key = secrets.token_hex(32).encode("ascii")
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:  # another process made it first
        return path.read_bytes().strip()
    with os.fdopen(fd, "wb") as handle:
        handle.write(key)
    return key


def signer_for(settings: Settings) -> MessageIdSigner:
    domain = settings.outbound.from_address.rsplit("@", 1)[-1]
    return MessageIdSigner(load_signing_key(settings), domain)


class LinkInvalid(ValueError):
    """A link token that is not ours, was altered, or names something that is gone."""


class LinkExpired(LinkInvalid):
    pass


_LINK = re.compile(r"^([A-Za-z0-9_-]{1,80})\.(\d{1,12})\.([0-9a-f]{32})$")


class LinkSigner:
    """Signed, expiring tokens for links that need no login (a manual task's page).

    A token is `<subject>.<expiry, unix seconds>.<mac>`; the MAC is an HMAC-SHA256 over the
    purpose, the subject and the expiry, so a token for one purpose opens nothing else and
    nobody can extend its life."""

    def __init__(self, key: bytes, purpose: str) -> None:
        if len(key) < 16:
            raise ValueError("the signing key must be at least 16 bytes")
        self._key = key
        self.purpose = purpose

    def _mac(self, subject: str, expires: int) -> str:
        message = f"{self.purpose}\n{subject}\n{expires}".encode()
        return hmac.new(self._key, message, hashlib.sha256).hexdigest()[:32]

    def sign(self, subject: str, expires: dt.datetime) -> str:
        stamp = int(expires.timestamp())
        return f"{subject}.{stamp}.{self._mac(subject, stamp)}"

    def verify(self, token: str, now: dt.datetime) -> str:
        """The token's subject; LinkInvalid if forged, LinkExpired once past its expiry."""
        found = _LINK.match(token.strip())
        if not found:
            raise LinkInvalid("this link is not valid")
        subject, stamp, mac = found.group(1), int(found.group(2)), found.group(3)
        if not hmac.compare_digest(mac, self._mac(subject, stamp)):
            raise LinkInvalid("this link is not valid")
        if now.timestamp() >= stamp:
            raise LinkExpired("this link has expired")
        return subject
