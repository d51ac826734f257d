"""`rightsdesk fulfil`: carry out a verified request in the company's systems.

rightsdesk fulfil ID --dry-run [--json]     the plan, with rows per statement (rolled back)
rightsdesk fulfil ID --approve PLANHASH     run it (again: finish what is left)
rightsdesk fulfil tasks|task-done|mark|override|export ...
"""

from __future__ import annotations

import csv
import json
import mimetypes
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.table import Table
from typer.core import TyperGroup

from rightsdesk.cli.common import (
    JsonFlag,
    TicketId,
    fail,
    out,
    print_json,
    shown,
    state,
    with_desk,
)
from rightsdesk.fulfilment import TaskFile
from rightsdesk.service import Desk
from rightsdesk.signing import LinkInvalid


class _TicketFirst(TyperGroup):
    """`fulfil PRIV-… --dry-run` means `fulfil run PRIV-… --dry-run`."""

    def parse_args(self, ctx: Any, args: list[str]) -> list[str]:
        if args and not args[0].startswith("-") and args[0] not in self.commands:
            args = ["run", *args]
        return super().parse_args(ctx, args)


fulfil_app = typer.Typer(
    cls=_TicketFirst,
    help=(
        "Carry out a verified request in the company's systems (dry run, approve, tasks). "
        "`fulfil ID --dry-run` is short for `fulfil run ID --dry-run`, `fulfil ID --approve "
        "PLANHASH` for `fulfil run ID --approve PLANHASH`."
    ),
    no_args_is_help=True,
)


@fulfil_app.command("run")
def fulfil_run(
    ticket_id: TicketId,
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Show the plan; change nothing.")
    ] = False,
    approve: Annotated[
        str | None,
        typer.Option("--approve", metavar="PLANHASH", help="Run the plan the dry run showed."),
    ] = None,
    as_json: JsonFlag = False,
) -> None:
    """Show the plan for a ticket (--dry-run) or run the approved one (--approve PLANHASH)."""
    if dry_run == (approve is not None):
        fail("give --dry-run, or --approve with the plan hash the dry run printed", 2)
    if dry_run:
        plan = with_desk(lambda d: d.fulfilment.plan(ticket_id))
        data = plan.to_json()
        if as_json:
            print_json(data)
            return
        _print_plan(data)
        return
    assert approve is not None
    runs = with_desk(lambda d: d.fulfilment.approve(ticket_id, approve, state.actor))
    if as_json:
        print_json(runs)
        return
    _print_runs(runs[:1])
    if runs and any(s["status"] == "failed" for s in runs[0]["systems"]):
        raise typer.Exit(1)


def _print_plan(data: dict[str, Any]) -> None:
    out.print(
        f"[bold]{data['ticket']}[/] account {data['account_id']}: {', '.join(data['actions'])}",
        highlight=False,
    )
    for system in data["systems"]:
        out.rule(f"{system['name']} ({system['kind']})")
        if system["error"]:
            out.print(f"  cannot run: {shown(system['error'])}", highlight=False)
        if system["kind"] == "manual":
            out.print(f"  a task for {', '.join(system['owner_emails'])}", highlight=False)
        for step in system["statements"]:
            rows = "?" if step["rows"] is None else str(step["rows"])
            label = (
                f"rows in the export section {step['title']!r}"
                if step["action"] == "access"
                else "rows touched"
            )
            missing = (
                f" (no {', '.join(step['missing'])} on the account)" if step["missing"] else ""
            )
            out.print(
                f"  {step['action']}.{step['name']}: {rows} {label}{missing}", highlight=False
            )
    out.print(f"plan hash: {data['plan_hash']}", highlight=False)
    out.print(f"approve:   rightsdesk fulfil {data['ticket']} --approve {data['plan_hash']}")


def _print_runs(runs: list[dict[str, Any]]) -> None:
    for run in runs:
        out.print(f"run {run['run']} ({run['plan_hash'][:12]}…): {run['status']}", highlight=False)
        table = Table("system", "kind", "status", "attempts", "rows / outcome", "error")
        for s in run["systems"]:
            what = (
                json.dumps(s["rows"], ensure_ascii=False)
                if s["kind"] == "sql"
                else (s["outcome"] or "")
            )
            # The error comes from the system's driver and the outcome from its owners: shown.
            table.add_row(
                s["system"],
                s["kind"],
                s["status"],
                str(s["attempts"]),
                shown(what),
                shown(s["last_error"] or ""),
            )
        out.print(table)


@fulfil_app.command("tasks")
def fulfil_tasks(ticket_id: TicketId, as_json: JsonFlag = False) -> None:
    """The systems of the ticket's runs: SQL parts and manual tasks, with their state."""
    runs = with_desk(lambda d: d.fulfilment.status(ticket_id), migrate=False)
    if as_json:
        print_json(runs)
        return
    _print_runs(runs)


@fulfil_app.command("task-done")
def fulfil_task_done(
    ticket_id: Annotated[str | None, typer.Argument(help="Ticket id (or give --token).")] = None,
    system: Annotated[str | None, typer.Argument(help="The manual system.")] = None,
    outcome: Annotated[
        str, typer.Option(help="done | file | nothing (the system holds nothing on them).")
    ] = "done",
    note: Annotated[str, typer.Option(help="What was done, or how you know.")] = "",
    file: Annotated[
        Path | None, typer.Option(help="A file for the package (outcome file).", exists=True)
    ] = None,
    token: Annotated[
        str | None, typer.Option(help="The token of the owners' link, instead of ID SYSTEM.")
    ] = None,
) -> None:
    """Answer a manual system's task: by ticket and system, or with the link's token."""
    attached = None
    if file is not None:
        kind = mimetypes.guess_type(file.name)[0] or "application/octet-stream"
        attached = TaskFile(file.name, kind, file.read_bytes())
        if outcome == "done":
            outcome = "file"

    async def work(desk: Desk) -> None:
        if token is not None:
            try:
                await desk.fulfilment.complete_task_by_link(token, outcome, note, attached)
            except LinkInvalid as exc:
                fail(str(exc))
            return
        if ticket_id is None or system is None:
            fail("give ID SYSTEM, or --token", 2)
        await desk.fulfilment.complete_task(ticket_id, system, outcome, note, attached, state.actor)

    with_desk(work)
    out.print("task answered", highlight=False)


@fulfil_app.command("mark")
def fulfil_mark(
    ticket_id: TicketId,
    system: Annotated[str, typer.Argument(help="The system whose part was done by hand.")],
    reason: Annotated[str, typer.Option(help="What was done, by whom.")],
) -> None:
    """Mark a failed (or stuck) system's part as done by a person."""
    with_desk(lambda d: d.fulfilment.mark(ticket_id, system, reason, state.actor))
    out.print(f"{ticket_id}: {system} marked done", highlight=False)


@fulfil_app.command("override")
def fulfil_override(
    ticket_id: TicketId,
    reason: Annotated[str, typer.Option(help="Why the ticket may be resolved anyway.")],
) -> None:
    """DPO: let the ticket be resolved while systems or tasks are still open, with a reason."""
    with_desk(lambda d: d.fulfilment.override(ticket_id, reason, state.actor))
    out.print(f"{ticket_id}: open systems overridden; the ticket can be resolved", highlight=False)


@fulfil_app.command("export")
def fulfil_export(
    ticket_id: TicketId,
    out_dir: Annotated[
        Path | None, typer.Option("--out", help="Write <system>/<section>.json and .csv here.")
    ] = None,
    as_json: JsonFlag = False,
) -> None:
    """The access export of the newest run (what the requester's package is made of)."""

    async def work(desk: Desk) -> tuple[dict[str, Any], dict[str, tuple[str, bytes]]]:
        data = await desk.fulfilment.export(ticket_id)
        files = {}
        for name, entry in data["systems"].items():
            if "file" in entry:
                found = await desk.fulfilment.file_of(ticket_id, name)
                if found is not None:
                    files[name] = found
        return data, files

    data, files = with_desk(work, migrate=False)
    if out_dir is not None:
        write_export(out_dir, data, files)
    if as_json or out_dir is None:
        print_json(data)
    else:
        out.print(f"written to {out_dir}", highlight=False)


def write_export(folder: Path, data: dict[str, Any], files: dict[str, tuple[str, bytes]]) -> None:
    """Each section as JSON and as CSV (with a BOM, so spreadsheet programs read Chinese)."""
    for system, entry in data["systems"].items():
        where = folder / system
        where.mkdir(parents=True, exist_ok=True)
        for name, section in entry["sections"].items():
            (where / f"{name}.json").write_text(
                json.dumps(section, ensure_ascii=False, indent=2) + "\n", encoding="utf-8"
            )
            with (where / f"{name}.csv").open("w", encoding="utf-8-sig", newline="") as handle:
                writer = csv.DictWriter(handle, fieldnames=section["columns"])
                writer.writeheader()
                writer.writerows(section["rows"])
        if system in files:
            file_name, content = files[system]
            (where / Path(file_name).name).write_bytes(content)
