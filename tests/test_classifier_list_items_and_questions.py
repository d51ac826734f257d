"""Issue #14, sixth pass: list items as asks (their article, their leading verb), conditions
behind a list number, the law's own words, an article followed by "to", letters that only
confirm, questions about a right, and the sentences an ask points back to."""

from __future__ import annotations

from classifiers.citations import cited_labels
from classifiers.model import RightsClassifier
from classifiers.text import asks, business_letter, normalise, tells_it_done
from classifiers.units import item_labels, names_an_account, only_asks_about

NUMBERED = (
    "个人信息事项申请\n\n申请人：褚明，注册邮箱 chu.ming@example.com\n\n"
    "本人依据《个人信息保护法》提出以下事项：\n"
    "一、依据第四十五条，复制本人全部工单记录；\n"
    "二、删除本人在“跑步打卡”小组上传的路线截图；\n"
    "三、如贵公司将本人手机号提供给了第三方，请说明接收方。\n\n褚明"
)


def test_a_list_items_leading_verb_names_its_right() -> None:
    assert item_labels(normalise("（二）删除本人在小组里的照片；")) == {"erasure"}
    assert item_labels(normalise("3、删除本人的账号")) == {"account_deletion"}
    assert item_labels(normalise("3、删除本人账号中的照片")) == {"erasure"}
    assert item_labels(normalise("一、依据第四十六条，更正本人的生日")) == {"rectification"}
    assert item_labels(normalise("（三）书面告知处理结果")) == set()
    assert item_labels(normalise("删除本人的照片")) == set()  # not a list item


def test_each_item_of_a_numbered_list_counts_and_its_condition_does_not(
    model: RightsClassifier,
) -> None:
    found = asks(normalise(NUMBERED)) or []
    assert not any("如贵公司" in unit for unit in found)
    assert set(model.predict("", NUMBERED).labels) == {"access", "erasure"}


def test_an_article_followed_by_to_is_no_range() -> None:
    sentence = normalise(
        "Our client objects under Article 21(2) GDPR to the use of her data for direct marketing."
    )
    assert cited_labels(sentence) == {"withdraw_consent"}
    assert cited_labels(normalise("依据第四十四条至第五十条，个人享有下列权利")) == set()


def test_taiwans_article_11_in_its_own_words_is_a_citation_not_an_ask(
    model: RightsClassifier,
) -> None:
    letter = (
        "敬啟者：\n\n本人於貴公司平台刊登之作品集已不再需要。\n\n依《個人資料保護法》第十一條"
        "第三項，特定目的消失時，應主動或依當事人之請求，刪除、停止處理或利用該個人資料。\n\n"
        "本人請求貴公司刪除本人上傳之作品集及自我介紹。\n\n何靜"
    )
    found = asks(normalise(letter)) or []
    assert not any("应主动" in unit for unit in found)
    assert model.predict("", letter).labels == ["erasure"]


def test_section_titles_of_a_lawyers_letter_ask_nothing() -> None:
    letter = (
        "律师函\n\n本律师受宁女士委托，函告如下：\n\n一、基本事实\n委托人曾在贵司平台参加直播课程。"
        "\n\n二、律师意见\n委托人要求贵公司删除其课程回放中的人像画面，账号继续保留。\n\n特此函告。"
    )
    found = asks(normalise(letter)) or []
    assert not any(unit.startswith(("一、基本事实", "二、律师意见")) for unit in found)


def test_a_letter_that_only_confirms_an_old_request_asks_nothing(
    model: RightsClassifier,
) -> None:
    letter = (
        "尊敬的贵公司：\n\n贵公司12月1日来函告知，本人的信息删除申请已经办结，本人已核对无误。"
        "\n\n本函仅为确认，并无其他请求。\n\n闻博"
    )
    assert tells_it_done(normalise("本人的信息删除申请已经办结"))
    found = model.predict("", letter)
    assert found.labels == ["not_rights_request"]
    assert found.needs_review  # it names personal information: a person reads it


def test_a_question_about_a_right_is_an_inquiry_and_an_ask_is_not_a_question(
    model: RightsClassifier,
) -> None:
    assert only_asks_about(normalise("how do I turn off the marketing consent in the app?"))
    assert not only_asks_about(normalise("can I get a copy of my data?"))
    assert not only_asks_about(normalise("what data do you hold about me?"))
    assert not only_asks_about(normalise("how do I close my account? just do it for me"))
    assert model.predict("", "申请个人信息副本一般要几天能拿到？").labels == ["inquiry"]


def test_a_sentence_naming_no_account_does_not_close_one(model: RightsClassifier) -> None:
    assert not names_an_account(normalise("本人要求关闭该推荐。"))
    assert names_an_account(normalise("please close it"))
    letter = (
        "贵公司：\n\n本人发现平台会把本人的浏览记录用于“猜你喜欢”推荐。\n\n"
        "依据《个人信息保护法》第二十四条，本人拒绝该推荐，要求关闭该推荐。\n\n蔡宁"
    )
    assert "account_deletion" not in model.predict("", letter).labels


def test_a_law_firm_writing_for_a_company_sends_a_business_letter() -> None:
    letter = normalise(
        "律师函\n\n本所受某某软件有限公司委托，就贵司拖欠服务费一事致函。请贵司保全相关往来邮件，"
        "委托人保留追究违约责任的权利。"
    )
    assert business_letter(letter)
