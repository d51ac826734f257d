"""every stored message knows the size of its raw bytes: pages read messages without them

Revision ID: 0017
Revises: 0016
Create Date: 2026-12-01 22:10:00
"""

from collections.abc import Sequence

from alembic import op
from sqlalchemy import text

revision: str = "0017"
down_revision: str | None = "0016"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    # Rows stored before raw_size existed (0002) say 0; the ticket page no longer loads the
    # bytes to measure them, so the size is written once here. length() of a BLOB or bytea
    # is its size in bytes on both databases.
    op.execute(
        text("UPDATE message SET raw_size = length(raw) WHERE raw_size = 0 AND raw IS NOT NULL")
    )


def downgrade() -> None:
    # Nothing to undo: the sizes are true, and 0016 read them the same way.
    pass
