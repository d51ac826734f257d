"""The console's HTTP server: the shared listener (rightsdesk.webstack.HttpServer), inside the
service's own event loop, on `[console]`'s host, port and TLS files."""

from __future__ import annotations

from rightsdesk.webstack import HttpServer


class ConsoleServer(HttpServer):
    name = "console-http"
