"""What the model reads: one normalised string per message, the same in training and in use.

Normalisation keeps every character at its offset (one character in, one character out), so the
spans the pipeline finds in the normalised text point at the same characters of the original.
"""

from __future__ import annotations

import re
from functools import cache

import zhconv

from classifiers.citations import cited_labels

FOCUS_OVER = 200  # characters; shorter messages are read whole

# A sentence ends at Chinese or English end punctuation, but not after the abbreviations a
# letter cites with ("art. 15", "no. 3", "e.g. the"): "according to Art. 15 GDPR" is one ask;
# nor after a list item's number ("1. send me a copy").
_SENTENCE_END = re.compile(
    r"(?<=[。！？!?；;\n])|(?<![Aa]rt\.)(?<![Nn]o\.)(?<!\be\.g\.)(?<!\bi\.e\.)(?<![Pp]ara\.)"
    r"(?<![Ss]ec\.)(?<!\bcf\.)(?<!\b\d\.)(?<=\.)\s"
)
# A sentence in which the writer asks for something, or says who the data belongs to. Patterns
# are in normalised form (lower case, simplified).
_ASKS = re.compile(
    r"(本人|我们|我)[^，。,；;！!？?]{0,15}?(申请|要求|请求|请|希望|撤回|决定|提出|需要|想|拒绝|反对|投诉)"
    r"|(^|[，,：:])\W*(现|特此|故|兹|因此|为此|综上)?(恳|烦|麻烦|敬)?(请|申请|要求)|特此"
    r"|麻烦|帮(我|忙)|能不能|能否|可否|可不可以|希望(你们|贵)"
    r"|(现|兹)[^，。,；;]{0,10}(申请|要求|请求)|(作为|以)(其|孩子的|他的|她的)?(监护人|近亲属|家属)"
    r"|(本人|我)的?(父亲|母亲|父母|爸爸|妈妈|丈夫|妻子|孩子|儿子|女儿)|去世|过世|已故"
    r"|\b(i|we)\b[^.;:!?]{0,60}?\b(request\w*|ask\w*|want|wish|would like|withdraw\w*|revoke|"
    r"require|demand|object|refuse|complain\w*|hereby|making|lodg\w*|fil(e|ing))\b"
    r"|\bcomplaint\b"
    r"|\b(please|kindly)\b|\b(could|can|would|will) you\b|\bi'?d like\b|\bi (need|want)\b"
    r"|\bmy (late |deceased )?(father|mother|parent|husband|wife|child|son|daughter|kid)\b"
    r"|\b(died|passed away)\b"
    r"|[?？]\W*$"  # a question asks too (an inquiry, "can you …?")
)
# "I reserve the right to complain": names a right and asks for none, whatever else it says.
_RESERVATION = re.compile(r"保留|\breserve")
# Citations of what the law or the policy allows: they name every right and ask for none,
# unless the writer asks in the same sentence, citing the article as the ground of the ask
# ("本人依据第四十七条的规定，要求删除…", "I hereby request erasure under Article 17 GDPR").
_CITATION = re.compile(r"享有|有权|规定|隐私政策中|\bthe right to\b|\bpolicy (states|says)")
_ASKS_HERE = re.compile(
    r"特此|(本人|我)[^。；;]{0,30}?(申请|要求|请求|撤回)|\bhereby\b"
    r"|\bi\b[^.;:!?]{0,30}?\b(request|ask|demand|require|withdraw|object)"
)
# A condition is not an ask of its own ("if you have shared my data, tell me with whom"):
# in a long message it adds no label unless nothing else asks.
_CONDITIONAL = re.compile(
    r"^\W*(if|should you|in case|where you|如果|若|倘若|假如|如若|如贵公司|如您|如你们)"
    r"(?!\s*(possible|可以|可能))"
)

# Words that only a message about someone's personal information uses: such a message is never
# dismissed as "not a request" without a person reading it (classifiers.model.decide).
_RIGHTS_SIGNAL = re.compile(
    r"个人信息|个人数据|个人资料|隐私|保护法|注销|销号|删号|撤回|监护|去世|过世|已故|病故|投诉|泄露"
    r"|卖给|我的(数据|信息|资料|记录|聊天记录|录音|录像|照片|手机号|号码|邮箱)"
    r"|personal (data|information|info|details)|privacy|\bgdpr\b|\bpipl\b|\bconsent\b"
    r"|\bdata protection\b|\bguardian\b|passed away|\bdeceased\b|\bcomplain|\bleak"
    r"|\bmy (own )?(data|info|information|details|records|recordings|phone number|number)\b"
    r"|\bsell (my|our)\b|\bsold (my|our)\b|\berase|\berasure\b"
)

_CJK = re.compile(r"[\u3400-\u9fff\uf900-\ufaff]")
_LATIN_WORD = re.compile(r"[A-Za-z]{2,}")


@cache
def _table() -> dict[int, str]:
    """Traditional → simplified for single characters (zhconv's own table), and ASCII lower case.

    Phrase-level conversions (帳號 → 账号 and the like) are left out on purpose: they change
    lengths, and jieba + the bag of words cope with 帐号/账号 once the characters agree.
    """
    zhconv.zhconv.loaddict()
    pairs = zhconv.zhconv.zhcdicts["zh2Hans"]
    table = {ord(k): v for k, v in pairs.items() if len(k) == 1 and len(v) == 1}
    table.update({ord(c): c.lower() for c in "ABCDEFGHIJKLMNOPQRSTUVWXYZ"})
    # Full-width ASCII (ｄｅｌｅｔｅ, １２３) is common in Chinese input methods.
    table.update({cp: chr(cp - 0xFEE0).lower() for cp in range(0xFF01, 0xFF5F)})
    return table


def normalise(text: str) -> str:
    return text.translate(_table())


def joined(subject: str, text: str) -> str:
    """Subject and new text as one string. The subject often *is* the request."""
    subject = subject.strip()
    body = text.strip()
    return f"{subject}\n{body}" if subject and subject not in body else body


def sentences(text: str) -> list[str]:
    """The non-empty sentences of a text, Chinese or English punctuation."""
    return [sentence.strip() for sentence in _SENTENCE_END.split(text) if sentence.strip()]


def asks(text: str) -> list[str] | None:
    """The sentences of a long message that ask for something; None for a short message, []
    when no sentence of a long one is recognisably an ask.

    Formal letters bury one ask under citations that name every right, background and "I
    reserve the right to complain"; read whole, a bag of words sees every label in them (and
    its sum over hundreds of neutral words drowns the ask). The text given is normalised.
    Besides the sentences worded as asks: the items of a list an ask opens ("本人申请如下：",
    "please provide:"), never a sentence that says what is *not* asked ("I am not asking you
    to delete…", "本人不申请注销"), and a short ask ("please stop.") with the sentence before
    it, which says what to stop.
    """
    if weight(text) <= FOCUS_OVER:
        return None
    flat = [
        (number, sentence)
        for number, paragraph in enumerate(_PARAGRAPH.split(text))
        for sentence in sentences(paragraph)
    ]
    found: list[str] = []
    # The paragraph whose sentences are the items of a list an ask opened with a colon: its
    # own, or the next one when the colon ends its paragraph.
    listing: int | None = None
    for k, (paragraph, sentence) in enumerate(flat):
        plain = _undotted(sentence)
        if _boilerplate(sentence) or _NOT_ASKING.search(plain):
            continue
        if not (_ASKS.search(plain) or paragraph == listing):
            continue
        if sentence.endswith(":"):
            last = k + 1 == len(flat) or flat[k + 1][0] != paragraph
            listing = paragraph + 1 if last else paragraph
            continue
        before = flat[k - 1] if k else None
        # Never a citation as the context of an ask.
        if (
            len(sentence) < SHORT_ASK
            and before
            and before[0] == paragraph
            and not _boilerplate(before[1])
        ):
            sentence = f"{before[1]} {sentence}"
        found.append(sentence)
    return [sentence for sentence in found if not _CONDITIONAL.search(sentence)] or found


_PARAGRAPH = re.compile(r"\n\s*\n")
SHORT_ASK = 30  # characters: an ask this short ("please stop.") is read with the one before
# Saying what is not asked is no ask ("I'm not asking you to delete past recordings").
_NOT_ASKING = re.compile(
    r"\bnot (making|asking|requesting|seeking)\b|\bnot at this stage\b|\bnot (a|making a) request"
    r"|\bwould (also )?(allow|entitle)|\bdo not wish to (add|change)"
    r"|(不|并不|暂不|无意)(申请|要求|需要|涉及|请求)|并非"
)


def weight(text: str) -> int:
    """How much a message says, for FOCUS_OVER: characters, a Chinese one counting double (a
    150-character Chinese mail tells as much as a 400-character English one)."""
    return len(text) + len(_CJK.findall(text))


def statements(text: str) -> list[str]:
    """The sentences of a normalised text that are the writer's own: not citations of what the
    law or the policy allows, not reservations."""
    return [sentence for sentence in sentences(text) if not _boilerplate(sentence)]


def _boilerplate(sentence: str) -> bool:
    if _RESERVATION.search(sentence):
        return True
    if not _CITATION.search(sentence):
        return False
    return not (
        _ASKS_HERE.search(_undotted(sentence)) and (cited_labels(sentence) or "特此" in sentence)
    )


_ABBREVIATION = re.compile(r"\b(art|no|para|sec|cf|e\.g|i\.e)\.", re.IGNORECASE)


def _undotted(sentence: str) -> str:
    """The sentence without the dots of its abbreviations ("art. 15"), which would otherwise
    stop the ask patterns, written not to cross a full stop."""
    return _ABBREVIATION.sub(r"\1", sentence)


def is_ask(unit: str) -> bool:
    """The unit is worded as an ask (normalised text): where a cited article counts."""
    plain = _undotted(unit)
    return bool(_ASKS.search(plain) or _ASKS_HERE.search(plain))


def model_units(subject: str, text: str) -> tuple[list[str], bool]:
    """What the textcat reads, one or more units per message, and whether it found the ask.
    A short message is one unit (subject and body). A long one is each sentence that asks for
    something, read alone: the message asks for a type if any unit does (see
    `classifiers.model`). Its subject is left out: a letter's subject ("Data protection
    request") names no type, its body does. A long message with no recognisable ask is read
    whole, and is not understood (a person reads it)."""
    body = normalise(text)
    found = asks(body)
    if found:
        return found, True
    return [joined(normalise(subject), body)], found is None


# A question about how, when or where (not "can you …?", which asks for the thing itself).
_HOW = re.compile(
    r"^\W*(what|how|when|where|why|which|is there a way|do i|does|will)\b"
    r"|\b(how (do|can|long|would)|what happens|where is|is there a way)\b"
    r"|怎么|怎样|如何|多久|多长时间|什么时候|哪里|在哪|哪儿|进度|需要(准备|提供)什么"
)


def asks_how(text: str) -> bool:
    """The normalised text asks how a right works (an inquiry), not for the right itself."""
    return bool(_HOW.search(text))


def rights_signal(text: str) -> bool:
    """The normalised text uses the words of a rights request (`_RIGHTS_SIGNAL`)."""
    return bool(_RIGHTS_SIGNAL.search(text))


def detect_language(text: str) -> str:
    """`zh` when Chinese carries the message, else `en`.

    A Chinese message with a few English words is Chinese; an English letter quoting
    《个人信息保护法》 is English: compare Chinese characters with English words.
    """
    cjk = len(_CJK.findall(text))
    if cjk == 0:
        return "en"
    words = len(_LATIN_WORD.findall(text))
    return "zh" if cjk >= words else "en"
