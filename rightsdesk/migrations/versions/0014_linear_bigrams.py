"""rd_bigrams in linear time (PostgreSQL)

0011's rd_bigrams took `substr(value, i, 2)` for every i: in a UTF-8 database each substr
walks the text from its start, so a text of n characters cost n²/2 character steps (20,000
characters: 2.5 s; 65,000: ~25 s), and PostgreSQL computes the index expression again for
every new row version (routing writes each message row more than once). A flood of big mail
then held the router in one UPDATE after another. This one splits the text into its
characters once and pairs each with the next (the same text out, for every input), and the
indexes built on it are rebuilt.

Revision ID: 0014
Revises: 0013
Create Date: 2026-12-01 12:40:00
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0014"
down_revision: str | None = "0013"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_LINEAR = (
    "CREATE OR REPLACE FUNCTION rd_bigrams(value text) RETURNS text "
    "LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$ "
    "SELECT ' ' || coalesce(string_agg(c || n, ' ' ORDER BY i), '') || ' ' "
    "FROM (SELECT c, i, lead(c) OVER (ORDER BY i) AS n "
    "FROM unnest(string_to_array(value, NULL)) WITH ORDINALITY AS t(c, i)) AS pairs "
    "WHERE n IS NOT NULL $$"
)
_QUADRATIC = (
    "CREATE OR REPLACE FUNCTION rd_bigrams(value text) RETURNS text "
    "LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$ "
    "SELECT ' ' || coalesce(string_agg(substr(value, i, 2), ' ' ORDER BY i), '') || ' ' "
    "FROM generate_series(1, char_length(value) - 1) AS i $$"
)
_INDEXES = (
    "ix_trgm_message_bigrams",
    "ix_trgm_ticket_subject_bigrams",
    "ix_trgm_requester_name_bigrams",
)


def _define(function: str) -> None:
    if op.get_bind().dialect.name == "sqlite":
        return  # SQLite searches with FTS5 (0011): no function to replace
    op.execute(function)
    for index in _INDEXES:
        op.execute(f"REINDEX INDEX {index}")


def upgrade() -> None:
    _define(_LINEAR)


def downgrade() -> None:
    _define(_QUADRATIC)
