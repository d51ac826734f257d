"""The languages we answer in, and which one a message was written in.

`zh` is simplified Chinese (mainland), `zh-Hant` traditional Chinese (Taiwan, Hong Kong, Macau),
`en` English. A ticket keeps the language of its request (or the one the requester chose): the
classifier only tells Chinese from English, the script is told here.
"""

from __future__ import annotations

import re
from typing import Final

import zhconv

LANGS: Final = ("zh", "zh-Hant", "en")
_HAN = re.compile(r"[\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff]")
_SAMPLE = 400  # Han characters: enough to tell the script, cheap to convert (~1 ms)


def normalise(code: str | None) -> str | None:
    """One of LANGS from what people and clients write: zh-CN, zh_TW, zh-hant-HK, en-GB, ..."""
    if not code:
        return None
    value = code.strip().replace("_", "-").lower()
    if value.startswith("zh"):
        hant = ("hant", "tw", "hk", "mo")
        return "zh-Hant" if any(part in hant for part in value.split("-")[1:]) else "zh"
    if value.startswith("en"):
        return "en"
    return None


def is_traditional(text: str) -> bool:
    """More of the text's Han characters are traditional-only than simplified-only.

    Characters common to both scripts (的, 我, 请求's 求) count for neither; a tie (no Han
    characters, or as many of each) is simplified, the mainland default.
    """
    han = "".join(_HAN.findall(text[: _SAMPLE * 8]))[:_SAMPLE]  # a long letter: its start
    if not han:
        return False
    as_simplified = zhconv.convert(han, "zh-hans")
    as_traditional = zhconv.convert(han, "zh-hant")
    return _changed(han, as_simplified) > _changed(han, as_traditional)


def written_in(detected: str | None, text: str) -> str | None:
    """The language a request was written in: the classifier's `zh` is refined by script."""
    found = normalise(detected)
    if found == "zh" and is_traditional(text):
        return "zh-Hant"
    return found


def _changed(before: str, after: str) -> int:
    if len(before) == len(after):
        return sum(a != b for a, b in zip(before, after, strict=True))
    return abs(len(before) - len(after)) or 1  # a phrase was rewritten: it changed
