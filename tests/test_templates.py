"""Every mail we send, in both languages, pinned as a snapshot: wording changes are reviewed.

Regenerate after an intended change, then review the diff:
    UPDATE_SNAPSHOTS=1 .venv/bin/pytest tests/test_templates.py
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any

import pytest

from rightsdesk.languages import LANGS
from rightsdesk.templating import BUILTIN_TEMPLATES, Templates

SNAPSHOTS = Path(__file__).parent / "snapshots" / "templates"
COMPANY = "海口市印湉贸易有限公司"

CONTEXTS: dict[str, dict[str, Any]] = {
    "acknowledgement": {
        "types": ["erasure", "account_deletion"],
        "triage": False,
        "response_due": "2026-03-09",
        "completion_due": "2026-03-12",
        "step": "code",
    },
    "verification_code": {"code": "482913", "ttl_minutes": 30},
    "verified": {"response_due": "2026-03-09", "completion_due": "2026-03-31"},
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
    "resolved": {"reply": "已删除 / deleted"},
    "denied": {"reason": "依法须保存三年 / kept 3 years by law"},
    "cancelled": {},
    "auto_closed": {"days": 14},
    "verification_needed": {"how": "documents", "channel": "email"},
    "withdrawal_pending": {"final_on": "2026-02-24"},
    "withdrawal_undone": {},
    "reply": {"text": "附件是您的数据。\nYour data is attached.", "channel": "email"},
    # Fulfilment: the systems as the company names them, per language; the actions are the
    # plan's request types, named by names.<lang>.j2 (the `type_names` filter).
    "fulfilled": {
        "systems": {
            "zh": ["聊天与会议服务", "会议录像存储"],
            "zh-Hant": ["聊天與會議服務", "會議錄影儲存"],
            "en": ["chat and meetings service", "meeting recordings store"],
        },
        "actions": ["erasure"],
        "access": True,
    },
    "fulfilment_task": {
        "system": {"zh": "会议录像存储", "zh-Hant": "會議錄影儲存", "en": "meeting recordings"},
        "actions": ["account_deletion"],
        "instructions": "Bucket meet-recordings, prefix = account id.",
        "link": "",
        "token": "17-0a1b2c3d4e5f6a7b.1780000000.0123456789abcdef0123456789abcdef",
        "expires": "2026-03-12",
        "completion_due": "2026-03-12",
        "reminder": True,
    },
    # The requester portal: the link to a package, its code, the forms' code.
    "package_ready": {
        "link": "https://privacy.example.com/p/vUhaWz9Gg8SYRCfd7jLXzQ",
        "expires": "2026-03-17",
        "max_downloads": 5,
        "channel": "email",
    },
    "package_code": {"code": "482913", "ttl_minutes": 30},
    "portal_code": {"code": "482913", "ttl_minutes": 30, "purpose": "status"},
}

# What a chat user reads instead of "reply to this email" (the same template, channel=telegram).
CHAT_CONTEXTS: dict[str, dict[str, Any]] = {
    "verification_code": CONTEXTS["verification_code"],
    "verification_reminder": CONTEXTS["verification_reminder"],
    "resolved": CONTEXTS["resolved"],
    "denied": CONTEXTS["denied"],
    "verification_needed": {"how": "account"},
    "reply": {"text": "附件是您的数据。"},
    "package_ready": {k: v for k, v in CONTEXTS["package_ready"].items() if k != "channel"},
}

# Files that are not a notice of their own: the bot's sentences, the names of things, the
# digest's, the DPO's unassigned-tickets mail.
WORDING = ("chat", "names", "digest", "unassigned")


def test_every_template_file_is_covered() -> None:
    kinds = {
        p.name.split(".")[0] for p in BUILTIN_TEMPLATES.glob("*.j2") if not p.name.startswith("_")
    }
    assert kinds == set(CONTEXTS) | set(WORDING)


def _blocks(path: Path) -> list[str]:
    return re.findall(r"\{% block (\w+) %\}", path.read_text(encoding="utf-8"))


def test_every_template_exists_in_all_three_languages_with_the_same_blocks() -> None:
    stems = {
        str(p.relative_to(BUILTIN_TEMPLATES)).split(".")[0] for p in BUILTIN_TEMPLATES.rglob("*.j2")
    } - {"_layout"}
    assert {"chat", "names", "_signoff", "replies/copy_attached"} <= stems
    for stem in stems:
        blocks = {lang: _blocks(BUILTIN_TEMPLATES / f"{stem}.{lang}.j2") for lang in LANGS}
        assert blocks["zh"], stem
        assert blocks["zh-Hant"] == blocks["zh"] == blocks["en"], stem


def _check(name: str, actual: str) -> None:
    path = SNAPSHOTS / name
    if os.environ.get("UPDATE_SNAPSHOTS") == "1":
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(actual, encoding="utf-8")
    assert path.exists(), f"no snapshot {path}; run with UPDATE_SNAPSHOTS=1 and review it"
    assert actual == path.read_text(encoding="utf-8")


@pytest.mark.parametrize("lang", [*LANGS, None], ids=[*LANGS, "bilingual"])
@pytest.mark.parametrize("kind", sorted(CONTEXTS))
def test_template_snapshot(kind: str, lang: str | None) -> None:
    rendered = Templates(None, COMPANY).render(
        kind, lang, {"ticket_id": "PRIV-2026-000042", "working_days": 15, **CONTEXTS[kind]}
    )
    _check(f"{kind}.{lang or 'both'}.txt", f"Subject: {rendered.subject}\n\n{rendered.text}")
    assert "PRIV-2026-000042" in rendered.subject
    assert "<p>" in rendered.html
    if lang is None:
        _check(f"{kind}.both.html", rendered.html)


@pytest.mark.parametrize("lang", LANGS)
@pytest.mark.parametrize("kind", sorted(CHAT_CONTEXTS))
def test_chat_wording_snapshot(kind: str, lang: str) -> None:
    context = {"ticket_id": "PRIV-2026-000042", "working_days": 15, **CHAT_CONTEXTS[kind]}
    signed = kind == "verification_code"  # that one is a mail (to the registered address)
    rendered = Templates(None, "Co").render(
        kind, lang, {**context, "channel": "telegram"}, signed=signed
    )
    _check(f"{kind}.{lang}.chat.txt", rendered.text)
    if kind == "verification_code":  # a mail (to the registered address) about a chat
        assert any(w in rendered.text for w in ("客服对话", "客服對話", "support chat"))
    else:  # chat messages: nobody is asked to reply to an email they never got
        assert "回复本邮件" not in rendered.text
        assert "回覆本郵件" not in rendered.text
        assert "reply to this email" not in rendered.text.lower()
        assert "Co\n" not in rendered.text  # no mail sign-off in a chat message


# What the bot says: every sentence, each language. zh and en were pinned from the Python
# dictionary the wording lived in before it moved to chat.<lang>.j2, so the move changed nothing.
BOT_VALUES: dict[str, Any] = {
    "policy_url": "https://example.com/privacy",
    "types": "删除您的个人信息、注销您的账号",
    "choice": "是的",
    "ticket_id": "PRIV-2026-000042",
    "due": "2026-03-09",
    "days": 15,
    "date": "2026-03-12",
    "mb": "10",
    "left": 3,
    "status": "处理中",
    "example": "PRIV-2026-000001",
}
SUPPORT = {"zh": "在线客服", "zh-Hant": "線上客服", "en": "in-app support"}
BOT_SENTENCES = _blocks(BUILTIN_TEMPLATES / "chat.zh.j2")


@pytest.mark.parametrize("lang", LANGS)
@pytest.mark.parametrize("what", BOT_SENTENCES)
def test_bot_wording_snapshot(what: str, lang: str) -> None:
    said = Templates(None, COMPANY).say(what, lang, support=SUPPORT[lang], **BOT_VALUES)
    _check(f"chat/{what}.{lang}.txt", said + "\n")


def test_traditional_chinese_reads_traditional() -> None:
    templates = Templates(None, COMPANY)
    for kind, context in CONTEXTS.items():
        context = {"ticket_id": "PRIV-2026-000001", "working_days": 15, **context}
        text = templates.render(kind, "zh-Hant", context).text
        body = text.replace(COMPANY, "").replace(str(context.get("text", "")), "")
        for simplified in ("请", "个人", "邮件", "账号", "这", "们", "处理"):
            assert simplified not in body, (kind, simplified)
    for what in BOT_SENTENCES:
        blank = {"support": "", "types": "", "status": ""}  # values in simplified characters
        said = templates.say(what, "zh-Hant", **{**BOT_VALUES, **blank})
        assert not any(ch in said for ch in "请们这个账号处"), what


def test_plain_text_carries_the_sign_off_and_company_of_the_html() -> None:
    for lang, sign_off in (
        ("zh", "个人信息保护团队"),
        ("zh-Hant", "個人資料保護團隊"),
        ("en", "The privacy team, " + COMPANY),
    ):
        rendered = Templates(None, COMPANY).render(
            "resolved", lang, {"ticket_id": "PRIV-2026-000001", "reply": "ok"}
        )
        assert COMPANY in rendered.html
        assert rendered.text.rstrip().endswith(sign_off)
        assert COMPANY in rendered.text
        assert sign_off in rendered.html


@pytest.mark.parametrize("lang", ["zh", "zh-Hant", "en"])
def test_not_a_rights_request_is_promised_no_deadline(lang: str) -> None:
    # The pipeline passes the ticket's dates as for any request: the templates leave them out.
    context = {
        "ticket_id": "PRIV-2026-000001",
        "working_days": 15,
        "types": ["not_rights_request"],
        "triage": False,
        "response_due": "2026-03-09",
        "completion_due": "",
        "step": "code",
    }
    rendered = Templates(None, "Co").render("acknowledgement", lang, context)
    assert "2026" not in rendered.text.replace("PRIV-2026-000001", "")
    assert "客服" in rendered.text or "support chat" in rendered.text
    for promise in ("答复您", "答覆您", "answer by", "接下来", "接下來", "What happens next"):
        assert promise not in rendered.text
    # In doubt, a person reads it, and the date is promised as for any request.
    doubtful = Templates(None, "Co").render("acknowledgement", lang, {**context, "triage": True})
    assert "2026-03-09" in doubtful.text


@pytest.mark.parametrize("outcome", ["wrong_code", "locked", "expired"])
def test_code_not_accepted_says_what_to_do_and_nothing_about_the_account(outcome: str) -> None:
    # As the desk gives it (rightsdesk.verification): `locked_until` is always there, None
    # unless the account itself is locked.
    context = {
        "ticket_id": "PRIV-2026-000001",
        "outcome": outcome,
        "attempts_left": 2,
        "locked_until": None,
    }
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
        "{% block subject %}Done{% endblock %}{% block body %}All done: {{ reply }}{% endblock %}",
        encoding="utf-8",
    )
    templates = Templates(tmp_path, "Co")
    custom = templates.render("resolved", "en", {"ticket_id": "PRIV-2026-000001", "reply": "ok"})
    assert custom.subject == "[PRIV-2026-000001] Done"
    assert custom.text == "All done: ok\n\nKind regards,\nThe privacy team, Co\n"
    (tmp_path / "_signoff.en.j2").write_text("{% block body %}— Co{% endblock %}", "utf-8")
    signed = Templates(tmp_path, "Co").render("resolved", "en", {"ticket_id": "X", "reply": "ok"})
    assert signed.text == "All done: ok\n\n— Co\n"
    untouched = templates.render("resolved", "zh", {"ticket_id": "PRIV-2026-000001", "reply": "ok"})
    assert "处理完毕" in untouched.text


def test_a_message_that_is_not_a_rights_request_is_pointed_to_support() -> None:
    templates = Templates(None, "Co")

    def ack(lang: str, triage: bool) -> str:
        context = {
            **CONTEXTS["acknowledgement"],
            "types": ["not_rights_request"],
            "triage": triage,
            "working_days": 15,
        }
        return templates.render(
            "acknowledgement", lang, {"ticket_id": "PRIV-2026-000001", **context}
        ).text

    assert "客服" in ack("zh", False)
    assert "客服" in ack("zh-Hant", False)
    assert "support" in ack("en", False)
    # In doubt, a person reads it: no pointer away from us.
    assert "support" not in ack("en", True)


def test_fulfilment_names_the_plans_actions_in_the_language_it_renders() -> None:
    """The actions are request types named by names.<lang>.j2: zh-Hant reads traditional (the
    fulfilment branch named them from the simplified table before answering brought zh-Hant)."""
    templates = Templates(None, COMPANY)
    for kind in ("fulfilled", "fulfilment_task"):
        context = {
            **CONTEXTS[kind],
            "ticket_id": "PRIV-2026-000042",
            "actions": ["erasure", "account_deletion"],
        }
        said = {lang: templates.render(kind, lang, context).text for lang in LANGS}
        assert "刪除您的個人資料、註銷您的帳號" in said["zh-Hant"], kind
        assert "删除您的个人信息、注销您的账号" in said["zh"], kind
        assert "deletion of your personal information; closing your account" in said["en"], kind
