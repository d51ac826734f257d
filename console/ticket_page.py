"""The ticket page: status, types (scores, suggested ones), deadlines, requester, the timeline,
fulfilment (console/fulfil_page.py), and a form per action (console/actions.py)."""

from __future__ import annotations

from typing import Any

from starlette.datastructures import FormData, UploadFile
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response

from console.actions import ACTIONS, Fields, perform, refusal
from console.fulfil_page import fulfilment_context
from console.package_page import package_context
from console.pages import nav_context
from console.queues import working_days_left
from console.web import error_page, form_of, guard, render, session_of, strings
from rightsdesk.answers import Attachment
from rightsdesk.models import ACTIVE_STATUSES, RequestType, TicketStatus
from rightsdesk.tickets import (
    TRANSITIONS,
    TicketConflict,
    TicketError,
    TicketNotFound,
    TicketService,
)
from rightsdesk.views import (
    event_view,
    hold_text,
    message_view,
    review_reasons,
    ticket_summary,
    verification_hold,
)
from rightsdesk.webstack import Attrs

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
        timeline.append(Attrs(view, kind="message", at=message.received_at, order=order))
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
        timeline.append(Attrs(view, kind="event", at=event.at, order=1, changes=changes))
    timeline.sort(key=lambda item: (item["at"], item["order"]))
    for item in timeline:
        item["at_local"] = item["at"].astimezone(tz).strftime("%Y-%m-%d %H:%M %z")
    for item in timeline:
        files = detail.attachments.get(item["id"], []) if item["kind"] == "message" else []
        item["attachments"] = files
        item["not_kept"] = detail.not_kept
    classification = ticket.classification or {}
    scores = sorted(
        (classification.get("scores") or {}).items(), key=lambda kv: kv[1], reverse=True
    )
    links = await tickets.links_of([ticket])
    summary = Attrs(ticket_summary(ticket, today, tz, links=links))
    hold = verification_hold(detail.events, tz)
    if hold is not None and (ticket.needs_review or ticket.unread):
        summary["review_reasons"] = review_reasons(ticket, hold)
    return {
        "ticket": summary,
        # Why codes of the ticket are no longer compared (staff's words, like review reasons).
        "verification_hold": hold_text(hold) if hold is not None else None,
        "raw": ticket,
        "head": ticket.audit_head,
        "requester": detail.requester,
        # The account the request names (matched by the verifier), verified or not yet.
        "account": detail.account,
        "account_verified": detail.account_verified,
        "working_days_left": working_days_left(tickets, ticket),
        "completion_days_left": (ticket.completion_due - today).days
        if ticket.completion_due
        else None,
        "scores": scores[:6],
        "timeline": timeline,
        "actions": list(ACTIONS),
        "replies": request.app.state.replies,
        "answering": request.app.state.core.answers is not None,
        "allowed": allowed_actions(ticket.status, merged=ticket.merged_into is not None),
        "types": [t.value for t in RequestType],
        # Accepting what a later message asked for: the current types and the suggested ones.
        "with_suggested": sorted(
            {str(t) for t in ticket.types} | set(ticket.suggested_types),
            key=[t.value for t in RequestType].index,
        ),
        "fulfilment": await fulfilment_context(request, ticket),
        "packaging": await package_context(request, ticket),
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
    "dismiss": TicketStatus.DISMISSED,
    "close": TicketStatus.CLOSED,
    "reopen": TicketStatus.REOPENED,
}


def allowed_actions(status: str, merged: bool = False) -> set[str]:
    current = TicketStatus(status)
    moves = {name for name, to in _MOVES.items() if to in TRANSITIONS[current]}
    if current in ACTIVE_STATUSES:
        moves |= {"extend", "merge"}
    if merged:  # its messages live on the other ticket now
        return {"note"}
    return moves | {"assign", "relabel", "reply", "note"}


@guard("read", reads_only=True)
async def ticket_page(request: Request) -> Response:
    public_id = request.path_params["public_id"]
    try:
        context = await ticket_context(request, public_id)
    except TicketNotFound as exc:
        return error_page(request, 404, str(exc))
    t = strings(session_of(request).staff.language)
    done = request.query_params.get("done", "")
    known = done in ACTIONS or done in ("fulfil", "fulfil_mark", "deliver", "revoke_link")
    notice = t["done"] + " " + t.get("action_" + done, "") if known else ""
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
        message = refusal(t, exc)
    else:
        return RedirectResponse(f"/tickets/{public_id}?done={action}", status_code=303)
    context = await ticket_context(request, public_id)
    return render(
        request,
        "ticket.html.j2",
        {**(await nav_context(request)), **context, "notice": "", "error": message},
        status,
    )
