"""Fulfilment on the ticket page: the dry-run plan (per system, the rows each statement would
touch, the sections an access package would hold), the DPO's approve button bound to the
plan's hash (`rightsdesk fulfil ID --approve PLANHASH`), and the runs with their systems
(failed ones, manual tasks). Every change is one `FulfilmentService` call.
"""

from __future__ import annotations

from typing import Any

from starlette.requests import Request
from starlette.responses import RedirectResponse, Response

from console.pages import nav_context
from console.web import error_page, form_of, guard, render, session_of
from rightsdesk.fulfilment import FulfilmentError, FulfilmentService
from rightsdesk.fulfilment.plan import actions_for
from rightsdesk.models import ACTIVE_STATUSES, Ticket, TicketStatus
from rightsdesk.tickets import TicketNotFound


def fulfilment_of(request: Request) -> FulfilmentService | None:
    found: FulfilmentService | None = request.app.state.fulfilment
    return found


async def fulfilment_context(request: Request, ticket: Ticket) -> dict[str, Any]:
    """What the ticket page shows of fulfilment: `runs` (newest first), and for a verified,
    active ticket with something to fulfil, `plan` (the dry run) or `plan_error`."""
    fulfilment = fulfilment_of(request)
    if fulfilment is None or not fulfilment.register.systems:
        return {"runs": [], "plan": None, "plan_error": "", "enabled": False}
    runs = await fulfilment.status(ticket.public_id)
    plan: dict[str, Any] | None = None
    error = ""
    wanted = (
        ticket.verification == "verified"
        and TicketStatus(ticket.status) in ACTIVE_STATUSES
        and bool(actions_for(ticket.types))
    )
    # Once a run is under way (or done) the page shows it, not a fresh dry run of what is
    # left: a running run is finished by its retries, or by a person marking a system.
    if wanted and not any(r["status"] in ("running", "done") for r in runs):
        try:
            plan = (await fulfilment.plan(ticket.public_id)).to_json()
        except FulfilmentError as exc:
            error = str(exc)
    return {"runs": runs, "plan": plan, "plan_error": error, "enabled": True}


@guard("dpo")
async def approve(request: Request) -> Response:
    """Run the plan the DPO saw: refused (409) when the plan changed since (its hash)."""
    public_id = request.path_params["public_id"]
    fulfilment = fulfilment_of(request)
    if fulfilment is None:
        return error_page(request, 404, "fulfilment is not configured on this desk")
    plan_hash = str(form_of(request).get("plan_hash", "")).strip()
    if not plan_hash:
        return error_page(request, 400, "plan_hash: the hash of the plan shown is required")
    try:
        await fulfilment.approve(public_id, plan_hash, session_of(request).staff.actor)
    except TicketNotFound as exc:
        return error_page(request, 404, str(exc))
    except FulfilmentError as exc:
        return await ticket_again(request, public_id, str(exc), 409)
    return RedirectResponse(f"/tickets/{public_id}?done=fulfil", status_code=303)


@guard("dpo")
async def mark(request: Request) -> Response:
    """A failed or stuck system's part done by hand (`fulfil mark ID --system S --reason R`)."""
    public_id = request.path_params["public_id"]
    fulfilment = fulfilment_of(request)
    if fulfilment is None:
        return error_page(request, 404, "fulfilment is not configured on this desk")
    form = form_of(request)
    system, reason = str(form.get("system", "")), str(form.get("reason", ""))
    try:
        await fulfilment.mark(public_id, system, reason, session_of(request).staff.actor)
    except TicketNotFound as exc:
        return error_page(request, 404, str(exc))
    except FulfilmentError as exc:
        return await ticket_again(request, public_id, str(exc), 400)
    return RedirectResponse(f"/tickets/{public_id}?done=fulfil_mark", status_code=303)


async def ticket_again(request: Request, public_id: str, message: str, status: int) -> Response:
    """The ticket page again, with what was refused (a section's action failed)."""
    from console.ticket_page import ticket_context  # the page this section belongs to

    context = await ticket_context(request, public_id)
    return render(
        request,
        "ticket.html.j2",
        {**(await nav_context(request)), **context, "notice": "", "error": message},
        status,
    )
