"""Issue #14, second round: a unit with two asks is also read clause by clause; asks written
for someone else (a lawyer, HR) and Chinese asks that open with their article are found; a
message about one's own account or marketing always has a rights signal."""

from __future__ import annotations

import pytest

from classifiers.citations import cited_labels
from classifiers.model import RightsClassifier
from classifiers.text import asks, clauses, is_ask, normalise, rights_signal


def _pieces(text: str) -> list[str]:
    plain = normalise(text)
    return [plain[a:b] for a, b in clauses(plain)]


@pytest.mark.parametrize(
    ("text", "pieces"),
    [
        (
            "fix my surname (it's Liu not Lu) and stop sending me the newsletter",
            ["fix my surname (it's liu not lu)", "and stop sending me the newsletter"],
        ),
        (
            "手机号改成13800138000，顺便把营销短信关了",
            ["手机号改成13800138000", "顺便把营销短信关了"],
        ),
        (
            "Thanks — got it. Could you also delete the old voicemail transcripts?",
            ["thanks — got it", "could you also delete the old voicemail transcripts"],
        ),
        ("close my account pls", []),  # one clause: nothing to read apart
        ("请删除我的录音，账号我还要继续用", []),  # what is kept is not read as an ask
        ("Stop using my chats for training, but don't delete them.", []),
        (
            "如果你们共享过我的数据，请告诉我对象；请删除我的头像",
            [],
        ),  # a condition is not read alone
    ],
)
def test_a_unit_is_cut_where_a_second_ask_may_begin(text: str, pieces: list[str]) -> None:
    assert _pieces(text) == pieces


@pytest.mark.parametrize(
    "sentence",
    [
        "Our client requests, pursuant to Article 15 GDPR, a copy of all personal data.",
        "We act for Ms Chen and, on her behalf, ask for a copy of her data.",
        "本律师受当事人王某委托，要求贵公司删除其全部个人信息。",
        "现依据《个人信息保护法》第十五条，撤回本人此前对个性化推荐的同意。",
    ],
)
def test_asks_for_someone_else_and_asks_that_open_with_their_article_are_asks(
    sentence: str,
) -> None:
    assert is_ask(normalise(sentence))


def test_a_chinese_letter_with_two_cited_asks_gets_both(model: RightsClassifier) -> None:
    letter = (
        "尊敬的贵公司：\n\n本人是贵平台的用户，注册邮箱 wang@example.com，使用贵平台已有三年，"
        "主要用于公司内部的会议和项目沟通。\n\n"
        "现依据《个人信息保护法》第十五条，撤回本人此前对贵公司处理本人个人信息用于个性化推荐的同意。"
        "依据第二十四条，本人拒绝贵公司仅通过自动化决策的方式对本人作出决定。\n\n请书面确认。\n\n王五"
    )
    assert len(asks(normalise(letter)) or []) >= 2
    assert set(model.predict("", letter).labels) == {"withdraw_consent", "restriction"}


@pytest.mark.parametrize(
    ("text", "signal"),
    [
        ("我们团队下个月不续费了，工作区直接关掉，我的账号也不要了", True),
        ("stop the marketing emails", True),
        ("We act for our client Ms Chen.", True),
        ("How do I share my screen?", False),
        ("发票抬头错了", False),
    ],
)
def test_own_account_marketing_and_representatives_are_rights_signals(
    text: str, signal: bool
) -> None:
    assert rights_signal(normalise(text)) is signal


def test_clauses_never_change_a_message_of_one_clause(model: RightsClassifier) -> None:
    plain = normalise("请注销我的账号")
    docs = list(model.nlp.pipe([plain]))
    assert model._clauses(docs, 16) == [[]]


@pytest.mark.parametrize(
    ("sentence", "labels"),
    [
        ("依據《個人資料保護法》第十條，本人謹此請求製給複製本。", {"access"}),
        ("依《個人資料保護法》第十一條，請刪除本人之會議錄影。", {"erasure"}),
        (
            "依《個人資料保護法》第十一條，請更正並停止處理該項資料。",
            {"rectification", "restriction"},
        ),
        ("根據《個人資料（私隱）條例》第18條，本人提出查閱資料要求。", {"access"}),
        ("依据《个人信息保护法》第四十七条，本人要求删除。", {"erasure"}),  # the PIPL still
    ],
)
def test_taiwan_and_hong_kong_articles_say_which_right(sentence: str, labels: set[str]) -> None:
    assert cited_labels(normalise(sentence)) == labels


def test_an_ask_in_traditional_characters_opened_by_jin_ci_is_an_ask() -> None:
    assert is_ask(normalise("本人謹此請求貴公司刪除本人資料"))
    assert is_ask(normalise("在註銷完成之前，亦請不要再寄送任何推廣訊息"))
