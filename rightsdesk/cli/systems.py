"""`rightsdesk systems`: the company's systems that fulfilment reaches (`[[systems]]`)."""

from __future__ import annotations

from typing import Any

import typer
from rich.table import Table

from rightsdesk.cli.common import JsonFlag, err, out, print_json, shown, with_desk
from rightsdesk.service import Desk

systems_app = typer.Typer(help="The company's systems (fulfilment).", no_args_is_help=True)


@systems_app.command("list")
def systems_list(as_json: JsonFlag = False) -> None:
    """List the configured systems and their statements."""

    async def work(desk: Desk) -> list[dict[str, Any]]:
        return desk.fulfilment.register.listing()

    rows = with_desk(work, migrate=False)
    if as_json:
        print_json(rows)
        return
    table = Table("name", "kind", "owners", "url", "statements")
    for row in rows:
        statements = "; ".join(f"{a}: {', '.join(n)}" for a, n in row["statements"].items())
        url = "-" if row["kind"] == "manual" else ("set" if row["url_configured"] else "MISSING")
        table.add_row(row["name"], row["kind"], ", ".join(row["owner_emails"]), url, statements)
    out.print(table)
    if not rows:
        err.print(
            "no [[systems]] configured (see README: describing the company's systems)",
            markup=False,  # Rich would read [systems] as a style and print "no []"
        )


@systems_app.command("check")
def systems_check(as_json: JsonFlag = False) -> None:
    """Connect to each system and run every statement on an impossible account, inside a
    transaction that is rolled back. One line per problem; exit 1 if there is any."""

    async def work(desk: Desk) -> list[str]:
        return await desk.fulfilment.register.check()

    problems = with_desk(work, migrate=False)
    if as_json:
        print_json({"ok": not problems, "problems": problems})
    else:
        for line in problems:
            out.print(shown(line), highlight=False)  # a driver's error: escaped
        if not problems:
            out.print("every system and statement checked: ok", highlight=False)
    if problems:
        raise typer.Exit(1)
