"""the console's queues at a million tickets: active work in due-date order, and the queue
counts from the index alone (PostgreSQL)

Revision ID: 0016
Revises: 0015
Create Date: 2026-12-01 12:40:00
"""

from collections.abc import Sequence

from alembic import op
from sqlalchemy import text

revision: str = "0016"
down_revision: str | None = "0015"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_ACTIVE = "status IN ('new', 'awaiting_verification', 'open', 'in_progress', 'reopened')"
# What the queue counts test (triage, mine, unassigned, due soon, overdue, waiting): with them
# in the index, PostgreSQL counts the active tickets from the index alone.
_INCLUDE = ["status", "completion_due", "needs_review", "assignee", "unread"]


def upgrade() -> None:
    with op.batch_alter_table("ticket", schema=None) as batch_op:
        # A queue's first page of active work, most urgent first, without sorting them all.
        batch_op.create_index(
            "ix_ticket_active_due",
            ["response_due", "id"],
            unique=False,
            postgresql_where=text(_ACTIVE),
            postgresql_include=_INCLUDE,
            sqlite_where=text(_ACTIVE),
        )


def downgrade() -> None:
    with op.batch_alter_table("ticket", schema=None) as batch_op:
        batch_op.drop_index("ix_ticket_active_due")
