"""What every stage shares: the message being routed (`Routing`), the stage protocol, and the
batch it is routed in (`Batch`: lookups made once for all of its messages)."""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Protocol

from sqlmodel.ext.asyncio.session import AsyncSession

from rightsdesk.inbound import InboundMessage
from rightsdesk.models import Message
from rightsdesk.pipeline.classification import Classification
from rightsdesk.verification import Step

SYSTEM = "system:intake"
# What `IntakePipeline.process` answers when a transient failure left the message stored.
DEFERRED = "deferred"
TICKET_TAG = re.compile(r"\[(PRIV-\d{4}-\d{6,})\]", re.IGNORECASE)

Parser = Callable[[bytes], InboundMessage]
# A message parsed, with what the classifier found in it (to open a ticket) and in its new
# text alone (a follow-up on a ticket), both found before the write transaction.
Parsed = tuple[InboundMessage, Classification | None, Classification | None]


@dataclass
class Batch:
    """What the messages of one batch share inside its transaction: lookups done once for
    all of them, kept up to date as each message's work is done."""

    # Acknowledgements each sender of the batch got in the last hour, before the batch
    # (one query for the batch; DecideAcknowledgement), and those the batch added so far.
    acknowledged_before: dict[str, int] = field(default_factory=dict)
    acknowledged_here: Counter[str] = field(default_factory=Counter)
    # New requests are opened together (pipeline.bulk) when `bulk`: OpenTicket leaves each
    # in `openings`, and the batch opens them all in a few statements after the stages.
    bulk: bool = False
    openings: list[Routing] = field(default_factory=list)

    def acknowledgements(self, sender: str) -> int:
        return self.acknowledged_before.get(sender, 0) + self.acknowledged_here[sender]

    def done(self, routing: Routing) -> None:
        """A message's work is done (its savepoint released): count what it added."""
        if routing.row.acknowledge and routing.inbound.sender:
            self.acknowledged_here[routing.inbound.sender] += 1


@dataclass
class Routing:
    """What one message carries through the stages."""

    session: AsyncSession
    row: Message
    inbound: InboundMessage
    ticket: str | None = None  # public id of the ticket it belongs to, once known
    threaded: bool = False  # it joined an existing ticket
    # How it was tied to that ticket: "reference" (our signed Message-ID: the writer received
    # our mail) or "tag" (the [PRIV-…] subject tag from the requester's address: anyone can).
    proof: str = ""
    opened: bool = False  # it opened a new ticket
    language: str | None = None
    triage: bool = False  # the classifier was unsure: a person reads it first
    step: Step = "none"  # how the requester of a new ticket proves who they are
    outcome: str = ""
    classification: Classification | None = None  # found before the transaction, if asked
    # What the classifier read in the new text alone, for a reply that may join a ticket
    # (ReadFollowUp), found before the transaction too.
    follow_up: Classification | None = None
    sender_hint: str | None = None  # the address the DPO gave for a mail that had none
    batch: Batch = field(default_factory=Batch)


class Stage(Protocol):
    async def __call__(self, routing: Routing) -> bool:
        """Do this stage's one job; False ends the pipeline for this message."""
        ...


def storable(text: str | None) -> str | None:
    """PostgreSQL's text cannot hold NUL: a mail that carries one is stored without it."""
    return text.replace("\x00", "\ufffd") if text else text
