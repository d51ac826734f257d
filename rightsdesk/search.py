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
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

import zhconv
from sqlalchemy import (
    Integer,
    Text,
    bindparam,
    case,
    cast,
    column,
    literal,
    literal_column,
    null,
    table,
    union_all,
)
from sqlalchemy.dialects import postgresql
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.sql.functions import FunctionElement
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


@dataclass(frozen=True)
class Hits:
    """What a search found: the newest matching ticket ids (highest first) with what matched
    each, and for the ones whose messages matched, the passage of text around the match as
    the database cut it (`Window`): a snippet needs no statement of its own."""

    matched: dict[int, list[str]]
    windows: dict[int, Window]
    query: str

    def snippets(self, ticket_ids: Iterable[int]) -> dict[int, str]:
        """The first matching passage of each of these tickets' inbound messages, masked."""
        needles = [written.lower() for written in scripts(self.query)]
        found: dict[int, str] = {}
        for ticket_id in ticket_ids:
            window = self.windows.get(ticket_id)
            if window is not None and (snippet := window.snippet(needles)) is not None:
                found[ticket_id] = snippet
        return found


@dataclass(frozen=True)
class Window:
    """A stretch of a message's text around a match: `text` starts at character `start`
    (from 0) of a text `length` characters long."""

    text: str
    start: int
    length: int

    def snippet(self, needles: Sequence[str]) -> str | None:
        lowered = self.text.lower()
        at = next((i for i in (lowered.find(n) for n in needles) if i >= 0), -1)
        if at < 0:  # the database's lower() is not Python's (SQLite folds ASCII only)
            return None
        at += self.start  # where in the whole text
        start = max(0, at - SNIPPET_CHARS)
        end = min(self.length, at + len(needles[0]) + SNIPPET_CHARS)
        passage = " ".join(self.text[start - self.start : end - self.start].split())
        before = "…" if start else ""
        after = "…" if end < self.length else ""
        return before + mask_for_display(passage) + after


class TicketSearch:
    def __init__(self, db: Database) -> None:
        self.db = db

    async def search(self, query: str, limit: int = 50) -> list[SearchHit]:
        hits = await self.matches(query, limit)
        if not hits.matched:
            return []
        async with self.db.reading() as session:
            listed = select(Ticket).where(col(Ticket.id).in_(list(hits.matched)))
            tickets = list((await session.exec(listed.order_by(col(Ticket.id).desc()))).all())
        snippets = hits.snippets(hits.windows)
        return [
            SearchHit(t, hits.matched[t.id or 0], snippets.get(t.id or 0))
            for t in tickets
            if t.id is not None
        ]

    async def matches(self, query: str, limit: int = 50) -> Hits:
        """The newest `limit` matching ticket ids (highest first), what matched each and where,
        without reading the tickets: the console narrows its lists with them."""
        wanted = _wanted(query)
        found: dict[int, list[str]] = {}
        windows: dict[int, Window] = {}
        for kind, ids, passages in await self._matches(wanted, limit):
            for ticket_id, window in zip(ids, passages, strict=True):
                kinds = found.setdefault(ticket_id, [])
                if kind not in kinds:
                    kinds.append(kind)
                if window is not None:
                    windows.setdefault(ticket_id, window)
        newest = sorted(found, reverse=True)[:limit]
        return Hits(
            {ticket_id: found[ticket_id] for ticket_id in newest},
            {ticket_id: windows[ticket_id] for ticket_id in newest if ticket_id in windows},
            wanted,
        )

    async def _matches(self, q: str, limit: int) -> list[_Found]:
        """Each kind of match as a small indexed query, newest first (a chain of IN subqueries
        lets the planner pick a scan of the ticket table). The ones that need nothing found
        before go to the server together, as one UNION ALL (one round trip for every
        spelling of the words, where each was a trip of its own), beside the account
        directory's lookup (Database.read_each: at once on PostgreSQL). Each statement is
        built once per shape of query (what kind of query, how many spellings, which index
        answers each) with its values as parameters: building a six-branch UNION ALL cost
        more CPU than the rest of the search. A match in a message's text comes with the
        stretch of text around it (`Window`): the snippets were a statement and a wait of
        their own, after the page's rows."""
        if _TICKET_ID.match(q):
            async with self.db.reading() as session:
                by_id = select(Ticket.id).where(Ticket.public_id == q.upper()).limit(limit)
                found = [r for r in (await session.exec(by_id)).all() if r is not None]
                return [("id", found, [None] * len(found))]
        is_email = "@" in q and " " not in q
        is_phone = bool(_PHONE_LIKE.match(q))
        variants = _phone_variants(q) if is_phone else []
        addresses = [q.lower()] if is_email else variants
        params: dict[str, Any] = {"q": q, "email": q.lower(), "addresses": addresses}
        params["phones"] = [*variants, q]
        shape: list[tuple[str, str, str]] = []  # (kind, form, its parameter)
        if addresses:  # how the requester reached us
            kind = "email" if is_email else "phone"
            shape += [(kind, "contact", "addresses"), (f"requesters:{kind}", "contacts", "")]
        if is_phone:  # a number in what they wrote, however it was spaced
            params["digits"] = "%" + "".join(ch for ch in q if ch.isdigit()) + "%"
            shape.append(("phone", "digits", "digits"))
        else:
            for n, written in enumerate(scripts(q)):  # 注销 finds 註銷 too, and the other way
                style = self._style(written)
                params[f"w{n}"] = _pattern(style, written)
                params[f"n{n}"] = written.lower()  # where in the text: the window's middle
                if not is_email:
                    shape.append(("requesters:name", f"name:{style}", f"w{n}"))
                    shape.append(("text", f"subject:{style}", f"w{n}"))
                text_style = "fts" if self.db.is_sqlite and len(written) >= 3 else style
                if text_style != style:
                    params[f"t{n}"] = _pattern(text_style, written)
                pattern = f"t{n}" if text_style != style else f"w{n}"
                shape.append(("text", f"text:{text_style}:n{n}", pattern))
        plan = _plan(tuple(shape), limit)
        lookup = _account_plan(is_email, is_phone, limit)

        async def accounts(session: AsyncSession) -> list[_Found]:
            if len(q) > 128:
                return []
            found = await _ids(session, lookup.accounts, params)
            if not found:
                return []
            proven = await _ids(session, lookup.holders, {"found": found})
            owned = await _ids(session, lookup.owned, {"found": proven}) if proven else []
            matched = await _ids(session, lookup.challenged, {"found": found})
            return [("account", ids, [None] * len(ids)) for ids in (owned, matched)]

        async def together(session: AsyncSession) -> list[_Found]:
            return await self._together(session, plan, params)

        by_account, by_rest = await self.db.read_each(accounts, together)
        return [*by_account, *by_rest]

    async def _together(
        self, session: AsyncSession, plan: _Plan, params: dict[str, Any]
    ) -> list[_Found]:
        """The plan's UNION ALL: one round trip for every spelling of the words, the
        requesters' tickets included, the windows of text beside the text matches."""
        if plan.union is None:
            return []
        connection = await session.connection()  # Core: no ORM execution for plain ids
        rows = (await connection.execute(plan.union, params)).all()
        found: list[_Found] = [(kind, [], []) for kind in plan.kinds]
        for branch, value, text, start, length in rows:
            if value is not None:
                found[branch][1].append(value)
                window = Window(text, start, length) if text is not None else None
                found[branch][2].append(window)
        return found

    def _style(self, q: str) -> str:
        """Which index answers "contains q": on PostgreSQL a two-character q goes through the
        bigram indexes (rd_bigrams), else a trigram ILIKE."""
        if not self.db.is_sqlite and len(q) == 2 and not any(ch.isspace() for ch in q):
            return "pairs"
        return "like"


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


@lru_cache(maxsize=1024)  # shapes are few; a bound in case
def _plan(shape: tuple[tuple[str, str, str], ...], limit: int) -> _Plan:
    """The UNION ALL of a shape of query, built once: every branch's first `limit` ids,
    each a subquery of its own with its LIMIT, tagged with its place. No ORDER BY inside:
    a trigram match is read from its index and stopped at the limit; asked for the
    newest, PostgreSQL walked the primary key backwards through a million rows for a
    word that was not there."""
    parts = []
    for n, (kind, form, name) in enumerate(shape):
        branch = _branch(form, name).limit(limit)
        if kind.startswith("requesters:"):
            # The tickets of the requesters found, in the same statement: a second one
            # was a second wait for the server (behind the other clients' turns).
            branch = (
                select(Ticket.id)
                .where(col(Ticket.requester_id).in_(branch.scalar_subquery()))
                .limit(limit)
            )
        inner = branch.subquery(f"b{n}")
        window = (
            list(inner.c)[1:]
            if form.startswith("text:")
            else [cast(null(), Text), cast(null(), Integer), cast(null(), Integer)]
        )
        parts.append(select(literal(n).label("branch"), inner.c[0].label("found"), *window))
    return _Plan(
        tuple(kind.removeprefix("requesters:") for kind, _, _ in shape),
        union_all(*parts) if parts else None,
    )


def _branch(form: str, name: str) -> Any:
    """One branch's query of ids, its value the parameter `name`; a branch of message texts
    ("text:STYLE:NEEDLE") selects each match's `_window` too."""
    what, _, style = form.partition(":")
    style, _, needle = style.partition(":")
    value: Any = bindparam(name)
    if what == "contact":
        return select(Ticket.id).where(
            col(Ticket.contact_value).in_(bindparam(name, expanding=True))
        )
    if what == "contacts":
        return (
            select(RequesterContact.requester_id)
            .where(col(RequesterContact.kind).in_(["email", "phone", "telegram"]))
            .where(col(RequesterContact.value).in_(bindparam("addresses", expanding=True)))
        )
    if what == "digits":
        return _inbound().where(col(Message.text).like(value))
    if what == "name":
        return select(Requester.id).where(_contains(Requester.name, style, value))
    if what == "subject":
        return select(Ticket.id).where(_contains(Ticket.subject, style, value))
    texts = _inbound().add_columns(*_window(needle))
    if style == "fts":  # SQLite: a phrase of trigrams, the text contains it, case aside
        fts = table("message_fts", column("rowid"))
        matching = select(fts.c.rowid).where(literal_column("message_fts").op("MATCH")(value))
        return texts.where(col(Message.id).in_(matching))
    # PostgreSQL: the partial trigram indexes (direction = 'in') answer this; on SQLite a
    # query under three characters is a scan.
    return texts.where(_contains(Message.text, style, value))


class _position(FunctionElement[int]):
    """Where `needle` first occurs in `text`, from 1 (0: nowhere): strpos on PostgreSQL,
    instr on SQLite."""

    type = Integer()
    inherit_cache = True


@compiles(_position, "postgresql")
def _strpos(element: _position, compiler: Any, **kw: Any) -> str:
    return f"strpos({compiler.process(element.clauses, **kw)})"


@compiles(_position, "sqlite")
def _instr(element: _position, compiler: Any, **kw: Any) -> str:
    return f"instr({compiler.process(element.clauses, **kw)})"


def _window(needle: str) -> list[Any]:
    """The stretch of a matching text that a snippet needs (SNIPPET_CHARS each side of the
    parameter `needle`, lower-cased), where it starts (from 0) and the text's length: the
    snippet is cut from it in Python (`Window.snippet`), the text never leaves the server."""
    text_ = col(Message.text)
    at = _position(func.lower(text_), bindparam(needle))
    first = case((at > SNIPPET_CHARS, at - SNIPPET_CHARS), else_=1)
    wide = 2 * SNIPPET_CHARS + func.length(bindparam(needle))
    return [
        func.substr(text_, first, wide).label("window"),
        (first - 1).label("window_start"),
        func.length(text_).label("text_length"),
    ]


@lru_cache(maxsize=64)
def _account_plan(is_email: bool, is_phone: bool, limit: int) -> _AccountPlan:
    """The account directory's statements (its id, registered email or phone; who holds
    the accounts found, their tickets, the tickets they were proven on), built once."""
    conditions: list[Any] = [Account.id == bindparam("q")]
    if is_email:
        conditions.append(Account.email == bindparam("email"))
    if is_phone:
        conditions.append(col(Account.phone).in_(bindparam("phones", expanding=True)))
    found: Any = bindparam("found", expanding=True)
    return _AccountPlan(
        select(Account.id).where(or_(*conditions)).limit(limit),
        select(Requester.id).where(col(Requester.account_id).in_(found)).limit(limit),
        select(Ticket.id).where(col(Ticket.requester_id).in_(found)).limit(limit),
        select(VerificationChallenge.ticket_id)
        .where(col(VerificationChallenge.account_id).in_(found))
        .limit(limit),
    )


# One kind of match: its ticket ids, and beside each the window of text it matched in (None
# where what matched was not a message's text).
_Found = tuple[str, list[int], list["Window | None"]]


@dataclass(frozen=True)
class _Plan:
    """A shape of query's statements: the kinds of its branches and their UNION ALL."""

    kinds: tuple[str, ...]
    union: Any


@dataclass(frozen=True)
class _AccountPlan:
    accounts: Any
    holders: Any
    owned: Any
    challenged: Any


async def _ids(session: AsyncSession, statement: Any, params: dict[str, Any]) -> list[Any]:
    connection = await session.connection()  # Core: no ORM execution for plain ids
    found = (await connection.execute(statement, params)).scalars().all()
    return [r for r in found if r is not None]


def _contains(column: Any, style: str, value: Any) -> Any:
    """`column` contains the parameter `value`, case aside, in the form the indexes answer
    (`TicketSearch._style`; `_pattern` gives the value for each)."""
    if style == "pairs":
        pairs = func.rd_bigrams(col(column), type_=postgresql.ARRAY(Text))
        return pairs.contains(postgresql.array([cast(value, Text)]))
    return col(column).ilike(value, escape="\\")


def _pattern(style: str, q: str) -> str:
    """The parameter of a "contains q" in each style."""
    if style == "pairs":
        return q.lower()
    if style == "fts":
        return '"' + q.replace('"', '""') + '"'
    return "%" + _escape_like(q) + "%"


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
