"""Issue #14: letters are read by the ask that cites its article, conditions add no label, and
no message with a rights signal is dismissed as "not a request" without review."""

from __future__ import annotations

import pytest

from classifiers.citations import cited_labels
from classifiers.labels import LABELS
from classifiers.model import RightsClassifier, decide
from classifiers.text import (
    asks,
    clauses,
    normalise,
    rights_signal,
    sentences,
    tells_a_past_request,
)


@pytest.mark.parametrize(
    ("sentence", "labels"),
    [
        ("I am hereby requesting access according to Article 15 GDPR.", {"access"}),
        ("Pursuant to Art. 17(1) GDPR I request erasure of my data.", {"erasure"}),
        ("Under Art. 17 GDPR please close my account.", {"account_deletion"}),
        ("I ask you to rectify my data (Article 16 of the GDPR).", {"rectification"}),
        ("I request my data in a portable format under Article 20 GDPR.", {"portability"}),
        ("I object under Article 21 GDPR to direct marketing.", {"withdraw_consent"}),
        ("I object under Article 21 GDPR to the profiling of my calls.", {"restriction"}),
        ("I withdraw my consent as Art. 7(3) GDPR allows.", {"withdraw_consent"}),
        ("依据《个人信息保护法》第四十五条，本人申请查阅。", {"access"}),
        ("依据第四十五条第三款，请将本人信息转移。", {"portability"}),
        ("本人依据第四十六条申请更正。", {"rectification"}),
        ("本人依据第四十七条要求删除。", {"erasure"}),
        ("依据第四十九条，本人作为近亲属申请查阅。", {"deceased", "access"}),
        ("根据第四十九条，本人作为近亲属请求删除母亲账号中的照片。", {"deceased", "erasure"}),
        ("本人依据第四十四条，拒绝贵公司对本人的会议录像进行分析。", {"restriction"}),
        # A range of articles is the preamble's list of rights, not the ask.
        ("根据第四十四条至第五十条的规定，本人要求查阅。", set()),
        ("Under Articles 15 to 22 GDPR I have many rights.", set()),
        # 《民法典》第一千零三十七条 names its rights by the sentence's words.
        ("本人依据《民法典》第一千零三十七条，请求删除本人的家庭住址。", {"erasure"}),
        ("本人依据第十五条撤回同意。", {"withdraw_consent"}),
        ("I ask for a copy of my data.", set()),
    ],
)
def test_an_article_cited_says_which_right(sentence: str, labels: set[str]) -> None:
    assert cited_labels(normalise(sentence)) == labels


def test_a_cited_article_does_not_end_the_sentence() -> None:
    text = "I am hereby requesting access according to Art. 15 GDPR. Please reply by email."
    assert sentences(text) == [
        "I am hereby requesting access according to Art. 15 GDPR.",
        "Please reply by email.",
    ]


def test_an_ask_that_cites_the_law_is_kept_and_a_citation_alone_is_not() -> None:
    letter = normalise(
        "根据《个人信息保护法》的规定，个人享有查阅、复制、删除个人信息的权利。" * 20
        + "本人依据《个人信息保护法》第四十七条的规定，要求贵公司删除本人的会议录像。"
        + "如贵公司未答复，本人保留向网信部门投诉的权利。"
    )
    ask = "本人依据《个人信息保护法》第四十七条的规定，要求贵公司删除本人的会议录像。"
    assert asks(letter) == [normalise(ask)]


def _gdpr_letter(ask: str, extra: str = "") -> str:
    filler = (
        "I have used your meeting service for three years, mostly for calls with my team and "
        "for sharing documents in project channels, and the mobile app has had access to my "
        "contacts and microphone for most of that time. "
    )
    return (
        "Dear Sir or Madam,\n\n"
        + filler * 4
        + f"\n\n{ask} {extra}\n\n"
        + "Article 12(3) GDPR requires you to act on a request within one month of receipt. "
        + "I reserve the right to lodge a complaint with the supervisory authority.\n\n"
        + "Kind regards,\nLi Hua"
    )


@pytest.mark.parametrize(
    ("ask", "labels"),
    [
        ("I am hereby requesting access according to Art. 15 GDPR.", ["access"]),
        (
            "I am hereby requesting immediate erasure of personal data concerning me according "
            "to Article 17 GDPR.",
            ["erasure"],
        ),
        (
            "I hereby request, under Article 16 GDPR, that you rectify the wrong birth date.",
            ["rectification"],
        ),
    ],
)
def test_a_gdpr_letter_is_labelled_by_its_cited_ask(
    model: RightsClassifier, ask: str, labels: list[str]
) -> None:
    found = model.predict("Data request", _gdpr_letter(ask))
    assert found.labels == labels, found.scores
    assert not found.needs_review


def test_a_condition_adds_no_label_of_its_own(model: RightsClassifier) -> None:
    letter = _gdpr_letter(
        "I am hereby requesting access according to Art. 15 GDPR.",
        "If you have disclosed my data to third parties, please tell me who they are.",
    )
    assert model.predict("", letter).labels == ["access"]


def test_not_a_request_is_final_only_when_sure_and_without_a_rights_signal() -> None:
    thresholds = dict.fromkeys(LABELS, 0.5)
    unsure = dict.fromkeys(LABELS, 0.1) | {"not_rights_request": 0.65}
    assert decide(unsure, thresholds, sure_not=0.7) == (["not_rights_request"], True)
    sure = dict.fromkeys(LABELS, 0.1) | {"not_rights_request": 0.9}
    assert decide(sure, thresholds, sure_not=0.7) == (["not_rights_request"], False)
    assert decide(sure, thresholds, sure_not=0.7, signal=True) == (["not_rights_request"], True)


@pytest.mark.parametrize(
    ("text", "signal"),
    [
        ("Is there a way to request my data myself?", True),
        ("你们是不是把我的手机号卖给别人了", True),
        ("How do I delete a channel?", False),
        ("会议纪要怎么导出", False),
    ],
)
def test_rights_signal(text: str, signal: bool) -> None:
    assert rights_signal(normalise(text)) is signal


def test_a_thank_you_asks_nothing_and_a_thank_you_with_an_ask_asks_it(
    model: RightsClassifier,
) -> None:
    assert model.predict("Re: PRIV-2026-000999", "Thanks, got everything.").labels == [
        "not_rights_request"
    ]
    found = model.predict(
        "Re: PRIV-2026-000999", "Thanks, got everything. Please also delete my call recordings."
    )
    assert "erasure" in found.labels


def test_the_model_has_a_version_and_a_safety_floor(model: RightsClassifier) -> None:
    assert len(model.version or "") == 12
    assert 0.6 <= model.sure_not <= 0.95
    assert model.classify("", "请删除我的数据").model_version == model.version


def test_keeping_the_account_is_no_reservation_of_rights() -> None:
    """ "保留" keeps things too: an ask that keeps the account is read, a reservation is not."""
    ask = "依据第四十七条，本人要求贵公司删除本人的会议录音，本人账号继续保留使用。"
    reservation = "如贵公司未答复，本人保留向网信部门投诉的权利。"
    letter = normalise("本人长期使用贵公司的会议产品，参加过很多会议。" * 10 + ask + reservation)
    assert asks(letter) == [normalise(ask)]


def test_a_condition_then_a_short_chinese_ask_reads_the_ask() -> None:
    letter = normalise(
        "本人长期使用贵公司的会议产品，参加过很多会议。" * 10
        + "如贵公司曾将本人信息提供给第三方，请告知接收方名称。"
        + "除此之外，本人仅依据第四十五条申请获取本人个人信息副本。"
    )
    assert asks(letter) == [normalise("除此之外，本人仅依据第四十五条申请获取本人个人信息副本。")]


@pytest.mark.parametrize(
    ("sentence", "labels"),
    [
        ("I request the closure of my account under Article 17 GDPR.", {"account_deletion"}),
        ("Account deletion is what I ask for, under Art. 17 GDPR.", {"account_deletion"}),
    ],
)
def test_closing_the_account_under_article_17(sentence: str, labels: set[str]) -> None:
    assert cited_labels(normalise(sentence)) == labels


def test_an_auto_reply_mentioned_is_no_auto_reply(model: RightsClassifier) -> None:
    complaint = "上个月我就申请删除录音，只收到一封自动回复，之后再没动静，我要投诉。"
    found = model.predict("", complaint)
    assert "not_rights_request" not in found.rules
    assert model.predict("", "自动回复：我正在休假，周一回来").rules == ["not_rights_request"]


def test_a_supposed_account_closure_asks_about_it(model: RightsClassifier) -> None:
    for text in ("If I close my account, what happens to my messages?", "注销账号以后消息还在吗？"):
        assert "account_deletion" not in model.predict("", text).rules
    assert "account_deletion" in model.predict("", "please close my account").rules


def test_rule_phrases_match_alike_in_a_new_and_a_loaded_pipeline(model: RightsClassifier) -> None:
    """Thresholds are tuned on a new pipeline and used on a loaded one: the rule layer must
    find the same phrases in both."""
    from classifiers.pipeline import blank_pipeline

    text = "我要注销账号，以后别给我发了，退订"
    fresh, loaded = blank_pipeline("bow")(text), model.nlp(text)
    found = [{span.label_ for span in doc.spans["rules"]} for doc in (fresh, loaded)]
    assert found[0] == found[1] == {"account_deletion", "withdraw_consent"}


def test_what_the_policy_says_users_may_do_is_no_ask() -> None:
    policy = "你们隐私政策里也写了，用户可以查阅、更正、删除个人信息，撤回同意，注销账号。"
    ask = "请依照第四十五条，把你们保存的关于我的全部个人信息复制一份发给我。"
    letter = normalise("我用你们的产品好几年了，主要用来和家里人开视频会议。" * 8 + policy + ask)
    assert asks(letter) == [normalise(ask)]


def test_a_death_stated_in_a_letter_says_who_asks(model: RightsClassifier) -> None:
    letter = _gdpr_letter(
        "I am the son of the late Mr. R. Lin, who had an account with you.",
        "I ask you to close his account under Article 17 GDPR.",
    )
    assert set(model.predict("", letter).labels) == {"deceased", "account_deletion"}


_PAD = "I have used your meeting service for several years, for work and family calls alike. " * 3


def test_the_items_of_a_lettered_list_are_asks_across_blank_lines(model: RightsClassifier) -> None:
    letter = (
        f"Dear DPO,\n\n{_PAD}\n\nOur client instructs us to make the following requests:\n\n"
        "(a) that you erase, under Article 17 GDPR, her voice samples; her account is to "
        "remain active;\n\n(b) that, under Article 21(3) GDPR, her data is no longer processed "
        "for direct marketing.\n\nYours faithfully,\nR. Adeyemi"
    )
    assert sorted(model.predict("", letter).labels) == ["erasure", "withdraw_consent"]


def test_the_account_kept_in_another_sentence_makes_an_erasure(model: RightsClassifier) -> None:
    letter = (
        f"Dear team,\n\n{_PAD}\n\nI want my user account itself to remain open, since I still "
        "use it.\n\nPlease erase the webinar recordings listed above and confirm once done."
    )
    found = model.predict("", letter)
    assert "account_deletion" not in found.labels
    assert found.scores["account_deletion"] <= 0.05


def test_a_request_told_of_is_no_ask_of_its_article() -> None:
    told = normalise("On 2 September I sent you a request under Article 15 GDPR (PRIV-1).")
    assert tells_a_past_request(told)
    assert not tells_a_past_request(normalise("I hereby request access under Article 15 GDPR."))
    assert tells_a_past_request(normalise("本人于十月八日通过隐私邮箱提交了删除申请"))


@pytest.mark.parametrize(
    ("text", "negated", "label"),
    [
        ("本人特此撤回上述同意，请不要再用于训练。", "本人不撤回上述同意。", "withdraw_consent"),
        (
            "导出完成后，请注销本人在贵平台的账号。",
            "本人暂不注销本人在贵平台的账号。",
            "account_deletion",
        ),
        ("我爸走了，能不能把他的账号关掉？", "我爸走了，别把他的账号关掉。", "account_deletion"),
    ],
)
def test_chinese_asks_whose_words_stand_apart_are_rules(
    model: RightsClassifier, text: str, negated: str, label: str
) -> None:
    assert label in model.predict("", text).rules
    assert label not in model.predict("", negated).rules


def test_a_letter_whose_subject_is_the_ask_is_read_by_its_subject(model: RightsClassifier) -> None:
    body = (
        f"Dear Sir or Madam,\n\n{_PAD}\n\nAttached is a copy of my passport, as your form "
        "requires. The recordings are those of 3 and 10 May. My account should remain open."
    )
    found = model.predict("Request for erasure of meeting recordings - Article 17 GDPR", body)
    assert found.labels == ["erasure"]
    assert not found.needs_review


def test_a_request_made_before_is_history_in_a_complaint_letter(model: RightsClassifier) -> None:
    letter = (
        f"Dear DPO,\n\n{_PAD}\n\nIn October I asked you to delete my recordings under Article 17 "
        "GDPR. Your agent closed the ticket without deleting anything.\n\nI hereby make a formal "
        "complaint about the handling of that request."
    )
    assert model.predict("", letter).labels == ["complaint"]


def test_the_second_half_of_an_ask_after_a_semicolon_is_an_ask(model: RightsClassifier) -> None:
    letter = (
        "Dear Sirs,\n\nI am the executor of my mother's estate; she died on 1 October.\n\n"
        f"{_PAD}\n\n"
        "I ask you, first, to provide me with a copy of the files she stored in her account; "
        "and second, once I have received them, to close her account.\n\nDaniel Shaw"
    )
    assert "account_deletion" in model.predict("", letter).labels


def test_a_supposed_or_refused_closure_in_chinese_is_no_rule(model: RightsClassifier) -> None:
    for text in ("如果我把账号注销了，数据还在吗？", "我暂时不想注销本人的账号，只删聊天记录"):
        assert "account_deletion" not in model.predict("", text).rules


def test_and_then_to_close_it_is_a_second_ask() -> None:
    text = normalise(
        "I ask you to give me access to the files in his account and then to close it."
    )
    assert len(clauses(text)) == 2


def test_the_mail_a_reply_quotes_is_not_read_as_its_ask() -> None:
    reply = normalise(
        f"Hi again,\n\n{_PAD}\n\nNow please delete the recordings of my calls (Article 17 GDPR)."
        "\n\n> On 20 Nov, Meetly wrote:\n> please find attached your export under Article 15 GDPR."
    )
    found = asks(reply) or []
    assert found
    assert not any("article 15" in unit for unit in found)
