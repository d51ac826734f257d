"""Bytes to text for mail as it really arrives here: GBK as often as UTF-8, labels often wrong.

Rules, in order (each is a case that broke somebody's parser):
1. Labels are normalised: gb2312/gbk/cp936 and friends decode as gb18030 (their superset),
   big5 as big5hkscs; an unknown label counts as no label.
2. Bytes that are valid UTF-8 (and not plain ASCII) are UTF-8, whatever the label says: Chinese
   GBK text is practically never valid UTF-8, while "UTF-8 labelled latin-1/gb2312" is common.
3. A declared multi-byte charset that decodes strictly is believed, unless a Chinese label
   gives private-use characters (U+E000-U+F8FF: Big5 read as GBK decodes "strictly" into
   them): then the other Chinese charset is tried, then the detector, the label last.
4. A declared single-byte charset (latin-1, windows-125x) decodes anything, so it proves
   nothing: the detector chooses between it and the Chinese encodings.
5. No label, or a label that fails: the detector (charset-normalizer), choosing among GB18030,
   Big5-HKSCS and the declared single-byte charset (else windows-1252).
6. Mostly UTF-8 with a few stray latin-1 bytes (mail pieced together by a client): UTF-8 with
   the strays read as windows-1252.
7. Last resort: UTF-8 with U+FFFD replacements. Never an exception, never dropped text.
8. Control characters and spaces inside a label are dropped (a NUL in "gb\0" + "2312" made
   codecs.lookup raise ValueError). A label that names no mail charset counts as no label:
   `undefined` (a codec that raises UnicodeError on any input) and Python's own non-mail
   codecs (base64, unicode-escape, idna, ...).
"""

from __future__ import annotations

import codecs
import re
from email.header import Header, decode_header

from charset_normalizer import from_bytes

_ALIASES = {
    "gb2312": "gb18030",
    "gbk": "gb18030",
    "x-gbk": "gb18030",
    "cp936": "gb18030",
    "ms936": "gb18030",
    "euc-cn": "gb18030",
    "x-euc-cn": "gb18030",
    "iso-gb2312": "gb18030",
    "gb_2312-80": "gb18030",
    "x-gb2312": "gb18030",
    "chinese": "gb18030",
    "csgb2312": "gb18030",
    "big5": "big5hkscs",
    "x-big5": "big5hkscs",
    "big-5": "big5hkscs",
    "cn-big5": "big5hkscs",
    "cp950": "big5hkscs",
    "ms950": "big5hkscs",
    "shift-jis": "cp932",
    "shift_jis": "cp932",
    "sjis": "cp932",
    "x-sjis": "cp932",
    "ks_c_5601-1987": "cp949",
    "unicode-1-1-utf-7": "utf-7",
    "utf8": "utf-8",
    "x-unknown": "",
    "unknown-8bit": "",
    "x-user-defined": "",
}

# Python codecs that are no mail charset: `undefined` raises on any input, the escape codecs
# turn backslashes into code points (lone surrogates among them), idna/punycode raise on long
# input. (Bytes-to-bytes codecs such as base64 are refused by `_is_text_encoding`.)
_NOT_MAIL_CHARSETS = frozenset(
    {"undefined", "unicode-escape", "raw-unicode-escape", "idna", "punycode"}
)
_LABEL_NOISE = re.compile(r"[\x00-\x20\x7f]")

# Encodings in which every byte sequence is valid: a successful decode proves nothing.
_SINGLE_BYTE_PREFIXES = ("latin", "iso8859", "cp125", "cp437", "cp850", "mac", "koi8", "ascii")
_CHINESE = ("gb18030", "big5hkscs")
# Japanese mail is often labelled ISO-2022-JP while the bytes are Shift_JIS.
_JAPANESE = ("cp932", "euc_jp", "shift_jis")


def normalise_charset(label: str | None) -> str | None:
    """A Python codec name for a MIME charset label, or None if unknown/absent."""
    if not label:
        return None
    cleaned = _LABEL_NOISE.sub("", label).strip("\"'").lower()
    cleaned = _ALIASES.get(cleaned, cleaned)
    if not cleaned or len(cleaned) > 64:
        return None
    try:
        info = codecs.lookup(cleaned)
    except (LookupError, ValueError):  # ValueError: "embedded null character"
        return None
    if not getattr(info, "_is_text_encoding", True) or info.name in _NOT_MAIL_CHARSETS:
        return None
    return info.name


def _is_single_byte(codec: str) -> bool:
    return codec.replace("-", "").replace("_", "").startswith(_SINGLE_BYTE_PREFIXES)


def _try(payload: bytes, codec: str) -> str | None:
    try:
        return payload.decode(codec)
    except (UnicodeError, LookupError, ValueError):
        return None


def _private_use(text: str) -> bool:
    """Characters of the Basic Multilingual Plane's private-use area: no one writes them in
    mail; they come out of bytes decoded with the wrong Chinese charset."""
    return any("\ue000" <= ch <= "\uf8ff" for ch in text)


def _readable(payload: bytes, codec: str) -> str | None:
    """`payload` decoded strictly by `codec` into text without private-use characters."""
    text = _try(payload, codec)
    return None if text is None or _private_use(text) else text


def decode_bytes(payload: bytes, declared: str | None = None) -> tuple[str, str]:
    """Decode `payload`; returns (text, the codec actually used)."""
    codec = normalise_charset(declared)
    if codec in ("utf-16", "utf-16-le", "utf-16-be", "utf-32", "utf-7") or (
        codec is not None and codec.startswith("iso2022")
    ):
        text = _try(payload, codec)
        if text is not None:
            return text, codec
    if payload.isascii():
        if b"\x1b$" in payload or b"\x1b(" in payload:  # ISO-2022-JP escapes, labelled or not
            return _iso2022jp_as_cp932(payload), "iso2022_jp(cp932)"
        return payload.decode("ascii"), "ascii"
    text = _try(payload, "utf-8")
    if text is not None:
        return text, "utf-8"
    if codec and not _is_single_byte(codec):
        text = _try(payload, codec)
        if text is not None and not (codec in _CHINESE and _private_use(text)):
            return text, codec
        for other in _CHINESE:  # a Chinese label that gave private-use characters is wrong
            if text is not None and other != codec and (found := _readable(payload, other)):
                return found, other
    japanese = codec in _JAPANESE or (codec or "").startswith("iso2022_jp")
    if japanese and (text := _try(payload, "cp932")) is not None:
        return text, "cp932"  # Shift_JIS labelled ISO-2022-JP
    if sum(b > 0x7F for b in payload) <= 24:
        # Too short for statistics (a name, a subject word); simplified Chinese is likeliest
        # here, then traditional (short Big5 read as GB18030 gives private-use characters).
        for chinese in _CHINESE:
            if (text := _readable(payload, chinese)) is not None:
                return text, chinese
    family = _JAPANESE if japanese else ()
    candidates = [*family, *_CHINESE, codec if codec and _is_single_byte(codec) else "cp1252"]
    guess = _detect(payload, candidates)
    if guess is not None:
        return guess
    mixed = _mostly_utf8(payload)
    if mixed is not None:
        return mixed, "utf-8+cp1252"
    if codec:
        text = _try(payload, codec)
        if text is not None:
            return text, codec
    return payload.decode("utf-8", errors="replace"), "utf-8-replace"


def _iso2022jp_as_cp932(payload: bytes) -> str:
    """ISO-2022-JP as Microsoft sends it (CP50220: NEC specials like ①), which Python's
    iso2022 codecs refuse: transcode the JIS X 0208 pairs to Shift_JIS and decode as cp932."""
    out = bytearray()
    mode = "ascii"
    i = 0
    while i < len(payload):
        if payload[i] == 0x1B and i + 2 < len(payload):
            escape = payload[i + 1 : i + 3]
            mode = {b"$B": "kanji", b"$@": "kanji", b"(I": "kana"}.get(escape, "ascii")
            i += 3
            continue
        byte = payload[i]
        if mode == "kanji" and byte > 0x20 and i + 1 < len(payload):
            j1, j2 = byte, payload[i + 1]
            s1 = ((j1 + 1) >> 1) + (0x70 if j1 <= 0x5E else 0xB0)
            s2 = j2 + (0x1F if j2 <= 0x5F else 0x20) if j1 & 1 else j2 + 0x7E
            out += bytes([s1 & 0xFF, s2 & 0xFF])
            i += 2
            continue
        out.append(byte | 0x80 if mode == "kana" and 0x21 <= byte <= 0x5F else byte)
        i += 1
    return out.decode("cp932", errors="replace")


def _detect(payload: bytes, candidates: list[str]) -> tuple[str, str] | None:
    # Only the encodings this desk receives: left free, the detector calls short Big5 text
    # Shift_JIS and short GBK text Korean.
    best = from_bytes(payload, cp_isolation=candidates).best()
    if best is None:
        return None
    # charset-normalizer calls its winner by its own name; trust only what decodes strictly.
    codec = normalise_charset(best.encoding) or best.encoding
    if codec in ("gb2312", "gbk"):
        codec = "gb18030"
    text = _try(payload, codec)
    if text is None:
        return None
    return text, codec


def _mostly_utf8(payload: bytes) -> str | None:
    """UTF-8 with stray single bytes read as windows-1252, if the strays are a minority."""
    text = payload.decode("utf-8", errors="surrogateescape")
    strays = sum(1 for ch in text if "\udc80" <= ch <= "\udcff")
    multibyte = sum(1 for ch in text if ord(ch) > 0x7F) - strays
    if multibyte == 0 or strays > multibyte:
        return None
    return "".join(
        bytes([ord(ch) - 0xDC00]).decode("cp1252", errors="replace")
        if "\udc80" <= ch <= "\udcff"
        else ch
        for ch in text
    )


# Header values are read up to this many characters: the email package's decode_header is
# quadratic in the number of encoded words (a 600 KB subject of them took 10 s).
MAX_HEADER_CHARS = 32 * 1024


def decode_header_value(value: str | Header | None, hint: str | None = None) -> str:
    """A header as one line of text: RFC 2047 encoded words and raw 8-bit bytes in any charset.

    `hint` is the message's own declared charset, the best guess for unlabelled 8-bit bytes.
    """
    if not value:
        return ""
    if isinstance(value, str) and len(value) > MAX_HEADER_CHARS:
        value = value[:MAX_HEADER_CHARS]
    try:
        chunks = decode_header(value)
    except Exception:  # malformed encoded words: take the header as it stands
        chunks = [(value, None)]
    parts: list[str] = []
    for chunk, charset in chunks:
        if isinstance(chunk, str):
            try:
                # compat32 keeps raw 8-bit header bytes as surrogate escapes: recover them.
                chunk = chunk.encode("ascii", errors="surrogateescape")
            except UnicodeEncodeError:  # already real text (e.g. an RFC 2231 filename)
                parts.append(chunk)
                continue
        # compat32 labels raw 8-bit header bytes "unknown-8bit": that is no label at all.
        parts.append(decode_bytes(chunk, charset if normalise_charset(charset) else hint)[0])
    # Folded headers and CR/LF smuggled into encoded words both become single spaces.
    return " ".join("".join(parts).split())
