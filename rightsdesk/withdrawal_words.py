"""What a requester's reply says about withdrawing: a request withdrawn (`says_cancel`), or a
withdrawal taken back (`says_undo`). Pure text rules, read by the mail pipeline, the chat and
the follow-up reader alike; what a withdrawal then does is rightsdesk.withdrawal's."""

from __future__ import annotations

import re

# What a requester writes, alone, to withdraw a request (a reply to our mail, or in the chat).
CANCEL_WORDS = frozenset(
    # Not "撤销": that is how a requester takes a withdrawal back (rightsdesk.withdrawal).
    {"cancel", "cancel my request", "stop", "取消", "取消请求", "撤回", "撤回请求", "算了"}
    | {"取消請求", "撤回請求"}  # the same, in traditional characters (not 撤銷: an undo)
    | {"please cancel", "please cancel my request", "please cancel it", "cancel it"}
    | {"please withdraw my request", "withdraw my request", "i want to cancel my request"}
    | {"i would like to cancel my request", "i'd like to cancel my request"}
    | {"请取消", "请取消我的请求", "取消申请", "撤回申请", "请撤回", "请撤回我的申请", "我要取消"}
    | {"請取消", "請取消我的請求", "取消申請", "撤回申請", "請撤回", "請撤回我的申請"}
    | {"我不想删除了", "我不想刪除了", "不用删除了", "不用刪除了", "不用了"}
)
# What may follow the cancel sentence without making it another message: a reason, thanks.
# A closed list, so "cancel. And delete my other address" is read as a message, not a
# withdrawal (a withdrawal stops the work: only what plainly says so counts).
_CANCEL_AFTERWORDS = frozenset(
    {"i no longer need it", "i don't need it anymore", "i do not need it anymore"}
    | {"i changed my mind", "i've changed my mind", "never mind", "thanks", "thank you"}
    | {"我不需要了", "不需要了", "我改主意了", "谢谢", "謝謝", "我不想刪除了", "我不想删除了"}
)
_CANCEL_CLAUSES = re.compile(r"[.!?。！？,，;；]+")
_ASKS = re.compile(r"删|刪|改|查|导出|導出|发|發|请|請|delete|erase|change|send|access|copy", re.I)
# A sign-off under the text: "-- " and what follows, or a last short paragraph (a name).
_SIGNATURE = re.compile(r"\n(?:-- ?|—+|__+)\n.*\Z", re.DOTALL)


def _clause(text: str) -> str:
    folded = " ".join(text.replace("\u2019", "'").split()).lower()
    return folded.strip(" \"'“”「」")


def _without_signature(text: str) -> str:
    text = _SIGNATURE.sub("", text.strip())
    paragraphs = [p.strip() for p in re.split(r"\n\s*\n", text) if p.strip()]
    if len(paragraphs) > 1:
        last = paragraphs[-1].splitlines()
        if len(last) <= 2 and all(_signs_off(line) for line in last):
            paragraphs = paragraphs[:-1]  # "张三", "Thanks,\nZhang San"
    return " ".join(" ".join(paragraphs).split())


def _signs_off(line: str) -> bool:
    """A line of a sign-off: a name or a greeting, short and asking for nothing."""
    line = line.strip()
    cjk = sum("\u3400" <= ch <= "\u9fff" for ch in line)
    short = len(line) <= 24 and len(line.split()) <= 3 and cjk <= 4
    return short and not _ASKS.search(line) and not any(ch.isdigit() for ch in line)


def says_cancel(text: str) -> bool:
    """The reply's own text (quoted history already removed: `InboundMessage.text`) asks to
    withdraw: a cancel sentence, maybe followed by a reason or thanks, and a signature."""
    return _says(text, CANCEL_WORDS, _CANCEL_AFTERWORDS)


def _says(text: str, words: frozenset[str], afterwords: frozenset[str]) -> bool:
    """`text` is one of `words`, maybe followed by some of `afterwords`, and a signature."""
    clauses = [c for c in map(_clause, _CANCEL_CLAUSES.split(_without_signature(text))) if c]
    if not clauses or clauses[0] not in words:
        return False
    return all(c in words or c in afterwords for c in clauses[1:])


# What a requester writes, alone, to take a withdrawal back.
UNDO_WORDS = frozenset(
    {"undo", "undo cancel", "撤销", "撤销取消", "恢复", "恢复请求", "不要取消"}
    | {"撤銷", "撤銷取消", "恢復", "恢復請求"}  # the same, in traditional characters
    | {"please undo", "undo my cancellation", "please continue", "请继续", "請繼續"}
    | {"请恢复我的请求", "請恢復我的請求", "我不取消了"}
)
# What may follow the undo sentence: a reason or thanks (a closed list, as for cancelling).
_UNDO_AFTERWORDS = frozenset(
    {"i changed my mind", "i've changed my mind", "sorry", "thanks", "thank you"}
    | {"我改主意了", "我还是要删除", "我還是要刪除", "抱歉", "谢谢", "謝謝", "不好意思"}
)


def says_undo(text: str) -> bool:
    """The reply takes a withdrawal back: an undo sentence, maybe with a reason or thanks,
    and a signature (the same reading as `says_cancel`)."""
    return _says(text, UNDO_WORDS, _UNDO_AFTERWORDS)
