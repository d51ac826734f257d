"""Every mail we send, in both languages, pinned as a snapshot: wording changes are reviewed.

Regenerate after an intended change, then review the diff:
    UPDATE_SNAPSHOTS=1 .venv/bin/pytest tests/test_templates.py
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest

from rightsdesk.models import RequestType
from rightsdesk.outbound import BUILTIN_TEMPLATES, Templates, understood
from rightsdesk.verification import NEXT_STEP

SNAPSHOTS = Path(__file__).parent / "snapshots" / "templates"

CONTEXTS: dict[str, dict[str, Any]] = {
    "acknowledgement": {
        "understood": understood([RequestType.ERASURE, RequestType.ACCOUNT_DELETION], False),
        "response_due": "2026-03-09",
        "completion_due": "2026-03-12",
        "next_step": NEXT_STEP["code"],
    },
    "verification_code": {"code": "482913", "ttl_minutes": 30},
    "verified": {"response_due": "2026-03-09"},
    "verification_reminder": {"close_on": "2026-02-24"},
    "extended": {
        "reason": "数据分布在四个系统中 / data sits in four systems",
        "response_due": "2026-03-20",
        "completion_due": "2026-04-10",
        "completion_reason": "备份轮换需要时间 / backups rotate monthly",
    },
    "code_not_accepted": {"outcome": "wrong_code", "attempts_left": 3, "ttl_minutes": 30},
    "requester_wrote": {
        "status": "resolved",
        "assignee": "wang.fang@example.com",
        "finished": True,
        "suggested": "erasure",
    },
    "resolved": {"note": "已删除 / deleted"},
    "denied": {"reason": "依法须保存三年 / kept 3 years by law"},
    "cancelled": {},
    "auto_closed": {"days": 14},
    "verification_needed": {"how": "documents", "channel": "email"},
}

# What a chat user reads instead of "reply to this email" (the same template, channel=telegram).
CHAT_CONTEXTS: dict[str, dict[str, Any]] = {
    "verification_code": CONTEXTS["verification_code"],
    "verification_reminder": CONTEXTS["verification_reminder"],
    "resolved": CONTEXTS["resolved"],
    "denied": CONTEXTS["denied"],
    "verification_needed": {"how": "account"},
}


def test_every_template_file_is_covered() -> None:
    kinds = {
        p.name.split(".")[0] for p in BUILTIN_TEMPLATES.glob("*.j2") if not p.name.startswith("_")
    }
    assert kinds == set(CONTEXTS)


def _check(name: str, actual: str) -> None:
    path = SNAPSHOTS / name
    if os.environ.get("UPDATE_SNAPSHOTS") == "1":
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(actual, encoding="utf-8")
    assert path.exists(), f"no snapshot {path}; run with UPDATE_SNAPSHOTS=1 and review it"
    assert actual == path.read_text(encoding="utf-8")


@pytest.mark.parametrize("lang", ["zh", "en", None], ids=["zh", "en", "bilingual"])
@pytest.mark.parametrize("kind", sorted(CONTEXTS))
def test_template_snapshot(kind: str, lang: str | None) -> None:
    rendered = Templates(None, "海口市印湉贸易有限公司").render(
        kind, lang, {"ticket_id": "PRIV-2026-000042", "working_days": 15, **CONTEXTS[kind]}
    )
    _check(f"{kind}.{lang or 'both'}.txt", f"Subject: {rendered.subject}\n\n{rendered.text}")
    assert "PRIV-2026-000042" in rendered.subject
    assert "<p>" in rendered.html
    if lang is None:
        _check(f"{kind}.both.html", rendered.html)


@pytest.mark.parametrize("lang", ["zh", "en"])
@pytest.mark.parametrize("kind", sorted(CHAT_CONTEXTS))
def test_chat_wording_snapshot(kind: str, lang: str) -> None:
    context = {"ticket_id": "PRIV-2026-000042", "working_days": 15, **CHAT_CONTEXTS[kind]}
    rendered = Templates(None, "Co").render(kind, lang, {**context, "channel": "telegram"})
    _check(f"{kind}.{lang}.chat.txt", rendered.text)
    if kind == "verification_code":  # a mail (to the registered address) about a chat
        assert "客服对话" in rendered.text or "support chat" in rendered.text
    else:  # chat messages: nobody is asked to reply to an email they never got
        assert "回复本邮件" not in rendered.text
        assert "reply to this email" not in rendered.text.lower()


@pytest.mark.parametrize("lang", ["zh", "en"])
def test_not_a_rights_request_is_promised_no_deadline(lang: str) -> None:
    rendered = Templates(None, "Co").render(
        "acknowledgement",
        lang,
        {
            "ticket_id": "PRIV-2026-000001",
            "working_days": 15,
            "understood": understood([RequestType.NOT_RIGHTS_REQUEST], False),
            "response_due": "",
            "completion_due": "",
            "next_step": "",
        },
    )
    assert "2026" not in rendered.text.replace("PRIV-2026-000001", "")
    assert "客服" in rendered.text or "support chat" in rendered.text
    assert "答复您" not in rendered.text
    assert "answer by" not in rendered.text


@pytest.mark.parametrize("outcome", ["wrong_code", "locked", "expired"])
def test_code_not_accepted_says_what_to_do_and_nothing_about_the_account(outcome: str) -> None:
    context = {"ticket_id": "PRIV-2026-000001", "outcome": outcome, "attempts_left": 2}
    text = Templates(None, "Co").render("code_not_accepted", None, {**context, "ttl_minutes": 30})
    assert "new code" in text.text
    assert "重新发送验证码" in text.text
    for revealing in ("no account", "not registered", "没有账号", "未注册", "@"):
        assert revealing not in text.text
    assert ("2 more" in text.text) == (outcome == "wrong_code")


def test_html_escapes_what_people_wrote() -> None:
    rendered = Templates(None, "Co").render(
        "denied", "en", {"ticket_id": "PRIV-2026-000001", "reason": "<script>x</script>"}
    )
    assert "<script>" not in rendered.html
    assert "&lt;script&gt;" in rendered.html
    assert "<script>x</script>" in rendered.text  # plain text is plain


def test_a_dpo_folder_overrides_one_template(tmp_path: Path) -> None:
    (tmp_path / "resolved.en.j2").write_text(
        "{% block subject %}Done{% endblock %}{% block body %}All done: {{ note }}{% endblock %}",
        encoding="utf-8",
    )
    templates = Templates(tmp_path, "Co")
    custom = templates.render("resolved", "en", {"ticket_id": "PRIV-2026-000001", "note": "ok"})
    assert custom.subject == "[PRIV-2026-000001] Done"
    assert custom.text == "All done: ok\n"
    untouched = templates.render("resolved", "zh", {"ticket_id": "PRIV-2026-000001", "note": "ok"})
    assert "处理完毕" in untouched.text


def test_a_message_that_is_not_a_rights_request_is_pointed_to_support() -> None:
    said = understood([RequestType.NOT_RIGHTS_REQUEST], needs_review=False)
    assert "客服" in said["zh"]
    assert "support" in said["en"]
    # In doubt, a person reads it: no pointer away from us.
    assert "support" not in understood([RequestType.NOT_RIGHTS_REQUEST], True)["en"]
