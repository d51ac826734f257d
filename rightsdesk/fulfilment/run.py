"""Running an approved plan, one system at a time, across two databases.

Per SQL system: (1) our database: the step is claimed (running, attempt n); (2) if the plan has
access, the access queries run and their rows are kept in our database *before* anything is
changed; (3) the company's database: in one transaction, a row of ours in its ledger table
(`fulfilment.ledger_table`, keyed by ticket/run/system) is inserted *first*, then the statements
run in order, then the row gets their counts, then it commits; (4) our database: the step is
done, with those counts, in an audit event.

A crash between (3) and (4) leaves the company's changes committed and our step "running". The
next run finds the ledger row and records its counts without running anything again: each
statement takes effect once, and the counts are the first run's. Two runners at once: the
second one's ledger insert waits for the first transaction and then fails on the key, so its
statements never run. Without a ledger table, statements must be safe to repeat (deletes and
anonymising updates by id are).
"""

from __future__ import annotations

import datetime as dt
import json
import logging
from dataclasses import dataclass
from typing import Any

from sqlalchemy import text
from sqlalchemy.exc import IntegrityError, SQLAlchemyError
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from rightsdesk.clock import Clock
from rightsdesk.config import ConfigError, Settings
from rightsdesk.config_systems import SystemSettings
from rightsdesk.db import Database
from rightsdesk.fulfilment.plan import CHANGE_ACTIONS, Plan, read_access
from rightsdesk.fulfilment.register import (
    FulfilmentError,
    Identity,
    SystemRegister,
    bound,
    create_ledger,
    error_line,
    statement_body,
)
from rightsdesk.models import Ticket
from rightsdesk.models_fulfilment import FulfilmentRun, FulfilmentStep
from rightsdesk.tickets import TicketService

log = logging.getLogger("rightsdesk.fulfilment")

# A step "running" for longer than this was left by a runner that died; the scheduler takes it
# over. (An explicit `fulfil ID --approve` takes it over at once: the ledger makes that safe.)
LEASE = dt.timedelta(minutes=10)
FINISHED_STEPS = frozenset({"done", "marked", "overridden"})
OPEN_STEPS = frozenset({"pending", "running", "failed", "open"})


@dataclass(frozen=True)
class Applied:
    rows: dict[str, int]
    already: bool  # found in the ledger: committed by an earlier, interrupted run


class StepRunner:
    """Runs one SQL system's part of a run and records it in our tables and the audit chain."""

    def __init__(
        self,
        settings: Settings,
        db: Database,
        clock: Clock,
        tickets: TicketService,
        register: SystemRegister,
    ) -> None:
        self.settings = settings
        self.db = db
        self.clock = clock
        self.tickets = tickets
        self.register = register

    async def claim(self, step_id: int, *, take_over: bool) -> FulfilmentStep | None:
        """Mark the step running (one more attempt), unless it is finished, a manual task, or
        running under a live lease (when not taking over)."""
        now = self.clock.now()
        async with self.db.transaction() as session:
            step, _ = await _locked_step(session, self.tickets, step_id)
            if step.status not in ("pending", "failed", "running") or step.kind != "sql":
                return None
            started = step.started_at
            if step.status == "running" and not take_over and started and now - started < LEASE:
                return None
            step.status = "running"
            step.attempts += 1
            step.started_at = now
            session.add(step)
            return step

    async def run(self, step: FulfilmentStep, run: FulfilmentRun, identity: Identity) -> bool:
        """Carry out a claimed step; True when it is done, False when it failed (retried)."""
        actions = tuple(run.plan.get("actions", ()))
        try:
            system = self.settings.system(step.system)  # gone from the config since: fails
            if "access" in actions and step.exported_at is None:
                export = await read_access(self.register, system, identity)
                await self._keep_export(step, export)
            changes = [(a, s) for a, s in system.statements(actions) if a in CHANGE_ACTIONS]
            applied = (
                await self.apply(system, _ledger_key(run, step), changes, identity)
                if changes
                else Applied({}, already=False)
            )
        except (OSError, SQLAlchemyError, FulfilmentError, ConfigError) as exc:
            await self._failed(step, error_line(exc))
            return False
        await self._done(step, applied)
        return True

    async def apply(
        self,
        system: SystemSettings,
        key: str,
        statements: list[tuple[str, Any]],
        identity: Identity,
    ) -> Applied:
        """The company side: one transaction, ledger row first, then the statements."""
        table = self.settings.fulfilment.ledger_table
        engine = self.register.engine(system)
        async with engine.connect() as conn:
            if table:
                async with conn.begin():
                    await create_ledger(conn, table)
                prior = await _ledger_counts(conn, table, key)
                if prior is not None:
                    return Applied(prior, already=True)
            try:
                async with conn.begin():
                    if table:
                        await conn.execute(
                            text(
                                f"INSERT INTO {table} (step_key, counts, applied_at) "
                                "VALUES (:key, '{}', :at)"
                            ),
                            {"key": key, "at": self.clock.now().isoformat()},
                        )
                    rows: dict[str, int] = {}
                    for action, statement in statements:
                        body = statement_body(statement.sql)
                        result = await conn.execute(bound(body), identity.params(body))
                        rows[f"{action}.{statement.name}"] = max(result.rowcount, 0)
                    if table:
                        await conn.execute(
                            text(f"UPDATE {table} SET counts = :counts WHERE step_key = :key"),
                            {"key": key, "counts": json.dumps(rows, sort_keys=True)},
                        )
            except IntegrityError:
                # Another runner committed this step while we waited on its ledger row.
                counted = await _ledger_counts(conn, table, key) if table else None
                if counted is None:
                    raise
                return Applied(counted, already=True)
        return Applied(rows, already=False)

    async def _keep_export(self, step: FulfilmentStep, export: dict[str, Any]) -> None:
        now = self.clock.now()
        async with self.db.transaction() as session:
            fresh, ticket = await _locked_step(session, self.tickets, _id(step))
            if fresh.exported_at is not None:  # a runner before us read it (before any change)
                step.export, step.exported_at = fresh.export, fresh.exported_at
                return
            fresh.export = export
            fresh.exported_at = now
            fresh.rows = {
                **fresh.rows,
                **{f"access.{name}": len(section["rows"]) for name, section in export.items()},
            }
            session.add(fresh)
            step.export, step.exported_at, step.rows = fresh.export, now, fresh.rows
            await self.tickets.note_in(
                session,
                ticket,
                "system:fulfilment",
                "fulfilment_exported",
                {
                    "system": fresh.system,
                    "sections": {n: len(s["rows"]) for n, s in export.items()},
                },
            )

    async def _done(self, step: FulfilmentStep, applied: Applied) -> None:
        now = self.clock.now()
        async with self.db.transaction() as session:
            fresh, ticket = await _locked_step(session, self.tickets, _id(step))
            if fresh.status in FINISHED_STEPS:
                return  # another runner recorded it first
            fresh.status = "done"
            fresh.rows = {**fresh.rows, **applied.rows}
            fresh.finished_at = now
            fresh.last_error = None
            fresh.next_attempt_at = None
            session.add(fresh)
            await self.tickets.note_in(
                session,
                ticket,
                "system:fulfilment",
                "fulfilment_system_done",
                {
                    "run": fresh.run_id,
                    "system": fresh.system,
                    "rows": fresh.rows,
                    "attempt": fresh.attempts,
                    "started_at": fresh.started_at,
                    "finished_at": now,
                    # Committed by an interrupted run; recorded now, not run again.
                    "from_ledger": applied.already,
                },
            )
        log.info("%s: system %s done", ticket.public_id, step.system)

    async def _failed(self, step: FulfilmentStep, error: str) -> None:
        now = self.clock.now()
        cap = dt.timedelta(minutes=self.settings.fulfilment.retry_max_minutes)
        async with self.db.transaction() as session:
            fresh, ticket = await _locked_step(session, self.tickets, _id(step))
            if fresh.status in FINISHED_STEPS:
                return
            delay = min(cap, dt.timedelta(minutes=2 ** min(max(fresh.attempts - 1, 0), 20)))
            fresh.status = "failed"
            fresh.last_error = error
            fresh.next_attempt_at = now + delay
            session.add(fresh)
            await self.tickets.note_in(
                session,
                ticket,
                "system:fulfilment",
                "fulfilment_system_failed",
                {
                    "run": fresh.run_id,
                    "system": fresh.system,
                    "attempt": fresh.attempts,
                    "error": error,
                    "retry_at": fresh.next_attempt_at,
                },
            )
        log.warning(
            "%s: system %s failed (attempt %d)", ticket.public_id, step.system, step.attempts
        )


async def _ledger_counts(conn: Any, table: str, key: str) -> dict[str, int] | None:
    async with conn.begin():
        found = (
            await conn.execute(
                text(f"SELECT counts FROM {table} WHERE step_key = :key"), {"key": key}
            )
        ).first()
    if found is None:
        return None
    counts: dict[str, int] = json.loads(found[0])
    return counts


def _ledger_key(run: FulfilmentRun, step: FulfilmentStep) -> str:
    return f"{run.plan.get('ticket')}/{run.id}/{step.system}"


async def _locked_step(
    session: AsyncSession, tickets: TicketService, step_id: int
) -> tuple[FulfilmentStep, Ticket]:
    """The step, read fresh under its ticket's row lock (which also orders the audit chain)."""
    ticket_id = (
        await session.exec(select(FulfilmentStep.ticket_id).where(FulfilmentStep.id == step_id))
    ).one()
    public_id = (await session.exec(select(Ticket.public_id).where(Ticket.id == ticket_id))).one()
    ticket = await tickets.load_in(session, public_id, lock=True)
    step = (
        await session.exec(
            select(FulfilmentStep)
            .where(FulfilmentStep.id == step_id)
            .execution_options(populate_existing=True)
        )
    ).one()
    return step, ticket


async def steps_of(session: AsyncSession, run_id: int) -> list[FulfilmentStep]:
    return list(
        (
            await session.exec(
                select(FulfilmentStep)
                .where(FulfilmentStep.run_id == run_id)
                .order_by(col(FulfilmentStep.id))
                .execution_options(populate_existing=True)
            )
        ).all()
    )


def plan_steps(plan: Plan, run_id: int, ticket_id: int) -> list[FulfilmentStep]:
    return [
        FulfilmentStep(run_id=run_id, ticket_id=ticket_id, system=s.name, kind=s.kind)
        for s in plan.systems
    ]


def _id(row: FulfilmentStep) -> int:
    assert row.id is not None
    return row.id
