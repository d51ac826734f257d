"""The DPO's corrections (`tickets relabel`) as training examples.

Each relabelled ticket contributes its first inbound message with the labels the DPO settled on
last. Corrections only ever join the train split: the dev and test figures stay comparable
between a model trained with them and one trained without.
"""

from __future__ import annotations

from sqlmodel import col, select

from classifiers.dataset import LabelledExample, checked_labels
from rightsdesk.db import Database
from rightsdesk.models import Event, Message


async def load_corrections(db: Database) -> list[LabelledExample]:
    async with db.reading() as session:
        events = (
            await session.exec(
                select(Event)
                .where(Event.action == "relabelled")
                .order_by(col(Event.ticket_id), col(Event.seq))
            )
        ).all()
        latest: dict[int, list[str]] = {e.ticket_id: list(e.after.get("types", [])) for e in events}
        # Each relabelled ticket's first inbound message, in one query.
        firsts: dict[int, Message] = {}
        for message in (
            await session.exec(
                select(Message)
                .where(col(Message.ticket_id).in_(latest), Message.direction == "in")
                .order_by(col(Message.ticket_id), col(Message.received_at), col(Message.id))
            )
        ).all():
            assert message.ticket_id is not None
            firsts.setdefault(message.ticket_id, message)
        examples: list[LabelledExample] = []
        for ticket_id, types in latest.items():
            first = firsts.get(ticket_id)
            text = (first.new_text or first.text) if first else None
            if first is None or not text or not types:
                continue
            examples.append(
                LabelledExample(
                    id=f"correction:{ticket_id}",
                    subject=first.subject or "",
                    text=text,
                    labels=checked_labels(types, f"correction of ticket {ticket_id}"),
                    split="train",
                    source="correction",
                )
            )
        return examples
