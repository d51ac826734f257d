"""The DPO's digest as it is mailed, on SQLite and PostgreSQL, against snapshots: every section,
the "and N more" line, working days left and late, the service's health and December's warning
about next year's holidays. The wording lives in rightsdesk/templates/digest.<lang>.j2;

    UPDATE_SNAPSHOTS=1 .venv/bin/pytest tests/test_digest.py

writes the snapshots again (only when the wording changes on purpose: review the diff)."""

from __future__ import annotations

import datetime as dt
import os
from pathlib import Path

import pytest

from rightsdesk.clock import FrozenClock
from rightsdesk.models import TaskHeartbeat
from rightsdesk.service import Desk
from scheduler import digest as digest_module
from scheduler.digest import build_digest, render_digest
from tests.conftest import add_staff, at
from tests.test_scheduler import open_ticket

SNAPSHOTS = Path(__file__).parent / "snapshots" / "digest"


def _matches(name: str, rendered: str) -> None:
    path = SNAPSHOTS / name
    if os.environ.get("UPDATE_SNAPSHOTS") == "1":
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(rendered, encoding="utf-8")
    assert path.exists(), f"no snapshot {path}; run with UPDATE_SNAPSHOTS=1 and review it"
    assert rendered == path.read_text(encoding="utf-8"), name


async def _a_busy_desk(desk: Desk, clock: FrozenClock) -> None:
    await open_ticket(desk, "2026-11-02 10:00", email="late@example.com")  # overdue
    await open_ticket(desk, "2026-11-20 10:00", types=("erasure",), email="soon@example.com")
    assigned = await open_ticket(desk, "2026-12-01 10:00", email="owned@example.com")
    await add_staff(desk, "wang.fang")
    await desk.tickets.assign(assigned, "cli:dpo", "wang.fang")
    waiting = await open_ticket(desk, "2026-12-14 10:00", email="wait@example.com")
    await desk.tickets.request_verification(waiting, "system")
    done = await open_ticket(desk, "2026-12-18 10:00", types=("complaint",), email="d@example.com")
    clock.set(at("2026-12-20 12:00"))
    await desk.tickets.deny(done, "cli:dpo", "not the account holder")
    # Due in 2027, whose holidays are not known yet: provisional.
    await open_ticket(desk, "2026-12-20 10:00", types=("inquiry",), email="new@example.com")
    now = at("2026-12-21 09:00")
    async with desk.db.transaction() as session:
        session.add(
            TaskHeartbeat(
                replica="host-a",
                task="smtp",
                state="failing",
                since=now - dt.timedelta(hours=2),
                failures=4,
                failing_since=now - dt.timedelta(hours=3),
                last_error="OSError",
                beat_at=now,
            )
        )
        session.add(
            TaskHeartbeat(
                replica="host-b",
                task="imap",
                state="up",
                since=now - dt.timedelta(days=2),
                beat_at=now - dt.timedelta(hours=1),
            )
        )
    clock.set(at("2026-12-21 09:30"))


async def test_the_digest_reads_as_its_snapshot(
    desk: Desk, clock: FrozenClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    await _a_busy_desk(desk, clock)
    monkeypatch.setattr(digest_module, "LINES_PER_SECTION", 2)  # "… and N more"
    subject, text, html = render_digest(
        await build_digest(desk, dt.date(2026, 12, 21)), desk.outbox.templates
    )
    _matches("digest.subject.txt", subject + "\n")
    _matches("digest.txt", text)
    _matches("digest.html", html + "\n")


async def test_finished_tickets_show_no_days_left(desk: Desk, clock: FrozenClock) -> None:
    done = await open_ticket(desk, "2026-12-18 10:00", types=("complaint",), email="d@example.com")
    clock.set(at("2026-12-20 12:00"))
    await desk.tickets.deny(done, "cli:dpo", "not the account holder")
    digest = await build_digest(desk, dt.date(2026, 12, 21))
    [line] = digest.sections["closed"]
    assert line.ticket_id == done
    assert line.days_left is None
    _, text, _ = render_digest(digest, desk.outbox.templates)
    [shown] = [row for row in text.splitlines() if done in row]
    assert "剩" not in shown
    assert "left" not in shown


async def test_an_empty_desk_has_an_empty_digest(desk: Desk) -> None:
    subject, text, html = render_digest(
        await build_digest(desk, dt.date(2026, 3, 10)), desk.outbox.templates
    )
    _matches("empty.txt", f"{subject}\n{text}")
    _matches("empty.html", html + "\n")
