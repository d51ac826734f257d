"""Who is asking, as coarsely as an audit needs: the network, not the address; the browser's
family, not its full string. A keyed hash of the full address serves the rate limits."""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import re
from dataclasses import dataclass

_BROWSERS = (
    ("Edg/", "Edge"),
    ("OPR/", "Opera"),
    ("Firefox/", "Firefox"),
    ("Chromium/", "Chromium"),
    ("HeadlessChrome/", "Chrome (headless)"),
    ("Chrome/", "Chrome"),
    ("Safari/", "Safari"),
    ("curl/", "curl"),
    ("python-httpx/", "httpx"),
)
_MOBILE = re.compile(r"Mobile|Android|iPhone|iPad", re.IGNORECASE)


@dataclass(frozen=True)
class Client:
    """A web client: `coarse` goes into the audit trail, `key` (a keyed hash of the full
    address) only into rate-limit counts."""

    coarse: str
    key: str


def network_of(address: str) -> str:
    """203.0.113.7 -> 203.0.113.0/24; an IPv6 address -> its /48; anything else: 'unknown'."""
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return "unknown"
    prefix = 24 if ip.version == 4 else 48
    return str(ipaddress.ip_network(f"{ip}/{prefix}", strict=False))


def browser_of(user_agent: str) -> str:
    for needle, name in _BROWSERS:
        if needle in user_agent:
            return f"{name} mobile" if _MOBILE.search(user_agent) else name
    return "other"


def client_of(address: str, user_agent: str, key: bytes) -> Client:
    digest = hmac.new(key, f"client:{address}".encode(), hashlib.sha256).hexdigest()
    return Client(coarse=f"{network_of(address)} {browser_of(user_agent[:500])}", key=digest)
