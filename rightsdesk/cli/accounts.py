"""`rightsdesk accounts`: the company's user directory."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer
from rich.progress import Progress, SpinnerColumn, TextColumn, TimeElapsedColumn
from rich.table import Table

from rightsdesk.accounts import AccountImportError
from rightsdesk.cli.common import JsonFlag, err, fail, out, print_json, shown, with_desk
from rightsdesk.service import Desk
from rightsdesk.views import account_view

accounts_app = typer.Typer(help="The company's user directory.", no_args_is_help=True)


@accounts_app.command("import")
def accounts_import(
    file: Annotated[Path, typer.Argument(help="CSV with account_id,email[,phone,name,username].")],
    as_json: JsonFlag = False,
) -> None:
    """Insert or update accounts from a CSV export of the user directory."""

    async def work(desk: Desk) -> Any:
        with Progress(
            SpinnerColumn(),
            TextColumn("importing accounts: {task.completed} rows read"),
            TimeElapsedColumn(),
            console=err,
            transient=True,
            disable=not err.is_terminal,
        ) as progress:
            task = progress.add_task("import", total=None)
            return await desk.accounts.import_csv(
                file, progress=lambda rows: progress.update(task, completed=rows)
            )

    try:
        report = with_desk(work)
    except AccountImportError as exc:
        fail(str(exc), 2)
    if as_json:
        print_json(
            {
                "rows": report.rows,
                "imported": report.imported,
                "rejected": [{"line": line, "reason": why} for line, why in report.rejected],
            }
        )
    else:
        err.print(f"{report.imported} of {report.rows} rows imported", highlight=False)
        for line, why in report.rejected[:20]:
            err.print(f"  line {line}: {shown(why)}", highlight=False)
        if len(report.rejected) > 20:
            err.print(f"  … and {len(report.rejected) - 20} more rejected rows", highlight=False)
    if report.rejected:
        raise typer.Exit(1)


@accounts_app.command("list")
def accounts_list(
    limit: Annotated[int, typer.Option(help="At most this many rows.")] = 100,
    as_json: JsonFlag = False,
) -> None:
    """List imported accounts."""
    accounts = with_desk(lambda desk: desk.accounts.browse(limit))
    if as_json:
        print_json([account_view(a) for a in accounts])
        return
    table = Table("account", "email", "phone", "name", "username")
    for a in accounts:
        table.add_row(*(shown(v or "") for v in (a.id, a.email, a.phone, a.name, a.username)))
    out.print(table)
