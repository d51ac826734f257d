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
    r"|(^|[，,：:])\W*(现在|现|特此|故|兹|因此|为此|综上)?(恳|烦|麻烦|敬)?(请|申请|要求)|特此|谨此|兹此"
    r"|(亦|也|还|并|另|再)请"
    # 请 right before the verb of a right, wherever the sentence puts it ("导出后请注销她的账号").
    r"|请(你们|贵司|贵公司|贵平台|帮我|帮忙)?(注销|删除|删掉|更正|改正|补充|复制|停止|导出|转移|撤回)"
    r"|麻烦|帮(我|忙)|能不能|能否|可否|可不可以|希望(你们|贵)"
    r"|希望[^，。,；;]{0,3}(把|将|能够?|可以|尽快)"  # "家属商量后，希望先把照片下载…"
    r"|(现|兹)[^，。,；;]{0,10}(申请|要求|请求)|(作为|以)(其|孩子的|他的|她的)?(监护人|近亲属|家属)"
    r"|(本人|我)的?(父亲|母亲|父母|爸爸|妈妈|丈夫|妻子|孩子|儿子|女儿)|去世|过世|已故"
    r"|\b(i|we)\b[^.;:!?]{0,60}?\b(request\w*|ask\w*|want|wish|would like|withdraw\w*|revoke|"
    r"require|demand|object|refuse|complain\w*|hereby|making|lodg\w*|fil(e|ing)"
    r"|would (also|further) like)\b"
    r"|\bcomplaint\b|\b(my|our|the) (request|ask|application) (is|here is|today is)\b"
    r"|\b(this|the present) (letter|email|e-mail|message|mail)? ?is (a|my) (formal )?(request|"
    r"application|notice)\b|\bexercis\w* (my|our|his|her) rights?\b"
    r"|\bwhat i'?m (asking|requesting)\b|(本人|我)的(请求|诉求|申请|要求)(是|为|如下|只有|很简单)"
    # On someone's behalf: a lawyer for a client, HR for an employee, a parent for a child.
    r"|\b(our|my) (client|employee|member|son|daughter)s?\b[^.;:!?]{0,50}?\b(request|ask|want|"
    r"wish|require|demand|object|instruct|would like)\w*|\bon (his|her|their) behalf\b"
    r"|\bthe data subject\b[^.;:!?]{0,30}?\b(request|ask|want|wish|require)\w*"
    r"|\b(she|he|they|(ms|mr|mrs|dr)\.? \w+)\b[^.;:!?]{0,20}?\b(asks|requests|wants|wishes|would "
    r"like|requires|instructs|withdraws|objects)\b|\bwe are instructed to (ask|request)\b"
    r"|(本律师|本所|我所|我司|我们公司)[^，。,；;]{0,15}?(申请|要求|请求)|代(其|表当事人|当事人)"
    r"|(受|经)[^，。,；;]{0,20}委托|(?<![依经应])(当事人|委托人)[^，。,；;]{0,20}(申请|要求|请求|希望)"
    r"|(^|[，,])\s*[\u4e00-\u9fff]{2,4}(要求|请求|申请)(贵|你们|平台)"  # "…，刘畅要求贵公司删除…"
    # A Chinese ask that opens with its article: "依据第十五条，撤回本人…的同意".
    r"|撤回[^，。,；;]{0,40}同意|第[一二三四五六七八九十百零\d]{1,5}条[^。；;]{0,8}[，,]\s*(本人|我)?"
    r"(撤回|请求|要求|申请|拒绝|反对)"
    r"|\b(please|kindly)\b|\b(could|can|would|will) you\b|\bi'?d (also )?like\b"
    r"|\bi (also )?(need|want)\b"
    r"|\bmy (late |deceased )?(father|mother|parent|husband|wife|child|son|daughter|kid)\b"
    r"|\b(died|passed away)\b"
    r"|[?？]\W*$"  # a question asks too (an inquiry, "can you …?")
    r"|^\W*(formal )?(request|application|demand)s? (for|of)\b"  # a subject: "request for erasure"
)
# "I reserve the right to complain": names a right and asks for none, whatever else it says.
# Only a reservation of rights: "保留" alone also keeps things ("本人账号继续保留使用"), and
# an ask that keeps the account is still an ask.
_RESERVATION = re.compile(
    r"保留[^。；;，,]{0,40}(权利|权力|追究|法律措施|法律途径|诉权)"
    r"|\b(reserve[sd]?|reserving)\b[^.;!?]{0,30}\brights?\b|\brights?\b[^.;!?]{0,20}\breserved\b"
)
# Citations of what the law or the policy allows: they name every right and ask for none,
# unless the writer asks in the same sentence, citing the article as the ground of the ask
# ("本人依据第四十七条的规定，要求删除…", "I hereby request erasure under Article 17 GDPR").
_CITATION = re.compile(
    r"享有|有权|规定|隐私政策中|隐私政策[里上]?也?(写|说|提到|载明)|\bthe right to\b"
    # The law's duty in its own words (Taiwan Art. 11: "应主动或依当事人之请求，删除…").
    r"|应(当)?主动|依当事人之?(请求|申请)"
    r"|\b(policy|notice) (also )?(states|says)"
)
_ASKS_HERE = re.compile(
    r"特此|谨此|(本人|我)[^。；;]{0,30}?(申请|要求|请求|撤回|拒绝|反对)|\bhereby\b"
    r"|\bi\b[^.;:!?]{0,30}?\b(request|ask|demand|require|withdraw|object)"
    r"|\b(our|my) client\b[^.;:!?]{0,30}?\b(request|ask|demand|require|withdraw|object)"
    r"|(本律师|本所)[^。；;]{0,30}?(申请|要求|请求)"
    r"|(?<![依经应])(当事人|委托人)[^。；;]{0,30}?(申请|要求|请求|撤回)"
)
# A condition is not an ask of its own ("if you have shared my data, tell me with whom"):
# in a long message it adds no label unless nothing else asks.
_CONDITIONAL = re.compile(
    r"^\W*(\d{1,2}[.)、]|[一二三四五六七八九十]{1,2}[、.]|[a-h]\))?\W*"
    r"(if|should you|in case|where you|如果|若|倘若|假如|如若|如贵公司|如您|如你们)"
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
    # What a short ask about one's own things names (a "not a request" verdict on these is read
    # by a person): my account, my recordings, marketing, 我的账号, 推广.
    r"|我的(账号|帐号|账户|帐户|聊天|消息|文件|照片|头像|录像|会议记录|登录记录|位置|定位|通讯录|声音|人脸)"
    r"|删(除|掉)?我|营销|推广|广告|个性化|自动化决策|律师|委托"
    r"|\bmy (acc(oun)?t|acct|profile|recordings?|messages|chats?|photos?|history|login|contacts"
    r"|location|voice|face|files)\b|\b(unsubscri\w*|marketing|newsletter|promo\w*|solicitor"
    r"|lawyer|on (his|her|their) behalf|our client|opted in|agreed to|said yes to|ticked)\b"
    r"|授权|我同意|同意了|\b(have|hold|keep|store|collect)\w* (about|on) me\b"
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
    if weight(text) <= FOCUS_OVER and not letter_shaped(text):
        return None
    quote = _QUOTED.search(text)
    if quote:  # the mail this one answers, quoted below it: asked before, not now
        text = text[: quote.start()]
    flat = [
        (number, sentence)
        for number, paragraph in enumerate(_PARAGRAPH.split(text))
        for sentence in sentences(paragraph)
    ]
    found: list[tuple[str, str]] = []  # the sentence, and what is read (with its context)
    # The paragraph whose sentences are the items of a list an ask opened with a colon: its
    # own, or the next one when the colon ends its paragraph.
    listing: int | None = None
    for k, (paragraph, sentence) in enumerate(flat):
        plain = _undotted(sentence)
        if _boilerplate(sentence) or _NOT_ASKING.search(plain):
            continue
        if listing is not None and paragraph == listing + 1 and _LIST_ITEM.match(sentence):
            listing = paragraph  # the next item of the same list, after a blank line
        if _HEADING.match(plain):
            continue  # "二、法律依据": a section's title, which asks nothing
        # The second half of an ask parted by a semicolon ("…a copy of her files; and
        # second, once I have them, to close her account").
        goes_on = bool(
            found
            and k
            and flat[k - 1][0] == paragraph
            and flat[k - 1][1] == found[-1][0]
            and flat[k - 1][1].endswith((";", "；"))
        )
        opens = sentence.endswith(":") and bool(_OPENS_LIST.search(plain))
        heard = _ASKS.search(plain) or _MAKES_COMPLAINT.search(plain)
        if not (heard or paragraph == listing or goes_on or opens):
            continue
        if sentence.endswith(":"):
            last = k + 1 == len(flat) or flat[k + 1][0] != paragraph
            listing = paragraph + 1 if last else paragraph
            continue
        before = flat[k - 1] if k else None
        # Never a citation as the context of an ask. A condition is judged on the sentence's
        # own words: "如…请告知。除此之外，本人申请…" is a condition, then an ask.
        own = sentence
        if (
            (weight(sentence) < SHORT_ASK or _POINTS_BACK.search(plain))
            and before
            and before[0] == paragraph
            and not _boilerplate(before[1])
            and not cited_labels(sentence)
        ):
            sentence = f"{before[1]} {sentence}"
        found.append((own, sentence))
    unconditional = [read for own, read in found if not _CONDITIONAL.search(own)]
    return unconditional or [read for _, read in found]


_PARAGRAPH = re.compile(r"\n\s*\n")
# A sentence that opens a list of asks without a verb of asking ("现依…第四十五条提出：",
# "想提几件事：", "the following:"): each item after it is an ask (issue #14: numbered demands
# 一、二、三 asking different rights, of which only the first was heard).
_OPENS_LIST = re.compile(
    r"(提出|如下|以下|下列|几件事|几点|事项|诉求|几项)[^，。,；;]{0,6}:$"
    r"|\b(the following|as follows)\W*:$"
)
# A short message written as a letter (salutation, body, signature in paragraphs of their own):
# read sentence by sentence like a long one. Read whole, a greeting and a name beside one ask
# left every score near 0 ("致平台隐私团队：…请把频道里的这份简历删除。…马晨").
LETTER_MIN = 100  # weight


def letter_shaped(text: str) -> bool:
    # "\n" first: every short chat message pays for this look.
    return "\n" in text and weight(text) > LETTER_MIN and len(_PARAGRAPH.split(text.strip())) >= 3


# Where a reply quotes the mail it answers (not a forwarded letter, which is the message).
_QUOTED = re.compile(
    r"^\s*>|^-{2,}\s*original message|^—{2,}\s*原始邮件|^on [^\n]{0,80}wrote:\s*$"
    r"|^在[^\n]{0,60}写道[:：]\s*$",
    re.MULTILINE,
)
# A list item's opening: "(b)", "2.", "3)", "一、", "（二）", "- ", "• ".
_LIST_ITEM = re.compile(
    r"^\s*(\(?[a-h]\)|\(?\d{1,2}[.)、]|[一二三四五六七八九十]{1,2}[、.]|[（(][一二三四五六七八九十]{1,2}[)）]|[-•*·])\s*"
)
# An ask whose object is in the sentence before ("My job title is out of date. Could you update
# it to…?", "…的照片。请把它们删掉"): read with that sentence, whatever its length.
_POINTS_BACK = re.compile(
    r"\b(update|change|correct|fix|amend|delete|remove|erase|wipe|send|export|close|stop|restrict)"
    r"\w* (it|them|this|these|those)\b|(把|将)(它|它们|这些|那些|上述|以上)"
)
# A section title numbered like a list item ("一、基本事实", "三、律师意见", "(b) Background").
_HEADING = re.compile(
    r"^\s*(\(?[a-h]\)|\(?\d{1,2}[.)、]|[一二三四五六七八九十]{1,2}[、.]|[（(][一二三四五六七八九十]{1,2}[)）])"
    r"\s*[\u4e00-\u9fff]{0,6}(事实|依据|意见|背景|理由|事项|情况|经过|结论|概述|附件)\s*$"
    r"|^\s*(\(?[a-h]\)|\(?\d{1,2}[.)])\s*(the )?(facts|background|legal basis|our view|summary"
    r"|grounds|annex(es)?)[:.]?\s*$"
)
# An ask this short ("please stop.") is read with the one before; weight, so that a Chinese
# ask of twenty characters, which says what it asks, stands alone.
SHORT_ASK = 30
# Saying what is not asked is no ask ("I'm not asking you to delete past recordings").
_NOT_ASKING = re.compile(
    r"(无|没有|并无)(其他|其它|别的|任何)(请求|要求|申请)|\bno (further|other) requests?\b"
    r"|\bnot (making|asking|requesting|seeking)\b|\bnot at this stage\b|\bnot (a|making a) request"
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


# "本人现依据上述规定，请求贵司…": the law as the ground of the writer's own ask, not a
# citation of what it allows (the preamble that lists the rights of 第四章 is the citation).
_GROUND = re.compile(
    r"(依据|根据|依照|按照|基于|依)[^，。,；;]{0,30}?规定(的)?|\bunder the above\b"
)


def _boilerplate(sentence: str) -> bool:
    if _RESERVATION.search(sentence):
        return True
    if not _CITATION.search(_GROUND.sub("", sentence)):
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


# A subject that names what is asked: "Request for erasure…", "…access request", "删除申请".
_SUBJECT_ASKS = re.compile(
    r"\b(request|application|demand)s? (for|of|to)\b|\b(access|erasure|deletion|rectification"
    r"|portability|restriction|withdrawal|objection) request\b|(申请|请求|要求)(书|函)?$"
)


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
    title = normalise(subject).strip()
    if found == [] and title and _SUBJECT_ASKS.search(title):
        # A letter whose body only explains and whose subject is the ask ("Request for
        # erasure of meeting recordings - Article 17 GDPR").
        return [title], True
    return [joined(normalise(subject), body)], found is None


# Where a message's asks part: sentence ends, any comma before a word that adds an ask (另外,
# 顺便, also, and please …), a comma before the words a Chinese ask opens with (请, 把, 别 …),
# and an English "and"/"also" before a verb of
# asking. A unit (a short message, or a letter's sentence) with two asks is read clause by
# clause too (classifiers.model): a bag of words over "fix my name and stop the newsletter"
# gives each ask half the evidence.
_CLAUSE_BREAK = re.compile(
    r"[。！？!?；;\n]+|(?<![a-z]\.[a-z])(?<!\bart)(?<!\bno)(?<!\bvs)(?<!\bcf)\.(?=\s)"
    r"|[，,]\s*(?=请|麻烦|帮|把|再|也|还|别|不要|能不能|能否|可否|给我|发我|我(?:要|想|希望)|以后|同时|然后|之后|随后|接着)"
    r"|,\s*(?=(?:and|also|plus|but|then|please|pls|plz|could|can|would|and also|oh and|btw)\b)"
    r"|(?<=[\w)\]'\"])(?<!\byou)(?<!\bplease)(?<!\bcan)(?<!\bpls)"
    r"\s+(?=(?:and|also|plus|then|but also|and also|and then)\s+(?:to\s+)?"
    r"(?:please|pls|plz|kindly|could|can|would|stop|delete|remove|erase|wipe|send|give|tell|have|"
    r"fix|correct|update|change|close|export|transfer|unsubscribe|opt|let|make|don'?t|do not|"
    r"i (?:want|need|would|'d)|i'd|explain|show|provide|cancel|deactivate|restrict|pause)\b)"
    r"|(?=另外|顺便|此外|还有就是|同时请|同时麻烦|然后(?:请|把|帮|麻烦))"
)
CLAUSE_MIN = 6  # weight (a Chinese character counts double): shorter clauses are not read alone


# "…but don't delete them", "账号我还要继续用": a clause that keeps something asks for no
# deletion, whatever its words; read alone it would.
_KEEPS = re.compile(
    r"\b(don'?t|do not|no need to|not)\s+(\w+\s+)?(delete|erase|remove|close|wipe|cancel)"
    r"|\bkeep\b|(不要|别|不用|无需|不必|不需要)[^,，。]{0,4}(删|注销|清|关)|保留|(还要|继续)(用|使用)"
)


def clauses(text: str) -> list[tuple[int, int]]:
    """Character spans of the clauses of a normalised unit, when it has a word that joins a
    second ask (_JOINS) and two or more clauses worth reading alone (at least CLAUSE_MIN);
    [] otherwise. A clause that says what is *not* asked
    or what to keep is not read alone, nor a condition and what follows it in its sentence
    ("if you shared it, tell me with whom")."""
    if not _JOINS.search(text):
        return []  # most messages: one ask, or none, and nothing that joins a second
    spans: list[tuple[int, int, bool]] = []  # start, end, whether a sentence ends after it
    start = 0
    for found in _CLAUSE_BREAK.finditer(text):
        spans.append((start, found.start(), bool(_SENTENCE_BREAK.match(found.group(0)))))
        start = found.end()
    spans.append((start, len(text), True))
    kept = []
    conditional = False
    for a, b, ends in spans:
        piece = text[a:b]
        stripped = piece.strip(" \t,，、:：-")
        if _CONDITIONAL.search(stripped):
            conditional = True
        skip = conditional or _NOT_ASKING.search(piece) or _KEEPS.search(piece)
        if ends:
            conditional = False
        if skip or weight(stripped) < CLAUSE_MIN:
            continue
        lead = len(piece) - len(piece.lstrip(" \t,，、:：-"))
        kept.append((a + lead, a + lead + len(stripped)))
    return kept if len(kept) > 1 else []


# The words that join a second ask to a first: without one, a unit is read whole only (a
# clause costs a second pass of the textcat, and most messages have none of these).
_JOINS = re.compile(
    r"\b(and|also|then|plus|too|btw|another|additionally|as well|one more|after that|afterwards"
    r"|while you're at it|separately)\b"
    r"|另外|顺便|还有|同时|然后|之后|随后|接着|此外|再|也|并|以及|顺带"
)
_SENTENCE_BREAK = re.compile(r"[。！？!?；;\n.]")


# A question about how, when or where (not "can you …?", which asks for the thing itself).
_HOW = re.compile(
    r"^\W*(what|how|when|where|why|which|is there a way|do i|does|will)\b"
    r"|\b(how (do|can|long|would)|what happens|where is|is there a way)\b"
    r"|怎么|怎样|如何|多久|多长时间|多少天|几天|什么时候|哪里|在哪|哪儿|进度|需要(准备|提供)什么"
    r"|(还)?在不在|还在吗|还会(在|保留)"
)


# A sentence that says it adds an ask of its own beside the one before it.
_ANOTHER_ASK = re.compile(
    r"^\W*(and )?(second|secondly|third|thirdly|finally|lastly)\b|\b(please|kindly) also\b"
    r"|^\W*(in addition|additionally|also|furthermore|moreover|separately|secondly|second,"
    r"|另外|此外|同时|其次|第二|还请|并请|此外还)"
    r"|\b(i also|we also|also (ask|request|want|like)|as well as this)\b"
)
# The writer makes a complaint here and now (not "I reserve the right to complain", not "this
# letter is not a complaint").
_MAKES_COMPLAINT = re.compile(
    r"\b(this|this letter|this email|this message) is (a|my|our) (formal )?complaint\b"
    r"|\bi (hereby |now |wish to |want to |would like to )?(make|lodge|file|raise|submit) a "
    r"(formal )?complaint\b|\bi am (now |hereby )?(complaining|making a (formal )?complaint)\b"
    r"|(特此|现|正式|我要|本人要|我现在)投诉|本人(正式|现)?(就此)?(向[^，。,]{0,12})?(提出)?投诉"
)


# The account stays: whatever is deleted, it is not the account ("delete it all except the
# account itself", "账号我还要继续用").
_KEEPS_ACCOUNT = re.compile(
    r"\b(except|apart from|but not|other than) (for )?(the|my) (account|login)\b"
    r"|\b(keep|keeping|leave|leaving) (the|my) (account|login)\b|\b(account|login) (open|active)\b"
    r"|\bnot (close|delete|cancel) (the|my) account\b|\bstill (use|using|need) (the|my) account\b"
    # "I want my user account itself to remain open", "her account is to remain active".
    r"|\baccount\b[^.;!?]{0,25}?\b(remain|stay)s?\b[^.;!?]{0,12}?\b(open|active|as it is|in place)"
    r"|\b(i will|i'll|i want to|i'd like to|i wish to) keep (using )?(the|my) account\b"
    r"|(账号|帐号|账户)[^,，。]{0,6}(保留|留着|还要|还会|继续|不注销|不用注销|不要注销|别注销|保持不变)"
    r"|不(需要|要|用|想|打算|准备)?注销|无意注销"
)


# A sentence that tells of a request made before ("On 2 September I sent you a request under
# Article 15", "本人于十月八日提交了删除申请"): its article is history, not what is asked now.
_PAST_REQUEST = re.compile(
    r"\b(i|we|my client|our client)( have| had)? (sent|submitted|made|filed|lodged|emailed|"
    r"raised)\b[^.;!?]{0,25}?\b(request|application|letter)"
    r"|\b(i|we|my client|our client)( have| had)? (asked|requested) (you|your)\b"
    r"|\b(i|we)( have| had)? (wrote|written) to you\b[^.;!?]{0,40}?\b(request|ask)"
    r"|(曾|已)(经)?(于|在)?[^，。,；;]{0,20}?(申请|提出|提交)"
    r"|\b(my|our|the) (earlier|previous|original|first|last) (request|letter|application)\b"
    r"|(本人|我|委托人)[^，。,；;]{0,20}?(已|曾)?(于|在)[^，。,；;]{0,25}?(提交|提出|发送|发出)了?"
    r"|(此前|之前|上次|曾经)[^，。,；;]{0,10}(提交|提出|发送|发出)"
)


# …unless it asks again in the same breath ("I asked you in May and I now ask again").
_ASKS_AGAIN = re.compile(r"\b(hereby|again|now|please|repeat)\b|再次|重新|现|特此")


def tells_a_past_request(text: str) -> bool:
    """The normalised sentence tells of a request made before."""
    told = _PAST_REQUEST.search(text) or _DONE.search(text)
    return bool(told) and not _ASKS_AGAIN.search(text)


# A request of before that we have carried out ("告知本人的账号注销申请已经办结", "my request
# has been completed"): a letter that says only this confirms, and asks nothing.
_DONE = re.compile(
    r"(申请|请求|要求)[^，。,；;]{0,6}(已经?|业已|均已)(办结|完成|处理完毕|办理完毕)"
    r"|\b(request|application)\b[^.;!?]{0,20}\b(has|have|was) been (completed|closed|fulfilled"
    r"|processed|actioned|carried out)\b"
)


def tells_it_done(text: str) -> bool:
    """The normalised sentence says a request of before was carried out."""
    return bool(_DONE.search(text)) and not _ASKS_AGAIN.search(text)


# A letter an organisation writes about its business with us (a vendor questionnaire, a DPA,
# an impact assessment, a police or court request for another account, a renewal, an invoice)
# and in which no person speaks of their own data: not a rights request, however much of PIPL
# or GDPR it cites (#14: these came out inquiry, erasure or withdraw_consent).
_BUSINESS = re.compile(
    r"我司|我局|我院|我队|我大队|我方|贵我双方|供应商|采购|合作伙伴|代理商|协助调(取|查)|调查函"
    r"|调取|续签|发票|报价|合同纠纷|违约|保全|\b(vendor|supplier|procurement|sub-?processors?|data "
    r"processing agreement|tender|invoice|law enforcement|subscriber records|purchase order)\b"
)
# A person of the letter's own: the writer, a client, an employee whose data it is. Never the
# staff of a compliance questionnaire (员工培训, 员工人数).
_PERSONAL = re.compile(
    r"本人|我(?![司局院队方们大])|委托人|当事人|员工(?!培训|手册|人数|数量|规模|守则)|职工|监护|孩子"
    r"|家属|近亲属|去世|过世"
    r"|\b(i|my|me|mine|our client|employee|on (his|her|their) behalf|passed away)\b"
)
# A law firm writing for a company ("本所受华岭教育科技有限公司委托"): its 委托人 is no person.
_COMPANY_CLIENT = re.compile(
    r"受[^，。,；;]{0,30}(公司|集团|企业|学校|医院|银行)(之|的)?委托"
    r"|\bwe act for [^.;]{0,40}\b(ltd|limited|inc|gmbh|plc|llc|company)\b"
)
_CLIENT_WORDS = re.compile(r"委托人|当事人|\bour client\b")


def business_letter(text: str) -> bool:
    """The normalised letter is an organisation's business, no person's own data."""
    if _COMPANY_CLIENT.search(text):
        return not _PERSONAL.search(_CLIENT_WORDS.sub("", text))
    return bool(_BUSINESS.search(text)) and not _PERSONAL.search(text)


def keeps_account(text: str) -> bool:
    """The normalised unit says the account stays (an erasure, not an account deletion)."""
    return bool(_KEEPS_ACCOUNT.search(text))


def adds_an_ask(text: str) -> bool:
    """The normalised sentence says it asks for something more ("in addition", "另外")."""
    return bool(_ANOTHER_ASK.search(text))


def makes_complaint(text: str) -> bool:
    """The normalised sentence makes a complaint now; never a reservation ("保留投诉的权利")."""
    return bool(_MAKES_COMPLAINT.search(text)) and not _RESERVATION.search(text)


# A phrase said as a supposition: "if I close my account", "注销账号以后…会".
_SUPPOSED_BEFORE = re.compile(
    r"(\bif|\bwhen|\bonce|\bafter|\bsuppose)\W*(\w+\W+){0,3}\W*$"
    r"|(如果|假如|要是|若是|一旦|倘若)[^，。,；;！!？?]{0,6}$"
)
_SUPPOSED_AFTER = re.compile(r"^\W*(以后|之后|后|的话)")


def hypothetical(text: str, start: int, end: int) -> bool:
    """The phrase at text[start:end] is supposed, not asked for ("if I close my account, what
    happens to…", "注销账号以后消息还在吗")."""
    return bool(_SUPPOSED_BEFORE.search(text[max(0, start - 30) : start])) or bool(
        _SUPPOSED_AFTER.search(text[end : end + 4])
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
