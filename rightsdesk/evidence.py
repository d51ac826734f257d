"""The evidence pack of one ticket: a ZIP a regulator can check without the desk.

Every message as .eml (the raw bytes as received or sent; a plain-text .eml where there are
none, e.g. a chat message), every attachment, the ticket, its audit events with their hash
chain, a README, a manifest of SHA-256 sums, and verify_pack.py (rightsdesk.evidence_check,
standard library only) that checks all of it.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import hashlib
import io
import json
import zipfile
from email.message import EmailMessage
from email.utils import format_datetime
from pathlib import Path
from typing import Any

from sqlalchemy.orm import defer
from sqlmodel import col, select

from rightsdesk.db import Database
from rightsdesk.evidence_check import MANIFEST
from rightsdesk.filenames import safe_name
from rightsdesk.models import Event, Message, Requester, StoredAttachment, Ticket
from rightsdesk.tickets import TicketNotFound

CHECKER = Path(__file__).with_name("evidence_check.py")

README = """rightsdesk evidence pack for {ticket} / 证据包 {ticket}

Made {made} by {actor}. Audit head (the hash of the newest event): {head}

Contents / 内容
  ticket.json       the ticket as the desk holds it, and what proved each message's sender / 工单
  events.json       every audit event, in order, with its hash chain / 审计事件及哈希链
  messages/*.eml    every message in and out, as received or sent / 收发的每封消息
  attachments/*     the files attached to them / 附件
  attachments.json  every attachment: name, type, size, SHA-256, and whether its content was
                    kept (a file over the size limit is listed, not included) / 附件清单（过大
                    的文件只列出，未保存内容）
  manifest.json     the SHA-256 of every file above / 每个文件的 SHA-256
  verify_pack.py    the check, standard-library Python only / 校验脚本（仅用 Python 标准库）

How to check / 如何校验
  python3 verify_pack.py {filename}
  (or, with rightsdesk installed: rightsdesk audit verify-pack {filename})

It recomputes every file's SHA-256 against manifest.json and every event's SHA-256 from its
content: event n names the hash of event n-1 (event 1 names 64 zeros), so an event edited,
removed or reordered breaks the chain at that point, and the last hash must equal the audit
head above. Ask the desk to confirm that audit head (`rightsdesk tickets show {ticket} --json`
shows the events' hashes) to know the pack is complete up to the day it was made.
"""


async def list_attachments(db: Database, message_ids: list[int]) -> list[StoredAttachment]:
    """The attachments of these messages, without their bytes (for a ticket page)."""
    if not message_ids:
        return []
    async with db.reading() as session:
        rows = await session.exec(
            select(StoredAttachment)
            .where(col(StoredAttachment.message_id).in_(message_ids))
            .options(defer(StoredAttachment.content))  # type: ignore[arg-type]
            .order_by(col(StoredAttachment.id))
        )
        return list(rows.all())


async def get_attachment(db: Database, attachment_id: int) -> tuple[StoredAttachment, str] | None:
    """One attachment with its bytes, and the public id of its ticket."""
    async with db.reading() as session:
        row = (
            await session.exec(
                select(StoredAttachment, Ticket.public_id)
                .join(Message, col(Message.id) == col(StoredAttachment.message_id))
                .join(Ticket, col(Ticket.id) == col(Message.ticket_id))
                .where(StoredAttachment.id == attachment_id)
            )
        ).first()
        return (row[0], row[1]) if row is not None else None


def _eml(message: Message, ticket: Ticket) -> bytes:
    if message.raw:
        return message.raw
    mail = EmailMessage()
    mail["From"] = message.sender or ("rightsdesk" if message.direction == "out" else "unknown")
    mail["Subject"] = message.subject or ticket.public_id
    mail["Date"] = format_datetime(message.received_at.astimezone(dt.UTC))
    mail["X-Rightsdesk-Channel"] = message.channel
    mail["X-Rightsdesk-Direction"] = message.direction
    mail.set_content(message.text or "")
    return mail.as_bytes()


def _jsonable(value: Any) -> Any:
    if isinstance(value, dt.datetime):
        return value.astimezone(dt.UTC).isoformat()
    if isinstance(value, dt.date):
        return value.isoformat()
    return value


async def build_pack(db: Database, public_id: str, actor: str, now: dt.datetime) -> bytes:
    key = public_id.strip().upper()
    async with db.reading() as session:
        ticket = (await session.exec(select(Ticket).where(Ticket.public_id == key))).first()
        if ticket is None:
            raise TicketNotFound(f"no ticket {public_id}")
        requester = await session.get_one(Requester, ticket.requester_id)
        messages = (
            await session.exec(
                select(Message)
                .where(Message.ticket_id == ticket.id)
                .order_by(col(Message.received_at), col(Message.id))
            )
        ).all()
        message_ids = [m.id for m in messages]
        attachments = (
            await session.exec(
                select(StoredAttachment).where(col(StoredAttachment.message_id).in_(message_ids))
            )
        ).all()
        events = (
            await session.exec(
                select(Event).where(Event.ticket_id == ticket.id).order_by(col(Event.seq))
            )
        ).all()
    files: dict[str, bytes] = {}
    ticket_data = {
        name: _jsonable(value)
        for name, value in ticket.model_dump().items()
        if name not in ("classification",)
    }
    ticket_data["types"] = [str(t) for t in ticket.types]
    ticket_data["requester"] = {
        "name": requester.name,
        "account_id": requester.account_id,
        "contacts": [{"kind": c.kind, "value": c.value} for c in requester.contacts],
    }
    names = [f"messages/{n:04d}-{m.direction}-{m.id}.eml" for n, m in enumerate(messages, 1)]
    # What a reader of the .eml files cannot see: whether anything proved who wrote each one.
    ticket_data["messages"] = [
        {
            "file": name,
            "sender": m.sender,
            "sender_authenticated": m.sender_authenticated,
            "unauthenticated_thread": m.unauthenticated_thread,
        }
        for name, m in zip(names, messages, strict=True)
    ]
    files["ticket.json"] = json.dumps(ticket_data, ensure_ascii=False, indent=2).encode()
    files["events.json"] = json.dumps(
        [
            {
                "seq": e.seq,
                "at": e.at.astimezone(dt.UTC).isoformat(),
                "actor": e.actor,
                "action": e.action,
                "before": e.before,
                "after": e.after,
                "prev_hash": e.prev_hash,
                "hash": e.hash,
            }
            for e in events
        ],
        ensure_ascii=False,
        indent=2,
    ).encode()
    for name, message in zip(names, messages, strict=True):
        files[name] = _eml(message, ticket)
    listing = []
    for attachment in attachments:
        entry: str | None = None
        if attachment.content is not None:
            # The name as every other file we write has it (no folders, controls, reserved or
            # direction characters); the ids in front keep two files of one name apart.
            name = safe_name(attachment.filename, f"attachment-{attachment.id}")
            entry = f"attachments/{attachment.message_id}-{attachment.id}-{name}"
            files[entry] = attachment.content
        listing.append(
            {
                "message": attachment.message_id,
                "filename": attachment.filename,
                "content_type": attachment.content_type,
                "size": attachment.size,
                "sha256": attachment.sha256,
                # False: too large to keep (or emptied by retention); not in the pack.
                "kept": entry is not None,
                "file": entry,
            }
        )
    files["attachments.json"] = json.dumps(listing, ensure_ascii=False, indent=2).encode()
    filename = f"{ticket.public_id}-evidence.zip"
    files["README.txt"] = README.format(
        ticket=ticket.public_id,
        made=now.astimezone(dt.UTC).isoformat(),
        actor=actor,
        head=ticket.audit_head,
        filename=filename,
    ).encode()
    return await asyncio.to_thread(_zip, files, ticket.public_id, ticket.audit_head)


def _zip(files: dict[str, bytes], public_id: str, head: str) -> bytes:
    files["verify_pack.py"] = CHECKER.read_bytes()
    manifest = {
        "ticket": public_id,
        "audit_head": head,
        "files": {name: hashlib.sha256(data).hexdigest() for name, data in files.items()},
    }
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, data in files.items():
            archive.writestr(name, data)
        archive.writestr(MANIFEST, json.dumps(manifest, indent=2))
    return buffer.getvalue()
