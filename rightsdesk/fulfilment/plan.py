"""The plan for a ticket: which statements of which systems run, what an access export holds,
and its hash, which a person approves (`fulfil ID --approve HASH`): what runs is what they saw.

The hash covers the ticket, the account, the actions and every statement's text, not the row
counts: a requester who posts one more message between the dry run and the approval does not
invalidate it, but a changed configuration does.
"""

from __future__ import annotations

import datetime as dt
import decimal
import hashlib
import json
import uuid
from dataclasses import asdict, dataclass, field
from typing import Any

from sqlalchemy.engine import Row
from sqlalchemy.exc import SQLAlchemyError

from rightsdesk.config_systems import SystemSettings, SystemStatement
from rightsdesk.fulfilment.register import (
    Identity,
    SystemRegister,
    bound,
    error_line,
    statement_body,
)
from rightsdesk.models import RequestType

# Which fulfilment action carries out which request type.
ACTION_OF_TYPE: dict[RequestType, str] = {
    RequestType.ACCESS: "access",
    RequestType.PORTABILITY: "access",
    RequestType.ERASURE: "erasure",
    RequestType.ACCOUNT_DELETION: "account_deletion",
    RequestType.WITHDRAW_CONSENT: "withdraw_consent",
    RequestType.RESTRICTION: "restriction",
}
CHANGE_ACTIONS: tuple[str, ...] = ("erasure", "account_deletion", "withdraw_consent", "restriction")


def actions_for(types: list[RequestType]) -> tuple[str, ...]:
    wanted = {ACTION_OF_TYPE[t] for t in types if t in ACTION_OF_TYPE}
    return tuple(a for a in ("access", *CHANGE_ACTIONS) if a in wanted)


@dataclass
class StatementPlan:
    action: str
    name: str
    sql: str
    rows: int | None = None  # filled by the dry run
    missing: list[str] = field(default_factory=list)  # account values it binds that are empty
    # access: the section of the export it makes (title, readable column names)
    title: str = ""
    columns: list[str] = field(default_factory=list)


@dataclass
class SystemPlan:
    name: str
    kind: str
    display_names: dict[str, str]
    owner_emails: list[str]
    statements: list[StatementPlan] = field(default_factory=list)
    error: str | None = None  # the dry run could not reach or run it


@dataclass
class Plan:
    ticket: str
    account_id: str
    actions: tuple[str, ...]
    systems: list[SystemPlan]

    @property
    def hash(self) -> str:
        canonical = {
            "ticket": self.ticket,
            "account_id": self.account_id,
            "actions": list(self.actions),
            "systems": [
                {
                    "name": s.name,
                    "kind": s.kind,
                    "statements": [[p.action, p.name, p.sql] for p in s.statements],
                }
                for s in self.systems
            ],
        }
        encoded = json.dumps(canonical, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
        return hashlib.sha256(encoded.encode()).hexdigest()

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        data["actions"] = list(self.actions)
        data["plan_hash"] = self.hash
        return data


def build_plan(
    register: SystemRegister, public_id: str, identity: Identity, actions: tuple[str, ...]
) -> Plan:
    """The systems with something to do for these actions: SQL systems with statements for
    them, and every manual system (its owners are asked)."""
    systems = []
    for system in register.systems:
        statements = [
            StatementPlan(
                a,
                s.name,
                statement_body(s.sql),
                missing=identity.missing(s.sql),
                title=(s.title or s.name) if a == "access" else "",
                columns=list(s.columns.values()) if a == "access" else [],
            )
            for a, s in system.statements(actions)
        ]
        if system.kind == "sql" and not statements:
            continue
        systems.append(
            SystemPlan(
                system.name,
                system.kind,
                dict(system.display_names),
                list(system.owner_emails),
                statements,
            )
        )
    return Plan(public_id, identity.account_id, actions, systems)


async def dry_run(register: SystemRegister, plan: Plan, identity: Identity) -> Plan:
    """Fill in the rows each statement would touch: the statements run in order, in one
    transaction per system, which is rolled back. Access queries are counted."""
    for planned in plan.systems:
        if planned.kind != "sql":
            continue
        system = register.settings.system(planned.name)
        try:
            engine = register.engine(system)
            async with engine.connect() as conn:
                transaction = await conn.begin()
                try:
                    for step in planned.statements:
                        params = identity.params(step.sql)
                        if step.action == "access":
                            counted = bound(f"SELECT COUNT(*) FROM ({step.sql}) AS rightsdesk_q")
                            step.rows = int((await conn.execute(counted, params)).scalar_one())
                        else:
                            step.rows = (await conn.execute(bound(step.sql), params)).rowcount
                finally:
                    await transaction.rollback()
        except (OSError, SQLAlchemyError) as exc:
            planned.error = error_line(exc)
        except Exception as exc:  # FulfilmentError: no URL, a driver we cannot use
            planned.error = str(exc)
    return plan


async def read_access(
    register: SystemRegister, system: SystemSettings, identity: Identity
) -> dict[str, Any]:
    """The system's sections of an access export: {name: {title, columns, rows}}, columns by
    their readable names, values made JSON-safe."""
    sections: dict[str, Any] = {}
    engine = register.engine(system)
    async with engine.connect() as conn:
        transaction = await conn.begin()
        try:
            for _, statement in system.statements(("access",)):
                body = statement_body(statement.sql)
                result = await conn.execute(bound(body), identity.params(body))
                keys = list(result.keys())
                sections[statement.name] = _section(statement, keys, list(result.all()))
        finally:
            await transaction.rollback()  # nothing was written: only queries ran
    return sections


def _section(statement: SystemStatement, keys: list[str], rows: list[Row[Any]]) -> dict[str, Any]:
    columns = [statement.columns.get(k, k) for k in keys]
    return {
        "title": statement.title or statement.name,
        "columns": columns,
        "rows": [{c: json_safe(v) for c, v in zip(columns, row, strict=True)} for row in rows],
    }


def json_safe(value: Any) -> Any:
    if value is None or isinstance(value, (str, int, float, bool)):
        return value
    if isinstance(value, (dt.datetime, dt.date, dt.time)):
        return value.isoformat()
    if isinstance(value, decimal.Decimal):
        return str(value)
    if isinstance(value, uuid.UUID):
        return str(value)
    if isinstance(value, (bytes, bytearray, memoryview)):
        return bytes(value).hex()
    return str(value)
