"""How far a ticket's dates may move: the rules `TicketService.extend` checks before it
changes anything. An answer date moves later, never past `DeadlinePolicy.latest_extension` of
the first date promised; an erasure's or account deletion's completion date (30 days) moves
only with a date and reason of its own, never past `latest_completion` of its first."""

from __future__ import annotations

import datetime as dt

from rightsdesk.deadlines import DeadlinePolicy
from rightsdesk.models import Ticket
from rightsdesk.ticket_errors import TicketError


def check_extension(
    ticket: Ticket,
    policy: DeadlinePolicy,
    today: dt.date,
    until: dt.date,
    completion_until: dt.date | None,
) -> None:
    """Refuse (TicketError) dates the rules do not allow; nothing is changed here."""
    floor = ticket.response_due or today
    if until <= floor:
        raise TicketError(
            f"the new due date must be after {floor.isoformat()}, got {until.isoformat()}"
        )
    _not_past(policy.latest_extension(ticket.original_response_due or floor), until, "answer")
    completion = ticket.completion_due
    if completion_until is not None:
        if completion is None:
            raise TicketError(
                f"{ticket.public_id} has no completion date (only erasure and account "
                "deletion do); extend the answer date alone"
            )
        if completion_until <= completion or completion_until < until:
            raise TicketError(
                f"the new completion date must be after {completion.isoformat()} and "
                f"not before the answer date {until.isoformat()}, "
                f"got {completion_until.isoformat()}"
            )
        most = policy.latest_completion(ticket.original_completion_due or completion)
        _not_past(most, completion_until, "completion")
    elif completion is not None and until > completion:
        raise TicketError(
            f"{until.isoformat()} is past the completion date {completion.isoformat()} "
            "(deletion within 30 days): give --completion-until and --completion-reason"
        )


def _not_past(latest: dt.date, until: dt.date, which: str) -> None:
    if until > latest:
        raise TicketError(
            f"an extension may move the {which} date to {latest.isoformat()} at the "
            f"latest, got {until.isoformat()}",
            "extension_too_far",
            latest=latest.isoformat(),
            until=until.isoformat(),
        )
