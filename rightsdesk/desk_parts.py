"""What the desk's answering services are built on: the settings, the database, the clock, the
ticket rules and the outbox. `Answers`, `FulfilmentService`, `TaskDesk`, `PackageService`,
`PackageAccess` and `WebForms` each take one `DeskParts` (plus what is theirs alone) instead of
the same five arguments, and read them as their own attributes."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # the services import this module; their parts are only annotations here
    from rightsdesk.clock import Clock
    from rightsdesk.config import Settings
    from rightsdesk.db import Database
    from rightsdesk.outbound import Outbox
    from rightsdesk.tickets import TicketService


@dataclass(frozen=True)
class DeskParts:
    settings: Settings
    db: Database
    clock: Clock
    tickets: TicketService
    outbox: Outbox


class OnDeskParts:
    """A service built on the desk's parts: `self.settings`, `self.db`, `self.clock`,
    `self.tickets` and `self.outbox` are the parts'."""

    def __init__(self, parts: DeskParts) -> None:
        self.parts = parts
        self.settings = parts.settings
        self.db = parts.db
        self.clock = parts.clock
        self.tickets = parts.tickets
        self.outbox = parts.outbox
