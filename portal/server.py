"""The portal's listener: the shared HttpServer (rightsdesk.webstack) on `[portal]`'s own host,
port and TLS files, in the service's loop, stopped by the service's stop like everything else."""

from __future__ import annotations

from rightsdesk.webstack import HttpServer


class PortalServer(HttpServer):
    name = "portal-http"
