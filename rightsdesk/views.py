"""Plain-data views of tickets, shared by `--json` output and anything else that reports."""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Collection, Sequence
from typing import Any

from rightsdesk.calendar import WorkingCalendar
from rightsdesk.identifiers import mask_for_display
from rightsdesk.models import (
    ACTIVE_STATUSES,
    Account,
    Channel,
    Event,
    Message,
    RequestType,
    StoredAttachment,
    TicketStatus,
)
from rightsdesk.models_fulfilment import FulfilmentRun, FulfilmentStep
from rightsdesk.search import SearchHit
from rightsdesk.ticket_rows import TicketFields
from rightsdesk.tickets import TicketDetail

# What a terminal may act on instead of showing: C0 controls (ESC starts colour changes,
# screen clears and title rewrites; BEL ends them; NUL and BS hide text), DEL, the C1 range
# (U+009B is a one-character CSI), and the bidirectional overrides that reorder what is seen.
_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f\u200e\u200f\u202a-\u202e\u2066-\u2069]")
_LINE_BREAKS = re.compile(r"[\n\t]")


def printable(value: object, *, multiline: bool = False) -> str:
    """Text from a message made safe to print on a terminal: every control character is
    shown as an escape (\x1b, \x07, \u202e), never sent raw. Newlines and tabs stay only
    where they belong (`multiline`: a body); in a one-line field they are escaped too."""
    text = "" if value is None else str(value)
    text = text.replace("\r\n", "\n")
    text = _CONTROL.sub(_escaped, text)
    if not multiline:
        text = _LINE_BREAKS.sub(_escaped, text)
    return text


def _escaped(found: re.Match[str]) -> str:
    code = ord(found.group(0))
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"


def _iso(value: dt.date | None) -> str | None:
    return value.isoformat() if value is not None else None


def local_time(value: dt.datetime | None, tz: dt.tzinfo) -> str | None:
    """An instant in the desk's time zone (Beijing), with its offset. A naive value is UTC
    (SQLite gives the stored instants back without their zone)."""
    if value is None:
        return None
    utc = value if value.tzinfo is not None else value.replace(tzinfo=dt.UTC)
    return utc.astimezone(tz).isoformat()


# What ends a hold on verification: a fresh code, proof, a new look at the method.
_HOLD_ENDS = frozenset({"verification_code_sent", "verified", "verification_reconsidered"})


def verification_hold(events: Sequence[Event], tz: dt.tzinfo) -> dict[str, Any] | None:
    """Why codes of this ticket are no longer compared, read from its audit trail: the
    account's shared budget of wrong codes used up (locked until an instant), this ticket's
    own (locked until a resend), or unproven mail's (not locked: a person looks)."""
    hold: dict[str, Any] | None = None
    for event in events:
        after = event.after or {}
        if event.action in _HOLD_ENDS:
            hold = None
        elif event.action == "verification_account_locked":
            until = after.get("until")
            hold = {
                "locked": True,
                "until": local_time(dt.datetime.fromisoformat(until), tz) if until else None,
                "reason": after.get("reason") or "wrong codes on the account's tickets",
            }
        elif event.action == "verification_code_wrong" and after.get("locked"):
            reason = f"{after.get('attempts')} wrong codes on this ticket; resend-code unlocks it"
            hold = {"locked": True, "until": None, "reason": reason}
        elif event.action == "verification_unproven_codes_used_up":
            reason = f"{after.get('reason')}: someone may be guessing under a forged From"
            hold = {"locked": False, "until": None, "reason": reason}
    return hold


def hold_text(hold: dict[str, Any]) -> str:
    """One line for staff: "verification locked until … (reason)"."""
    if not hold["locked"]:
        return f"verification needs a person ({hold['reason']})"
    until = f" until {hold['until'][:16].replace('T', ' ')}" if hold["until"] else ""
    return f"verification locked{until} ({hold['reason']})"


def review_reasons(ticket: TicketFields, hold: dict[str, Any] | None = None) -> list[str]:
    """Why a ticket is in the DPO's queues, in words, instead of a bare flag. `hold`: the
    ticket's `verification_hold`, when the caller read its events."""
    reasons: list[str] = []
    if hold is not None:
        reasons.append(hold_text(hold))
    if (ticket.classification or {}).get("needs_review"):
        reasons.append("classifier unsure")
    if (ticket.classification or {}).get("parser_cut"):
        reasons.append("part of a mail left unread by the parser: read it whole")
    if ticket.types == [RequestType.NOT_RIGHTS_REQUEST]:
        reasons.append("not a rights request: dismiss or relabel")
    if ticket.verification == "no_account":
        reasons.append("no account found")
    elif ticket.verification == "manual":
        reasons.append("documents to check (guardian or relative)")
    if ticket.suggested_types:
        reasons.append("new request types suggested: " + ", ".join(ticket.suggested_types))
    if ticket.duplicate_of is not None:
        reasons.append("possible duplicate")
    if ticket.unread:
        reasons.append("new message from the requester")
    if ticket.needs_review and not reasons:
        reasons.append("verification locked or needs a person")
    return reasons


def ticket_summary(
    ticket: TicketFields,
    today: dt.date,
    tz: dt.tzinfo,
    calendar: WorkingCalendar | None = None,
    links: dict[int, str] | None = None,
) -> dict[str, Any]:
    """The listing row of a ticket; instants are given in the desk's time zone. Days left
    are working days (the digest's count), and only with a calendar; `links` names the
    tickets that `duplicate_of` and `merged_into` point at."""
    active = TicketStatus(ticket.status) in ACTIVE_STATUSES
    days_left = (
        calendar.working_days_left(today, ticket.response_due)
        if calendar is not None and ticket.response_due and active
        else None
    )
    links = links or {}
    return {
        "id": ticket.public_id,
        "status": ticket.status,
        "types": [str(t) for t in ticket.types],
        "channel": ticket.channel,
        "requester_contact": ticket.contact_value,
        "contact_kind": ticket.contact_kind,
        "subject": mask_for_display(ticket.subject) if ticket.subject else ticket.subject,
        "received_at": ticket.received_at.astimezone(tz).isoformat(),
        "response_due": _iso(ticket.response_due),
        "completion_due": _iso(ticket.completion_due),
        "provisional": ticket.deadlines_provisional,
        "working_days_left": days_left,
        "overdue": bool(
            active
            and (
                (ticket.response_due is not None and ticket.response_due < today)
                or (ticket.completion_due is not None and ticket.completion_due < today)
            )
        ),
        "needs_review": ticket.needs_review,
        "review_reasons": review_reasons(ticket) if ticket.needs_review or ticket.unread else [],
        "unread": ticket.unread,
        "unread_since": local_time(ticket.unread_since, tz),
        "suggested_types": list(ticket.suggested_types),
        "duplicate_of": links.get(ticket.duplicate_of or 0),
        "merged_into": links.get(ticket.merged_into or 0),
        "assignee": ticket.assignee,
        "withdrawal_pending": ticket.withdrawal_final_at is not None,
        "language": ticket.language,
    }


def search_view(
    hit: SearchHit, today: dt.date, tz: dt.tzinfo, calendar: WorkingCalendar | None = None
) -> dict[str, Any]:
    return {
        **ticket_summary(hit.ticket, today, tz, calendar),
        "matched": hit.matched,
        "snippet": hit.snippet,
    }


def ticket_detail(
    detail: TicketDetail,
    today: dt.date,
    tz: dt.tzinfo,
    calendar: WorkingCalendar | None = None,
    links: dict[int, str] | None = None,
) -> dict[str, Any]:
    ticket = detail.ticket
    data = ticket_summary(ticket, today, tz, calendar, links)
    hold = verification_hold(detail.events, tz)
    if hold is not None and (ticket.needs_review or ticket.unread):
        data["review_reasons"] = review_reasons(ticket, hold)
    data.update(
        {
            "verification_hold": hold,
            "requester": {
                "name": detail.requester.name,
                "language": detail.requester.language,
                "account_id": detail.requester.account_id,
                "contacts": [
                    {"kind": c.kind, "value": c.value, "undeliverable": c.undeliverable}
                    for c in detail.requester.contacts
                ],
            },
            "account": (
                {**account_view(detail.account), "verified": detail.account_verified}
                if detail.account is not None
                else None
            ),
            "verification": ticket.verification,
            "clock_started_at": local_time(ticket.clock_started_at, tz),
            "original_response_due": _iso(ticket.original_response_due),
            "extension_reason": ticket.extension_reason,
            "original_completion_due": _iso(ticket.original_completion_due),
            "completion_extension_reason": ticket.completion_extension_reason,
            "verified_at": local_time(ticket.verified_at, tz),
            "classification": ticket.classification,
            # What the requester read in the resolved / denied notice (never an internal note).
            "resolution_reply": ticket.resolution_note,
            "denial_reason": ticket.denial_reason,
            "cancel_reason": ticket.cancel_reason,
            "dismissal_reason": ticket.dismissal_reason,
            "finished_at": local_time(ticket.finished_at, tz),
            "closed_at": local_time(ticket.closed_at, tz),
            "withdrawal_requested_at": local_time(ticket.withdrawal_requested_at, tz),
            "withdrawal_final_at": local_time(ticket.withdrawal_final_at, tz),
            "messages": [
                message_view(m, detail.attachments.get(m.id or 0, []), tz, detail.not_kept)
                for m in detail.messages
            ],
            "events": [event_view(e, tz) for e in detail.events],
        }
    )
    return data


# What a page shows of one text (a mail's body, a note): its start. The whole text is in the
# evidence pack and the stored mail; a 20 MB body made a 20 MB page that held the event loop
# for seconds while it was masked and rendered.
SHOWN_TEXT_CHARS = 100_000
# Masked with a margin past the cut, so an ID number across it is masked before it is cut.
_MASK_MARGIN = 64


def shown_text(text: str | None) -> tuple[str | None, bool]:
    """The text as a page shows it: masked, and cut at SHOWN_TEXT_CHARS; and whether it was."""
    if not text:
        return text, False
    if len(text) <= SHOWN_TEXT_CHARS:
        return mask_for_display(text), False
    return mask_for_display(text[: SHOWN_TEXT_CHARS + _MASK_MARGIN])[:SHOWN_TEXT_CHARS], True


def message_view(
    message: Message,
    attachments: Sequence[StoredAttachment] = (),
    tz: dt.tzinfo = dt.UTC,
    not_kept: Collection[int] = (),
) -> dict[str, Any]:
    text, cut = shown_text(message.text)
    return {
        "id": message.id,
        "direction": message.direction,
        "channel": message.channel,
        # A note of the team's: never sent, never shown to the requester.
        "internal": message.channel == Channel.INTERNAL,
        # Our mail to our own people about the ticket (Outbox.enqueue_internal: the DPO told
        # that the requester wrote), never to the requester.
        "to_staff": (message.message_id or "").startswith("rd-internal."),
        "to": list(message.envelope_to or []) if message.direction == "out" else [],
        "sender": message.sender,
        "subject": message.subject,
        "received_at": local_time(message.received_at, tz),
        # Resident ID numbers and verification codes never leave the desk in clear, not
        # even to the DPO's screen.
        "text": text,
        # Cut at SHOWN_TEXT_CHARS: the page says so, and where the rest is.
        "text_cut": cut,
        "text_chars": len(message.text or ""),
        "parse_status": message.parse_status,
        "parse_error": message.parse_error,
        "auto_generated": message.auto_generated,
        "sender_authenticated": message.sender_authenticated,
        # Joined by something anyone can type (subject tag, same address), unauthenticated.
        "unauthenticated_thread": message.unauthenticated_thread,
        # The size kept beside the bytes (migration 0017 filled it in for the oldest rows):
        # pages read messages without their raw mail.
        "raw_bytes": message.raw_size or None,
        "attachments": [attachment_view(a, a.id not in not_kept) for a in attachments],
    }


def attachment_view(attachment: StoredAttachment, kept: bool = True) -> dict[str, Any]:
    return {
        "id": attachment.id,
        "filename": attachment.filename,
        "content_type": attachment.content_type,
        "size": attachment.size,
        "sha256": attachment.sha256,
        # False: the file was too large to keep (or retention emptied it); only the above is.
        "kept": kept,
    }


def event_view(event: Event, tz: dt.tzinfo = dt.UTC) -> dict[str, Any]:
    return {
        "seq": event.seq,
        "at": local_time(event.at, tz),
        "actor": event.actor,
        "action": event.action,
        "before": event.before,
        "after": event.after,
        "hash": event.hash,
    }


def account_view(account: Account) -> dict[str, Any]:
    return {
        "account_id": account.id,
        "email": account.email,
        "phone": account.phone,
        "name": account.name,
        "username": account.username,
    }


def fulfilment_run_view(run: FulfilmentRun, steps: list[FulfilmentStep]) -> dict[str, Any]:
    """A fulfilment run and its systems: failed ones show as failed until they succeed or a
    person marks them."""
    return {
        "run": run.id,
        "plan_hash": run.plan_hash,
        "status": run.status,
        "approved_by": run.approved_by,
        "started_at": run.started_at.isoformat(),
        "finished_at": run.finished_at.isoformat() if run.finished_at else None,
        "requester_told": run.notified_at is not None,
        "systems": [
            {
                "system": s.system,
                "kind": s.kind,
                "status": s.status,
                "attempts": s.attempts,
                "rows": s.rows,
                "last_error": s.last_error,
                "next_attempt_at": s.next_attempt_at.isoformat() if s.next_attempt_at else None,
                "outcome": s.outcome,
                "note": s.note,
                "file": s.file_name,
                "done_by": s.done_by,
            }
            for s in steps
        ],
    }
