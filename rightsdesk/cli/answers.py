"""`rightsdesk tickets reply | note | templates`: answer the requester, keep notes for the team.

Thin on purpose: each command is one call of the core's `Answers` (rightsdesk/answers.py),
which the web console and the portal will call the same way.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from rightsdesk.answers import Attachment
from rightsdesk.cli.common import (
    JsonFlag,
    TicketId,
    desk_settings,
    fail,
    out,
    print_json,
    state,
    with_desk,
)
from rightsdesk.cli.tickets import tickets_app
from rightsdesk.languages import LANGS
from rightsdesk.service import Desk
from rightsdesk.templating import Templates


@tickets_app.command("reply")
def tickets_reply(
    ticket_id: TicketId,
    text: Annotated[
        str | None, typer.Option(help="The message the requester reads (sent as written).")
    ] = None,
    file: Annotated[
        Path | None, typer.Option(help="Read the message from this UTF-8 file instead.")
    ] = None,
    template: Annotated[
        str | None,
        typer.Option(
            help="A canned reply (see `tickets templates`); --text/--file then fills its "
            "`text` (e.g. what was deleted)."
        ),
    ] = None,
    attach: Annotated[
        list[Path] | None, typer.Option(help="A file to send with it (repeatable).")
    ] = None,
    lang: Annotated[
        str | None,
        typer.Option(help="zh, zh-Hant or en (default: the ticket's language)."),
    ] = None,
    as_json: JsonFlag = False,
) -> None:
    """Send the requester a message on the ticket's own channel (mail, threaded; or the chat).

    The requester reads it. For the team only, use `tickets note`."""
    if text is not None and file is not None:
        fail("give --text or --file, not both", 2)
    if file is not None:
        text = _read_text(file)
    if text is None and template is None:
        fail("give --text, --file or --template", 2)
    if lang is not None and lang not in LANGS:
        fail(f"--lang: one of {', '.join(LANGS)}", 2)
    files = [Attachment(path.name, _read_bytes(path)) for path in attach or []]

    async def work(desk: Desk) -> dict[str, Any]:
        sent = await desk.answers.reply(
            ticket_id, actor=state.actor, text=text, template=template, attachments=files, lang=lang
        )
        return {
            "id": sent.ticket_id,
            "channel": sent.channel,
            "lang": sent.lang,
            "template": sent.template,
            "messages": sent.message_ids,
            "attachments": sent.attachments,
        }

    result = with_desk(work)
    if as_json:
        print_json(result)
        return
    files_said = f" with {len(result['attachments'])} file(s)" if result["attachments"] else ""
    out.print(
        f"{result['id']}: reply queued by {result['channel']} in {result['lang']}{files_said}",
        highlight=False,
    )


@tickets_app.command("note")
def tickets_note(
    ticket_id: TicketId,
    text: Annotated[str, typer.Option(help="The note. The team reads it; it is never sent.")],
    as_json: JsonFlag = False,
) -> None:
    """Keep an internal note on a ticket: never sent, never shown to the requester."""
    if not text.strip():
        fail("--text: the note is empty", 2)

    async def work(desk: Desk) -> int:
        return await desk.answers.note(ticket_id, actor=state.actor, text=text)

    message_id = with_desk(work)
    if as_json:
        print_json({"id": ticket_id.upper(), "note": message_id, "internal": True})
    else:
        out.print(f"{ticket_id.upper()}: internal note kept (never sent)", highlight=False)


@tickets_app.command("templates")
def tickets_templates(as_json: JsonFlag = False) -> None:
    """List the canned replies for `tickets reply --template`, with their titles."""
    found = _templates().replies()
    if as_json:
        print_json(
            [
                {"name": name, "languages": sorted(titles), "titles": titles}
                for name, titles in found.items()
            ]
        )
        return
    for name, titles in found.items():
        title = titles.get("en") or next(iter(titles.values()))
        out.print(f"{name:<18} {','.join(sorted(titles)):<16} {title}", highlight=False)


def _templates() -> Templates:
    settings = desk_settings()
    return Templates(settings.outbound.templates_dir, settings.desk.company_name)


def _read_text(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        fail(f"--file {path}: {exc}", 2)


def _read_bytes(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except OSError as exc:
        fail(f"--attach {path}: {exc}", 2)
