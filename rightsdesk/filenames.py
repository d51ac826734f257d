"""A file name we can write anywhere: into a mail's Content-Disposition, a download's header,
a package, a ZIP. Names come from requesters, staff and other systems, and any of them may be
"../../etc/cron.d/x", "..\\evil.bat", or "gnp.exe" written backwards behind U+202E."""

from __future__ import annotations

import re
import unicodedata

# Control characters, folder separators, characters Windows refuses, and the invisible
# direction marks and overrides that make "cod.exe" read as "exe.doc".
_UNSAFE = re.compile(r"[\x00-\x1f\x7f/\\:*?\"<>|\u200e\u200f\u202a-\u202e\u2066-\u2069]+")
MAX_CHARS = 120


def safe_name(name: str | None, fallback: str = "file") -> str:
    """The last part of `name` with no folders, control, reserved or direction characters,
    at most 120 characters (the extension kept); `fallback` when nothing is left."""
    base = re.split(r"[/\\]", unicodedata.normalize("NFC", name or ""))[-1]
    base = _UNSAFE.sub("_", base).strip(" .")
    if not base or set(base) <= {"_", "."}:
        base = fallback
    if len(base) > MAX_CHARS:
        stem, dot, ext = base.rpartition(".")
        keep = MAX_CHARS - 10 - len(ext)
        base = (stem[:keep] + dot + ext) if dot and len(ext) <= 10 else base[:MAX_CHARS]
    return base
