"""The portal's listener: the shared HttpServer (rightsdesk.webstack) on the portal's own host,
port and TLS files, in the service's loop, stopped by the service's stop like everything else."""

from __future__ import annotations

from starlette.types import ASGIApp

from rightsdesk.config import PortalSettings
from rightsdesk.webstack import HttpServer


class PortalServer(HttpServer):
    name = "portal-http"

    def __init__(self, settings: PortalSettings, app: ASGIApp) -> None:
        super().__init__(
            settings.host,
            settings.port,
            app,
            tls_cert_file=settings.tls_cert_file,
            tls_key_file=settings.tls_key_file,
        )
        self.settings = settings
