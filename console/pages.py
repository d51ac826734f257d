"""The console's HTML pages: login, queues, the ticket page and its actions."""

from __future__ import annotations

import secrets
from typing import Any
from urllib.parse import quote, urlencode

from starlette.datastructures import FormData, UploadFile
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response

from console.actions import ACTIONS, Fields, perform
from console.queues import (
    QUEUES,
    BadFilter,
    cached_count,
    parse_query,
    queue_counts,
    working_days_left,
)
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
from rightsdesk.answers import Attachment
from rightsdesk.evidence import get_attachment, list_attachments
from rightsdesk.models import ACTIVE_STATUSES, RequestType, TicketStatus
from rightsdesk.staff import LANGUAGES, LoginRefused, TotpEnrolmentNeeded
from rightsdesk.tickets import (
    TRANSITIONS,
    TicketConflict,
    TicketError,
    TicketNotFound,
    TicketService,
)
from rightsdesk.views import event_view, message_view, ticket_summary


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
        return error_page(request, 400, f"language: {language!r}")
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
    return {"counts": await queue_counts(tickets, session_of(request).staff, ttl), "queues": QUEUES}


@guard("read")
async def queue_page(request: Request) -> Response:
    tickets: TicketService = request.app.state.tickets
    console: Console = console_of(request)
    me = session_of(request).staff
    params = dict(request.query_params)
    try:
        query = parse_query(tickets, params, me, console.settings.page_size)
    except BadFilter as exc:
        return error_page(request, 400, str(exc))
    rows = await tickets.find(query.filters)
    total = await cached_count(tickets, query.filters, console.settings.count_cache_seconds)
    today, tz = tickets.today(), tickets.policy.tz
    items = [
        {
            **ticket_summary(t, today, tz),
            "working_days_left": working_days_left(tickets, t),
            "head": t.audit_head,
        }
        for t in rows
    ]
    pages = max(1, -(-total // console.settings.page_size))

    def link(page: int) -> str:
        return "/?" + urlencode({**query.params, "page": str(page)})

    return render(
        request,
        "queue.html.j2",
        {
            **(await nav_context(request)),
            "queue": query.queue,
            "items": items,
            "total": total,
            "page": query.page,
            "pages": pages,
            "prev_link": link(query.page - 1) if query.page > 1 else "",
            "next_link": link(query.page + 1) if query.page < pages else "",
            "csv_link": "/export.csv?" + urlencode(query.params),
            "params": query.params,
            "statuses": [s.value for s in TicketStatus],
            "types": [t.value for t in RequestType],
        },
    )


# Event fields that are for the hash chain and the machines, not for the person reading.
_EVENT_PLUMBING = frozenset({"messages", "message", "text_sha256", "attachments"})


async def ticket_context(request: Request, public_id: str) -> dict[str, Any]:
    tickets: TicketService = request.app.state.tickets
    detail = await tickets.detail(public_id)
    today, tz = tickets.today(), tickets.policy.tz
    ticket = detail.ticket
    timeline: list[dict[str, Any]] = []
    for message in detail.messages:
        view = message_view(message)
        order = 0 if message.direction == "in" else 2  # at one instant: what came, did, went
        timeline.append({"kind": "message", "at": message.received_at, "order": order, **view})
    for event in detail.events:
        view = event_view(event)
        # Only what changed (a transition repeats every deadline field before and after).
        changes = {
            k: v
            for k, v in view["after"].items()
            if k not in _EVENT_PLUMBING and (k == "note" or view["before"].get(k) != v)
        }
        if isinstance(view["after"].get("attachments"), list):
            changes["attachments"] = ", ".join(
                str(a.get("filename")) for a in view["after"]["attachments"]
            )
        timeline.append({"kind": "event", **view, "at": event.at, "order": 1, "changes": changes})
    timeline.sort(key=lambda item: (item["at"], item["order"]))
    for item in timeline:
        item["at_local"] = item["at"].astimezone(tz).strftime("%Y-%m-%d %H:%M %z")
    attachments: dict[int, list[Any]] = {}
    for row in await list_attachments(tickets.db, [m.id for m in detail.messages if m.id]):
        attachments.setdefault(row.message_id, []).append(row)
    for item in timeline:
        item["attachments"] = attachments.get(item["id"], []) if item["kind"] == "message" else []
    classification = ticket.classification or {}
    scores = sorted(
        (classification.get("scores") or {}).items(), key=lambda kv: kv[1], reverse=True
    )
    return {
        "ticket": ticket_summary(ticket, today, tz),
        "raw": ticket,
        "head": ticket.audit_head,
        "requester": detail.requester,
        "working_days_left": working_days_left(tickets, ticket),
        "completion_days_left": (ticket.completion_due - today).days
        if ticket.completion_due
        else None,
        "scores": scores[:6],
        "timeline": timeline,
        "actions": list(ACTIONS),
        "replies": request.app.state.replies,
        "answering": request.app.state.core.answers is not None,
        "allowed": allowed_actions(ticket.status),
        "types": [t.value for t in RequestType],
    }


async def fields_of(form: FormData) -> Fields:
    """The form's text fields, and its files (a reply's attachments; empty file inputs, which
    browsers send with no name, are left out)."""
    values: dict[str, list[str]] = {}
    files: list[Attachment] = []
    for key, value in form.multi_items():
        if isinstance(value, UploadFile):
            if value.filename:
                content = await value.read()
                files.append(Attachment(value.filename, content, value.content_type or None))
        else:
            values.setdefault(key, []).append(value)
    return Fields(values, tuple(files))


# Which status-changing actions the status machine allows now (the core refuses the others).
_MOVES = {
    "verify": TicketStatus.OPEN,
    "start": TicketStatus.IN_PROGRESS,
    "resolve": TicketStatus.RESOLVED,
    "deny": TicketStatus.DENIED,
    "cancel": TicketStatus.CANCELLED,
    "close": TicketStatus.CLOSED,
    "reopen": TicketStatus.REOPENED,
}


def allowed_actions(status: str) -> set[str]:
    current = TicketStatus(status)
    moves = {name for name, to in _MOVES.items() if to in TRANSITIONS[current]}
    if current in ACTIVE_STATUSES:
        moves.add("extend")
    return moves | {"assign", "relabel", "reply", "note"}


@guard("read")
async def ticket_page(request: Request) -> Response:
    public_id = request.path_params["public_id"]
    try:
        context = await ticket_context(request, public_id)
    except TicketNotFound as exc:
        return error_page(request, 404, str(exc))
    t = strings(session_of(request).staff.language)
    done = request.query_params.get("done", "")
    notice = t["done"] + " " + t.get("action_" + done, "") if done in ACTIONS else ""
    return render(
        request,
        "ticket.html.j2",
        {**(await nav_context(request)), **context, "notice": notice, "error": ""},
    )


@guard("work")
async def ticket_action(request: Request) -> Response:
    public_id = request.path_params["public_id"]
    action = request.path_params["action"]
    form = form_of(request)
    session = session_of(request)
    t = strings(session.staff.language)
    fields = await fields_of(form)
    status = 400
    try:
        await perform(
            request.app.state.core,
            session.staff,
            public_id,
            action,
            fields,
            str(form.get("head", "")) or None,
        )
    except TicketNotFound as exc:
        return error_page(request, 404, str(exc))
    except TicketConflict:
        message, status = t["conflict"], 409
    except TicketError as exc:
        message = str(exc)
    else:
        return RedirectResponse(f"/tickets/{public_id}?done={action}", status_code=303)
    context = await ticket_context(request, public_id)
    return render(
        request,
        "ticket.html.j2",
        {**(await nav_context(request)), **context, "notice": "", "error": message},
        status,
    )


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
    name = quote(row.filename or f"attachment-{row.id}")
    return Response(
        row.content,
        media_type="application/octet-stream",
        headers={"content-disposition": f"attachment; filename*=UTF-8''{name}"},
    )
