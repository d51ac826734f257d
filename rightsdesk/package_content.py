"""What a package says about itself: a readable summary page (what is in it, where each part
came from, the ticket and its dates) and, for portability, the data as JSON and CSV.

The wording is in the template tree (templates/packages/), in the ticket's language.
"""

from __future__ import annotations

import csv
import datetime as dt
import io
import json
from typing import TYPE_CHECKING, Any

from rightsdesk.config import ConfigError, Settings
from rightsdesk.languages import LANGS
from rightsdesk.models import Ticket
from rightsdesk.models_fulfilment import PackageFile
from rightsdesk.templating import Templates

if TYPE_CHECKING:
    from rightsdesk.packages import PackageInput

SUMMARY_NAME = {"zh": "说明.html", "zh-Hant": "說明.html", "en": "summary.html"}


def generated_files(
    templates: Templates,
    ticket: Ticket,
    note: str | None,
    files: list[PackageFile],
    export: dict[str, Any],
    settings: Settings,
    now: dt.datetime,
) -> list[PackageInput]:
    """The summary page (one per language when the ticket's is unknown), data.json, and one
    CSV per section of the fulfilment export."""
    from rightsdesk.filenames import safe_name
    from rightsdesk.packages import PackageInput

    tz = settings.desk.tz
    langs = [ticket.language] if ticket.language in LANGS else ["zh", "en"]
    systems = export.get("systems", {})
    sections = []
    csvs: list[PackageInput] = []
    for system, entry in systems.items():
        for name, section in entry.get("sections", {}).items():
            file_name = safe_name(f"{system}-{name}.csv")
            sections.append(
                {
                    "system": system,
                    "display_names": entry.get("display_names", {}),
                    "title": section.get("title") or name,
                    "columns": section.get("columns", []),
                    "rows": section.get("rows", []),
                    "file": file_name,
                }
            )
            csvs.append(PackageInput(file_name, "text/csv", _csv(section), source="data"))
    parts = [
        {
            "name": f.name,
            "bytes": f.size,
            "sha256": f.sha256,
            "source": f.source,
            "system": f.source.removeprefix("system:") if f.source.startswith("system:") else "",
        }
        for f in files
    ]
    dates = {
        "received": ticket.received_at.astimezone(tz).date().isoformat(),
        "response_due": ticket.response_due.isoformat() if ticket.response_due else "",
        "generated": now.astimezone(tz).strftime("%Y-%m-%d %H:%M"),
    }
    data = {
        "format": "rightsdesk-package/1",
        "ticket": ticket.public_id,
        "company": settings.desk.company_name,
        "received_at": ticket.received_at.isoformat(),
        "generated_at": now.isoformat(),
        "types": [t.value for t in ticket.types],
        "files": parts,
        "sections": [
            {k: s[k] for k in ("system", "title", "columns", "rows", "file")} for s in sections
        ],
    }
    data_json = json.dumps(data, ensure_ascii=False, indent=2, default=str).encode() + b"\n"
    summaries = [
        PackageInput(
            SUMMARY_NAME[lang],
            "text/html",
            templates.html_env.get_template(f"packages/summary.{lang}.j2")
            .render(
                lang=lang,
                company=settings.desk.company_name,
                ticket_id=ticket.public_id,
                type_names=templates.type_names(list(ticket.types), lang),
                dates=dates,
                note=note or "",
                files=[
                    {**f, "system": _system_name(settings, str(f["system"]), lang)} for f in parts
                ],
                sections=sections,
            )
            .encode(),
            source="summary",
        )
        for lang in langs
    ]
    return [
        *summaries,
        PackageInput("data.json", "application/json", data_json, source="data"),
        *csvs,
    ]


def _system_name(settings: Settings, name: str, lang: str) -> str:
    """A system as the company names it in `lang` (its own name when it is not configured)."""
    if not name:
        return ""
    try:
        return settings.system(name).display_name(lang)
    except ConfigError:
        return name


def _csv(section: dict[str, Any]) -> bytes:
    """With a BOM, so spreadsheet programs read Chinese."""
    buffer = io.StringIO()
    columns = list(section.get("columns", []))
    writer = csv.DictWriter(buffer, fieldnames=columns, extrasaction="ignore")
    writer.writeheader()
    for row in section.get("rows", []):
        writer.writerow({k: "" if row.get(k) is None else row.get(k) for k in columns})
    return ("\ufeff" + buffer.getvalue()).encode("utf-8")
