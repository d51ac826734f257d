"""The portal as one ASGI app (Starlette): the package link, the forms, the task page, static
files; the shared security headers and a cap on every request body (rightsdesk.webstack)."""

from __future__ import annotations

from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles

from portal import forms, packages, tasks
from portal.web import STATIC, PortalCore, message_page
from rightsdesk.config import Settings
from rightsdesk.webstack import BodyLimit, SecurityHeaders


async def health(request: Request) -> Response:
    return PlainTextResponse("ok")


async def not_found(request: Request, exc: Exception) -> Response:
    # The same page as a link that does not open: an unknown URL tells nothing either.
    return message_page(request, 404, "link_title", "link_unavailable")


async def bad_request(request: Request, exc: Exception) -> Response:
    # Starlette's refusal of a form (too many fields, a part too large) in the portal's
    # words and the reader's language, not its plain English text.
    return message_page(request, 400, "refused_title", "form_refused")


def build_portal(core: PortalCore) -> Starlette:
    settings: Settings = core.settings
    routes = [
        Route("/healthz", health),
        Route("/", forms.home),
        Route("/request", forms.request_form, methods=["GET"]),
        Route("/request", forms.request_post, methods=["POST"]),
        Route("/request/confirm", forms.request_confirm, methods=["POST"]),
        Route("/status", forms.status_form, methods=["GET"]),
        Route("/status", forms.status_post, methods=["POST"]),
        Route("/status/confirm", forms.status_confirm, methods=["POST"]),
        Route("/p/{token}", packages.package_page, methods=["GET"]),
        Route("/p/{token}/send", packages.send_code, methods=["POST"]),
        Route("/p/{token}/open", packages.check_code, methods=["POST"]),
        Route("/p/{token}/all", packages.download, methods=["GET"]),
        Route("/p/{token}/f/{file_id}", packages.download, methods=["GET"]),
        Route("/task/{token}", tasks.task_page, methods=["GET"]),
        Route("/task/{token}", tasks.task_answer, methods=["POST"]),
        Mount("/static", StaticFiles(directory=STATIC), name="static"),
    ]
    portal = settings.portal
    limits = (portal.max_upload_bytes + 64 * 1024, portal.max_form_bytes)

    def limit_for(path: str) -> int:
        return limits[0] if path.startswith("/task/") else limits[1]

    middleware = [
        Middleware(
            SecurityHeaders,
            hsts=portal.tls or portal.public_base_url.startswith("https://"),
        ),
        Middleware(BodyLimit, limit_for=limit_for),
    ]
    app = Starlette(
        routes=routes,
        middleware=middleware,
        exception_handlers={400: bad_request, 404: not_found, 405: not_found},
    )
    # No redirect to the path without its trailing slash: Starlette builds it from the Host
    # header, so a forged Host sent people elsewhere. Such a path is this app's own 404.
    app.router.redirect_slashes = False
    app.state.portal = core
    return app
