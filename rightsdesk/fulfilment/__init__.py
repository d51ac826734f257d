"""Fulfilment: carrying out access, erasure, account deletion, withdrawal and restriction in
the company's own systems.

    register.py  the configured systems, their engines, the account values statements bind
    plan.py      the plan for a ticket, its hash, the dry run, reading an access export
    run.py       one SQL system's part of a run, exactly once across the two databases
    tasks.py     manual systems: a task per system, signed links, the owners' answers

`FulfilmentService` is what the CLI, the scheduler and (later) the console and the portal
call: one method per action.
"""

from __future__ import annotations

import logging
from typing import Any

from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from rightsdesk.desk_parts import DeskParts, OnDeskParts
from rightsdesk.fulfilment.plan import Plan, actions_for, build_plan, dry_run
from rightsdesk.fulfilment.register import (
    FulfilmentError,
    Identity,
    SystemRegister,
    pseudonym,
)
from rightsdesk.fulfilment.run import (
    FINISHED_STEPS,
    LEASE,
    OPEN_STEPS,
    StepRunner,
    _locked_step,
    plan_steps,
    steps_of,
)
from rightsdesk.fulfilment.tasks import TaskDesk, TaskFile, action_types, per_language
from rightsdesk.models import ACTIVE_STATUSES, Account, ContactKind, Requester, Ticket, TicketStatus
from rightsdesk.models_fulfilment import FulfilmentRun, FulfilmentStep
from rightsdesk.outbound import can_mail
from rightsdesk.tickets import TicketError
from rightsdesk.views import fulfilment_run_view

log = logging.getLogger("rightsdesk.fulfilment")

__all__ = ["FulfilmentError", "FulfilmentService", "Plan", "TaskFile"]


class FulfilmentService(OnDeskParts):
    def __init__(
        self,
        parts: DeskParts,
        key: bytes,
    ) -> None:
        super().__init__(parts)
        self._key = key
        self.register = SystemRegister(parts.settings)
        self.steps = StepRunner(parts.settings, parts.db, parts.clock, parts.tickets, self.register)
        self.tasks = TaskDesk(parts, key)

    # ---- who, and what ---------------------------------------------------------------------

    async def subject(self, public_id: str) -> tuple[Ticket, Identity]:
        """The ticket and its verified account's values, or FulfilmentError: nothing is done
        for a requester who has not shown they hold the account."""
        async with self.db.reading() as session:
            ticket = await self.tickets.load_in(session, public_id)
            if ticket.verification != "verified":
                raise FulfilmentError(
                    f"{ticket.public_id}: the requester's identity is not verified; nothing is "
                    "fulfilled before it is"
                )
            if TicketStatus(ticket.status) not in ACTIVE_STATUSES:
                raise FulfilmentError(f"{ticket.public_id} is {ticket.status}: nothing to fulfil")
            requester = await session.get_one(Requester, ticket.requester_id)
            account = (
                await session.get(Account, requester.account_id) if requester.account_id else None
            )
        if account is None:
            raise FulfilmentError(
                f"{ticket.public_id}: no account is linked to the requester (verification by "
                "code or registered mail links one); nothing to fulfil against"
            )
        identity = Identity(
            account_id=account.id,
            email=account.email or None,
            phone=account.phone or None,
            username=account.username or None,
            pseudonym=pseudonym(self._key, account.id),
        )
        return ticket, identity

    async def plan(self, public_id: str, *, count: bool = True) -> Plan:
        """The plan (`fulfil ID --dry-run`): with `count`, the rows each statement would touch,
        from a transaction per system that is rolled back."""
        ticket, identity = await self.subject(public_id)
        actions = actions_for(ticket.types)
        if not actions:
            types = ", ".join(ticket.types)
            raise FulfilmentError(f"{ticket.public_id} ({types}): no request type to fulfil")
        plan = build_plan(self.register, ticket.public_id, identity, actions)
        if not plan.systems:
            raise FulfilmentError(
                f"no system in [[systems]] has statements for {', '.join(actions)}"
            )
        return await dry_run(self.register, plan, identity) if count else plan

    # ---- running ---------------------------------------------------------------------------

    async def approve(self, public_id: str, plan_hash: str, actor: str) -> list[dict[str, Any]]:
        """Run the plan a person approved; `plan_hash` must be the dry run's. Approving the
        same plan again resumes it (what is done is not done again)."""
        plan = await self.plan(public_id, count=False)
        if plan.hash != plan_hash.strip().lower():
            raise FulfilmentError(
                f"the plan is now {plan.hash[:12]}…, not the one approved "
                f"({plan_hash[:12]}…): run `fulfil {plan.ticket} --dry-run` again and approve "
                "what it shows"
            )
        async with self.db.transaction() as session:
            ticket = await self.tickets.load_in(session, public_id, lock=True)
            runs = await _runs_of(session, ticket)
            same = next((r for r in runs if r.plan_hash == plan.hash), None)
            if same is not None and same.status == "done":
                raise FulfilmentError(f"{ticket.public_id}: this plan was carried out already")
            other = next((r for r in runs if r.status == "running" and r is not same), None)
            if other is not None:
                raise FulfilmentError(
                    f"{ticket.public_id}: run {other.id} of another plan is not finished; "
                    f"finish it or `fulfil override {ticket.public_id} --reason …` first"
                )
            if same is None:
                same = FulfilmentRun(
                    ticket_id=_id(ticket),
                    plan_hash=plan.hash,
                    plan=plan.to_json(),
                    approved_by=actor,
                    started_at=self.clock.now(),
                )
                session.add(same)
                await session.flush()
                for step in plan_steps(plan, _id(same), _id(ticket)):
                    session.add(step)
                await self.tickets.note_in(
                    session,
                    ticket,
                    actor,
                    "fulfilment_approved",
                    {
                        "run": same.id,
                        "plan_hash": plan.hash,
                        "actions": list(plan.actions),
                        "systems": [s.name for s in plan.systems],
                        "statements": [
                            f"{s.name}.{p.action}.{p.name}"
                            for s in plan.systems
                            for p in s.statements
                        ],
                    },
                )
                if ticket.status in (TicketStatus.OPEN, TicketStatus.REOPENED):
                    await self.tickets.transition_in(
                        session, ticket.public_id, TicketStatus.IN_PROGRESS, actor
                    )
            run_id = _id(same)
        await self.resume(run_id, take_over=True)
        return await self.status(public_id)

    async def resume(self, run_id: int, *, take_over: bool) -> None:
        """Do whatever of the run is left: SQL systems not done, tasks not yet opened."""
        async with self.db.reading() as session:
            run = await session.get_one(FulfilmentRun, run_id)
            steps = await steps_of(session, run_id)
        if run.status != "running":
            return
        _, identity = await self.subject(str(run.plan["ticket"]))
        for step in steps:
            if step.kind == "manual" and step.status == "pending":
                await self._open_task(_id(step), run)
            elif step.kind == "sql" and step.status in ("pending", "failed", "running"):
                claimed = await self.steps.claim(_id(step), take_over=take_over)
                if claimed is not None:
                    await self.steps.run(claimed, run, identity)
        await self.finish_if_done(run_id)

    async def _open_task(self, step_id: int, run: FulfilmentRun) -> None:
        async with self.db.transaction() as session:
            step, ticket = await _locked_step(session, self.tickets, step_id)
            if step.status == "pending":
                await self.tasks.open_in(session, ticket, step, run)

    async def retry_due(self) -> list[str]:
        """The scheduler's job: failed systems whose back-off has passed, and steps a dead
        runner left (pending, or running past the lease). Returns "ticket/system" of each."""
        now = self.clock.now()
        async with self.db.reading() as session:
            found = await session.exec(
                select(FulfilmentStep.run_id, FulfilmentStep.system, Ticket.public_id)
                .join(FulfilmentRun, col(FulfilmentRun.id) == col(FulfilmentStep.run_id))
                .join(Ticket, col(Ticket.id) == col(FulfilmentStep.ticket_id))
                .where(FulfilmentRun.status == "running")
                .where(
                    (
                        (col(FulfilmentStep.status) == "failed")
                        & (col(FulfilmentStep.next_attempt_at) <= now)
                    )
                    | (col(FulfilmentStep.status) == "pending")
                    | (
                        (col(FulfilmentStep.status) == "running")
                        & (col(FulfilmentStep.started_at) <= now - LEASE)
                    )
                )
            )
            due = list(found.all())
        done: list[str] = []
        for run_id in sorted({r for r, _, _ in due}):
            try:
                await self.resume(run_id, take_over=False)
            except TicketError as exc:  # cancelled since, or no longer verified: stop there
                log.info("fulfilment run %d not resumed: %s", run_id, exc)
                continue
            done += [f"{p}/{s}" for r, s, p in due if r == run_id]
        return done

    async def finish_if_done(self, run_id: int) -> bool:
        """When every system is done, the run is finished and the requester told what was done,
        in their language, naming the systems as the company configured them."""
        async with self.db.transaction() as session:
            run = await session.get_one(FulfilmentRun, run_id)
            ticket = await self.tickets.load_in(session, str(run.plan["ticket"]), lock=True)
            await session.refresh(run)
            steps = await steps_of(session, run_id)
            if run.status != "running" or any(s.status not in FINISHED_STEPS for s in steps):
                return False
            now = self.clock.now()
            run.status = "done"
            run.finished_at = now
            done = [s for s in steps if s.status in ("done", "marked")]
            await self.tickets.note_in(
                session,
                ticket,
                "system:fulfilment",
                "fulfilment_finished",
                {
                    "run": run.id,
                    "plan_hash": run.plan_hash,
                    "systems": {s.system: s.status for s in steps},
                    "finished_at": now,
                },
            )
            if done and await self._tell_requester(session, ticket, run, done):
                run.notified_at = now
            session.add(run)
            return True

    async def _tell_requester(
        self, session: AsyncSession, ticket: Ticket, run: FulfilmentRun, done: list[FulfilmentStep]
    ) -> bool:
        if ticket.contact_kind not in (ContactKind.EMAIL, ContactKind.TELEGRAM):
            return False
        if ticket.contact_kind == ContactKind.EMAIL and not can_mail(ticket.contact_value):
            return False
        requester = await session.get_one(Requester, ticket.requester_id)
        systems = [self.settings.system(s.system) for s in done]
        actions = list(run.plan.get("actions", ()))
        await self.outbox.tell_requester(
            session,
            ticket=ticket,
            kind="fulfilled",
            lang=ticket.language or requester.language,
            to_name=requester.name,
            context={
                "systems": per_language(lambda lang: [s.display_name(lang) for s in systems]),
                "actions": action_types(actions),
                "access": "access" in actions,
            },
        )
        return True

    # ---- people deciding -------------------------------------------------------------------

    async def mark(self, public_id: str, system: str, reason: str, actor: str) -> None:
        """A person says a failed or stuck system's part is done (by hand), with a reason."""
        run_id = await self._change_steps(public_id, reason, actor, "marked", only=system)
        await self.finish_if_done(run_id)

    async def override(self, public_id: str, reason: str, actor: str) -> None:
        """The DPO lets the ticket be resolved with systems still open, saying why."""
        run_id = await self._change_steps(public_id, reason, actor, "overridden", only=None)
        await self.finish_if_done(run_id)

    async def _change_steps(
        self, public_id: str, reason: str, actor: str, to: str, only: str | None
    ) -> int:
        if not reason.strip():
            raise FulfilmentError("a reason is required")
        async with self.db.transaction() as session:
            ticket = await self.tickets.load_in(session, public_id, lock=True)
            runs = [r for r in await _runs_of(session, ticket) if r.status == "running"]
            if not runs:
                raise FulfilmentError(f"{ticket.public_id}: no fulfilment run is open")
            changed = []
            for step in await steps_of(session, _id(runs[0])):
                if step.status in OPEN_STEPS and (only is None or step.system == only):
                    step.status = to
                    step.note = reason.strip()
                    step.done_by = actor
                    step.finished_at = self.clock.now()
                    session.add(step)
                    changed.append(step.system)
            if not changed:
                what = f"system {only}" if only else "system"
                raise FulfilmentError(f"{ticket.public_id}: no open {what} in the current run")
            await self.tickets.note_in(
                session,
                ticket,
                actor,
                f"fulfilment_{to}",
                {"run": runs[0].id, "systems": changed, "reason": reason.strip()},
            )
            return _id(runs[0])

    async def check_resolve(self, session: AsyncSession, ticket: Ticket) -> None:
        """TicketService's resolve guard: not while a system's part or a task is open."""
        open_steps = (
            await session.exec(
                select(FulfilmentStep.system)
                .where(FulfilmentStep.ticket_id == ticket.id)
                .where(col(FulfilmentStep.status).in_(sorted(OPEN_STEPS)))
                .order_by(col(FulfilmentStep.system))
            )
        ).all()
        if open_steps:
            raise TicketError(
                f"{ticket.public_id}: fulfilment is not finished in {', '.join(open_steps)}; "
                f"finish it, or `rightsdesk fulfil override {ticket.public_id} --reason …`"
            )

    # ---- reading ---------------------------------------------------------------------------

    async def status(self, public_id: str) -> list[dict[str, Any]]:
        """Every run of the ticket with its systems, newest first (for `tickets show`)."""
        async with self.db.reading() as session:
            ticket = await self.tickets.load_in(session, public_id)
            runs = await _runs_of(session, ticket)
            views = []
            for run in runs:
                steps = await steps_of(session, _id(run))
                views.append(fulfilment_run_view(run, steps))
        return views

    async def export(self, public_id: str) -> dict[str, Any]:
        """The access export of the newest run: per system, its sections; files from tasks."""
        async with self.db.reading() as session:
            ticket = await self.tickets.load_in(session, public_id)
            runs = await _runs_of(session, ticket)
            if not runs:
                raise FulfilmentError(f"{ticket.public_id}: nothing was fulfilled yet")
            steps = await steps_of(session, _id(runs[0]))
        systems: dict[str, Any] = {}
        for step in steps:
            if step.export is None and step.file_content is None:
                continue
            system = self.settings.system(step.system)
            entry: dict[str, Any] = {
                "display_names": system.display_names,
                "sections": step.export or {},
            }
            if step.file_content is not None:
                entry["file"] = {"name": step.file_name, "type": step.file_type}
            systems[step.system] = entry
        return {"ticket": ticket.public_id, "run": runs[0].id, "systems": systems}

    async def file_of(self, public_id: str, system: str) -> tuple[str, bytes] | None:
        async with self.db.reading() as session:
            ticket = await self.tickets.load_in(session, public_id)
            step = (
                await session.exec(
                    select(FulfilmentStep)
                    .where(FulfilmentStep.ticket_id == ticket.id)
                    .where(FulfilmentStep.system == system)
                    .where(col(FulfilmentStep.file_content).is_not(None))
                    .order_by(col(FulfilmentStep.id).desc())
                )
            ).first()
        if step is None or step.file_content is None:
            return None
        return step.file_name or f"{system}.bin", step.file_content

    async def complete_task(
        self,
        public_id: str,
        system: str,
        outcome: str,
        note: str,
        file: TaskFile | None,
        actor: str,
    ) -> None:
        """A task answered from the CLI (the DPO, for its owners)."""
        async with self.db.reading() as session:
            ticket = await self.tickets.load_in(session, public_id)
            step = (
                await session.exec(
                    select(FulfilmentStep)
                    .where(FulfilmentStep.ticket_id == ticket.id)
                    .where(FulfilmentStep.system == system)
                    .where(FulfilmentStep.status == "open")
                )
            ).first()
        if step is None:
            raise FulfilmentError(f"{ticket.public_id}: no open task for system {system}")
        done = await self.tasks.complete(_id(step), outcome, note, file, actor)
        await self.finish_if_done(done.run_id)

    async def complete_task_by_link(
        self, token: str, outcome: str, note: str, file: TaskFile | None = None
    ) -> None:
        """What the portal's task page calls (and `fulfil task-done --token`)."""
        done = await self.tasks.complete_by_link(token, outcome, note, file)
        await self.finish_if_done(done.run_id)

    async def dispose(self) -> None:
        await self.register.dispose()


async def _runs_of(session: AsyncSession, ticket: Ticket) -> list[FulfilmentRun]:
    return list(
        (
            await session.exec(
                select(FulfilmentRun)
                .where(FulfilmentRun.ticket_id == ticket.id)
                .order_by(col(FulfilmentRun.id).desc())
                .execution_options(populate_existing=True)
            )
        ).all()
    )


def _id(row: FulfilmentRun | FulfilmentStep | Ticket) -> int:
    assert row.id is not None
    return row.id
