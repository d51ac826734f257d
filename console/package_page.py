"""The response package on the ticket page (issue #17): its state (delivered, opened,
downloaded, expired, revoked), a "deliver package" button (a link to the portal sent on the
ticket's channel, `rightsdesk tickets deliver ID`) and revoking a live link with a reason.
Every change is one `PackageService` call; the portal serves what is delivered."""

from __future__ import annotations

from typing import Any

from starlette.requests import Request
from starlette.responses import RedirectResponse, Response

from console.web import error_page, form_of, guard, session_of
from rightsdesk.models import Ticket
from rightsdesk.packages import PACKAGE_TYPES, PackageError, PackageService
from rightsdesk.tickets import TicketNotFound


def packages_of(request: Request) -> PackageService | None:
    found: PackageService | None = request.app.state.packages
    return found


async def package_context(request: Request, ticket: Ticket) -> dict[str, Any]:
    """`package`: the newest package's state and files (None when there is none); `wanted`:
    the ticket asks for a copy of the data; `enabled`: packages are configured here."""
    packages = packages_of(request)
    if packages is None or not packages.configured:
        return {"enabled": False, "package": None, "wanted": False}
    return {
        "enabled": True,
        "package": await packages.status(ticket.public_id),
        "wanted": bool(PACKAGE_TYPES & set(ticket.types)),
    }


@guard("work")
async def deliver(request: Request) -> Response:
    """Seal the package and send the requester its link (again: a new link, the old one
    stops working). Refused, with the core's reason, when there is nothing to deliver."""
    public_id = request.path_params["public_id"]
    packages = packages_of(request)
    if packages is None:
        return error_page(request, 404, "response packages are not configured on this desk")
    try:
        await packages.deliver(public_id, session_of(request).staff.actor)
    except TicketNotFound as exc:
        return error_page(request, 404, str(exc))
    except PackageError as exc:
        return await _ticket_again(request, public_id, str(exc))
    return RedirectResponse(f"/tickets/{public_id}?done=deliver", status_code=303)


@guard("work")
async def revoke(request: Request) -> Response:
    public_id = request.path_params["public_id"]
    packages = packages_of(request)
    if packages is None:
        return error_page(request, 404, "response packages are not configured on this desk")
    reason = str(form_of(request).get("reason", ""))
    try:
        await packages.revoke(public_id, session_of(request).staff.actor, reason)
    except TicketNotFound as exc:
        return error_page(request, 404, str(exc))
    except PackageError as exc:
        return await _ticket_again(request, public_id, str(exc))
    return RedirectResponse(f"/tickets/{public_id}?done=revoke_link", status_code=303)


async def _ticket_again(request: Request, public_id: str, message: str) -> Response:
    from console.fulfil_page import ticket_again  # the page this section belongs to

    return await ticket_again(request, public_id, message, 400)
