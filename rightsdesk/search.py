"""Finding a ticket from what the DPO has in hand: its id, the requester's address, phone,
name or account id, or words of what they wrote (Chinese too).

Every kind of match is one indexed query returning at most `limit` ticket ids; their union is
read and shown newest first. Words of messages (inbound only: our own mail, codes included,
is never searched) go through a trigram index: SQLite FTS5 with the trigram tokenizer,
PostgreSQL pg_trgm under ILIKE. A trigram index needs three characters: on PostgreSQL a
two-character query (注销, 张三) uses GIN indexes over the texts' sets of character pairs
(rd_bigrams, in the migration; the first 32,768 characters of a text); on SQLite it is a scan
(a desk's size), and a one-character query scans on both.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

import zhconv
from sqlalchemy import Text, cast, column, literal, literal_column, table, union_all
from sqlalchemy.dialects import postgresql
from sqlmodel import col, func, or_, select
from sqlmodel.ext.asyncio.session import AsyncSession

from rightsdesk.db import Database
from rightsdesk.identifiers import mask_for_display
from rightsdesk.models import (
    Account,
    Message,
    Requester,
    RequesterContact,
    Ticket,
    VerificationChallenge,
)
from rightsdesk.tickets import TicketError

_TICKET_ID = re.compile(r"^PRIV-\d{4}-\d{6,}$", re.IGNORECASE)
_PHONE_LIKE = re.compile(r"^\+?[\d\s().-]{7,}$")
SNIPPET_CHARS = 40


@dataclass(frozen=True)
class SearchHit:
    ticket: Ticket
    matched: list[str]  # id | email | phone | name | account | text
    snippet: str | None = None  # around the first match in a message, masked


class TicketSearch:
    def __init__(self, db: Database) -> None:
        self.db = db

    async def search(self, query: str, limit: int = 50) -> list[SearchHit]:
        wanted = _wanted(query)
        found = await self.matches(wanted, limit)
        if not found:
            return []
        async with self.db.reading() as session:
            tickets = (
                await session.exec(
                    select(Ticket)
                    .where(col(Ticket.id).in_(list(found)))
                    .order_by(col(Ticket.id).desc())
                    .limit(limit)
                )
            ).all()
            texts = [t.id for t in tickets if t.id is not None and "text" in found[t.id]]
            snippets = await self._snippets(session, texts, wanted) if texts else {}
        return [
            SearchHit(t, found[t.id or 0], snippets.get(t.id or 0))
            for t in tickets
            if t.id is not None
        ]

    async def matches(self, query: str, limit: int = 50) -> dict[int, list[str]]:
        """The newest `limit` matching ticket ids (highest first) and what matched each, without
        reading the tickets: the console narrows its lists with them."""
        wanted = _wanted(query)
        found: dict[int, list[str]] = {}
        for kind, ids in await self._matches(wanted, limit):
            for ticket_id in ids:
                kinds = found.setdefault(ticket_id, [])
                if kind not in kinds:
                    kinds.append(kind)
        newest = sorted(found, reverse=True)[:limit]
        return {ticket_id: found[ticket_id] for ticket_id in newest}

    async def snippets(self, ticket_ids: list[int], query: str) -> dict[int, str]:
        """The first matching passage of each ticket's inbound messages, masked."""
        if not ticket_ids:
            return {}
        async with self.db.reading() as session:
            return await self._snippets(session, ticket_ids, _wanted(query))

    async def _matches(self, q: str, limit: int) -> list[tuple[str, list[int]]]:
        """Each kind of match as a small indexed query on literal values, newest first (a chain
        of IN subqueries lets the planner pick a scan of the ticket table). The ones that need
        nothing found before go to the server together, as one UNION ALL (one round trip for
        every spelling of the words, where each was a trip of its own), beside the account
        directory's lookup (Database.read_each: at once on PostgreSQL)."""
        branches: list[tuple[str, Any]] = []  # (kind, a query of ticket ids): sent together

        async def ids(session: AsyncSession, query: Any) -> list[Any]:
            return [r for r in (await session.exec(query.limit(limit))).all() if r is not None]

        if _TICKET_ID.match(q):
            async with self.db.reading() as session:
                by_id = select(Ticket.id).where(Ticket.public_id == q.upper())
                return [("id", await ids(session, by_id))]
        is_email = "@" in q and " " not in q
        is_phone = bool(_PHONE_LIKE.match(q))
        variants = _phone_variants(q) if is_phone else []
        addresses = [q.lower()] if is_email else variants
        # The account directory: its id, registered email or phone.
        conditions: list[Any] = [Account.id == q]
        if is_email:
            conditions.append(Account.email == q.lower())
        if is_phone:
            conditions.append(col(Account.phone).in_([*variants, q]))
        if addresses:  # how the requester reached us
            kind = "email" if is_email else "phone"
            direct = select(Ticket.id).where(col(Ticket.contact_value).in_(addresses))
            branches.append((kind, direct))
            contacts = (
                select(RequesterContact.requester_id)
                .where(col(RequesterContact.kind).in_(["email", "phone", "telegram"]))
                .where(col(RequesterContact.value).in_(addresses))
            )
            branches.append((f"requesters:{kind}", contacts))
        if is_phone:  # a number in what they wrote, however it was spaced
            digits = "%" + "".join(ch for ch in q if ch.isdigit()) + "%"
            branches.append(("phone", _inbound().where(col(Message.text).like(digits))))
        else:
            for written in scripts(q):  # 注销 finds 註銷 too, and the other way round
                if not is_email:
                    named = select(Requester.id).where(self._contains(Requester.name, written))
                    branches.append(("requesters:name", named))
                    subject = select(Ticket.id).where(self._contains(Ticket.subject, written))
                    branches.append(("text", subject))
                branches.append(("text", self._text_query(written)))

        async def accounts(session: AsyncSession) -> list[tuple[str, list[int]]]:
            if len(q) > 128:
                return []
            found = await ids(session, select(Account.id).where(or_(*conditions)))
            if not found:
                return []
            holders = select(Requester.id).where(col(Requester.account_id).in_(found))
            proven = await ids(session, holders)
            results: list[tuple[str, list[int]]] = []
            if proven:
                owned = select(Ticket.id).where(col(Ticket.requester_id).in_(proven))
                results.append(("account", await ids(session, owned)))
            matched = select(VerificationChallenge.ticket_id).where(
                col(VerificationChallenge.account_id).in_(found)
            )
            return [*results, ("account", await ids(session, matched))]

        async def together(session: AsyncSession) -> list[tuple[str, list[int]]]:
            return await self._together(session, branches, limit)

        by_account, by_rest = await self.db.read_each(accounts, together)
        return [*by_account, *by_rest]

    async def _together(
        self, session: AsyncSession, branches: list[tuple[str, Any]], limit: int
    ) -> list[tuple[str, list[int]]]:
        """Every branch's first `limit` ids in one statement (each branch a subquery of its
        own with its LIMIT, tagged with its place), then the tickets of the requesters found
        ("requesters:KIND" branches) in a second: two round trips for every spelling of the
        words, where each query was a trip of its own. No ORDER BY inside: a trigram match
        is read from its index and stopped at the limit; asked for the newest, PostgreSQL
        walked the primary key backwards through a million rows for a word that was not
        there."""
        if not branches:
            return []
        parts = []
        for n, (_, query) in enumerate(branches):
            inner = query.limit(limit).subquery(f"b{n}")
            parts.append(select(literal(n).label("branch"), inner.c[0].label("found")))
        rows = (await session.exec(union_all(*parts))).all()  # type: ignore[call-overload]
        found: list[list[int]] = [[] for _ in branches]
        for branch, value in rows:
            if value is not None:
                found[branch].append(value)
        via = {n for n, (kind, _) in enumerate(branches) if kind.startswith("requesters:")}
        requesters = sorted({r for n in via for r in found[n]})
        if requesters:
            owned = await session.exec(
                select(Ticket.id, Ticket.requester_id)
                .where(col(Ticket.requester_id).in_(requesters))
                .limit(limit * len(via))
            )
            tickets: dict[int, list[int]] = {}
            for ticket_id, requester_id in owned.all():
                if ticket_id is not None:
                    tickets.setdefault(requester_id, []).append(ticket_id)
            for n in via:
                found[n] = [t for r in found[n] for t in tickets.get(r, [])][:limit]
        kinds = [kind.removeprefix("requesters:") for kind, _ in branches]
        return list(zip(kinds, found, strict=True))

    def _contains(self, column: Any, q: str) -> Any:
        """`column` contains q, case aside, in a form the trigram indexes answer: on
        PostgreSQL a two-character q goes through the bigram indexes (rd_bigrams)."""
        if not self.db.is_sqlite and len(q) == 2 and not any(ch.isspace() for ch in q):
            pairs = func.rd_bigrams(col(column), type_=postgresql.ARRAY(Text))
            return pairs.contains(postgresql.array([cast(q.lower(), Text)]))
        return col(column).ilike("%" + _escape_like(q) + "%", escape="\\")

    def _text_query(self, q: str) -> Any:
        if self.db.is_sqlite and len(q) >= 3:
            # A phrase of trigrams: the text contains q, case aside.
            phrase = '"' + q.replace('"', '""') + '"'
            fts = table("message_fts", column("rowid"))
            # An anonymous parameter: every spelling's phrase goes in one statement.
            matching = select(fts.c.rowid).where(literal_column("message_fts").op("MATCH")(phrase))
            return _inbound().where(col(Message.id).in_(matching))
        # PostgreSQL: the partial trigram indexes (direction = 'in') answer this; on SQLite a
        # query under three characters is a scan.
        return _inbound().where(self._contains(Message.text, q))

    async def _snippets(
        self, session: AsyncSession, ticket_ids: list[int], q: str
    ) -> dict[int, str]:
        """The first matching passage of each ticket's messages, masked."""
        found: dict[int, str] = {}
        rows = await session.exec(
            select(Message.ticket_id, Message.text)
            .where(col(Message.ticket_id).in_(ticket_ids))
            .where(Message.direction == "in")
            .where(col(Message.text).is_not(None))
            .order_by(col(Message.id))
        )
        needles = [written.lower() for written in scripts(q)]
        for ticket_id, text in rows.all():
            if ticket_id is None or ticket_id in found or not text:
                continue
            lowered = text.lower()
            at = next((i for i in (lowered.find(n) for n in needles) if i >= 0), -1)
            if at < 0:
                continue
            start = max(0, at - SNIPPET_CHARS)
            end = min(len(text), at + len(q) + SNIPPET_CHARS)
            passage = " ".join(text[start:end].split())
            before = "…" if start else ""
            after = "…" if end < len(text) else ""
            found[ticket_id] = before + mask_for_display(passage) + after
        return found


def scripts(q: str) -> list[str]:
    """q as written, then in simplified and in traditional characters where they differ: a
    requester in Hong Kong writes 註銷帳號, the DPO searches 注销账号."""
    found = [q]
    if any("\u4e00" <= ch <= "\u9fff" for ch in q):
        # Each region's table: 账号 is 帳號 in Taiwan's (賬號 in the generic one), 帳號 is 账号
        # in the mainland's (帐号 in the generic one); both spellings are written.
        for region in ("zh-cn", "zh-hans", "zh-tw", "zh-hk", "zh-hant"):
            variant = zhconv.convert(q, region)
            if variant not in found:
                found.append(variant)
    return found


def _wanted(query: str) -> str:
    wanted = " ".join(query.split())
    if not wanted:
        raise TicketError("search for something: a ticket id, an address, a phone, words")
    return wanted


def _inbound() -> Any:
    # No DISTINCT: it would read every match before the LIMIT (125,000 rows for a common
    # word at a million tickets); repeated ticket ids fold into one hit in Python.
    return (
        select(Message.ticket_id)
        .where(Message.direction == "in")
        .where(col(Message.ticket_id).is_not(None))
    )


def _escape_like(value: str) -> str:
    return value.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


def _phone_variants(q: str) -> list[str]:
    """The ways a phone number is stored: digits, with +86, without it."""
    digits = "".join(ch for ch in q if ch.isdigit())
    variants = {digits, "+" + digits}
    if digits.startswith("86") and len(digits) == 13:
        variants |= {digits[2:], "+" + digits}
    if len(digits) == 11:
        variants |= {"+86" + digits, "86" + digits}
    return sorted(variants)
