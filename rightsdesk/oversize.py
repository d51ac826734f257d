"""Files a requester mailed that were too large to keep (over `mail.max_attachment_bytes`: the
parser keeps only their name, type, size and hash). The mail that answers theirs (the
acknowledgement, a person's reply) names them and says how to send them again
(`_too_large.<lang>.j2`), so a requester never believes we hold a document we do not."""

from __future__ import annotations

from typing import Any

from sqlalchemy import func
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from rightsdesk.filenames import safe_name
from rightsdesk.models import Message, OutboxEntry, StoredAttachment, Ticket

# The mails that answer the requester's own mail.
ANSWERING_KINDS = frozenset({"acknowledgement", "reply"})


async def too_large_context(
    session: AsyncSession, ticket: Ticket, max_bytes: int
) -> dict[str, Any]:
    """`files_not_kept`: the names of the files not kept in the requester's mail on this
    ticket since our last answer to them (each is told once); `max_attachment_mb`: the
    limit."""
    # Since our last answer, not our last mail: a code mail goes out before the
    # acknowledgement, and says nothing about files.
    ours = (
        select(func.coalesce(func.max(Message.id), 0))
        .join(OutboxEntry, col(OutboxEntry.message_id) == col(Message.id))
        .where(Message.ticket_id == ticket.id)
        .where(col(OutboxEntry.kind).in_(sorted(ANSWERING_KINDS)))
        .scalar_subquery()
    )
    found = await session.exec(
        select(StoredAttachment.filename)
        .join(Message, col(Message.id) == col(StoredAttachment.message_id))
        .where(Message.ticket_id == ticket.id)
        .where(Message.direction == "in")
        .where(col(Message.id) > ours)
        .where(col(StoredAttachment.content).is_(None))
        .order_by(col(StoredAttachment.id))
    )
    return {
        "files_not_kept": [safe_name(name, "file") for name in found.all()],
        "max_attachment_mb": f"{max_bytes / (1024 * 1024):g}",
    }
