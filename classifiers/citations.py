"""Articles cited in an ask: evidence of what is asked.

A formal letter's ask often names its right only by the article it invokes ("I am hereby
requesting access according to Article 15 GDPR", "依据《个人信息保护法》第四十七条，本人要求…").
A bag of words has seen few such sentences; the article number says which right it is. This is
read only in a sentence that asks (classifiers.text.asks keeps those), never in the citations
of what the law allows, which name every article and ask for none.

Patterns are in normalised form (lower case, simplified: classifiers.text.normalise).
"""

from __future__ import annotations

import re

# GDPR articles by number, PIPL (个人信息保护法) articles by number. Art. 21 is split by what
# is objected to (direct marketing → withdrawal of consent; anything else → restriction).
_GDPR: dict[int, str] = {
    15: "access",
    16: "rectification",
    17: "erasure",
    18: "restriction",
    20: "portability",
    21: "restriction",
    22: "restriction",
}
_PIPL: dict[int, str] = {
    15: "withdraw_consent",
    24: "restriction",
    # 第四十四条: 限制或者拒绝他人对其个人信息进行处理 (cited in an ask: "依据第四十四条，
    # 本人拒绝…"); the preamble's range 第四十四条至第五十条 is no ask (_RANGE).
    44: "restriction",
    45: "access",
    46: "rectification",
    47: "erasure",
    48: "inquiry",
    49: "deceased",
}

# Taiwan's 個人資料保護法 (Art. 10: 查詢、閱覽、製給複製本; Art. 11: 更正補充, 刪除,
# 停止蒐集處理利用) and Hong Kong's 個人資料（私隱）條例 (s. 18 data access, s. 22
# correction): named in the sentence, their article numbers mean these rights, not the PIPL's.
_TW_LAW = re.compile(r"个人资料保护法|个资法")
_HK_LAW = re.compile(r"私隐\)?条例|pdpo\b")
_ART11_WORDS = (
    ("rectification", re.compile(r"更正|补充|改正")),
    ("erasure", re.compile(r"删除")),
    ("restriction", re.compile(r"停止(搜集|收集|蒐集|处理|利用)")),
)

_ZH_DIGITS = {c: i for i, c in enumerate("零一二三四五六七八九")}

_GDPR_LAW = r"(?:gdpr|dsgvo|general data protection regulation|regulation \(eu\) 2016/679)"
_PIPL_LAW = r"(?:pipl|personal information protection law|个人信息保护法)"
# "article 15 gdpr", "art. 15(3) of the gdpr", "art 17 (1) gdpr", "article 7(3) gdpr".
_EN_ARTICLE = re.compile(
    r"\bart(?:icle|\.)?\s*(\d{1,2})\s*(\(\d\))?(?:\s*\([a-z]\))?"
    rf"(?:\s+(?:of\s+)?(?:the\s+)?(?:eu\s+)?({_GDPR_LAW}|{_PIPL_LAW}))?"
)
# "第四十五条", "第45条", "第四十五条第三款", optionally after 《个人信息保护法》.
_ZH_ARTICLE = re.compile(r"第([一二三四五六七八九十百千零\d]{1,8})条(?:第([一-九\d])款)?")
# 《民法典》第一千零三十七条 (查阅、复制; 更正; 删除) and 第一千零三十五条 / 第一千零三十八条
# name rights in the sentence's own words, like Taiwan's Art. 11.
_CIVIL_CODE = re.compile(r"民法典")
_CIVIL_WORDS = (
    ("access", re.compile(r"查阅|复制|副本")),
    ("rectification", re.compile(r"更正|补充|改正")),
    ("erasure", re.compile(r"删除")),
)
# Erasure articles (GDPR 17, PIPL 47) also ground closing the account, which covers the data.
_ACCOUNT = re.compile(
    r"注销|销户|\b(close|delete|terminate|cancel|deactivate)\w*\s+(\S+\s+){0,2}account\b"
    r"|\b(closure|deletion|termination|cancellation|deactivation) of (my|the|our|his|her) account"
    r"|\baccount (closure|deletion|termination|cancellation)\b"
)
# PIPL 第四十九条 says who asks (a close relative of a deceased user); what they ask is in
# the sentence's own words, after the article ("根据第四十九条，本人请求删除母亲账号中的照片").
_RELATIVE_ASKS = (
    ("access", re.compile(r"查阅|复制|副本|查看")),
    ("rectification", re.compile(r"更正|补充")),
    ("account_deletion", re.compile(r"注销|销户")),
    ("erasure", re.compile(r"删除")),
)
# An article that opens or closes a range ("第四十四条至第五十条", "Articles 15 to 22") lists the
# rights of the preamble, not what is asked.
# The range's other end is a number: "Article 21(2) GDPR to any processing…" is no range.
_RANGE_AFTER = re.compile(
    r"\s*(至|到|~|～|-|–|—|to\b|through\b)\s*(第|art\w*\.?\s*)?[\d一二三四五六七八九十]"
)
_RANGE_BEFORE = re.compile(r"(条|\d|\))\s*(至|到|~|～|-|–|—|to|through)\s*$")
_MARKETING = re.compile(r"direct marketing|marketing|营销|推广|广告")
_GDPR_ANYWHERE = re.compile(_GDPR_LAW)


def _zh_number(text: str) -> int:
    if text.isdigit():
        return int(text)
    total, digit = 0, None
    for char in text:
        if char in _ZH_UNITS:
            total += (1 if digit is None else digit) * _ZH_UNITS[char]
            digit = None
        else:
            digit = _ZH_DIGITS.get(char, 0)
    return total + (digit or 0)


_ZH_UNITS = {"十": 10, "百": 100, "千": 1000}


def cited_labels(sentence: str) -> set[str]:
    """The labels the articles cited in `sentence` stand for (normalised text).

    An English "Article N" is the PIPL's when the PIPL follows it, or when no law is named
    and N is no GDPR right (45–49); else the GDPR's. A Chinese 第N条 is the PIPL's unless the
    sentence names the GDPR.
    """
    found: set[str] = set()
    gdpr_named = bool(_GDPR_ANYWHERE.search(sentence))
    for match in _EN_ARTICLE.finditer(sentence):
        if _in_range(sentence, match):
            continue
        number, paragraph, law = int(match.group(1)), match.group(2), match.group(3) or ""
        pipl_named = bool(re.fullmatch(_PIPL_LAW, law))
        if number == 7 and paragraph == "(3)":  # only the GDPR has a 7(3): withdrawal
            found.add("withdraw_consent")
        elif pipl_named or (not law and not gdpr_named and number not in _GDPR):
            found |= _pipl(number, paragraph == "(3)", sentence)
        else:
            found |= _gdpr(number, paragraph, sentence)
    taiwan, hong_kong = bool(_TW_LAW.search(sentence)), bool(_HK_LAW.search(sentence))
    civil = bool(_CIVIL_CODE.search(sentence))
    for match in _ZH_ARTICLE.finditer(sentence):
        if _in_range(sentence, match):
            continue
        number = _zh_number(match.group(1))
        clause = match.group(2)
        third = clause in ("三", "3")
        if civil and 1030 <= number <= 1039:
            after = sentence[match.end() :]
            found |= {label for label, words in _CIVIL_WORDS if words.search(after)}
        elif civil:
            continue
        elif taiwan:
            found |= _taiwan(number, sentence)
        elif hong_kong:
            found |= {"access"} if number == 18 else {"rectification"} if number == 22 else set()
        elif gdpr_named:
            found |= _gdpr(number, None, sentence)
        else:
            found |= _pipl(number, third, sentence)
            if number == 49:
                after = sentence[match.end() :]
                found |= {label for label, words in _RELATIVE_ASKS if words.search(after)}
    if "account_deletion" in found:
        found.discard("erasure")  # closing the account deletes its data: one ask
    return found


def _in_range(sentence: str, match: re.Match[str]) -> bool:
    return bool(
        _RANGE_AFTER.match(sentence, match.end()) or _RANGE_BEFORE.search(sentence[: match.start()])
    )


def _taiwan(number: int, sentence: str) -> set[str]:
    if number == 10:
        return {"access"}
    if number == 11:
        return {label for label, words in _ART11_WORDS if words.search(sentence)}
    return set()


def _gdpr(number: int, paragraph: str | None, sentence: str) -> set[str]:
    if number == 7 and paragraph == "(3)":
        return {"withdraw_consent"}
    if number == 21 and _MARKETING.search(sentence):
        return {"withdraw_consent"}
    return _label(_GDPR.get(number), sentence)


def _label(label: str | None, sentence: str) -> set[str]:
    if label == "erasure" and _ACCOUNT.search(sentence):
        return {"account_deletion"}
    return {label} if label else set()


def _pipl(number: int, third_clause: bool, sentence: str) -> set[str]:
    if number == 45 and third_clause:
        return {"portability"}
    return _label(_PIPL.get(number), sentence)
