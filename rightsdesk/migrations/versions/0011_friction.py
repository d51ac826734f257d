"""unread follow-ups, suggested types, duplicates and merges, dismissal, completion
extensions, and the search indexes (SQLite FTS5 trigram, PostgreSQL pg_trgm)

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-01 09:30:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
import sqlmodel.sql.sqltypes
from alembic import op

revision: str = "0011"
down_revision: str | None = "0010"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# Inbound messages only: our own mail (codes included) is never searched.
_SQLITE_SEARCH = (
    "CREATE VIRTUAL TABLE message_fts USING fts5("
    "subject, text, content='message', content_rowid='id', tokenize='trigram')",
    "INSERT INTO message_fts(rowid, subject, text) "
    "SELECT id, subject, text FROM message WHERE direction = 'in' AND text IS NOT NULL",
    "CREATE TRIGGER message_fts_insert AFTER INSERT ON message "
    "WHEN new.direction = 'in' AND new.text IS NOT NULL BEGIN "
    "INSERT INTO message_fts(rowid, subject, text) VALUES (new.id, new.subject, new.text); END",
    # Only a change of the indexed text touches the index (routing updates every row once).
    "CREATE TRIGGER message_fts_delete_old AFTER UPDATE OF subject, text ON message "
    "WHEN old.direction = 'in' AND old.text IS NOT NULL BEGIN "
    "INSERT INTO message_fts(message_fts, rowid, subject, text) "
    "VALUES ('delete', old.id, old.subject, old.text); END",
    "CREATE TRIGGER message_fts_insert_new AFTER UPDATE OF subject, text ON message "
    "WHEN new.direction = 'in' AND new.text IS NOT NULL BEGIN "
    "INSERT INTO message_fts(rowid, subject, text) VALUES (new.id, new.subject, new.text); END",
    "CREATE TRIGGER message_fts_delete AFTER DELETE ON message "
    "WHEN old.direction = 'in' AND old.text IS NOT NULL BEGIN "
    "INSERT INTO message_fts(message_fts, rowid, subject, text) "
    "VALUES ('delete', old.id, old.subject, old.text); END",
)
_SQLITE_SEARCH_DROP = (
    "DROP TRIGGER IF EXISTS message_fts_insert",
    "DROP TRIGGER IF EXISTS message_fts_delete_old",
    "DROP TRIGGER IF EXISTS message_fts_insert_new",
    "DROP TRIGGER IF EXISTS message_fts_delete",
    "DROP TABLE IF EXISTS message_fts",
)
# A trigram index cannot answer a two-character query (注销, 张三: none of its trigrams are
# known), and pg_trgm then reads the whole index. rd_bigrams gives a text's distinct
# overlapping character pairs, lower-cased ({请注,注销,销我}); a GIN index over that array
# answers `rd_bigrams(text) @> ARRAY['注销']` with one key's posting list. It must be linear
# in the text: substr(value, i, 2) for each i walks the string from its start (UTF-8), and a
# 1 MB body took over an hour to index, stalling the router's transaction. Only the first
# 32,768 characters are paired: three or more characters search a whole text (pg_trgm).
BIGRAM_CHARS = 32768
_BIGRAMS = (
    "CREATE OR REPLACE FUNCTION rd_bigrams(value text) RETURNS text[] "
    "LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$ "
    "SELECT coalesce(array_agg(DISTINCT pair), '{}') FROM ("
    "SELECT c || lead(c) OVER (ORDER BY i) AS pair "
    f"FROM unnest(regexp_split_to_array(lower(left(value, {BIGRAM_CHARS})), '')) "
    "WITH ORDINALITY AS chars(c, i)) AS pairs WHERE pair IS NOT NULL $$"
)
_POSTGRESQL_SEARCH = (
    "CREATE EXTENSION IF NOT EXISTS pg_trgm",
    _BIGRAMS,
    "CREATE INDEX ix_trgm_message_text ON message USING gin (text gin_trgm_ops) "
    "WHERE direction = 'in'",
    "CREATE INDEX ix_trgm_ticket_subject ON ticket USING gin (subject gin_trgm_ops)",
    "CREATE INDEX ix_trgm_requester_name ON requester USING gin (name gin_trgm_ops)",
    "CREATE INDEX ix_bigrams_message_text ON message USING gin (rd_bigrams(text)) "
    "WHERE direction = 'in'",
    "CREATE INDEX ix_bigrams_ticket_subject ON ticket USING gin (rd_bigrams(subject))",
    "CREATE INDEX ix_bigrams_requester_name ON requester USING gin (rd_bigrams(name))",
)
_POSTGRESQL_SEARCH_DROP = (
    "DROP INDEX IF EXISTS ix_trgm_message_text",
    "DROP INDEX IF EXISTS ix_trgm_ticket_subject",
    "DROP INDEX IF EXISTS ix_trgm_requester_name",
    "DROP INDEX IF EXISTS ix_bigrams_message_text",
    "DROP INDEX IF EXISTS ix_bigrams_ticket_subject",
    "DROP INDEX IF EXISTS ix_bigrams_requester_name",
)


def upgrade() -> None:
    with op.batch_alter_table("ticket", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("unread", sa.Boolean(), server_default=sa.false(), nullable=False)
        )
        batch_op.add_column(
            sa.Column("unread_since", sqlmodel.sql.sqltypes.UTCDateTime(), nullable=True)
        )
        batch_op.add_column(
            sa.Column("suggested_types", sa.JSON(), server_default="[]", nullable=False)
        )
        batch_op.add_column(sa.Column("duplicate_of", sa.Integer(), nullable=True))
        batch_op.add_column(sa.Column("merged_into", sa.Integer(), nullable=True))
        batch_op.add_column(
            sa.Column("dismissal_reason", sqlmodel.sql.sqltypes.AutoString(), nullable=True)
        )
        batch_op.add_column(sa.Column("original_completion_due", sa.Date(), nullable=True))
        batch_op.add_column(
            sa.Column(
                "completion_extension_reason", sqlmodel.sql.sqltypes.AutoString(), nullable=True
            )
        )
        batch_op.create_foreign_key(
            "fk_ticket_duplicate_of_ticket", "ticket", ["duplicate_of"], ["id"]
        )
        batch_op.create_foreign_key(
            "fk_ticket_merged_into_ticket", "ticket", ["merged_into"], ["id"]
        )
        batch_op.create_index("ix_ticket_unread", ["unread"], unique=False)
        batch_op.create_index("ix_ticket_contact_value", ["contact_value"], unique=False)
    with op.batch_alter_table("account", schema=None) as batch_op:
        batch_op.create_index("ix_account_phone", ["phone"], unique=False)
    with op.batch_alter_table("verificationchallenge", schema=None) as batch_op:
        batch_op.create_index("ix_verificationchallenge_account_id", ["account_id"], unique=False)
    bind = op.get_bind()
    statements = _SQLITE_SEARCH if bind.dialect.name == "sqlite" else _POSTGRESQL_SEARCH
    for statement in statements:
        op.execute(statement)


def downgrade() -> None:
    bind = op.get_bind()
    drops = _SQLITE_SEARCH_DROP if bind.dialect.name == "sqlite" else _POSTGRESQL_SEARCH_DROP
    for statement in drops:
        op.execute(statement)
    if bind.dialect.name != "sqlite":
        op.execute("DROP FUNCTION IF EXISTS rd_bigrams(text)")
    with op.batch_alter_table("verificationchallenge", schema=None) as batch_op:
        batch_op.drop_index("ix_verificationchallenge_account_id")
    with op.batch_alter_table("account", schema=None) as batch_op:
        batch_op.drop_index("ix_account_phone")
    with op.batch_alter_table("ticket", schema=None) as batch_op:
        batch_op.drop_index("ix_ticket_contact_value")
        batch_op.drop_index("ix_ticket_unread")
        batch_op.drop_constraint("fk_ticket_merged_into_ticket", type_="foreignkey")
        batch_op.drop_constraint("fk_ticket_duplicate_of_ticket", type_="foreignkey")
        for name in (
            "completion_extension_reason",
            "original_completion_due",
            "dismissal_reason",
            "merged_into",
            "duplicate_of",
            "suggested_types",
            "unread_since",
            "unread",
        ):
            batch_op.drop_column(name)
