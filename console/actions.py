"""Every ticket action of the console and the API, as one call of the core (TicketService,
Answers for replies and notes, TicketMerger for merges).

The console never writes tickets itself. Each action runs inside `unchanged_since(head)` when
the form (or API call) says which version it saw, so two people acting at once cannot overwrite
each other: the second gets TicketConflict from the core.
"""

from __future__ import annotations

import contextlib
import datetime as dt
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass

from rightsdesk.answers import Answers, Attachment
from rightsdesk.merging import TicketMerger
from rightsdesk.models import RequestType, Ticket
from rightsdesk.refusals import Refusal
from rightsdesk.staff import Staff
from rightsdesk.tickets import (
    DismissingRightsRequest,
    TicketError,
    TicketService,
    UnknownAssignee,
    unchanged_since,
)


@dataclass(frozen=True)
class Fields:
    """What the person typed, by field name (one value, or several for `types`), and the
    files they attached."""

    values: dict[str, list[str]]
    files: tuple[Attachment, ...] = ()

    def text(self, name: str) -> str:
        found = self.values.get(name) or [""]
        return found[0].strip()

    def many(self, name: str) -> list[str]:
        return [v for v in self.values.get(name, []) if v.strip()]


@dataclass(frozen=True)
class Core:
    tickets: TicketService
    answers: Answers | None = None
    merger: TicketMerger | None = None

    def answering(self) -> Answers:
        if self.answers is None:
            raise TicketError("replies and notes are not available on this desk")
        return self.answers

    def merging(self) -> TicketMerger:
        return self.merger if self.merger is not None else TicketMerger(self.tickets)


Action = Callable[[Core, str, str, Fields], Awaitable[object]]


def _date(value: str, name: str) -> dt.date:
    try:
        return dt.date.fromisoformat(value)
    except ValueError:
        raise TicketError(
            f"{name}: expected a date like 2026-12-24, got {value[:30]!r}",
            "bad_date",
            field=name,
            value=value[:30],
        ) from None


def _types(values: Sequence[str]) -> list[RequestType]:
    found: list[RequestType] = []
    for value in values:
        for part in value.split(","):
            if part.strip():
                try:
                    found.append(RequestType(part.strip()))
                except ValueError:
                    raise TicketError(f"unknown request type {part.strip()!r}") from None
    return found


async def _assign(c: Core, tid: str, actor: str, f: Fields) -> object:
    return await c.tickets.assign(tid, actor, f.text("assignee") or None)


async def _verify(c: Core, tid: str, actor: str, f: Fields) -> object:
    return await c.tickets.mark_verified(tid, actor, f.text("note") or None)


async def _start(c: Core, tid: str, actor: str, f: Fields) -> object:
    return await c.tickets.start(tid, actor)


async def _extend(c: Core, tid: str, actor: str, f: Fields) -> object:
    # An erasure's or account deletion's 30-day completion date moves only with its own date
    # and reason (the core refuses an answer date past it without them).
    completion = f.text("completion_until")
    return await c.tickets.extend(
        tid,
        actor,
        _date(f.text("until"), "until"),
        f.text("reason"),
        completion_until=_date(completion, "completion_until") if completion else None,
        completion_reason=f.text("completion_reason") or None,
    )


async def _resolve(c: Core, tid: str, actor: str, f: Fields) -> object:
    # `note` is what the requester reads; `internal_note` stays with the team.
    if c.answers is None:
        return await c.tickets.resolve(tid, actor, f.text("note"))
    internal = f.text("internal_note") or None
    return await c.answers.resolve(
        tid,
        actor=actor,
        reply=f.text("note"),
        note=internal,
        # An access or portability ticket with no delivered package: why nothing is given.
        without_package=f.text("without_package") or None,
    )


async def _deny(c: Core, tid: str, actor: str, f: Fields) -> object:
    if c.answers is None:
        return await c.tickets.deny(tid, actor, f.text("reason"))
    internal = f.text("internal_note") or None
    return await c.answers.deny(tid, actor=actor, reason=f.text("reason"), note=internal)


async def _reply(c: Core, tid: str, actor: str, f: Fields) -> object:
    return await c.answering().reply(
        tid,
        actor=actor,
        text=f.text("text") or None,
        template=f.text("template") or None,
        attachments=f.files,
        lang=f.text("lang") or None,
    )


async def _note(c: Core, tid: str, actor: str, f: Fields) -> object:
    return await c.answering().note(tid, actor=actor, text=f.text("text"))


async def _relabel(c: Core, tid: str, actor: str, f: Fields) -> object:
    return await c.tickets.relabel(tid, actor, _types(f.many("types")))


async def _cancel(c: Core, tid: str, actor: str, f: Fields) -> object:
    return await c.tickets.cancel(tid, actor, f.text("reason") or None)


# The field that confirms dismissing a ticket labelled as a rights request (the form's
# checkbox, the API's field): anything but empty, "false", "0", "no" or "off" confirms.
CONFIRM_DISMISS = "confirm_rights_request"


async def _dismiss(c: Core, tid: str, actor: str, f: Fields) -> object:
    # Not a rights request (a product question, spam): closed in one step, with the reason.
    confirmed = f.text(CONFIRM_DISMISS).lower() not in ("", "false", "0", "no", "off")
    return await c.tickets.dismiss(tid, actor, f.text("reason"), despite_types=confirmed)


def refusal(t: dict[str, str], exc: Exception) -> str:
    """What a person reads when the core refuses: in the interface's language where the
    console has the wording (`refused_CODE` for a Refusal's code), else the core's sentence."""
    if isinstance(exc, DismissingRightsRequest):
        return t["refused_dismiss_rights_request"].format(
            ticket=exc.public_id, types=", ".join(t.get("type_" + ty, ty) for ty in exc.types)
        )
    if isinstance(exc, UnknownAssignee):
        key = (
            "refused_assignee_disabled"
            if exc.disabled
            else "refused_assignee_cannot_work"
            if exc.cannot_work
            else "refused_assignee_unknown"
        )
        return t[key].format(name=exc.name)
    if isinstance(exc, Refusal) and exc.code and "refused_" + exc.code in t:
        return t["refused_" + exc.code].format(**exc.values)
    return str(exc)


async def _merge(c: Core, tid: str, actor: str, f: Fields) -> object:
    """`into`: this ticket joins that one (a duplicate of it); `other`: that one joins this."""
    into, other = f.text("into"), f.text("other")
    if bool(into) == bool(other):
        raise TicketError("merge: give the ticket to merge into (into) or to take in (other)")
    if into:
        return await c.merging().merge(into, tid, actor)
    return await c.merging().merge(tid, other, actor)


async def _close(c: Core, tid: str, actor: str, f: Fields) -> object:
    return await c.tickets.close(tid, actor)


async def _reopen(c: Core, tid: str, actor: str, f: Fields) -> object:
    return await c.tickets.reopen(tid, actor, f.text("reason"))


ACTIONS: dict[str, Action] = {
    "reply": _reply,
    "note": _note,
    "assign": _assign,
    "verify": _verify,
    "start": _start,
    "extend": _extend,
    "resolve": _resolve,
    "deny": _deny,
    "relabel": _relabel,
    "cancel": _cancel,
    "dismiss": _dismiss,
    "merge": _merge,
    "close": _close,
    "reopen": _reopen,
}


class UnknownAction(TicketError):
    pass


async def perform(
    core: Core,
    staff: Staff,
    public_id: str,
    action: str,
    fields: Fields,
    head: str | None,
) -> Ticket:
    """Run one action as `staff`; with `head`, only if the ticket is still at that version.
    Returns the ticket as the action left it."""
    run = ACTIONS.get(action)
    if run is None:
        raise UnknownAction(f"no action {action!r}; actions are: {', '.join(ACTIONS)}")
    guard = unchanged_since(public_id, head) if head else contextlib.nullcontext()
    with guard:
        await run(core, public_id, staff.actor, fields)
    return await core.tickets.get(public_id)
