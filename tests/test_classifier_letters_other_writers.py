"""Issue #14, the kinds of letter another writer's held-out set showed we misread: numbered
demands with no verb of asking, short letters, the law as the ground of an ask, business
letters, a guardian named a sentence before the child's age."""

from __future__ import annotations

from classifiers.model import RightsClassifier
from classifiers.text import asks, business_letter, letter_shaped, normalise

NUMBERED = (
    "尊敬的数据保护团队：\n\n本人孙悦，账号 sunyue@example.com。现依《个人信息保护法》"
    "第四十五条、第四十六条提出：\n（一）复制贵方保存的本人全部资料；\n"
    "（二）本人的住址登记有误，请予以更正。\n望尽快处理。\n\n孙悦"
)


def test_each_item_of_a_list_opened_without_a_verb_of_asking_is_an_ask() -> None:
    found = asks(normalise(NUMBERED)) or []
    assert any("复制贵方保存" in unit for unit in found)
    assert any("请予以更正" in unit for unit in found)


def test_the_numbered_letter_gets_both_asks(model: RightsClassifier) -> None:
    assert set(model.predict("", NUMBERED).labels) == {"access", "rectification"}


def test_a_short_letter_is_read_sentence_by_sentence_and_a_chat_line_whole() -> None:
    letter = (
        "致隐私团队：\n\n我在招聘频道里放过一份履历，里面有我的电话和住址。工作已经找到了，"
        "现在请把它删除，账号继续用。\n\n马力"
    )
    assert letter_shaped(normalise(letter))
    assert asks(normalise(letter))
    assert asks(normalise("请把我在招聘频道里的履历删除，账号继续用。")) is None


def test_the_law_as_the_ground_of_an_ask_is_no_citation(model: RightsClassifier) -> None:
    letter = (
        "申请书\n\n根据《个人信息保护法》第四章的规定，个人享有知情权、决定权、查阅复制权、"
        "更正补充权、删除权以及要求解释说明的权利。\n\n本人现依据上述规定，请求贵司向本人提供"
        "贵司所处理的本人个人信息的复制件。\n\n申请人：邓平"
    )
    found = asks(normalise(letter)) or []
    assert any("依据上述规定" in unit for unit in found)
    assert not any("享有" in unit for unit in found)
    assert model.predict("", letter).labels == ["access"]


def test_a_business_letter_is_not_a_request_and_is_read_by_a_person(
    model: RightsClassifier,
) -> None:
    letter = (
        "关于合规材料的函\n\n贵公司：\n\n我司正在对合作厂商做年度审核，依据《个人信息保护法》"
        "第二十一条，请贵公司提供现行的数据处理协议、分包商清单和安全测评报告。\n\n"
        "以上材料请于月底前发送至我司采购部。\n\n某制造公司 采购部"
    )
    assert business_letter(normalise(letter))
    found = model.predict("", letter)
    assert found.labels == ["not_rights_request"]
    assert found.needs_review
    # A person asking about their own data is never taken for a business letter.
    assert not business_letter(normalise("我司员工张某要求删除其在贵平台的照片，采购部转交。"))
    assert not business_letter(normalise("Please send me my invoice history and my data."))


def test_a_guardian_named_a_sentence_before_the_childs_age_is_minor(
    model: RightsClassifier,
) -> None:
    letter = (
        "您好：\n\n我是李朵朵的妈妈。朵朵今年8岁，之前我同意了你们收集她的课堂录像，"
        "现在我决定撤回这个同意。\n\n王娟"
    )
    assert set(model.predict("", letter).labels) == {"minor", "withdraw_consent"}


def test_an_explanation_of_the_logic_beside_an_objection_is_an_inquiry(
    model: RightsClassifier,
) -> None:
    letter = (
        "Dear DPO,\n\nMy webinar seat was cancelled by an automatic fraud check. Under "
        "Article 22 GDPR I object to this decision and ask for a human review.\n\n"
        "I would also like an explanation of the logic involved and of which data it used."
        "\n\nRegards,\nIrene Kaur"
    )
    # The rule adds the inquiry; the model may still hear `access` in "which data it used".
    assert {"restriction", "inquiry"} <= set(model.predict("", letter).labels)
    # The explanation a complaint demands is the complaint's own.
    complaint = (
        "Dear DPO,\n\nYou never answered my request of 3 May. I am formally complaining about "
        "this. I want an explanation of why it was ignored.\n\nJonas"
    )
    assert "inquiry" not in model.predict("", complaint).labels
