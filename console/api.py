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

from console import queues as rules
from console.actions import Fields, perform
from console.fulfil_page import fulfilment_of
from console.openapi import OPENAPI
from console.package_page import packages_of
from console.queue_page import queue_items
from console.queues import (
    BadFilter,
    cached_count,
    narrowed,
    parse_query,
    queue_counts,
    working_days_left,
)
from console.web import MAX_FIELD_BYTES, Console, Need, allowed, console_of, json_error
from rightsdesk.fulfilment import FulfilmentError
from rightsdesk.fulfilment.plan import actions_for
from rightsdesk.packages import PackageError
from rightsdesk.staff import Staff
from rightsdesk.tickets import (
    DismissingRightsRequest,
    TicketConflict,
    TicketError,
    TicketNotFound,
    TicketService,
    UnknownAssignee,
)
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


class BodyRefused(Exception):
    def __init__(self, response: Response) -> None:
        self.response = response


async def json_body(request: Request) -> dict[str, Any]:
    """The request's JSON object, read no further than MAX_FIELD_BYTES (by its Content-Length
    or as it streams); BodyRefused carries the error to answer."""
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > MAX_FIELD_BYTES:
        raise BodyRefused(_too_large())
    chunks: list[bytes] = []
    seen = 0
    async for chunk in request.stream():
        seen += len(chunk)
        if seen > MAX_FIELD_BYTES:
            raise BodyRefused(_too_large())
        chunks.append(chunk)
    try:
        body = json.loads(b"".join(chunks) or b"{}")
    except ValueError:
        raise BodyRefused(json_error(400, "bad_json", "the body is not JSON")) from None
    if not isinstance(body, dict):
        raise BodyRefused(json_error(400, "bad_json", "the body must be a JSON object"))
    return body


def _too_large() -> Response:
    return json_error(
        413, "too_large", f"the body is over {MAX_FIELD_BYTES} bytes", limit=MAX_FIELD_BYTES
    )


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
        listing = await narrowed(request.app.state.search, query)
    except BadFilter as exc:
        return json_error(400, "bad_filter", str(exc), field=exc.name)
    rows = await tickets.rows(listing.filters)
    ttl = console.settings.count_cache_seconds
    total = await cached_count(tickets, listing.filters, ttl, cap=rules.COUNT_CAP + 1)
    items = queue_items(request, listing, rows)
    return JSONResponse(
        {
            "queue": query.queue,
            "q": query.search or None,
            "page": query.page,
            "page_size": console.settings.page_size,
            "total": min(total, rules.COUNT_CAP),
            "total_capped": total > rules.COUNT_CAP,
            "items": items,
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
        body = await json_body(request)
    except BodyRefused as refused:
        return refused.response
    values: dict[str, list[str]] = {}
    for key, value in body.items():
        items = value if isinstance(value, list) else [value]
        texts = [_field_text(v) for v in items]
        if any(t is None for t in texts):
            return json_error(400, "bad_field", f"{key[:40]}: expected a string", field=key[:40])
        values[key] = [t for t in texts if t is not None]
    head = values.get("head", [""])[0] or None
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
    except DismissingRightsRequest as exc:
        # A rights request is dismissed only with `confirm_rights_request: true`.
        return json_error(400, "rights_request", str(exc))
    except UnknownAssignee as exc:
        return json_error(400, "unknown_assignee", str(exc))
    except TicketError as exc:
        return json_error(400, "refused", str(exc))
    data = ticket_summary(ticket, tickets.today(), tickets.policy.tz)
    data["head"] = ticket.audit_head
    return JSONResponse(data)


def _field_text(value: object) -> str | None:
    """A field's value as the forms would send it; None for what no form sends (a number
    for a note's text, an object): the caller refuses it, naming the field."""
    if value is None:
        return ""
    if isinstance(value, bool):  # `confirm_rights_request: true`
        return "yes" if value else ""
    return value if isinstance(value, str) else None


@api("read")
async def show_fulfilment(request: Request, staff: Staff) -> Response:
    """The ticket's fulfilment runs, and for a verified active ticket the dry-run plan."""
    tickets: TicketService = request.app.state.tickets
    fulfilment = fulfilment_of(request)
    if fulfilment is None:
        return json_error(404, "not_configured", "fulfilment is not configured on this desk")
    public_id = request.path_params["public_id"]
    try:
        ticket = await tickets.get(public_id)
        runs = await fulfilment.status(public_id)
    except TicketNotFound as exc:
        return json_error(404, "not_found", str(exc))
    plan: dict[str, Any] | None = None
    error: str | None = None
    if actions_for(ticket.types):
        try:
            plan = (await fulfilment.plan(public_id)).to_json()
        except FulfilmentError as exc:
            error = str(exc)
    return JSONResponse(
        {"ticket": ticket.public_id, "plan": plan, "plan_error": error, "runs": runs}
    )


@api("dpo")
async def approve_plan(request: Request, staff: Staff) -> Response:
    """`fulfil ID --approve PLANHASH`: a stale hash (the plan changed) is a 409."""
    fulfilment = fulfilment_of(request)
    if fulfilment is None:
        return json_error(404, "not_configured", "fulfilment is not configured on this desk")
    try:
        body = await json_body(request)
    except BodyRefused as refused:
        return refused.response
    plan_hash = body.get("plan_hash")
    if not isinstance(plan_hash, str) or not plan_hash.strip():
        return json_error(400, "bad_request", "plan_hash: the hash of the dry run is required")
    try:
        runs = await fulfilment.approve(request.path_params["public_id"], plan_hash, staff.actor)
    except TicketNotFound as exc:
        return json_error(404, "not_found", str(exc))
    except FulfilmentError as exc:
        return json_error(409, "refused", str(exc))
    return JSONResponse({"runs": runs})


@api("work")
async def deliver_package(request: Request, staff: Staff) -> Response:
    """`tickets deliver ID`: seal the package and send the requester its link."""
    packages = packages_of(request)
    if packages is None or not packages.configured:
        return json_error(404, "not_configured", "response packages are not configured here")
    public_id = request.path_params["public_id"]
    try:
        await packages.deliver(public_id, staff.actor)
        state = await packages.status(public_id)
    except TicketNotFound as exc:
        return json_error(404, "not_found", str(exc))
    except PackageError as exc:
        return json_error(400, "refused", str(exc))
    return JSONResponse({"package": state})


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
        Route("/tickets/{public_id}/fulfilment", show_fulfilment),
        Route("/tickets/{public_id}/fulfilment/approve", approve_plan, methods=["POST"]),
        Route("/tickets/{public_id}/package/deliver", deliver_package, methods=["POST"]),
        Route("/tickets/{public_id}/{action}", act, methods=["POST"]),
        Route("/users", list_users),
        Route("/{rest:path}", not_found, methods=["GET", "POST", "PUT", "DELETE", "PATCH"]),
    ]
