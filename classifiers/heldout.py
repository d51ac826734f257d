"""Judging on a held-out set: JSON lines written by someone who never saw classifiers/data.

Each line: {"id", "lang": "zh"|"en", "kind": "short"|"long"|"letter", "subject", "text",
"labels": [...]}; "id" and "subject" may be missing, and other kinds and languages (zh-Hant,
followup, hard) are reported as they come. Never trained on (the issue's rule): this module
only reads and judges.

A writer who never saw LABELS.md may name labels their own way. `LABEL_ALIASES` maps the
names met so far onto ours, decided from the names and LABELS.md, not from the texts:
`child_data` is `minor`; `copy` (PIPL 复制, "a copy of my data") is `access`, which LABELS.md
defines as "show, list or send a copy". With `merge_copy`, `portability` counts as `access`
on both sides too, for a set whose "copy" covers exports (its writer did not split them).
What it reports is what the issue asks: macro-F1 and exact label set overall, per language and
per kind, the review rate, the accuracy of what is not reviewed, and every rights request
dismissed without review (the one mistake that must not happen).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from classifiers.dataset import DataError, LabelledExample, checked_labels
from classifiers.labels import NOT_A_REQUEST
from classifiers.model import Prediction
from classifiers.training import Predictor, report_of


@dataclass(frozen=True)
class HeldOut:
    example: LabelledExample
    lang: str
    kind: str


@dataclass(frozen=True)
class Miss:
    id: str
    lang: str
    kind: str
    gold: list[str]
    said: list[str]
    needs_review: bool
    top: dict[str, float]


@dataclass(frozen=True)
class HeldOutReport:
    name: str
    count: int
    macro_f1: float
    exact_match: float
    review_rate: float
    unreviewed_exact: float  # exact label set among what is not sent to review
    dismissed: list[str]  # ids of rights requests called not_rights_request, not reviewed
    parts: dict[str, dict[str, float]]  # "lang:zh", "kind:letter", "zh/short", …
    labels: list[dict[str, Any]] = field(default_factory=list)
    misses: list[Miss] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "count": self.count,
            "macro_f1": self.macro_f1,
            "exact_match": self.exact_match,
            "review_rate": self.review_rate,
            "unreviewed_exact": self.unreviewed_exact,
            "dismissed": self.dismissed,
            "parts": self.parts,
            "labels": self.labels,
            "misses": [vars(miss) for miss in self.misses],
        }

    def lines(self) -> list[str]:
        """The report as text, for the command line."""
        out = [
            f"{self.name}: {self.count} messages  macro-F1 {self.macro_f1:.3f}  "
            f"exact {self.exact_match:.3f}  review {self.review_rate:.3f}  "
            f"exact when not reviewed {self.unreviewed_exact:.3f}  "
            f"dismissed requests {len(self.dismissed)}"
        ]
        for name, part in self.parts.items():
            out.append(
                f"  {name:<12} {part['count']:>4.0f}  macro-F1 {part['macro_f1']:.3f}  "
                f"exact {part['exact_match']:.3f}  review {part['review_rate']:.3f}"
            )
        for label in self.labels:
            out.append(
                f"  {label['label']:<20} P {label['precision']:.3f}  R {label['recall']:.3f}  "
                f"F1 {label['f1']:.3f}  n {label['support']}"
            )
        return out


LABEL_ALIASES = {"child_data": "minor", "copy": "access"}


def load_heldout(path: Path) -> list[HeldOut]:
    found: list[HeldOut] = []
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip():
            continue
        where = f"{path.name}:{number}"
        try:
            item = json.loads(line)
        except json.JSONDecodeError as exc:
            raise DataError(f"{where}: not JSON ({exc.msg})") from None
        raw = [LABEL_ALIASES.get(label, label) for label in item.get("labels") or []]
        labels = checked_labels(sorted(set(raw)), where)
        example = LabelledExample(
            id=str(item.get("id", number)),
            subject=str(item.get("subject") or ""),
            text=str(item.get("text") or ""),
            labels=labels,
            split="test",  # never "train": nothing here is learned from
            source="heldout",
        )
        found.append(HeldOut(example, str(item.get("lang") or "?"), str(item.get("kind") or "?")))
    return found


def judge(
    classifier: Predictor, items: Sequence[HeldOut], name: str, merge_copy: bool = False
) -> HeldOutReport:
    predictions = list(classifier.predict_many((h.example.subject, h.example.text) for h in items))
    if merge_copy:
        items = [
            replace(h, example=replace(h.example, labels=_merged(h.example.labels))) for h in items
        ]
        predictions = [replace(p, labels=sorted(_merged(frozenset(p.labels)))) for p in predictions]
    overall = _part(items, predictions)
    groups: dict[str, list[int]] = {}
    for i, item in enumerate(items):
        for key in (f"lang:{item.lang}", f"kind:{item.kind}", f"{item.lang}/{item.kind}"):
            groups.setdefault(key, []).append(i)
    parts = {
        key: _part([items[i] for i in chosen], [predictions[i] for i in chosen])
        for key, chosen in sorted(groups.items())
    }
    unreviewed = [i for i, p in enumerate(predictions) if not p.needs_review]
    unreviewed_exact = sum(
        set(predictions[i].labels) == items[i].example.labels for i in unreviewed
    ) / max(1, len(unreviewed))
    misses = [
        Miss(
            id=item.example.id,
            lang=item.lang,
            kind=item.kind,
            gold=sorted(item.example.labels),
            said=p.labels,
            needs_review=p.needs_review,
            top=dict(sorted(p.scores.items(), key=lambda kv: -kv[1])[:3]),
        )
        for item, p in zip(items, predictions, strict=True)
        if set(p.labels) != item.example.labels
    ]
    labels = report_of(name, [h.example for h in items], [set(p.labels) for p in predictions])
    return HeldOutReport(
        name=name,
        count=len(items),
        macro_f1=overall["macro_f1"],
        exact_match=overall["exact_match"],
        review_rate=overall["review_rate"],
        unreviewed_exact=round(unreviewed_exact, 4),
        dismissed=[
            item.example.id
            for item, p in zip(items, predictions, strict=True)
            if NOT_A_REQUEST not in item.example.labels
            and p.labels == [NOT_A_REQUEST]
            and not p.needs_review
        ],
        parts=parts,
        labels=[vars(score) for score in labels.labels],
        misses=misses,
    )


def _merged(labels: frozenset[str]) -> frozenset[str]:
    return frozenset("access" if label == "portability" else label for label in labels)


def _part(items: Sequence[HeldOut], predictions: Sequence[Prediction]) -> dict[str, float]:
    report = report_of("part", [h.example for h in items], [set(p.labels) for p in predictions])
    return {
        "count": len(items),
        "macro_f1": report.macro_f1,
        "exact_match": report.exact_match,
        "review_rate": round(sum(p.needs_review for p in predictions) / max(1, len(items)), 4),
    }
