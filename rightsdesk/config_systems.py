"""The company's own systems (`[[systems]]`, fulfilment): each one's statements per action,
and the checks at start-up that a statement names only the verified account's values."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Literal

from pydantic import Field, model_validator

from rightsdesk.config_sections import Section

# What a statement may name: values of the verified account, and the pseudonym we derive from
# its id (a keyed hash, so anonymised rows still join). Never anything a requester wrote.
SYSTEM_PARAMETERS: tuple[str, ...] = ("account_id", "email", "phone", "username", "pseudonym")
FULFILMENT_ACTIONS: tuple[str, ...] = (
    "access",
    "erasure",
    "account_deletion",
    "withdraw_consent",
    "restriction",
)
_SYSTEM_NAME = re.compile(r"^[a-z][a-z0-9_]{0,39}$")
_READS = ("select", "with")
_WRITES = ("update", "delete", "insert", "with")


def statement_parameters(sql: str) -> set[str]:
    """The bound parameters (`:name`) of a statement, as SQLAlchemy's text() reads them."""
    from sqlalchemy import text

    return set(text(sql).compile().params)


class SystemStatement(Section):
    """One named statement of a system for one action."""

    name: str = Field(min_length=1, max_length=64)
    sql: str = Field(min_length=1)
    # access: the section's title in the package, and readable names for its columns
    # (a column not listed keeps its own name).
    title: str = ""
    columns: dict[str, str] = Field(default_factory=dict)


class SystemSettings(Section):
    """One of the company's systems that holds personal information (`[[systems]]`)."""

    name: str
    kind: Literal["sql", "manual"]
    owner_emails: list[str] = Field(default_factory=list)
    # What the requester is told the system is, per language (zh, zh-Hant, en).
    display_names: dict[str, str] = Field(default_factory=dict)
    # sql: the connection URL is a secret: RIGHTSDESK_SYSTEMS__<NAME>__URL, or url_file.
    url_file: Path | None = None
    # manual: what the owners are asked to do, shown in their task mail.
    instructions: str = ""
    access: list[SystemStatement] = Field(default_factory=list)
    erasure: list[SystemStatement] = Field(default_factory=list)
    account_deletion: list[SystemStatement] = Field(default_factory=list)
    withdraw_consent: list[SystemStatement] = Field(default_factory=list)
    restriction: list[SystemStatement] = Field(default_factory=list)

    @model_validator(mode="after")
    def _statements_are_safe(self) -> SystemSettings:
        if not _SYSTEM_NAME.match(self.name):
            raise ValueError(
                f"system name {self.name!r}: lower-case letters, digits and _ only "
                "(it names the RIGHTSDESK_SYSTEMS__<NAME>__URL variable)"
            )
        for lang in self.display_names:
            if lang not in ("zh", "zh-Hant", "en"):
                raise ValueError(f"systems[{self.name}].display_names: unknown language {lang!r}")
        statements = self.statements()
        if self.kind == "manual" and statements:
            raise ValueError(f"systems[{self.name}]: a manual system has no statements")
        for action, statement in statements:
            where = f"systems[{self.name}].{action}[{statement.name}]"
            problem = _statement_problem(action, statement.sql)
            if problem:
                raise ValueError(f"{where}: {problem}")
        return self

    def statements(
        self, actions: tuple[str, ...] = FULFILMENT_ACTIONS
    ) -> list[tuple[str, SystemStatement]]:
        """(action, statement) in the order they run: access first, then the changes."""
        return [(a, s) for a in FULFILMENT_ACTIONS if a in actions for s in getattr(self, a)]

    def display_name(self, lang: str | None) -> str:
        for each in (lang, "zh" if lang == "zh-Hant" else None, "en", "zh"):
            if each and each in self.display_names:
                return self.display_names[each]
        return self.name


def _statement_problem(action: str, sql: str) -> str | None:
    """Why a statement cannot be configured, or None. Checked at start-up."""
    body = sql.strip().rstrip(";").strip()
    if ";" in body:
        return "one statement each (no ';' inside)"
    names = statement_parameters(body)
    allowed = set(SYSTEM_PARAMETERS)
    unknown = sorted(names - allowed)
    if unknown:
        given = ", ".join(f":{n}" for n in unknown)
        known = ", ".join(f":{n}" for n in SYSTEM_PARAMETERS)
        return (
            f"{given} is not allowed: statements take only {known} "
            "(from the verified account, never text from a message)"
        )
    if not names - {"pseudonym"}:
        return "names no :account_id, :email, :phone or :username, so it would touch everyone"
    first = body.split(None, 1)[0].lower() if body else ""
    if action == "access" and first not in _READS:
        return "an access statement must be a SELECT"
    if action != "access" and first not in _WRITES:
        return "must be an UPDATE or DELETE"
    return None
