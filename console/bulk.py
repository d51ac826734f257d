"""Bulk actions on a filtered list: the same core call per ticket, each checked against the
version the list showed, with an outcome per ticket (done, refused and why, conflict)."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response

from console.actions import CONFIRM_DISMISS, Fields, perform, refusal
from console.pages import nav_context
from console.web import error_page, form_of, guard, render, session_of, strings
from rightsdesk.tickets import TicketConflict, TicketError

BULK_ACTIONS = ("assign", "relabel", "dismiss")
MAX_TICKETS = 500


@guard("work")
async def bulk_action(request: Request) -> Response:
    form = form_of(request)
    session = session_of(request)
    t = strings(session.staff.language)
    action = str(form.get("action", ""))
    if action not in BULK_ACTIONS:
        return error_page(request, 400, f"action: {action!r} is not one of {BULK_ACTIONS}")
    ids = [str(v) for v in form.getlist("ids")][:MAX_TICKETS]
    if not ids:
        return error_page(request, 400, t["bulk_none_selected"])
    keys = ("assignee", "types", "reason", CONFIRM_DISMISS)
    fields = Fields({key: [str(v) for v in form.getlist(key)] for key in keys})
    outcomes = []
    for public_id in ids:
        head = str(form.get(f"head:{public_id}", "")) or None
        try:
            await perform(request.app.state.core, session.staff, public_id, action, fields, head)
        except TicketConflict:
            outcomes.append((public_id, "conflict", t["bulk_conflict"]))
        except TicketError as exc:
            outcomes.append((public_id, "refused", refusal(t, exc)))
        else:
            outcomes.append((public_id, "done", ""))
    failed = any(kind != "done" for _, kind, _ in outcomes)
    return render(
        request,
        "bulk.html.j2",
        {**(await nav_context(request)), "action": action, "outcomes": outcomes},
        409 if failed else 200,
    )
