"""Looks at one unit the textcat read (a letter's sentence, or a short message): a list item's
own ask, whether a sentence names an account, whether a short message only asks about a right.

Patterns are in normalised form (classifiers.text.normalise)."""

from __future__ import annotations

import re

from classifiers.text import _LIST_ITEM, rights_signal


def list_item(unit: str) -> bool:
    """The unit opens as a list item ("2. 依据第四十七条，删除…", "（二）删除…"): in a letter,
    an item `asks` kept is one of the asks of the list an ask opened, verb or no verb."""
    return bool(_LIST_ITEM.match(unit))


# A list item whose first word is the verb of a right, after its number and the article it
# cites: "（二）删除本人在…中的定位记录", "1、依据第四十五条，复制…". A bag of words weighs
# the item's nouns (频道, 定位, 记录) against its one verb and heard no ask (#14: numbered
# demands of which the second and third were lost).
_ITEM_VERB = re.compile(
    r"^\s*(?:\(?[a-h]\)|\(?\d{1,2}[.)、]|[一二三四五六七八九十]{1,2}[、.]|[（(][一二三四五六七八九十]{1,2}[)）]"
    r"|第[一二三四五六七八九十]{1,2}[，,、:：])\s*"
    r"(?:(?:依据|根据|依照|按照|依)[^，。,；;]{0,30}?[，,]\s*)?"
    r"(?:请求|要求|申请|请)?(?:贵司|贵公司|贵平台|你们)?(?:立即|尽快|及时)?"
    r"(删除|删掉|注销|更正|改正|查阅|复制|查询及?阅览|阅览)"
)
_ITEM_LABEL = {
    "删除": "erasure",
    "删掉": "erasure",
    "注销": "account_deletion",
    "更正": "rectification",
    "改正": "rectification",
    "查阅": "access",
    "复制": "access",
    "阅览": "access",
}
# "删除本人的账号": the account itself (its contents, "账号中的照片", are an erasure).
_ITEM_ACCOUNT = re.compile(
    r"(本人|我|其|委托人|当事人)?的?(全部)?(账号|帐号|账户|帐户)(?![中里内下上])"
)


def item_labels(unit: str) -> set[str]:
    """The label a list item's leading verb names (`_ITEM_VERB`), or none."""
    found = _ITEM_VERB.match(unit)
    if found is None:
        return set()
    verb = found.group(1)
    label = _ITEM_LABEL.get(verb[:2], "access")
    if label == "erasure" and _ITEM_ACCOUNT.match(unit, found.end()):
        label = "account_deletion"
    return {label}


# Words without which a sentence cannot ask to close an account ("本人要求关闭该推荐").
_ACCOUNT_WORDS = re.compile(
    r"账|帐|号|户|注销|销|会员|\b(account|acct|profile|membership|subscription|login|user)"
    r"|\b(close|deactivate|cancel|delete|terminate) (it|me)\b"
)


def names_an_account(text: str) -> bool:
    """The normalised unit names an account (or "close it"), which an account deletion needs."""
    return bool(_ACCOUNT_WORDS.search(text))


# Words that ask for the thing itself beside a question ("how do I close it? just do it").
_ASKS_TOO = re.compile(
    r"\b(please|pls|plz|kindly|can you|could you|would you|will you|i want|i need|i'?d like|just do"
    r"|do it|for me)\b|请|麻烦|帮我|帮忙|给我|直接|你们(来|帮)|我要|我想要"
)


def only_asks_about(text: str) -> bool:
    """The normalised short message is a question about a right and asks for nothing itself
    ("how do I withdraw consent? can't find the toggle", "副本要多少天能出来？"): an inquiry
    (LABELS.md), whatever right it names."""
    return bool(_ABOUT.search(text)) and not _ASKS_TOO.search(text) and rights_signal(text)


# How, where, how long, whether it stays: never "what do you hold about me?", which asks for
# the access itself (LABELS.md: access is "tell them what we hold").
_ABOUT = re.compile(
    r"^\W*(how|where|when|is there a way)\b|\b(how (do|can|long|many days|would)"
    r"|what happens|where (do|can|is)|is there a way|when will)\b"
    r"|怎么|怎样|如何|多久|多长时间|多少天|几天|什么时候|哪里|在哪|哪儿|进度|需要(准备|提供)什么"
    r"|(还)?在不在|还在吗|还会(在|保留)"
)
