"""Asks in Chinese and English whose words the rule layer's phrase matcher cannot see (they
stand apart in jieba's tokens), and the negations and suppositions that take them back.

Patterns are in normalised form (classifiers.text.normalise)."""

from __future__ import annotations

import re

from classifiers.text import hypothetical

# Asks in Chinese whose words stand apart (撤回上述同意, 注销本人账号): the rule layer's
# phrases match jieba's tokens, which split these; read in the unit, never in a question or
# a supposition (the same checks as the phrases), nor in a negation (不撤回, 暂不注销).
ASK_PATTERNS: tuple[tuple[str, str, re.Pattern[str]], ...] = (
    (
        "withdraw_consent",
        "撤回",
        re.compile(r"(?<![不未无])撤回[^，。,；;！？!?]{0,12}?(同意|授权)"),
    ),
    (
        "account_deletion",
        "注销",
        re.compile(
            r"(?<![不未无暂别])注销(本人|我|其|委托人|当事人|他|她|该|此|这个)?"
            r"[^，。,；;后的]{0,6}的?(全部)?(账号|帐号|账户|帐户)"
        ),
    ),
    # "I would also like an explanation of the logic involved", "请就…作出书面说明": asked to
    # explain a processing (inquiry), which the bag of words, seeing an objection or a leak
    # beside it, missed. "An explanation of why my request was ignored" is the complaint's.
    (
        "inquiry",
        "expla",
        re.compile(
            r"\b(an explanation|explain)\b[^.;!?]{0,30}?\b(the logic|how (you|your|my|the|it)\b"
            r"|which (data|information|of my)|what (data|information)|whether (any|my|the)\b)"
        ),
    ),
    (
        "inquiry",
        "说明",
        re.compile(r"(作出|做出|给出|给予|予以)[^，。,；;]{0,4}(书面)?(说明|解释)"),
    ),
    # "能不能把他的账号关掉", "把我账号删了吧": the account itself, closed.
    (
        "account_deletion",
        "把",
        re.compile(
            r"把[^，。,；;]{0,6}(账号|帐号|账户|帐户)(给)?(关掉|关了|关闭|删掉|删了|删除|注销)"
        ),
    ),
)


# Before an ask pattern in its clause: a negation (我不想注销账号) or a supposition (如果我把
# 账号注销了，…?).
_NOT_ASKED_BEFORE = re.compile(
    r"((?<![能可行要是])不(?![能可行要是])|别|没|无需|暂|如果|若|假如|要是|万一|一旦)"
    r"[^，。,；;！？!?]{0,6}$"
)


def not_asked(text: str, start: int, end: int) -> bool:
    clause_start = max(text.rfind(mark, 0, start) for mark in "，。,；;！？!?") + 1
    return bool(
        _NOT_ASKED_BEFORE.search(text, clause_start, start) or hypothetical(text, start, end)
    )
