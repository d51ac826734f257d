"""Personal identifiers in free text: found, validated, and masked wherever text is shown.

Mainland resident ID numbers (GB 11643-1999: 17 digits and an ISO 7064 MOD 11-2 check
character) are the most sensitive thing people paste into a request; they are masked in every
view and log line. Only numbers whose check character is right count: a random 18-digit
order number stays as it is.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterator
from dataclasses import dataclass

_WEIGHTS = (7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2)
_CHECK = "10X98765432"

_ID_NUMBER = re.compile(
    r"(?<![0-9A-Za-z])([1-9]\d{5}(?:18|19|20)\d{2}(?:0[1-9]|1[0-2])\d{2}\d{3}[\dXx])(?![0-9A-Za-z])"
)
_MOBILE = re.compile(r"(?<![0-9])(?:\+?86[\s-]?)?(1[3-9]\d)[\s-]?(\d{4})[\s-]?(\d{4})(?![0-9])")
_EMAIL = re.compile(r"[A-Za-z0-9._%+-]+@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*\.[A-Za-z]{2,}")
_TICKET = re.compile(r"\bPRIV-\d{4}-\d{6,}\b", re.IGNORECASE)
_USERNAME = re.compile(
    r"(?:用户名|用戶名|账号名|帳號名|username|user name|user id|login)\s*[:：是为]?\s*"
    r"([A-Za-z0-9_.\-]{3,64})",
    re.IGNORECASE,
)


def valid_id_number(candidate: str) -> bool:
    """True for an 18-character mainland resident ID number with a correct check character."""
    if len(candidate) != 18 or not candidate[:17].isdigit():
        return False
    total = sum(int(digit) * weight for digit, weight in zip(candidate[:17], _WEIGHTS, strict=True))
    return _CHECK[total % 11] == candidate[17].upper()


def mask_id_number(number: str) -> str:
    """110105********002X: the region and the last four stay, the birth date goes."""
    return number[:6] + "*" * 8 + number[14:]


def mask_identifiers(text: str) -> str:
    """The text with every valid resident ID number masked."""
    return _ID_NUMBER.sub(
        lambda m: mask_id_number(m.group(1)) if valid_id_number(m.group(1)) else m.group(0), text
    )


# A one-time code: six digits standing alone (not inside a longer number or a ticket id).
# `\d` is any decimal digit: a Chinese input method types full-width ones ("７５６６８０").
_CODE = re.compile(r"(?<![\d*])(?<!PRIV-\d{4}-)\d{6}(?![\d*])", re.IGNORECASE)
# ... or written in groups: one space or dash between digits ("756 680", "75-66-80"), the
# whole six digits standing alone (not a part of "138 0013 8000" or of a date).
_CODE_SEPARATOR = r"[ \u3000\-\uff0d\u2010-\u2015\u2212]"
_GROUPED_CODE = re.compile(
    rf"(?<![\d*])(?<!\d{_CODE_SEPARATOR})(?<!PRIV-\d{{4}}-)"
    rf"\d(?:{_CODE_SEPARATOR}?\d){{5}}(?![\d*])(?!{_CODE_SEPARATOR}\d)",
    re.IGNORECASE,
)


def find_code(text: str) -> str | None:
    """The first code-shaped number in `text` (six digits standing alone, else six in
    groups), as the six ASCII digits a code is compared as: NFKC first, so full-width digits
    and spaces count as what they look like. Ticket ids carry six digits too ("code for
    PRIV-2026-000001: 123456"): they are skipped."""
    normal = _TICKET.sub(" ", unicodedata.normalize("NFKC", text))
    found = _CODE.search(normal) or _GROUPED_CODE.search(normal)
    if found is None:
        return None
    return "".join(str(unicodedata.digit(c)) for c in found.group(0) if c.isdigit())


def typed_code(field: str) -> str:
    """What was typed into a code field, as the ASCII digits a code is compared as: NFKC
    (full-width digits from a Chinese input method), every other character dropped (spaces,
    dashes), at most six."""
    normal = unicodedata.normalize("NFKC", field)
    return "".join(str(unicodedata.digit(c)) for c in normal if c.isdecimal())[:6]


def mask_codes(text: str) -> str:
    """Six digits standing alone, the shape of our verification codes, become ******, and
    six in groups ("756 680") too: a code in a view (our code mail, the requester's reply)
    could still be used. A six-digit postal code is masked too; better that than a live
    code on a screen."""
    return _CODE.sub("******", _GROUPED_CODE.sub("******", text))


def mask_for_display(text: str) -> str:
    """Everything a view masks in message text: ID numbers and codes."""
    return mask_codes(mask_identifiers(text))


@dataclass(frozen=True)
class Identifier:
    label: str  # EMAIL | MOBILE | ID_NUMBER | TICKET | USERNAME
    text: str  # normalised; ID numbers masked
    start: int
    end: int

    def as_dict(self) -> dict[str, object]:
        return {"label": self.label, "text": self.text, "start": self.start, "end": self.end}


def find_identifiers(text: str) -> list[Identifier]:
    """Every identifier in the text, in order. ID numbers are returned masked."""
    found: list[Identifier] = list(_scan(text))
    return sorted(found, key=lambda i: (i.start, i.label))


def _scan(text: str) -> Iterator[Identifier]:
    for m in _ID_NUMBER.finditer(text):
        if valid_id_number(m.group(1)):
            yield Identifier("ID_NUMBER", mask_id_number(m.group(1).upper()), m.start(1), m.end(1))
    for m in _MOBILE.finditer(text):
        yield Identifier("MOBILE", "".join(m.groups()), m.start(), m.end())
    for m in _EMAIL.finditer(text):
        yield Identifier("EMAIL", m.group(0).lower(), m.start(), m.end())
    for m in _TICKET.finditer(text):
        yield Identifier("TICKET", m.group(0).upper(), m.start(), m.end())
    for m in _USERNAME.finditer(text):
        yield Identifier("USERNAME", m.group(1), m.start(1), m.end(1))
