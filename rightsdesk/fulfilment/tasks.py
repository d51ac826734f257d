"""Manual systems: a task per system for its owners, mailed with a signed, expiring link.

The portal page the link opens comes with the requester portal (issue #17); what it calls is
here: `verify_link` (which task, or why not), `complete_by_link` (done / a file / "we hold
nothing on this person", with a note). The CLI calls the same methods (`fulfil task-done`).
"""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import secrets
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from sqlmodel import select
from sqlmodel.ext.asyncio.session import AsyncSession

from rightsdesk.desk_parts import DeskParts, OnDeskParts
from rightsdesk.fulfilment.register import FulfilmentError
from rightsdesk.fulfilment.run import _locked_step
from rightsdesk.languages import LANGS
from rightsdesk.models import RequestType, Ticket
from rightsdesk.models_fulfilment import FulfilmentRun, FulfilmentStep
from rightsdesk.signing import LinkInvalid, LinkSigner

TASK_LINK_PURPOSE = "fulfilment-task"
OUTCOMES = ("done", "file", "nothing")
ACTION_TYPE = {
    "access": RequestType.ACCESS,
    "erasure": RequestType.ERASURE,
    "account_deletion": RequestType.ACCOUNT_DELETION,
    "withdraw_consent": RequestType.WITHDRAW_CONSENT,
    "restriction": RequestType.RESTRICTION,
}


@dataclass(frozen=True)
class TaskFile:
    name: str
    content_type: str
    content: bytes


@dataclass(frozen=True)
class TaskView:
    """What the task's page shows its owner: no personal data beyond the ticket id."""

    step_id: int
    ticket: str
    system: str
    display_name: str
    actions: list[str]
    status: str
    instructions: str
    completion_due: str | None


def action_types(actions: list[str] | tuple[str, ...]) -> list[str]:
    """The plan's actions as request types: the templates name them in the language they
    render (`type_names`, from names.<lang>.j2), zh-Hant included."""
    return [ACTION_TYPE[a].value for a in actions if a in ACTION_TYPE]


def per_language(make: Any) -> dict[str, Any]:
    """A template value said in each language (Templates.render picks the one it renders)."""
    return {lang: make(lang) for lang in LANGS}


class TaskDesk(OnDeskParts):
    def __init__(
        self,
        parts: DeskParts,
        key: bytes,
    ) -> None:
        super().__init__(parts)
        self.links = LinkSigner(key, TASK_LINK_PURPOSE)
        # Where an owner's file goes instead of the task's own column (the ticket's package,
        # sealed): called in the answer's transaction; False: not taken, keep it here.
        self.file_sink: Callable[[AsyncSession, Ticket, TaskFile, str], Awaitable[bool]] | None = (
            None
        )

    def link(self, step: FulfilmentStep) -> tuple[str, str, dt.datetime]:
        """(token, URL or "", expiry) of a fresh link to the task."""
        assert step.id is not None
        assert step.link_nonce
        expires = self.clock.now() + dt.timedelta(days=self.settings.fulfilment.task_link_days)
        token = self.links.sign(f"{step.id}-{step.link_nonce}", expires)
        base = self.settings.portal.base_url
        return token, f"{base}/task/{token}" if base else "", expires

    async def open_in(
        self, session: AsyncSession, ticket: Ticket, step: FulfilmentStep, run: FulfilmentRun
    ) -> None:
        """Open the task and mail its owners, in the caller's transaction (ticket locked)."""
        step.status = "open"
        step.link_nonce = secrets.token_hex(8)
        step.started_at = self.clock.now()
        session.add(step)
        await session.flush()
        await self.mail_owners(session, ticket, step, run, reminder=False)
        await self.tickets.note_in(
            session,
            ticket,
            "system:fulfilment",
            "fulfilment_task_opened",
            {"run": run.id, "system": step.system, "owners": self._owners(step)},
        )

    def _owners(self, step: FulfilmentStep) -> list[str]:
        return list(self.settings.system(step.system).owner_emails)

    async def mail_owners(
        self,
        session: AsyncSession,
        ticket: Ticket,
        step: FulfilmentStep,
        run: FulfilmentRun,
        *,
        reminder: bool,
    ) -> None:
        system = self.settings.system(step.system)
        token, url, expires = self.link(step)
        actions = list(run.plan.get("actions", ()))
        rendered = self.outbox.templates.render(
            "fulfilment_task",
            None,  # our own people: both languages
            {
                "ticket_id": ticket.public_id,
                "system": per_language(system.display_name),
                "actions": action_types(actions),
                "instructions": system.instructions,
                "link": url,
                "token": token,
                "expires": expires.astimezone(self.settings.desk.tz).date().isoformat(),
                "completion_due": ticket.completion_due.isoformat()
                if ticket.completion_due
                else "",
                "reminder": reminder,
            },
        )
        await self.outbox.enqueue_internal_to_all(
            session,
            self._owners(step),
            kind="fulfilment_task_reminder" if reminder else "fulfilment_task",
            subject=rendered.subject,
            text=rendered.text,
            html=rendered.html,
            ticket_id=ticket.id,
        )

    async def remind_in(self, session: AsyncSession, *, step_id: int) -> None:
        """The scheduler's reminder, in its transaction: the task's owners, a fresh link."""
        step, ticket = await _locked_step(session, self.tickets, step_id)
        if step.status != "open":
            return
        run = await session.get_one(FulfilmentRun, step.run_id)
        await self.mail_owners(session, ticket, step, run, reminder=True)

    async def verify_link(self, token: str) -> TaskView:
        """The task a link opens; LinkInvalid (forged, replaced, answered) or LinkExpired."""
        step = await self._step_of(token)
        async with self.db.reading() as session:
            ticket = await session.get_one(Ticket, step.ticket_id)
            run = await session.get_one(FulfilmentRun, step.run_id)
        system = self.settings.system(step.system)
        return TaskView(
            step_id=step.id or 0,
            ticket=ticket.public_id,
            system=step.system,
            display_name=system.display_name(None),
            actions=list(run.plan.get("actions", ())),
            status=step.status,
            instructions=system.instructions,
            completion_due=ticket.completion_due.isoformat() if ticket.completion_due else None,
        )

    async def _step_of(self, token: str) -> FulfilmentStep:
        subject = self.links.verify(token, self.clock.now())
        step_id, _, nonce = subject.partition("-")
        if not step_id.isdigit():
            raise LinkInvalid("this link is not valid")
        async with self.db.reading() as session:
            step = (
                await session.exec(select(FulfilmentStep).where(FulfilmentStep.id == int(step_id)))
            ).first()
        if step is None or step.kind != "manual" or not step.link_nonce:
            raise LinkInvalid("this link is not valid")
        if not hmac.compare_digest(step.link_nonce, nonce):
            raise LinkInvalid("this link is not valid")
        if step.status != "open":
            raise LinkInvalid("this task has already been answered")
        return step

    async def complete_by_link(
        self, token: str, outcome: str, note: str, file: TaskFile | None = None
    ) -> FulfilmentStep:
        """What the portal page calls when the owner answers."""
        step = await self._step_of(token)
        return await self.complete(_id(step), outcome, note, file, f"owner:{step.system}")

    async def complete(
        self, step_id: int, outcome: str, note: str, file: TaskFile | None, actor: str
    ) -> FulfilmentStep:
        if outcome not in OUTCOMES:
            raise FulfilmentError(f"outcome must be one of {', '.join(OUTCOMES)}")
        if outcome == "file" and file is None:
            raise FulfilmentError("outcome 'file' needs the file")
        if outcome == "nothing" and not note.strip():
            raise FulfilmentError("say in a note how you know the system holds nothing")
        cap = self.settings.mail.max_attachment_bytes
        if file is not None and len(file.content) > cap:
            raise FulfilmentError(
                f"the file is larger than {cap} bytes (mail.max_attachment_bytes)"
            )
        now = self.clock.now()
        async with self.db.transaction() as session:
            step, ticket = await _locked_step(session, self.tickets, step_id)
            if step.kind != "manual":
                raise FulfilmentError(f"{step.system} is not a manual system")
            if step.status != "open":
                raise FulfilmentError(f"the task of {step.system} is {step.status}, not open")
            step.status = "done"
            step.outcome = outcome
            step.note = note.strip() or None
            step.done_by = actor
            step.finished_at = now
            details: dict[str, Any] = {
                "run": step.run_id,
                "system": step.system,
                "outcome": outcome,
                "note": step.note,
            }
            if file is not None:
                step.file_name = file.name[:255]
                step.file_type = file.content_type[:200]
                taken = self.file_sink is not None and await self.file_sink(
                    session, ticket, file, step.system
                )
                step.file_content = None if taken else file.content
                details["file"] = {
                    "name": step.file_name,
                    "bytes": len(file.content),
                    "sha256": hashlib.sha256(file.content).hexdigest(),
                }
            session.add(step)
            await self.tickets.note_in(session, ticket, actor, "fulfilment_task_done", details)
            return step


def _id(step: FulfilmentStep) -> int:
    assert step.id is not None
    return step.id
