"""The JSON API, /api/v1/: the same queues and actions as the pages, for scripts.

Authenticated by per-user bearer tokens (`rightsdesk users token NAME`), never by the console's
cookie, so a page elsewhere cannot make a logged-in browser call it (no CSRF to defend). The
role rules are the pages' rules. Errors are `{"error": {"code", "message"}}`.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from functools import wraps
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from console.actions import ACTIONS, Fields, perform
from console.queues import (
    QUEUES,
    BadFilter,
    cached_count,
    parse_query,
    queue_counts,
    working_days_left,
)
from console.web import Console, Need, allowed, console_of, json_error
from rightsdesk.staff import Staff
from rightsdesk.tickets import TicketConflict, TicketError, TicketNotFound, TicketService
from rightsdesk.views import ticket_detail, ticket_summary

ApiHandler = Callable[[Request, Staff], Awaitable[Response]]


def api(need: Need) -> Callable[[ApiHandler], Callable[[Request], Awaitable[Response]]]:
    def decorate(handler: ApiHandler) -> Callable[[Request], Awaitable[Response]]:
        @wraps(handler)
        async def wrapped(request: Request) -> Response:
            console: Console = console_of(request)
            header = request.headers.get("authorization", "")
            scheme, _, token = header.partition(" ")
            if scheme.lower() != "bearer" or not token.strip():
                return json_error(401, "unauthenticated", "send Authorization: Bearer TOKEN")
            staff = await console.staff.token_user(token.strip())
            if staff is None:
                return json_error(401, "bad_token", "the token is unknown or was revoked")
            if not allowed(staff, need):
                return json_error(403, "forbidden", f"the role {staff.role} may not do this")
            return await handler(request, staff)

        return wrapped

    return decorate


@api("read")
async def me(request: Request, staff: Staff) -> Response:
    return JSONResponse({"name": staff.name, "role": staff.role, "language": staff.language})


@api("read")
async def queues(request: Request, staff: Staff) -> Response:
    tickets: TicketService = request.app.state.tickets
    ttl = console_of(request).settings.count_cache_seconds
    return JSONResponse(await queue_counts(tickets, staff, ttl))


@api("read")
async def list_tickets(request: Request, staff: Staff) -> Response:
    tickets: TicketService = request.app.state.tickets
    console: Console = console_of(request)
    try:
        query = parse_query(tickets, dict(request.query_params), staff, console.settings.page_size)
    except BadFilter as exc:
        return json_error(400, "bad_filter", str(exc), field=exc.name)
    rows = await tickets.find(query.filters)
    today, tz = tickets.today(), tickets.policy.tz
    return JSONResponse(
        {
            "queue": query.queue,
            "page": query.page,
            "page_size": console.settings.page_size,
            "total": await cached_count(
                tickets, query.filters, console.settings.count_cache_seconds
            ),
            "items": [
                {**ticket_summary(t, today, tz), "working_days_left": working_days_left(tickets, t)}
                for t in rows
            ],
        }
    )


@api("read")
async def show_ticket(request: Request, staff: Staff) -> Response:
    tickets: TicketService = request.app.state.tickets
    try:
        detail = await tickets.detail(request.path_params["public_id"])
    except TicketNotFound as exc:
        return json_error(404, "not_found", str(exc))
    data = ticket_detail(detail, tickets.today(), tickets.policy.tz)
    data["head"] = detail.ticket.audit_head
    data["working_days_left"] = working_days_left(tickets, detail.ticket)
    return JSONResponse(data)


@api("work")
async def act(request: Request, staff: Staff) -> Response:
    tickets: TicketService = request.app.state.tickets
    public_id = request.path_params["public_id"]
    try:
        body = json.loads(await request.body() or b"{}")
    except ValueError:
        return json_error(400, "bad_json", "the body is not JSON")
    if not isinstance(body, dict):
        return json_error(400, "bad_json", "the body must be a JSON object")
    values: dict[str, list[str]] = {}
    for key, value in body.items():
        items = value if isinstance(value, list) else [value]
        values[key] = ["" if v is None else str(v) for v in items]
    head = body.get("head")
    try:
        ticket = await perform(
            request.app.state.core,
            staff,
            public_id,
            request.path_params["action"],
            Fields(values),
            head,
        )
    except TicketNotFound as exc:
        return json_error(404, "not_found", str(exc))
    except TicketConflict as exc:
        return json_error(409, "conflict", str(exc))
    except TicketError as exc:
        return json_error(400, "refused", str(exc))
    data = ticket_summary(ticket, tickets.today(), tickets.policy.tz)
    data["head"] = ticket.audit_head
    return JSONResponse(data)


@api("dpo")
async def list_users(request: Request, staff: Staff) -> Response:
    console: Console = console_of(request)
    return JSONResponse(
        [
            {
                "name": u.name,
                "email": u.email,
                "role": u.role,
                "totp": u.totp,
                "disabled": u.disabled,
            }
            for u in await console.staff.everyone()
        ]
    )


async def not_found(request: Request) -> Response:
    return json_error(404, "not_found", f"no API route {request.url.path}")


async def openapi(request: Request) -> Response:
    return JSONResponse(OPENAPI)


def routes() -> list[Route]:
    return [
        Route("/openapi.json", openapi),
        Route("/me", me),
        Route("/queues", queues),
        Route("/tickets", list_tickets),
        Route("/tickets/{public_id}", show_ticket),
        Route("/tickets/{public_id}/{action}", act, methods=["POST"]),
        Route("/users", list_users),
        Route("/{rest:path}", not_found, methods=["GET", "POST", "PUT", "DELETE", "PATCH"]),
    ]


def _error(description: str) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": _ERROR}}}


_ERROR = {"$ref": "#/components/schemas/Error"}
_FILTERS = [
    {"name": "queue", "in": "query", "schema": {"type": "string", "enum": list(QUEUES)}},
    {"name": "status", "in": "query", "schema": {"type": "string"}, "description": "comma list"},
    {"name": "type", "in": "query", "schema": {"type": "string"}, "description": "comma list"},
    {"name": "channel", "in": "query", "schema": {"type": "string"}},
    {"name": "assignee", "in": "query", "schema": {"type": "string"}},
    {"name": "from", "in": "query", "schema": {"type": "string", "format": "date"}},
    {"name": "to", "in": "query", "schema": {"type": "string", "format": "date"}},
    {"name": "page", "in": "query", "schema": {"type": "integer", "minimum": 1}},
]
_TICKET_ID = {"name": "public_id", "in": "path", "required": True, "schema": {"type": "string"}}
_AUTH = {"401": _error("no token, or a revoked one"), "403": _error("the role may not")}

OPENAPI: dict[str, Any] = {
    "openapi": "3.1.0",
    "info": {"title": "rightsdesk console API", "version": "1"},
    "servers": [{"url": "/api/v1"}],
    "security": [{"bearer": []}],
    "components": {
        "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
        "schemas": {
            "Error": {
                "type": "object",
                "properties": {
                    "error": {
                        "type": "object",
                        "properties": {
                            "code": {"type": "string"},
                            "message": {"type": "string"},
                            "field": {"type": "string"},
                        },
                        "required": ["code", "message"],
                    }
                },
            }
        },
    },
    "paths": {
        "/me": {
            "get": {
                "summary": "who the token belongs to",
                "responses": {"200": {"description": "the user"}, **_AUTH},
            }
        },
        "/queues": {
            "get": {
                "summary": "ticket counts per queue",
                "responses": {"200": {"description": "counts"}, **_AUTH},
            }
        },
        "/tickets": {
            "get": {
                "summary": "a queue, filtered, most urgent first, paginated",
                "parameters": _FILTERS,
                "responses": {
                    "200": {"description": "items, total, page"},
                    "400": _error("a bad filter; `field` names it"),
                    **_AUTH,
                },
            }
        },
        "/tickets/{public_id}": {
            "get": {
                "summary": "one ticket with messages and audit events; `head` is its version",
                "parameters": [_TICKET_ID],
                "responses": {
                    "200": {"description": "the ticket"},
                    "404": _error("no such ticket"),
                    **_AUTH,
                },
            }
        },
        "/tickets/{public_id}/{action}": {
            "post": {
                "summary": "an action (agent or DPO): " + ", ".join(ACTIONS),
                "description": "Body: the action's fields (assignee, note, reason, until, types) "
                "and optionally `head` from GET: the action is refused with 409 if the ticket "
                "changed since.",
                "parameters": [
                    _TICKET_ID,
                    {
                        "name": "action",
                        "in": "path",
                        "required": True,
                        "schema": {"type": "string", "enum": list(ACTIONS)},
                    },
                ],
                "requestBody": {"content": {"application/json": {"schema": {"type": "object"}}}},
                "responses": {
                    "200": {"description": "the ticket after the action, with its new head"},
                    "400": _error("refused by the ticket rules"),
                    "404": _error("no such ticket"),
                    "409": _error("changed by someone else since `head`"),
                    **_AUTH,
                },
            }
        },
        "/users": {
            "get": {
                "summary": "the console's users (DPO only)",
                "responses": {"200": {"description": "users"}, **_AUTH},
            }
        },
    },
}
