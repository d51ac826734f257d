"""The labelled examples in `classifiers/data/`, and their fixed train/dev/test splits.

Two sources, both written for this project:
- `*.txt`: one example per line under a `## label label` header (`subject || body` for mail);
- `letters.toml`: formal letters composed (seeded) from hand-written parts. The ask decides the
  labels and the split; openings, citations and "I reserve the right to complain" paragraphs
  are shared and carry no label, which is what teaches the model to ignore them.

The split of an example is a stable hash of its text (of its ask, for letters): it never depends
on file order, so adding examples never moves the old ones between splits.
"""

from __future__ import annotations

import hashlib
import random
import tomllib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from classifiers.labels import LABELS, NOT_A_REQUEST
from classifiers.text import sentences

DATA_DIR = Path(__file__).parent / "data"
# Our own messages in voices unlike the training data (JSON lines, as held-out sets): never
# learned from; training tunes the safety floor on them too (classifiers.training).
DEVSETS_DIR = Path(__file__).parent / "devsets"
Split = Literal["train", "dev", "test"]
LETTERS_PER_ASK = 3


@dataclass(frozen=True)
class LabelledExample:
    id: str
    subject: str
    text: str
    labels: frozenset[str]
    split: Split
    # "line"; "letter" (a whole composed letter: judged, never learned from); "ask" and
    # "letter-part" (a letter's ask with its labels, a neutral sentence of its other parts);
    # "correction" (a DPO's relabel).
    source: str


class DataError(ValueError):
    pass


def split_of(key: str) -> Split:
    bucket = int(hashlib.sha1(key.encode("utf-8")).hexdigest()[:8], 16) % 20
    if bucket < 3:
        return "dev"
    if bucket < 6:
        return "test"
    return "train"


def load_examples(data_dir: Path = DATA_DIR) -> list[LabelledExample]:
    """Every example once: the same text written twice (in two files) counts once, and must
    carry the same labels both times."""
    seen: dict[tuple[str, str], LabelledExample] = {}
    for ex in [*_lines(data_dir), *_letters(data_dir)]:
        key = (ex.subject, ex.text)
        if key in seen:
            if seen[key].labels != ex.labels:
                raise DataError(
                    f"{ex.id} and {seen[key].id}: the same text with different labels "
                    f"({sorted(ex.labels)} vs {sorted(seen[key].labels)})"
                )
            continue
        seen[key] = ex
    return list(seen.values())


def checked_labels(raw: list[str], where: str) -> frozenset[str]:
    labels = frozenset(raw)
    unknown = labels - set(LABELS)
    if unknown or not labels:
        raise DataError(f"{where}: unknown or missing labels {sorted(unknown)}")
    if NOT_A_REQUEST in labels and len(labels) > 1:
        raise DataError(f"{where}: {NOT_A_REQUEST} stands alone")
    return labels


def _digest(text: str) -> str:
    return hashlib.sha1(text.encode("utf-8")).hexdigest()[:12]


def _lines(data_dir: Path) -> Iterator[LabelledExample]:
    for path in sorted(data_dir.glob("*.txt")):
        labels: frozenset[str] | None = None
        for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
            line = line.strip()
            where = f"{path.name}:{number}"
            if not line or (line.startswith("#") and not line.startswith("## ")):
                continue
            if line.startswith("## "):
                labels = checked_labels(line[3:].split(), where)
                continue
            if labels is None:
                raise DataError(f"{where}: example before any '## labels' header")
            subject, _, body = line.rpartition(" || ")
            yield LabelledExample(
                id=f"{path.stem}:{_digest(line)}",
                subject=subject,
                text=body,
                labels=labels,
                split=split_of(line),
                source="line",
            )


def _letters(data_dir: Path) -> Iterator[LabelledExample]:
    path = data_dir / "letters.toml"
    if not path.exists():
        return
    parts: dict[str, Any] = tomllib.loads(path.read_text(encoding="utf-8"))
    for lang, kit in parts.items():
        yield from _neutral_sentences(lang, kit)
        for number, ask in enumerate(kit["asks"]):
            labels = checked_labels(ask["labels"], f"letters.toml {lang} ask {number}")
            split = split_of(ask["text"])
            yield LabelledExample(
                id=f"ask-{lang}:{_digest(ask['text'])}",
                subject="",
                text=ask["text"],
                labels=labels,
                split=split,
                source="ask",
            )
            rng = random.Random(f"{lang}:{_digest(ask['text'])}")
            for copy in range(LETTERS_PER_ASK):
                subject, body = _compose(kit, ask["text"], rng, size=copy)
                yield LabelledExample(
                    id=f"letter-{lang}:{_digest(ask['text'])}:{copy}",
                    subject=subject,
                    text=body,
                    labels=labels,
                    split=split,
                    source="letter",
                )


NEUTRAL_PARTS = ("openings", "identities", "background", "legal", "reservations", "closings")


def _neutral_sentences(lang: str, kit: dict[str, Any]) -> Iterator[LabelledExample]:
    """Every sentence of a letter's neutral parts, alone, as "not a request": a long message is
    read a sentence at a time, and these are the sentences that ask for nothing: citations
    of what the law allows and "this is not a complaint, but…" included."""
    for part in NEUTRAL_PARTS:
        for paragraph in kit[part]:
            for sentence in sentences(paragraph):
                if len(sentence) >= 6:
                    yield LabelledExample(
                        id=f"letter-part-{lang}:{_digest(sentence)}",
                        subject="",
                        text=sentence,
                        labels=frozenset({NOT_A_REQUEST}),
                        split="train",
                        source="letter-part",
                    )


def _compose(kit: dict[str, Any], ask: str, rng: random.Random, size: int) -> tuple[str, str]:
    """A letter of one of three sizes: 0 short, 1 medium, 2 long (every background paragraph
    and two citations: over 3,000 characters, the letters that bury their ask the deepest)."""
    backgrounds: list[str] = list(kit["background"])
    rng.shuffle(backgrounds)
    backgrounds = backgrounds[: (1, 2, len(backgrounds))[size]]
    legal = rng.sample(kit["legal"], k=2 if size == 2 else 1)
    paragraphs = [
        rng.choice(kit["openings"]),
        rng.choice(kit["identities"]),
        *backgrounds[:1],
        *legal,
        ask,
        *backgrounds[1:],
        rng.choice(kit["reservations"]),
        rng.choice(kit["closings"]),
    ]
    return rng.choice(kit["subjects"]), "\n\n".join(paragraphs)


def load_devsets(folder: Path = DEVSETS_DIR) -> list[LabelledExample]:
    """Every message of every devset file (classifiers.heldout's format), split "test": never
    trained on."""
    from classifiers.heldout import load_heldout  # heldout imports this module

    return [item.example for path in sorted(folder.glob("*.jsonl")) for item in load_heldout(path)]
