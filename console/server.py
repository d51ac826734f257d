"""The console's HTTP server: the shared listener (rightsdesk.webstack.HttpServer), inside the
service's own event loop, on the console's host, port and TLS files."""

from __future__ import annotations

from starlette.types import ASGIApp

from rightsdesk.config import ConsoleSettings
from rightsdesk.webstack import HttpServer


class ConsoleServer(HttpServer):
    name = "console-http"

    def __init__(self, settings: ConsoleSettings, app: ASGIApp) -> None:
        super().__init__(
            settings.host,
            settings.port,
            app,
            tls_cert_file=settings.tls_cert_file,
            tls_key_file=settings.tls_key_file,
        )
        self.settings = settings
