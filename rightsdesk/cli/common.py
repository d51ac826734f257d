"""What every command group shares: the root app, global options, output, errors, the desk.

Every listing takes `--json`. Errors are one line on stderr and a non-zero exit: 1 for a request
the rules refuse, 2 for bad usage or configuration.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import getpass
import json
import re
import sys
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Annotated, Any, NoReturn, TypeVar

import typer
from rich.console import Console
from rich.markup import escape
from sqlalchemy.exc import InterfaceError, OperationalError

from rightsdesk.config import (
    CONFIG_ENV,
    LOCAL_CONFIG,
    ConfigError,
    Settings,
    find_config,
    load_settings,
)
from rightsdesk.models import RequestType
from rightsdesk.service import Desk, first_line
from rightsdesk.tickets import TicketError
from rightsdesk.views import printable

T = TypeVar("T")

app = typer.Typer(
    help="rightsdesk: answers people who exercise their rights over their personal information.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


out = Console(soft_wrap=True)
err = Console(stderr=True, soft_wrap=True)

JsonFlag = Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")]
TicketId = Annotated[str, typer.Argument(help="Ticket id, e.g. PRIV-2026-000001.")]


class _State:
    config: Path | None = None
    actor: str = ""


state = _State()


@app.callback()
def _global_options(
    config: Annotated[
        Path | None,
        typer.Option(
            "--config",
            "-c",
            envvar=CONFIG_ENV,
            help=f"TOML config file (default: ./{LOCAL_CONFIG} if there is one, else built-ins).",
        ),
    ] = None,
    actor: Annotated[
        str | None,
        typer.Option(help="Who is acting, for the audit trail (default: cli:$USER)."),
    ] = None,
) -> None:
    state.config = config
    state.actor = actor or f"cli:{username()}"


def username() -> str:
    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return "unknown"


def fail(message: str, code: int = 1) -> NoReturn:
    # Shown: a message may name `systems[chat]` (Rich markup) or quote text from a mail.
    err.print(f"[bold red]error:[/] {shown(message, multiline=True)}", highlight=False)
    raise typer.Exit(code)


def desk_settings() -> Settings:
    try:
        return load_settings(state.config)
    except ConfigError as exc:
        fail(f"config: {exc}", 2)


def with_desk(
    work: Callable[[Desk], Awaitable[T]], *, migrate: bool = True, create: bool = False
) -> T:
    """Build the desk, bring the schema up to date, run `work`, and tear down.

    Only `create` (`db upgrade`; `run` builds its own) may make a new, empty desk: any other
    command run where there is none fails with one line saying where it looked."""
    settings = desk_settings()
    _, looked = find_config(state.config)
    sqlite = settings.database.sqlite_path
    if not create and sqlite is not None and not sqlite.exists():
        fail(
            f"no desk database at {sqlite} ({looked}); give --config or ${CONFIG_ENV}, "
            "or create one with `rightsdesk db upgrade`",
            2,
        )

    async def main() -> T:
        desk = Desk.build(settings)
        try:
            if not create and not await desk.db.has_schema():
                where = desk.db.url.render_as_string(hide_password=True)
                fail(
                    f"no desk in the database {where} ({looked}); "
                    "create it with `rightsdesk db upgrade`",
                    2,
                )
            if migrate:
                await desk.db.migrate()
            return await work(desk)
        finally:
            await desk.close()

    try:
        return asyncio.run(main())
    except TicketError as exc:
        fail(str(exc))
    except (OSError, ConnectionError, OperationalError, InterfaceError) as exc:
        fail(f"database unreachable: {first_line(exc)}", 2)


def shown(value: object, *, multiline: bool = False) -> str:
    """Anything that came from outside (a subject, a body, a name, a file name, an address)
    as every CLI printer must show it: control characters escaped (`views.printable`), and
    Rich's [markup] taken literally. Every table cell and line built from a message goes
    through here."""
    return escape(printable(value, multiline=multiline))


def print_json(data: Any) -> None:
    # json escapes C0 controls itself; C1 and bidirectional overrides are escaped here.
    text = json.dumps(data, ensure_ascii=False, indent=2)
    sys.stdout.write(_JSON_UNSAFE.sub(lambda m: f"\\u{ord(m.group(0)):04x}", text) + "\n")


_JSON_UNSAFE = re.compile("[\x7f-\x9f\u200e\u200f\u202a-\u202e\u2066-\u2069]")


def parse_date(value: str | None, option: str) -> dt.date | None:
    if value is None:
        return None
    try:
        return dt.date.fromisoformat(value)
    except ValueError:
        fail(f"{option}: expected a date like 2026-03-09, got {value!r}", 2)


def parse_types(values: list[str]) -> list[RequestType]:
    types: list[RequestType] = []
    for value in values:
        for part in value.split(","):
            part = part.strip()
            if not part:
                continue
            try:
                types.append(RequestType(part))
            except ValueError:
                known = ", ".join(t.value for t in RequestType)
                fail(f"unknown request type {part!r}; known: {known}", 2)
    return types


def parse_instant(value: str | None, option: str) -> dt.datetime | None:
    if value is None:
        return None
    try:
        parsed = dt.datetime.fromisoformat(value)
    except ValueError:
        fail(f"{option}: expected a time like 2026-02-10T10:00+08:00, got {value!r}", 2)
    if parsed.tzinfo is None:
        fail(f"{option}: give a UTC offset, e.g. 2026-02-10T10:00+08:00", 2)
    return parsed
