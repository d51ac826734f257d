"""What the ticket rules refuse, as exceptions whose message is meant for the person who asked
(rightsdesk.tickets raises them; every adapter shows them as they are)."""

from __future__ import annotations

from collections.abc import Sequence

from rightsdesk.models import RequestType
from rightsdesk.refusals import Refusal


class TicketError(Refusal):
    """A request the ticket rules refuse; the message is meant for the person who asked."""


class TicketNotFound(TicketError):
    pass


class IllegalTransition(TicketError):
    pass


class TicketConflict(TicketError):
    """Someone else changed the ticket after the person acting last saw it."""


class DismissingRightsRequest(TicketError):
    """A dismissal of a ticket labelled as a rights request, without the override: a request
    the desk owes an answer to would end unanswered (no mail goes on dismissal). The person
    relabels it `not_rights_request` first, or confirms (`despite_types`)."""

    def __init__(self, public_id: str, types: Sequence[RequestType]) -> None:
        self.public_id = public_id
        self.types = [str(t) for t in types]
        super().__init__(
            f"{public_id} is labelled {', '.join(self.types)}, a rights request: it was not "
            "dismissed; relabel it not_rights_request first, or confirm the dismissal"
        )


class UnknownAssignee(TicketError):
    """An assignee who is not an enabled console user: nobody would ever see the work."""

    def __init__(self, name: str, disabled: bool, cannot_work: bool = False) -> None:
        self.name = name
        self.disabled = disabled
        # An enabled user whose role does not work tickets (an auditor reads, never acts).
        self.cannot_work = cannot_work
        why = (
            "is disabled"
            if disabled
            else "may not work tickets (an auditor)"
            if cannot_work
            else "is not a user of the console"
        )
        super().__init__(f"{name} {why}: the ticket was not assigned")
