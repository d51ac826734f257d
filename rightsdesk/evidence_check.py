"""Check a rightsdesk evidence pack offline: `python3 verify_pack.py PACK.zip`.

This file is standard-library Python only, and is copied as it is into every pack as
verify_pack.py, so a regulator can check a pack without rightsdesk or its database. It checks:
every file's SHA-256 against manifest.json (none missing, none added), and the audit events'
hash chain (numbered 1, 2, 3, ... each naming the previous one's hash, each hash recomputed from
the event's content, the last one equal to the ticket's audit head recorded in the manifest).
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import sys
import zipfile
from pathlib import Path
from typing import Any

GENESIS_HASH = "0" * 64
MANIFEST = "manifest.json"


def event_hash(
    *,
    public_id: str,
    seq: int,
    at: dt.datetime,
    actor: str,
    action: str,
    before: dict[str, Any],
    after: dict[str, Any],
    prev_hash: str,
) -> str:
    """The hash of one audit event over its canonical JSON form (rightsdesk.audit uses this one)."""
    canonical = json.dumps(
        {
            "ticket": public_id,
            "seq": seq,
            "at": at.astimezone(dt.UTC).isoformat(),
            "actor": actor,
            "action": action,
            "before": before,
            "after": after,
            "prev": prev_hash,
        },
        sort_keys=True,
        separators=(",", ":"),
        ensure_ascii=False,
    )
    return hashlib.sha256(canonical.encode("utf-8")).hexdigest()


def verify_pack(path: Path | str) -> list[str]:
    """The problems found in the pack; an empty list means it is intact."""
    problems: list[str] = []
    try:
        archive = zipfile.ZipFile(path)
    except (OSError, zipfile.BadZipFile) as exc:
        return [f"not a readable ZIP file: {exc}"]
    with archive:
        names = set(archive.namelist())
        if MANIFEST not in names:
            return ["manifest.json is missing"]
        manifest = json.loads(archive.read(MANIFEST))
        listed: dict[str, str] = manifest.get("files", {})
        for name in sorted(set(listed) - names):
            problems.append(f"{name}: listed in the manifest but missing")
        for name in sorted(names - set(listed) - {MANIFEST}):
            problems.append(f"{name}: in the pack but not in the manifest (added)")
        for name in sorted(set(listed) & names):
            if hashlib.sha256(archive.read(name)).hexdigest() != listed[name]:
                problems.append(f"{name}: content does not match its SHA-256 (changed)")
        if "events.json" not in names:
            problems.append("events.json is missing")
            return problems
        events = json.loads(archive.read("events.json"))
    public_id = manifest.get("ticket", "")
    expected_prev, expected_seq = GENESIS_HASH, 1
    for event in events:
        where = f"event #{event.get('seq')}"
        if event.get("seq") != expected_seq:
            problems.append(f"{where}: expected #{expected_seq} (an event is missing)")
            break
        if event.get("prev_hash") != expected_prev:
            problems.append(f"{where}: prev_hash does not match the previous event")
            break
        recomputed = event_hash(
            public_id=public_id,
            seq=event["seq"],
            at=dt.datetime.fromisoformat(event["at"]),
            actor=event["actor"],
            action=event["action"],
            before=event["before"],
            after=event["after"],
            prev_hash=event["prev_hash"],
        )
        if recomputed != event.get("hash"):
            problems.append(f"{where}: content does not match its hash (edited)")
            break
        expected_prev, expected_seq = event["hash"], expected_seq + 1
    else:
        if expected_prev != manifest.get("audit_head"):
            problems.append("the chain ends before the ticket's audit head (cut short)")
    return problems


def main(argv: list[str]) -> int:
    if len(argv) != 2:
        print("usage: verify_pack.py PACK.zip", file=sys.stderr)
        return 2
    problems = verify_pack(argv[1])
    for problem in problems:
        print("BROKEN", problem)
    if not problems:
        print("evidence pack intact")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
