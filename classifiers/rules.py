"""The rule layer's phrases: only what means one thing wherever it appears.

Written in normalised form (simplified characters, lower case: `classifiers.text.normalise`).
What is *not* here is deliberate: 投诉/complaint (letters "reserve the right to complain"),
删除/delete (channels, messages, files), 导出/export (transcripts), under 14 (policy questions).
"""

from __future__ import annotations

import re
from collections.abc import Iterator

RULES: dict[str, tuple[str, ...]] = {
    "account_deletion": (
        "注销账号",
        "注销帐号",
        "注销我的账号",
        "注销我的帐号",
        "注销账户",
        "注销帐户",
        "销户",
        "注销该账号",
        "注销此账号",
        "注销这个账号",
        "注销其账号",
        "注销他的账号",
        "注销她的账号",
        "delete my account",
        "close my account",
        "cancel my account",
    ),
    "withdraw_consent": (
        "撤回同意",
        "撤回我的同意",
        "退订",
        "withdraw my consent",
        "withdraw consent",
        "unsubscribe me",
        "opt me out",
    ),
    # Death is not mentioned in passing in a rights request; "deceased" is left out because
    # questions about the policy for deceased users' data are inquiries.
    "deceased": (
        "去世",
        "过世",
        "离世",
        "已故",
        "病故",
        "逝世",
        "passed away",
        "died",
        # A relative's words ("my late father", "the late Mr Lin", "since her death").
        "my late",
        "the late mr",
        "the late mrs",
        "the late ms",
        "his death",
        "her death",
    ),
    "not_rights_request": (
        "自动回复",
        "自动回覆",
        "out of office",
        "automatic reply",
        "auto-reply",
        "delivery status notification",
        "mail delivery failed",
        "undeliverable",
        "系统退信",
    ),
}

# Words that introduce a one-time code in a short reply; with a number of 4+ digits and at most
# SHORT_MESSAGE tokens in all, the message is a code typed back, not a request.
CODE_WORDS: tuple[str, ...] = ("验证码", "码", "code", "otp", "passcode", "驗證碼")
SHORT_MESSAGE = 8

# A child of a stated age under 14 ("我儿子12岁", "my daughter is 9", "a 10-year-old son"):
# the guardian's procedure. An age of 14 or more, or "children under 14" without a child of
# the writer's, is left to the model.
_CHILD = (
    r"(儿子|女儿|孩子|小孩|儿童|娃|侄子|侄女|孙子|孙女|外孙|外甥"
    r"|son|daughter|child|kid|boy|girl|nephew|niece)"
)
_PARENT = (
    r"(?:\b(?:mother|father|parent|guardian|mum|mom|dad) of\b"
    r"|的(?:母亲|父亲|妈妈|爸爸|家长|监护人)|(?:我|本人)是[^，。,]{0,8}(?:母亲|父亲|妈妈|爸爸|家长|监护人))"
)
_AGE = (
    r"(?:\d{1,2}|十[一二三四五六七八九]?|(?<!十)[一二三四五六七八九])\s*(?:周岁|岁|歲|週歲)"
    r"|(?:\d{1,2}|one|two|three|four|five|six|seven|eight|nine|ten|eleven|twelve|thirteen)"
    r"(?:\s*|-)(?:years?(?:\s*|-)old|yo|y/o)\b|\bis \d{1,2}\b|\baged \d{1,2}\b"
    # "my son (12)", never an article's paragraph ("Article 8(1)", "(1) children…").
    r"|(?<=\s)\(\d{1,2}\)"
)
CHILD_AGE = re.compile(
    rf"{_CHILD}[^。.!?！？;；]{{0,12}}?(?:{_AGE})|(?:{_AGE})[^。.!?！？;；]{{0,12}}?{_CHILD}"
    rf"|\bmy (?:{_AGE})|未满(?:14|十四)|不满(?:14|十四)|under (?:14|fourteen)\b.{{0,20}}{_CHILD}"
)
# The writer's role, then the child's name and age: "I am the mother of Leo Martin, who is 12
# years old", "legal guardian of Emma Novak, aged 13", "本人是高一凡的父亲，一凡今年十三岁".
# Apart from CHILD_AGE and behind a look for its words (`child_ages`): it runs on every message.
_GUARDIAN_AGE = re.compile(rf"{_PARENT}[^。.!?！？;；]{{0,40}}?(?:{_AGE}|\bwho is \d{{1,2}}\b)")
_GUARDIAN_WORDS = (
    "mother",
    "father",
    "parent",
    "guardian",
    "mum",
    "mom",
    "dad",
    "母亲",
    "父亲",
    "妈妈",
    "爸爸",
    "家长",
    "监护人",
)


# The role in one sentence, the child's age in the next: "我是陈乐乐的父亲。乐乐今年9岁".
_GUARDIAN_THEN_AGE = re.compile(
    rf"{_PARENT}[^。.!?！？;；]{{0,20}}[。.]\s*[^。.!?！？;；]{{0,12}}?(?:{_AGE})"
)


def guardian_then_age(text: str) -> Iterator[re.Match[str]]:
    """Where the normalised text states a guardian's role, then a child's age in the next
    sentence (for a letter, whose statements are read one by one)."""
    if any(word in text for word in _GUARDIAN_WORDS):
        yield from _GUARDIAN_THEN_AGE.finditer(text)


def child_ages(text: str) -> Iterator[re.Match[str]]:
    """Where the normalised text states a child's age (CHILD_AGE, or a guardian's role then the
    child's name and age); `states_child_under_14` says whether it is under 14."""
    yield from CHILD_AGE.finditer(text)
    if any(word in text for word in _GUARDIAN_WORDS):
        yield from _GUARDIAN_AGE.finditer(text)
        yield from _GUARDIAN_THEN_AGE.finditer(text)


_AGE_VALUE = re.compile(
    r"\d{1,2}|十[一二三四五六七八九]?|(?<!十)[一二三四五六七八九]"
    r"|\b(?:one|two|three|four|five|six|seven|eight|nine|ten|eleven|twelve|thirteen|fourteen)\b"
)
_ENGLISH_AGES = "one two three four five six seven eight nine ten eleven twelve thirteen fourteen"
_NUMBERS = {
    **{word: i for i, word in enumerate(_ENGLISH_AGES.split(), 1)},
    **{c: i for i, c in enumerate("一二三四五六七八九", 1)},
    **{"十" + c: 10 + i for i, c in enumerate("一二三四", 1)},
    "十": 10,
}


def states_child_under_14(match: re.Match[str]) -> bool:
    text = match.group(0)
    if any(word in text for word in ("未满", "不满", "under 14", "under fourteen")):
        return True
    value = _AGE_VALUE.search(text)
    if value is None:
        return False
    age = int(value.group(0)) if value.group(0).isdigit() else _NUMBERS.get(value.group(0), 99)
    return age < 14
