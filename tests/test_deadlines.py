"""The policy's promise in dates: 15 mainland-China working days to answer, 30 days to delete."""

from __future__ import annotations

import datetime as dt
import json
from zoneinfo import ZoneInfo

import pytest

from rightsdesk.calendar import WorkingCalendar
from rightsdesk.config_sections import DeadlineSettings
from rightsdesk.deadlines import DeadlinePolicy
from rightsdesk.models import RequestType
from tests.conftest import at

D = dt.date.fromisoformat
ACCESS = [RequestType.ACCESS]
ERASURE = [RequestType.ERASURE]


def policy(**overrides: object) -> DeadlinePolicy:
    return DeadlinePolicy(DeadlineSettings(**overrides), ZoneInfo("Asia/Shanghai"))


@pytest.mark.parametrize(
    ("received", "due"),
    [
        # Spring Festival 2026 (Feb 15-23 off) with the working Saturdays Feb 14 and Feb 28.
        ("2026-02-10 10:00", "2026-03-09"),
        # Received on a Friday: the working Saturday Feb 14 is day 1.
        ("2026-02-13 16:00", "2026-03-12"),
        # Received in the middle of the holiday: counting starts on Feb 24.
        ("2026-02-17 09:00", "2026-03-13"),
        # National Day 2026 (Oct 1-7 off), working Saturday Oct 10.
        ("2026-09-25 11:00", "2026-10-22"),
        # Received on National Day itself.
        ("2026-10-01 12:00", "2026-10-27"),
        # Dragon Boat Festival, Friday 2026-06-19.
        ("2026-06-01 09:00", "2026-06-23"),
        # An ordinary stretch: three plain weeks.
        ("2026-11-02 09:00", "2026-11-23"),
    ],
)
def test_response_due_counts_china_working_days(received: str, due: str) -> None:
    deadlines = policy().compute(at(received), ACCESS)
    assert deadlines.response_due == D(due)
    assert deadlines.provisional is False
    assert deadlines.completion_due is None


def test_working_saturdays_count_and_holiday_weekdays_do_not() -> None:
    calendar = WorkingCalendar()
    assert calendar.is_working_day(D("2026-02-14")) == (True, True)  # Saturday, 调休
    assert calendar.is_working_day(D("2026-02-28")) == (True, True)
    assert calendar.is_working_day(D("2026-10-10")) == (True, True)
    assert calendar.is_working_day(D("2026-02-16")) == (False, True)  # Monday, Spring Festival
    assert calendar.add_working_days(D("2026-02-13"), 1) == (D("2026-02-14"), False)


def test_receipt_day_is_the_local_day_in_beijing() -> None:
    # 23:30 UTC on Feb 9 is 07:30 on Feb 10 in Beijing: the same day as a 10:00 receipt.
    late_utc = dt.datetime(2026, 2, 9, 23, 30, tzinfo=dt.UTC)
    assert policy().compute(late_utc, ACCESS).started_on == D("2026-02-10")
    assert policy().compute(late_utc, ACCESS).response_due == D("2026-03-09")


def test_erasure_and_account_deletion_must_be_completed_within_30_days() -> None:
    assert policy().compute(at("2026-02-10 10:00"), ERASURE).completion_due == D("2026-03-12")
    deletion = policy().compute(at("2026-02-10 10:00"), [RequestType.ACCOUNT_DELETION])
    assert deletion.completion_due == D("2026-03-12")
    assert policy().compute(at("2026-02-10 10:00"), ACCESS).completion_due is None


def test_deadline_running_into_an_unpublished_year_is_provisional() -> None:
    # chinese-calendar 1.11 knows 2004-2026: days of 2027 are a Monday-Friday guess.
    deadlines = policy().compute(at("2026-12-20 10:00"), ACCESS)
    assert deadlines.response_due == D("2027-01-08")
    assert deadlines.provisional is True


def test_dpo_overrides_move_a_provisional_deadline_and_can_make_it_final() -> None:
    with_new_year = policy(extra_holidays=[D("2027-01-01")])
    moved = with_new_year.compute(at("2026-12-20 10:00"), ACCESS)
    assert moved.response_due == D("2027-01-11")
    assert moved.provisional is True
    final = policy(extra_holidays=[D("2027-01-01")], complete_years=[2027])
    assert final.compute(at("2026-12-20 10:00"), ACCESS).provisional is False


def test_dpo_extra_workday_counts() -> None:
    # Pretend the State Council moved a working day onto Sunday 2026-11-08.
    shifted = policy(extra_workdays=[D("2026-11-08")]).compute(at("2026-11-02 09:00"), ACCESS)
    assert shifted.response_due == D("2026-11-20")


def test_a_date_cannot_be_both_holiday_and_workday() -> None:
    with pytest.raises(ValueError, match="both holiday and workday"):
        policy(extra_holidays=[D("2026-06-08")], extra_workdays=[D("2026-06-08")])


def test_pause_pushes_due_dates_by_the_time_waited() -> None:
    p = policy(pause_while_waiting=True)
    original = p.compute(at("2026-11-02 09:00"), ERASURE)
    # Waited Mon Nov 2 -> Mon Nov 9: five working days, seven calendar days.
    shifted = p.shift_for_pause(original, at("2026-11-02 12:00"), at("2026-11-09 12:00"))
    assert original.response_due == D("2026-11-23")
    assert shifted.response_due == D("2026-11-30")
    assert original.completion_due == D("2026-12-02")
    assert shifted.completion_due == D("2026-12-09")


def test_deadline_command_prints_the_arithmetic(capsys: pytest.CaptureFixture[str]) -> None:
    from rightsdesk.cli import app

    with pytest.raises(SystemExit) as exit_:
        app(
            ["deadline", "--received", "2026-02-10T10:00+08:00", "--type", "erasure", "--json"],
        )
    assert exit_.value.code == 0
    data = json.loads(capsys.readouterr().out)
    assert data["response_due"] == "2026-03-09"
    assert data["completion_due"] == "2026-03-12"
    assert data["provisional"] is False
    assert data["started_on"] == "2026-02-10"


def test_working_days_left_is_negative_when_late() -> None:
    calendar = WorkingCalendar()
    assert calendar.working_days_left(D("2026-03-02"), D("2026-03-09")) == 5
    assert calendar.working_days_left(D("2026-03-09"), D("2026-03-09")) == 0
    assert calendar.working_days_left(D("2026-03-12"), D("2026-03-09")) == -3
    # Spring Festival: Feb 13 -> Feb 24 is 2 working days (the working Saturday, then Feb 24).
    assert calendar.working_days_left(D("2026-02-13"), D("2026-02-24")) == 2
