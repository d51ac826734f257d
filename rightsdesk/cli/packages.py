"""`rightsdesk tickets package | deliver | revoke-link`: the copy of a requester's data.

Thin: each command is one call of the core's PackageService (rightsdesk/packages.py), the
same methods the console's buttons call.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from rightsdesk.cli.common import JsonFlag, TicketId, fail, out, print_json, shown, state, with_desk
from rightsdesk.cli.tickets import tickets_app
from rightsdesk.packages import PackageInput, content_type_of
from rightsdesk.service import Desk


@tickets_app.command("package")
def tickets_package(
    ticket_id: TicketId,
    add: Annotated[
        list[Path] | None,
        typer.Option(
            "--add",
            help="A file the requester receives (repeatable). Sealed at once (AES-GCM).",
            exists=True,
            dir_okay=False,
        ),
    ] = None,
    note: Annotated[
        str | None,
        typer.Option(help="Shown to the REQUESTER on the package's summary page."),
    ] = None,
    as_json: JsonFlag = False,
) -> None:
    """Build the ticket's package: the files you gathered (and, at delivery, a summary page,
    the data as JSON and CSV, the fulfilment export and the systems' owners' files).

    Nothing is sent yet: `tickets deliver ID` sends the link."""
    files = [
        PackageInput(path.name, content_type_of(path.name), path.read_bytes()) for path in add or []
    ]
    data = with_desk(lambda d: d.packages.add(ticket_id, files, note, state.actor))
    if as_json:
        print_json(data)
        return
    out.print(shown(f"{ticket_id}: {data['line']}"), highlight=False)
    for f in data["files"]:
        out.print(shown(f"  {f['name']}  {f['bytes']:,} bytes  ({f['source']})"), highlight=False)


@tickets_app.command("deliver")
def tickets_deliver(ticket_id: TicketId, as_json: JsonFlag = False) -> None:
    """Send the requester a link to the package on the ticket's own channel (mail or chat).

    Opening it asks for a one-time code, sent then to the account's registered email. The link
    expires after portal.link_days and portal.max_downloads downloads; its files are then
    deleted. Delivering again (after revoke-link) sends a new link."""

    async def work(desk: Desk) -> dict[str, Any]:
        done = await desk.packages.deliver(ticket_id, state.actor)
        return {
            "id": done.public_id,
            "package": done.package_id,
            "expires_at": done.expires_at.isoformat(),
            "max_downloads": done.max_downloads,
            "files": done.files,
        }

    data = with_desk(work)
    if as_json:
        print_json(data)
        return
    out.print(
        f"{ticket_id}: package {data['package']} delivered ({data['files']} files); the link "
        f"works until {data['expires_at'][:16]} for {data['max_downloads']} downloads",
        highlight=False,
    )


@tickets_app.command("revoke-link")
def tickets_revoke_link(
    ticket_id: TicketId,
    reason: Annotated[str, typer.Option(help="Why (kept in the audit trail).")] = "",
    as_json: JsonFlag = False,
) -> None:
    """Stop the delivered link at once. The files stay: `tickets deliver ID` sends a new link."""
    if not reason.strip():
        fail("--reason TEXT is required: why the link is revoked", 2)
    with_desk(lambda d: d.packages.revoke(ticket_id, state.actor, reason))
    if as_json:
        print_json({"id": ticket_id, "revoked": True})
        return
    out.print(f"{ticket_id}: link revoked", highlight=False)
