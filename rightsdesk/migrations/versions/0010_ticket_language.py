"""the language of each ticket

Revision ID: 0010
Revises: 0008
Create Date: 2026-12-01 09:30:00.000000

A requester who writes in English once and in Chinese later has two conversations, each in its
own language: the language moves from the requester to the ticket. Existing tickets take their
requester's language of today, the best there is.
"""

from collections.abc import Sequence

import sqlalchemy as sa
import sqlmodel.sql.sqltypes
from alembic import op

revision: str = "0010"
down_revision: str | None = "0009"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("ticket") as batch:
        batch.add_column(
            sa.Column("language", sqlmodel.sql.sqltypes.AutoString(length=8), nullable=True)
        )
    op.execute(
        "UPDATE ticket SET language = "
        "(SELECT requester.language FROM requester WHERE requester.id = ticket.requester_id)"
    )


def downgrade() -> None:
    with op.batch_alter_table("ticket") as batch:
        batch.drop_column("language")
