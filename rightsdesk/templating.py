"""Every sentence we send, from the template tree (rightsdesk/templates/), in zh, zh-Hant, en.

    kind.<lang>.j2          a mail notice (subject and body blocks), also the chat's notices
    chat.<lang>.j2          the bot's sentences, one block each (Templates.say)
    digest.<lang>.j2        the DPO's daily digest, one block per sentence (Templates.phrase)
    names.<lang>.j2         request type and status names (Templates.name, type_names)
    replies/NAME.<lang>.j2  canned replies (Templates.canned, replies)
    _signoff.<lang>.j2      under every mail, text and HTML alike
    _layout.html.j2         the HTML part

A company's folder (outbound.templates_dir) overrides any file by its relative path.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from jinja2 import ChoiceLoader, Environment, FileSystemLoader, StrictUndefined

from rightsdesk.languages import LANGS
from rightsdesk.models import RequestType

BUILTIN_TEMPLATES = Path(__file__).parent / "templates"


@dataclass(frozen=True)
class Rendered:
    subject: str
    text: str
    html: str


@dataclass(frozen=True)
class OutgoingAttachment:
    """A file we send: its name as the requester will see it, its MIME type, its bytes."""

    filename: str
    content_type: str
    content: bytes


class Templates:
    """Every sentence we send, as Jinja2 templates: `kind.lang.j2` per mail notice, `chat.lang.j2`
    for the bot's sentences, `names.lang.j2` for type and status names, `replies/NAME.lang.j2`
    for canned replies, `_signoff.lang.j2` under every mail. A company's folder overrides any
    file by its name (same relative path)."""

    def __init__(self, override: Path | None, company: str) -> None:
        self.folders = ([override] if override else []) + [BUILTIN_TEMPLATES]
        loaders = [FileSystemLoader(str(folder)) for folder in self.folders]
        # Plain-text bodies: no autoescape here; the HTML layout escapes what it receives.
        self.text_env = Environment(
            loader=ChoiceLoader(loaders), undefined=StrictUndefined, keep_trailing_newline=True
        )
        self.text_env.filters["type_names"] = self.type_names
        self.html_env = Environment(
            loader=ChoiceLoader(loaders), undefined=StrictUndefined, autoescape=True
        )
        self.company = company

    def _block(self, kind: str, lang: str, block: str, context: dict[str, Any]) -> str:
        template = self.text_env.get_template(f"{kind}.{lang}.j2")
        rendered = "".join(template.blocks[block](template.new_context(context)))
        return rendered.strip()

    def has(self, kind: str, lang: str) -> bool:
        return any((folder / f"{kind}.{lang}.j2").is_file() for folder in self.folders)

    def say(self, what: str, lang: str, **values: Any) -> str:
        """One sentence of the chat bot (a block of chat.<lang>.j2)."""
        return self.phrase("chat", what, lang, **values)

    def phrase(self, kind: str, what: str, lang: str, **values: Any) -> str:
        """One sentence of a file of sentences (block `what` of kind.<lang>.j2: the bot's
        chat.<lang>.j2, the DPO's digest.<lang>.j2)."""
        return self._block(kind, _one_of(lang), what, {"company": self.company, **values})

    def name(self, group: str, key: str, lang: str) -> str:
        """A type's or a status's name (block `type_access`, `status_open` of names.<lang>.j2)."""
        return self._block("names", _one_of(lang), f"{group}_{key}", {})

    def type_names(self, types: list[RequestType | str], lang: str, group: str = "type") -> str:
        """The types' names joined: as said to the requester (`type_*`: "删除您的个人信息"),
        or to our own people with group "staff_type" ("删除")."""
        template = self.text_env.get_template(f"names.{_one_of(lang)}.j2")
        # Not stripped: the English separator is "; ".
        separator = "".join(template.blocks["separator"](template.new_context({})))
        return separator.join(self.name(group, str(t), lang) for t in types)

    def canned(self, name: str, lang: str, context: dict[str, Any]) -> str:
        """The text of canned reply `name` (replies/NAME.<lang>.j2), to go inside reply.j2."""
        values = {"company": self.company, **context, "lang": lang}
        return self._block(f"replies/{name}", lang, "body", values)

    def replies(self) -> dict[str, dict[str, str]]:
        """The canned replies there are: name -> {lang: title}, overrides included."""
        found: dict[str, dict[str, str]] = {}
        for folder in reversed(self.folders):
            for path in sorted((folder / "replies").glob("*.j2")):
                name, _, lang = path.name.removesuffix(".j2").partition(".")
                if lang in LANGS:
                    title = self._block(f"replies/{name}", lang, "title", {})
                    found.setdefault(name, {})[lang] = title
        return dict(sorted(found.items()))

    def render(
        self, kind: str, lang: str | None, context: dict[str, Any], *, signed: bool = True
    ) -> Rendered:
        """One language when the ticket's is known; both (Chinese first) when it is not.
        `signed`: the sign-off under each language's part (mail; not chat messages)."""
        langs = [lang] if lang in LANGS else ["zh", "en"]
        parts = []
        for each in langs:
            # A value given as {"zh": ..., "en": ...} is said in the language being rendered.
            localised = {
                key: value[each] if isinstance(value, dict) and each in value else value
                for key, value in context.items()
            }
            localised["lang"] = each
            localised.setdefault("company", self.company)
            body = self._block(kind, each, "body", localised)
            if signed:
                body += "\n\n" + self._block("_signoff", each, "body", localised)
            parts.append((self._block(kind, each, "subject", localised), body))
        ticket_id = context.get("ticket_id", "")
        subject = " / ".join(s for s, _ in parts)
        if ticket_id:
            subject = f"[{ticket_id}] {subject}"
        text = "\n\n----------\n\n".join(b for _, b in parts) + "\n"
        html = self.html_env.get_template("_layout.html.j2").render(
            subject=subject,
            company=self.company,
            ticket_id=ticket_id,
            # Paragraphs as the text has them; a line break inside one stays a line break.
            sections=[[p.split("\n") for p in b.split("\n\n") if p.strip()] for _, b in parts],
        )
        return Rendered(subject, text, html)


def _one_of(lang: str | None) -> str:
    return lang if lang in LANGS else "zh"
