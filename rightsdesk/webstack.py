"""The web stack the console and the portal share: uvicorn inside the service's own event loop,
the security headers, a cap on request bodies, the client's address, a Jinja environment.

The service owns shutdown: uvicorn's own SIGTERM/SIGINT handlers are switched off (recent
uvicorn installs them inside `serve()`, replacing the service's), and a server stops when the
service's `stop` event is set. The socket is bound here, so a port in use is an error we can
name, not uvicorn's `sys.exit`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
from collections.abc import Callable, Generator
from functools import cache
from pathlib import Path
from typing import Any, Protocol

import markupsafe
import uvicorn
from jinja2 import Environment, FileSystemLoader, StrictUndefined, nodes, select_autoescape
from jinja2.compiler import CodeGenerator, Frame
from starlette.requests import Request
from starlette.types import ASGIApp, Message, Receive, Scope, Send

log = logging.getLogger("rightsdesk.web")

# No inline script anywhere, no framing, no referrer (ids in URLs stay here).
CSP = (
    "default-src 'none'; style-src 'self'; img-src 'self'; form-action 'self'; "
    "frame-ancestors 'none'; base-uri 'none'"
)
HSTS = b"max-age=31536000; includeSubDomains"


class _QuietServer(uvicorn.Server):
    @contextlib.contextmanager
    def capture_signals(self) -> Generator[None, None, None]:
        # The service's signal handlers rule: they set `stop`, which stops this server.
        yield


class ListenerSettings(Protocol):
    """Where a web door listens (`[console]` and `[portal]` both have these)."""

    host: str
    port: int
    tls_cert_file: Path | None
    tls_key_file: Path | None


class HttpServer:
    """One listener: bind first (a port in use is an OSError the caller names), then `run`
    until `stop` is set. A door's server is this with its own `name` (console/server.py)."""

    name = "http"

    def __init__(self, settings: ListenerSettings, app: ASGIApp) -> None:
        self.settings = settings
        self.host = settings.host
        self.wanted_port = settings.port
        self.app = app
        self.tls_cert_file = settings.tls_cert_file
        self.tls_key_file = settings.tls_key_file
        self._socket: socket.socket | None = None
        self._server: _QuietServer | None = None

    @property
    def tls(self) -> bool:
        return self.tls_cert_file is not None and self.tls_key_file is not None

    def bind(self) -> int:
        """Open the listening socket; returns the port (useful with port 0). Raises OSError."""
        family = socket.AF_INET6 if ":" in self.host else socket.AF_INET
        # proto=IPPROTO_TCP, not 0 (socket.create_server's): asyncio sets TCP_NODELAY only on
        # sockets that say they are TCP, and without it every response waits ~40 ms (Nagle
        # against the client's delayed ACK).
        sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.bind((self.host, self.wanted_port))
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
            access_log=False,  # URLs carry ticket ids, tokens and search words: not in logs
            proxy_headers=False,  # the client address is the peer's, unless a proxy is trusted
            server_header=False,
            ssl_certfile=str(self.tls_cert_file) if self.tls else None,
            ssl_keyfile=str(self.tls_key_file) if self.tls else None,
            timeout_graceful_shutdown=3,
        )
        server = _QuietServer(config)
        self._server = server
        serving = asyncio.create_task(server.serve(sockets=[self._socket]), name=self.name)
        stopping = asyncio.create_task(stop.wait())
        await asyncio.wait({serving, stopping}, return_when=asyncio.FIRST_COMPLETED)
        server.should_exit = True
        stopping.cancel()
        await serving
        self._socket.close()


class SecurityHeaders:
    """Adds the security headers to every response (pages, files, static files): a CSP
    (`csp_for(path)`), no framing, no referrer, nosniff, no-store, and HSTS when served over
    TLS (`hsts`: the listener's own TLS, or a public https:// address behind a proxy)."""

    def __init__(
        self,
        app: ASGIApp,
        *,
        csp_for: Callable[[str], str] = lambda path: CSP,
        hsts: bool = False,
    ) -> None:
        self.app = app
        self.csp_for = csp_for
        self.hsts = hsts

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        csp = self.csp_for(scope["path"]).encode()

        async def with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = [
                    (k, v)
                    for k, v in message.get("headers", [])
                    if k.lower() not in (b"cache-control",)  # ours wins: never stored
                ]
                headers += [
                    (b"content-security-policy", csp),
                    (b"x-frame-options", b"DENY"),
                    (b"referrer-policy", b"no-referrer"),
                    (b"x-content-type-options", b"nosniff"),
                    (b"cache-control", b"no-store"),
                    (b"cross-origin-opener-policy", b"same-origin"),
                    (b"permissions-policy", b"camera=(), microphone=(), geolocation=()"),
                ]
                if self.hsts:
                    headers.append((b"strict-transport-security", HSTS))
                message["headers"] = headers
            await send(message)

        await self.app(scope, receive, with_headers)


class BodyLimit:
    """Refuses a request body over `limit_for(path)` bytes with 413, by its Content-Length
    or, without one, as soon as the streamed body passes it: a huge upload is never read whole.
    The body (at most the limit) is read here first, then handed to the app."""

    def __init__(self, app: ASGIApp, *, limit_for: Callable[[str], int]) -> None:
        self.app = app
        self.limit_for = limit_for

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] in ("GET", "HEAD"):
            await self.app(scope, receive, send)
            return
        limit = self.limit_for(scope["path"])
        declared = dict(scope.get("headers", [])).get(b"content-length")
        if declared is not None and (not declared.isdigit() or int(declared) > limit):
            await _too_large(send)
            return
        chunks: list[bytes] = []
        seen = 0
        while True:
            message = await receive()
            if message["type"] != "http.request":
                return  # the client went away
            chunk = message.get("body", b"")
            seen += len(chunk)
            if seen > limit:
                await _too_large(send)
                return
            chunks.append(chunk)
            if not message.get("more_body", False):
                break
        body = b"".join(chunks)
        delivered = False

        async def replay() -> Message:
            nonlocal delivered
            if not delivered:
                delivered = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()

        await self.app(scope, replay, send)


async def _too_large(send: Send) -> None:
    body = b"413: the request is too large\n"
    await send(
        {
            "type": "http.response.start",
            "status": 413,
            "headers": [
                (b"content-type", b"text/plain; charset=utf-8"),
                (b"content-length", str(len(body)).encode()),
                (b"connection", b"close"),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})


def client_address(request: Request, trusted_proxies: list[str]) -> str:
    """The browser's address: the peer's, or the last hop a trusted proxy names."""
    peer = request.client.host if request.client else "unknown"
    forwarded = request.headers.get("x-forwarded-for", "")
    if forwarded and peer in trusted_proxies:
        return forwarded.split(",")[-1].strip() or peer
    return peer


class Attrs(dict[str, Any]):
    """A dict whose keys are also its attributes, for templates: Jinja reads `row.id` as
    `getattr(row, "id")` first and only after its AttributeError as `row["id"]`. On a plain
    dict every such lookup raised and caught an exception; a queue page does about a
    thousand (its rows, the interface strings), which was a tenth of its Python time. A key
    named like a dict method would hide it: the views have none."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.__dict__ = self


# MarkupSafe's own escaping (its C speed-up), returning a plain str.
_escape_text: Callable[[str], str] = getattr(
    markupsafe, "_escape_inner", lambda text: str(markupsafe.escape(text))
)


def html_text(value: Any) -> str:
    """`markupsafe.escape(value)`, the same characters, as a plain str: what each `{{ ... }}`
    of an HTML template is written as (see `_PlainEscapes`)."""
    if type(value) is str:
        return _escape_text(value)
    if hasattr(value, "__html__"):  # Markup, or a value that renders itself: already safe
        return str(value.__html__())
    return _escape_text(str(value))


class _PlainEscapes(CodeGenerator):
    """Jinja's code generator, with every autoescaped `{{ ... }}` written through `html_text`
    instead of `markupsafe.escape`. The text is the same; what is saved is a `Markup` object
    per value (made, checked for `__html__` and joined), about a thousand on a queue page and
    two fifths of its rendering time. Where a template's output is captured (a macro, a
    `{% set %}` block, a filter block) Jinja wraps the pieces in Markup as before."""

    def _output_child_pre(self, node: nodes.Expr, frame: Frame, finalize: Any) -> None:
        if frame.eval_ctx.volatile or not frame.eval_ctx.autoescape:
            super()._output_child_pre(node, frame, finalize)
            return
        self.write("environment.html_text(")
        if finalize.src is not None:
            self.write(finalize.src)


class HtmlEnvironment(Environment):
    code_generator_class = _PlainEscapes
    html_text = staticmethod(html_text)


@cache
def template_environment(folder: Path) -> Environment:
    """HTML templates of one adapter: autoescaped, a missing value is an error. Compiled
    once and never checked for changes on disk (`auto_reload` would stat each template,
    and the ones it extends, on every page): a deployment restarts the service."""
    return HtmlEnvironment(
        loader=FileSystemLoader(folder),
        auto_reload=False,
        autoescape=select_autoescape(["html", "j2"], default_for_string=True),
        undefined=StrictUndefined,  # a missing string is an error in the tests, not a blank
        trim_blocks=True,
        lstrip_blocks=True,
    )
