"""The console's HTTP server: uvicorn, inside the service's own event loop.

The service owns shutdown: uvicorn's own SIGTERM/SIGINT handlers are switched off (recent
uvicorn installs them inside `serve()`, replacing the service's), and the server stops when the
service's `stop` event is set. The socket is bound here, so a port in use is an error we can
name, not uvicorn's `sys.exit`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
from collections.abc import Generator

import uvicorn
from starlette.types import ASGIApp

from rightsdesk.config import ConsoleSettings

log = logging.getLogger("console.server")


class _QuietServer(uvicorn.Server):
    @contextlib.contextmanager
    def capture_signals(self) -> Generator[None, None, None]:
        # The service's signal handlers rule: they set `stop`, which stops this server.
        yield


class ConsoleServer:
    def __init__(self, settings: ConsoleSettings, app: ASGIApp) -> None:
        self.settings = settings
        self.app = app
        self._socket: socket.socket | None = None
        self._server: _QuietServer | None = None

    def bind(self) -> int:
        """Open the listening socket; returns the port (useful with port 0). Raises OSError."""
        family = socket.AF_INET6 if ":" in self.settings.host else socket.AF_INET
        # proto=IPPROTO_TCP, not 0 (socket.create_server's): asyncio sets TCP_NODELAY only on
        # sockets that say they are TCP, and without it every response waits ~40 ms (Nagle
        # against the client's delayed ACK).
        sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.bind((self.settings.host, self.settings.port))
            sock.listen(2048)
        except OSError:
            sock.close()
            raise
        sock.setblocking(False)
        self._socket = sock
        return int(sock.getsockname()[1])

    @property
    def port(self) -> int:
        assert self._socket is not None, "bind() first"
        return int(self._socket.getsockname()[1])

    async def run(self, stop: asyncio.Event) -> None:
        if self._socket is None:
            self.bind()
        assert self._socket is not None
        config = uvicorn.Config(
            self.app,
            lifespan="off",
            log_level="warning",
            access_log=False,  # URLs carry ticket ids and search words; keep them out of logs
            proxy_headers=False,  # the client address is the peer's, unless a proxy is trusted
            server_header=False,
            ssl_certfile=str(self.settings.tls_cert_file) if self.settings.tls else None,
            ssl_keyfile=str(self.settings.tls_key_file) if self.settings.tls else None,
            timeout_graceful_shutdown=3,
        )
        server = _QuietServer(config)
        self._server = server
        serving = asyncio.create_task(server.serve(sockets=[self._socket]), name="console-http")
        stopping = asyncio.create_task(stop.wait())
        await asyncio.wait({serving, stopping}, return_when=asyncio.FIRST_COMPLETED)
        server.should_exit = True
        stopping.cancel()
        await serving
        self._socket.close()
