"""The console as one ASGI app (Starlette): pages, the JSON API, static files, headers."""

from __future__ import annotations

from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles

from console import (
    api,
    bulk,
    dashboard,
    exports,
    fulfil_page,
    package_page,
    pages,
    queue_page,
    ticket_page,
    users,
)
from console.actions import Core
from console.web import STATIC, Console, SecurityHeaders, error_page, language_of, strings
from rightsdesk.answers import Answers
from rightsdesk.config_sections import ConsoleSettings
from rightsdesk.fulfilment import FulfilmentService
from rightsdesk.merging import TicketMerger
from rightsdesk.packages import PackageService
from rightsdesk.search import TicketSearch
from rightsdesk.staff import StaffService
from rightsdesk.tickets import TicketService


async def health(request: Request) -> Response:
    """The trivial route: no database, no template (load balancers, and the benchmark)."""
    return PlainTextResponse("ok")


async def not_found(request: Request, exc: Exception) -> Response:
    """A page that is not there (or a method a page does not take): the console's own error
    page in the reader's language, not a bare "Not Found"."""
    return error_page(request, 404, strings(language_of(request, None))["not_found"])


async def bad_request(request: Request, exc: Exception) -> Response:
    """Starlette's own refusals of a form (a field over its size, too many fields or files,
    a broken body) in the console's words, not its plain English text."""
    detail = str(getattr(exc, "detail", ""))
    key = (
        "form_field_too_large"
        if "maximum size" in detail
        else "form_too_many_fields"
        if detail.startswith("Too many")
        else "error_400"
    )
    session = request.scope.get("rd_session")
    t = strings(language_of(request, session.staff if session is not None else None))
    return error_page(request, 400, t[key])


def build_app(
    settings: ConsoleSettings,
    tickets: TicketService,
    staff: StaffService,
    company: str = "",
    answers: Answers | None = None,
    replies: dict[str, dict[str, str]] | None = None,
    *,
    search: TicketSearch | None = None,
    merger: TicketMerger | None = None,
    fulfilment: FulfilmentService | None = None,
    packages: PackageService | None = None,
) -> Starlette:
    """`answers` sends replies and keeps notes; `replies` are the canned replies offered
    (name -> {language: title}); `search` finds tickets (`q`), `merger` merges them, and
    `fulfilment` shows and runs the plan (without it, no fulfilment on the ticket page),
    `packages` delivers response packages through the portal."""
    routes = [
        Route("/healthz", health),
        Route("/login", pages.login_form, methods=["GET"]),
        Route("/login", pages.login, methods=["POST"]),
        Route("/logout", pages.logout, methods=["POST"]),
        Route("/language", pages.set_language, methods=["POST"]),
        Route("/", queue_page.queue_page),
        Route("/tickets/{public_id}", ticket_page.ticket_page),
        Route("/tickets/{public_id}/evidence.zip", exports.evidence_pack),
        Route("/attachments/{attachment_id}", pages.attachment),
        Route("/tickets/{public_id}/fulfil/approve", fulfil_page.approve, methods=["POST"]),
        Route("/tickets/{public_id}/fulfil/mark", fulfil_page.mark, methods=["POST"]),
        Route("/tickets/{public_id}/package/deliver", package_page.deliver, methods=["POST"]),
        Route("/tickets/{public_id}/package/revoke", package_page.revoke, methods=["POST"]),
        Route("/tickets/{public_id}/{action}", ticket_page.ticket_action, methods=["POST"]),
        Route("/bulk", bulk.bulk_action, methods=["POST"]),
        Route("/export.csv", exports.csv_export),
        Route("/reports/monthly", exports.monthly_page),
        Route("/reports/monthly.pdf", exports.monthly_pdf),
        Route("/dashboard", dashboard.dashboard_page),
        Route("/dashboard/{chart}.svg", dashboard.chart),
        Route("/users", users.users_page),
        Route("/users/add", users.add_user, methods=["POST"]),
        Route("/users/{name}/{action}", users.user_action, methods=["POST"]),
        Route("/settings/totp", users.require_totp, methods=["POST"]),
        Mount("/api/v1", routes=api.routes()),
        Mount("/static", StaticFiles(directory=STATIC), name="static"),
    ]
    app = Starlette(
        routes=routes,
        middleware=[Middleware(SecurityHeaders, settings=settings)],
        exception_handlers={400: bad_request, 404: not_found, 405: not_found},
    )
    # No redirect to the path without its trailing slash: Starlette builds it from the Host
    # header, so a forged Host sent people elsewhere. Such a path is this app's own 404.
    app.router.redirect_slashes = False
    app.state.console = Console(settings, staff)
    app.state.tickets = tickets
    app.state.core = Core(tickets, answers, merger)
    app.state.search = search if search is not None else TicketSearch(tickets.db)
    app.state.fulfilment = fulfilment
    app.state.packages = packages
    app.state.replies = replies or {}
    app.state.company = company  # named on the monthly report
    return app
