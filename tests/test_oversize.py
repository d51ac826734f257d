"""A file over the kept-size limit (`mail.max_attachment_bytes`, 10 MiB by default; 512 KiB
here) is listed as not kept wherever a person reads the ticket (tickets show, --json, the
evidence pack's listing), and the requester's acknowledgement says which file, why, and how to
send it again; the next reply does not repeat it. Real SMTP in and out, both databases."""

from __future__ import annotations

import io
import json
import zipfile
from collections.abc import AsyncIterator
from email.message import EmailMessage
from pathlib import Path

import pytest

from rightsdesk.clock import FrozenClock
from rightsdesk.config import Settings
from rightsdesk.evidence import build_pack
from rightsdesk.models import RequestType
from tests.test_trust import _cli
from tests.test_verification_flow import OWNER, PRIVACY, World, make_world, only_ticket, text_of


@pytest.fixture
async def world(settings: Settings, clock: FrozenClock) -> AsyncIterator[World]:
    settings.mail.max_attachment_bytes = 512 * 1024
    made = await make_world(settings, clock, [RequestType.ACCESS])
    yield made
    await made.receiver.stop()
    await made.relay.stop()
    await made.desk.close()


def _with_files() -> bytes:
    mail = EmailMessage()
    mail["From"] = f"Zhang San <{OWNER}>"
    mail["To"] = PRIVACY
    mail["Subject"] = "查阅我的个人信息"
    mail["Message-ID"] = "<files-1@example.com>"
    mail.set_content("请提供我的个人信息副本，身份证扫描件见附件。")
    mail.add_attachment(b"x" * 2000, maintype="image", subtype="jpeg", filename="small.jpg")
    big = b"%PDF-1.4\n" + b"y" * (600 * 1024)
    mail.add_attachment(big, maintype="application", subtype="pdf", filename="扫描 全部.pdf")
    return mail.as_bytes()


async def test_a_file_too_large_to_keep_is_said_so_everywhere(
    world: World, settings: Settings, tmp_path: Path
) -> None:
    await world.send(_with_files())
    public_id = await only_ticket(world.desk)
    [ack] = world.relay.mails("acknowledgement")
    said = text_of(ack)
    assert "扫描 全部.pdf" in said
    assert "超过 0.5 MB，我们未能保存" in said  # the request's language
    assert "请回复本邮件重新发送" in said  # and how to send it
    assert "small.jpg" not in said

    shown = json.loads(
        (await _cli(settings, tmp_path, "tickets", "show", public_id, "--json")).stdout
    )
    files = {a["filename"]: a["kept"] for m in shown["messages"] for a in m["attachments"]}
    assert files == {"small.jpg": True, "扫描 全部.pdf": False}
    human = (await _cli(settings, tmp_path, "tickets", "show", public_id)).stdout
    [line] = [r for r in human.splitlines() if "attachment #" in r and "全部.pdf" in r]
    assert "NOT KEPT" in line
    [kept] = [r for r in human.splitlines() if "attachment #" in r and "small.jpg" in r]
    assert "NOT KEPT" not in kept

    pack = await build_pack(world.desk.db, public_id, "cli:dpo", world.desk.clock.now())
    archive = zipfile.ZipFile(io.BytesIO(pack))
    listing = {a["filename"]: a for a in json.loads(archive.read("attachments.json"))}
    assert listing["扫描 全部.pdf"]["kept"] is False
    assert listing["扫描 全部.pdf"]["file"] is None
    assert listing["扫描 全部.pdf"]["size"] > 600 * 1024
    assert archive.read(listing["small.jpg"]["file"]) == b"x" * 2000

    # Told once: a person's reply after the acknowledgement does not say it again.
    await world.desk.answers.reply(public_id, actor="cli:dpo", text="我们正在处理。")
    await world.desk.sender.send_due()
    [reply] = world.relay.mails("reply")
    assert "全部.pdf" not in text_of(reply)
