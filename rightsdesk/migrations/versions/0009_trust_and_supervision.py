"""trust and supervision: proof for changes by mail, pending withdrawals, task heartbeats,
outbox claim owners

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-01 09:20:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
import sqlmodel.sql.sqltypes
from alembic import op

revision: str = "0009"
down_revision: str | None = "0008"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "taskheartbeat",
        sa.Column("replica", sqlmodel.sql.sqltypes.AutoString(length=200), nullable=False),
        sa.Column("task", sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
        sa.Column("state", sqlmodel.sql.sqltypes.AutoString(length=16), nullable=False),
        sa.Column("since", sqlmodel.sql.sqltypes.UTCDateTime(), nullable=False),
        sa.Column("failures", sa.Integer(), nullable=False),
        sa.Column("failing_since", sqlmodel.sql.sqltypes.UTCDateTime(), nullable=True),
        sa.Column("last_error", sqlmodel.sql.sqltypes.AutoString(length=300), nullable=True),
        sa.Column("detail", sqlmodel.sql.sqltypes.AutoString(length=200), nullable=True),
        sa.Column("beat_at", sqlmodel.sql.sqltypes.UTCDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("replica", "task"),
    )
    with op.batch_alter_table("message", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column(
                "unauthenticated_thread", sa.Boolean(), server_default=sa.false(), nullable=False
            )
        )
    with op.batch_alter_table("outboxentry", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("claimed_by", sqlmodel.sql.sqltypes.AutoString(length=200), nullable=True)
        )
    with op.batch_alter_table("ticket", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("withdrawal_requested_at", sqlmodel.sql.sqltypes.UTCDateTime(), nullable=True)
        )
        batch_op.add_column(
            sa.Column("withdrawal_final_at", sqlmodel.sql.sqltypes.UTCDateTime(), nullable=True)
        )
        batch_op.create_index(
            batch_op.f("ix_ticket_withdrawal_final_at"), ["withdrawal_final_at"], unique=False
        )


def downgrade() -> None:
    with op.batch_alter_table("ticket", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_ticket_withdrawal_final_at"))
        batch_op.drop_column("withdrawal_final_at")
        batch_op.drop_column("withdrawal_requested_at")
    with op.batch_alter_table("outboxentry", schema=None) as batch_op:
        batch_op.drop_column("claimed_by")
    with op.batch_alter_table("message", schema=None) as batch_op:
        batch_op.drop_column("unauthenticated_thread")
    op.drop_table("taskheartbeat")
