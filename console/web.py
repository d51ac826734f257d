"""What every console route shares: who is asking, what they may do, CSRF, rendering, headers.

Roles are checked on the server for every route (`guard`): an auditor reads, an agent works
tickets, a DPO does everything. State-changing HTML requests carry the session's CSRF token in
a form field; the JSON API takes bearer tokens only (no cookies), so it needs none.
"""

from __future__ import annotations

import asyncio
import secrets
import tomllib
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from functools import cache, wraps
from pathlib import Path
from typing import Any, Literal

from jinja2 import Environment
from starlette.datastructures import FormData
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, RedirectResponse, Response
from starlette.types import ASGIApp

from rightsdesk.config_sections import ConsoleSettings
from rightsdesk.staff import LANGUAGES, SessionView, Staff, StaffService
from rightsdesk.webstack import CSP, Attrs, template_environment
from rightsdesk.webstack import SecurityHeaders as SharedHeaders
from rightsdesk.webstack import client_address as shared_client_address

TEMPLATES = Path(__file__).parent / "templates"
STATIC = Path(__file__).parent / "static"
SESSION_COOKIE = "rd_session"
LOGIN_CSRF_COOKIE = "rd_login_csrf"
LANGUAGE_COOKIE = "rd_lang"

Need = Literal["read", "work", "dpo"]

# The most one form field may carry (Starlette's `max_part_size` default, which the forms
# keep); the API's JSON bodies have the same limit, so no door takes a larger note.
MAX_FIELD_BYTES = 1024 * 1024
Handler = Callable[[Request], Awaitable[Response]]

# No inline script anywhere, no framing, no referrer: rightsdesk.webstack.CSP.
# The charts are SVG documents with their own inline <style>, and no script.
CHART_CSP = "default-src 'none'; style-src 'unsafe-inline'; frame-ancestors 'none'"


@cache
def strings(language: str) -> dict[str, str]:
    """The interface wording of one language (console/templates/strings/LANG.toml)."""
    with (TEMPLATES / "strings" / f"{language}.toml").open("rb") as handle:
        return Attrs({k: str(v) for k, v in tomllib.load(handle).items()})


def environment() -> Environment:
    return template_environment(TEMPLATES)


@dataclass
class Console:
    """The console's dependencies, put on the app's state by `console.app.build_app`."""

    settings: ConsoleSettings
    staff: StaffService
    # The sessions that passed their check on a recent page, by cookie: for them a reading
    # page starts beside the check (`guard`). Only ever a hint: every page is still checked.
    checked: dict[str, SessionView] = field(default_factory=dict)

    @property
    def secure_cookies(self) -> bool:
        return self.settings.tls or self.settings.public_base_url.startswith("https://")


def console_of(request: Request) -> Any:
    return request.app.state.console


def client_address(request: Request) -> str:
    """The browser's address: the peer's, or the last hop a trusted proxy names."""
    console: Console = console_of(request)
    return shared_client_address(request, console.settings.trusted_proxies)


def language_of(request: Request, staff: Staff | None) -> str:
    if staff is not None:
        return staff.language
    chosen = request.cookies.get(LANGUAGE_COOKIE)
    if chosen in LANGUAGES:
        return str(chosen)
    accept = request.headers.get("accept-language", "").lower()
    return "en" if accept.startswith("en") else "zh"


def render(
    request: Request,
    template: str,
    context: dict[str, Any],
    status_code: int = 200,
    session: SessionView | None = None,
) -> HTMLResponse:
    session = session if session is not None else request.scope.get("rd_session")
    staff = session.staff if session is not None else None
    language = language_of(request, staff)
    html = (
        environment()
        .get_template(template)
        .render(
            t=strings(language),
            lang=language,
            me=staff,
            csrf=session.csrf_token if session is not None else "",
            path=request.url.path,
            **context,
        )
    )
    return HTMLResponse(html, status_code=status_code)


def error_page(request: Request, status_code: int, message: str) -> HTMLResponse:
    return render(request, "error.html.j2", {"message": message, "code": status_code}, status_code)


# How many sessions `Console.checked` remembers (past it, it starts again: only a hint).
CHECKED_SESSIONS = 1024


def guard(need: Need, reads_only: bool = False) -> Callable[[Handler], Handler]:
    """Logged in (else to the login page), allowed by role (else 403), and for a POST the
    session's CSRF token in the form (else 403). The session is in `request.scope`.

    `reads_only`: the page changes nothing (the queues, a ticket). For a GET with a cookie
    whose session passed on an earlier page, the page starts at once, beside the check of
    the session: one wait for the database instead of two, on the pages people load most.
    Nothing is sent before the check passes; a session that fails it (revoked, expired,
    disabled) gets the login page, and one that changed (another role, another language)
    gets the page made again for what it is now. A cookie not seen passing starts nothing
    before its check: a stranger's request costs one lookup, as before."""

    def decorate(handler: Handler) -> Handler:
        @wraps(handler)
        async def wrapped(request: Request) -> Response:
            console: Console = console_of(request)
            token = request.cookies.get(SESSION_COOKIE, "")
            hint = console.checked.get(token) if reads_only and request.method == "GET" else None
            if hint is not None and allowed(hint.staff, need):
                request.scope["rd_session"] = hint
                page = asyncio.ensure_future(handler(request))
                try:
                    session = await console.staff.session(token)
                except BaseException:
                    _abandon(page)
                    raise
                if session == hint:
                    return await page
                _abandon(page)
            else:
                session = await console.staff.session(token)
            if session is None:
                console.checked.pop(token, None)
                if request.method == "GET":
                    return RedirectResponse("/login?next=" + request.url.path, status_code=303)
                return error_page(request, 401, strings(language_of(request, None))["expired"])
            if request.method == "GET":
                if len(console.checked) >= CHECKED_SESSIONS:
                    console.checked.clear()
                console.checked[token] = session
            request.scope["rd_session"] = session
            t = strings(session.staff.language)
            if not allowed(session.staff, need):
                return error_page(request, 403, t["forbidden"])
            if request.method == "POST":
                form = await request.form()
                request.scope["rd_form"] = form
                if not secrets.compare_digest(str(form.get("csrf", "")), session.csrf_token):
                    return error_page(request, 403, t["csrf_failed"])
            return await handler(request)

        return wrapped

    return decorate


def _abandon(page: asyncio.Future[Response]) -> None:
    """Stop a page made for a session that did not pass; what it raised is of no interest."""
    page.cancel()
    page.add_done_callback(lambda done: done.cancelled() or done.exception())


def allowed(staff: Staff, need: Need) -> bool:
    if need == "read":
        return True
    if need == "work":
        return staff.can_work
    return staff.is_dpo


def session_of(request: Request) -> SessionView:
    session: SessionView = request.scope["rd_session"]
    return session


def form_of(request: Request) -> FormData:
    form: FormData = request.scope["rd_form"]
    return form


def json_error(status_code: int, code: str, message: str, **extra: Any) -> JSONResponse:
    return JSONResponse(
        {"error": {"code": code, "message": message, **extra}}, status_code=status_code
    )


def SecurityHeaders(app: ASGIApp, settings: ConsoleSettings | None = None) -> SharedHeaders:
    """The shared security headers (rightsdesk.webstack), with the charts' own CSP, and HSTS
    when the console is reached over TLS."""
    hsts = settings is not None and (
        settings.tls or settings.public_base_url.startswith("https://")
    )
    return SharedHeaders(
        app, csp_for=lambda path: CHART_CSP if path.endswith(".svg") else CSP, hsts=hsts
    )
