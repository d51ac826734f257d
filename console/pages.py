"""The console's HTML pages shared by all: login, logout, language, the navigation's counts,
attachments. The queues are `queue_page.py`, the ticket page `ticket_page.py`."""

from __future__ import annotations

import secrets
from typing import Any
from urllib.parse import quote

from starlette.requests import Request
from starlette.responses import RedirectResponse, Response

from console.queues import QUEUES, queue_counts, shown_count
from console.web import (
    LANGUAGE_COOKIE,
    LOGIN_CSRF_COOKIE,
    SESSION_COOKIE,
    Console,
    client_address,
    console_of,
    error_page,
    form_of,
    guard,
    language_of,
    render,
    session_of,
    strings,
)
from rightsdesk.evidence import get_attachment
from rightsdesk.filenames import safe_name
from rightsdesk.staff import LANGUAGES, LoginRefused, TotpEnrolmentNeeded
from rightsdesk.tickets import TicketService


def _safe_next(value: str | None) -> str:
    # Only paths of this site: "//evil.example" or "https://..." would be an open redirect.
    if value and value.startswith("/") and not value.startswith("//"):
        return value
    return "/"


async def login_form(request: Request) -> Response:
    token = request.cookies.get(LOGIN_CSRF_COOKIE) or secrets.token_urlsafe(32)
    response = render(
        request,
        "login.html.j2",
        {"login_csrf": token, "next": _safe_next(request.query_params.get("next")), "error": ""},
    )
    _set_cookie(request, response, LOGIN_CSRF_COOKIE, token, max_age=3600)
    return response


async def login(request: Request) -> Response:
    console: Console = console_of(request)
    form = await request.form()
    t = strings(language_of(request, None))
    expected = request.cookies.get(LOGIN_CSRF_COOKIE, "")
    given = str(form.get("login_csrf", ""))
    if not expected or not secrets.compare_digest(expected, given):
        return error_page(request, 403, t["csrf_failed"])
    context = {"login_csrf": expected, "next": _safe_next(str(form.get("next", ""))), "error": ""}
    try:
        logged_in = await console.staff.login(
            str(form.get("name", "")),
            str(form.get("password", "")),
            client_address(request),
            str(form.get("totp", "")) or None,
        )
    except TotpEnrolmentNeeded:
        return render(request, "login.html.j2", {**context, "error": t["totp_needed"]}, 403)
    except LoginRefused:
        return render(request, "login.html.j2", {**context, "error": t["login_refused"]}, 401)
    response = RedirectResponse(context["next"], status_code=303)
    _set_cookie(request, response, SESSION_COOKIE, logged_in.token)
    response.delete_cookie(LOGIN_CSRF_COOKIE, path="/")
    return response


@guard("read")
async def logout(request: Request) -> Response:
    console: Console = console_of(request)
    await console.staff.logout(session_of(request).session_id)
    response = RedirectResponse("/login", status_code=303)
    response.delete_cookie(SESSION_COOKIE, path="/")
    return response


@guard("read")
async def set_language(request: Request) -> Response:
    console: Console = console_of(request)
    language = str(form_of(request).get("language", ""))
    if language not in LANGUAGES:
        t = strings(language_of(request, session_of(request).staff))
        return error_page(request, 400, t["refused_language_unknown"].format(languages="zh, en"))
    await console.staff.set_language(session_of(request).staff.id, language)
    response = RedirectResponse(_safe_next(str(form_of(request).get("next", ""))), 303)
    _set_cookie(request, response, LANGUAGE_COOKIE, language, max_age=365 * 86400)
    return response


def _set_cookie(
    request: Request, response: Response, name: str, value: str, max_age: int | None = None
) -> None:
    console: Console = console_of(request)
    response.set_cookie(
        name,
        value,
        max_age=max_age,
        path="/",
        httponly=True,
        samesite="lax",
        secure=console.secure_cookies,
    )


async def nav_context(request: Request) -> dict[str, Any]:
    tickets: TicketService = request.app.state.tickets
    ttl = console_of(request).settings.count_cache_seconds
    counts = await queue_counts(tickets, session_of(request).staff, ttl)
    return {"counts": {q: shown_count(n) for q, n in counts.items()}, "queues": QUEUES}


@guard("read")
async def attachment(request: Request) -> Response:
    """A stored attachment, always as a download: never shown inline, whatever it claims to be
    (an HTML or SVG file from a requester must not run in the console's origin)."""
    tickets: TicketService = request.app.state.tickets
    raw = request.path_params["attachment_id"]
    found = await get_attachment(tickets.db, int(raw)) if raw.isdigit() else None
    if found is None or found[0].content is None:
        return error_page(request, 404, f"no attachment {raw}")
    row, _ = found
    name = quote(safe_name(row.filename, f"attachment-{row.id}"))
    return Response(
        row.content,
        media_type="application/octet-stream",
        headers={"content-disposition": f"attachment; filename*=UTF-8''{name}"},
    )
