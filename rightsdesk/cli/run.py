"""`rightsdesk run` and `rightsdesk db`: the service and its schema."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Annotated

import typer

from rightsdesk.cli.common import app, desk_settings, err, fail, state, with_desk
from rightsdesk.service import Desk, StartupError, configure_logging, run_service

db_app = typer.Typer(help="Database schema.", no_args_is_help=True)


@app.command()
def run(
    config: Annotated[
        Path | None,
        typer.Option(
            "--config",
            "-c",
            help="TOML config file; the same as `rightsdesk --config FILE run`.",
        ),
    ] = None,
) -> None:
    """Migrate the database and run the service until SIGTERM or Ctrl-C."""
    if config is not None:  # `rightsdesk run --config FILE`, as people type it
        state.config = config
    settings = desk_settings()
    configure_logging(settings)
    try:
        asyncio.run(run_service(settings))
    except StartupError as exc:
        fail(str(exc), 2)


@db_app.command("upgrade")
def db_upgrade() -> None:
    """Apply every pending migration (also done by `rightsdesk run`)."""

    async def work(desk: Desk) -> str:
        await desk.db.migrate()
        return desk.db.url.render_as_string(hide_password=True)

    url = with_desk(work, migrate=False, create=True)
    err.print(f"database is up to date: {url}", highlight=False)
