"""`classifier compare`: the candidate models side by side, judged the same way.

Each architecture is fitted on the train split only and tuned on dev (no refit: dev stays
unseen by the weights); then all are judged on dev, on the fixed test split and on any
held-out file given. The fourth candidate is a calibrated combination of the bag of words and
the character trigram model: each one's score per label is mapped to a probability by a
logistic fit on dev (Platt scaling, so that two models' 0.6 mean the same), the two are
averaged, and thresholds are tuned on dev again.
"""

from __future__ import annotations

import math
import time
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from classifiers.dataset import LabelledExample
from classifiers.heldout import HeldOut, judge
from classifiers.labels import LABELS
from classifiers.model import Prediction, RightsClassifier, decide
from classifiers.text import joined, normalise, rights_signal
from classifiers.training import Progress, evaluate, train, tune_sure_not, tune_thresholds

CANDIDATES = ("bow", "chars", "ensemble", "bow+chars")


@dataclass
class Row:
    name: str
    train_seconds: float
    messages_per_second: float
    figures: dict[str, dict[str, float]] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "train_seconds": self.train_seconds,
            "messages_per_second": self.messages_per_second,
            **self.figures,
        }


class Combined:
    """Two fitted classifiers, their scores calibrated per label and averaged. Quacks like a
    RightsClassifier where judging needs it (`predict_many`)."""

    def __init__(
        self,
        members: Sequence[RightsClassifier],
        calibration: Sequence[dict[str, tuple[float, float]]],
    ) -> None:
        self.members = members
        self.calibration = calibration
        self.thresholds = dict.fromkeys(LABELS, 0.5)
        self.sure_not = 0.0

    def predict_many(
        self, items: Iterable[tuple[str, str]], batch_size: int = 256
    ) -> Iterator[Prediction]:
        items = list(items)
        streams = [member.predict_many(items, batch_size) for member in self.members]
        for (subject, text), *predictions in zip(items, *streams, strict=True):
            scores = {
                label: round(
                    sum(
                        _sigmoid(a * p.scores[label] + b)
                        for p, cal in zip(predictions, self.calibration, strict=True)
                        for a, b in [cal[label]]
                    )
                    / len(predictions),
                    4,
                )
                for label in LABELS
            }
            signal = rights_signal(normalise(joined(subject, text)))
            labels, review = decide(scores, self.thresholds, self.sure_not, signal)
            yield replace(predictions[0], labels=labels, scores=scores, needs_review=review)


def compare(
    examples: Sequence[LabelledExample],
    heldout: Mapping[str, Sequence[HeldOut]],
    epochs: int,
    progress: Progress | None = None,
) -> list[Row]:
    dev = [ex for ex in examples if ex.split == "dev"]
    test = [ex for ex in examples if ex.split == "test"]
    fitted: dict[str, RightsClassifier] = {}
    rows: list[Row] = []
    for name in CANDIDATES:
        if progress:
            progress(f"candidate {name} …")
        started = time.perf_counter()
        model: Any
        if name == "bow+chars":
            model = combine([fitted["bow"], fitted["chars"]], dev)
            took = rows[0].train_seconds + rows[1].train_seconds
        else:
            model = fitted[name] = train(examples, name, epochs, refit=False).classifier
            took = time.perf_counter() - started
        row = Row(name, round(took, 1), _speed(model, test))
        for split, part in (("dev", dev), ("test", test)):
            report = evaluate(model, part, split)
            row.figures[split] = {
                "macro_f1": report.macro_f1,
                "exact_match": report.exact_match,
                "review_rate": report.needs_review,
            }
        for set_name, items in heldout.items():
            judged = judge(model, items, set_name)
            row.figures[set_name] = {
                "macro_f1": judged.macro_f1,
                "exact_match": judged.exact_match,
                "review_rate": judged.review_rate,
                "dismissed": len(judged.dismissed),
                **{
                    f"{part}_exact": figures["exact_match"]
                    for part, figures in judged.parts.items()
                    if part.startswith(("lang:", "kind:"))
                },
            }
        rows.append(row)
    return rows


def combine(members: Sequence[RightsClassifier], dev: Sequence[LabelledExample]) -> Combined:
    """Platt-scale each member's scores on dev, then tune the average's thresholds on dev."""
    calibration = []
    for member in members:
        raw = [p.scores for p in member.predict_many((ex.subject, ex.text) for ex in dev)]
        calibration.append(
            {
                label: _platt([s[label] for s in raw], [label in ex.labels for ex in dev])
                for label in LABELS
            }
        )
    combined = Combined(members, calibration)
    combined.thresholds = tune_thresholds(combined, dev)
    combined.sure_not = tune_sure_not(combined, dev)
    return combined


def _platt(scores: Sequence[float], gold: Sequence[bool]) -> tuple[float, float]:
    """a, b of p = sigmoid(a * score + b), fitted by Newton's method (a few dozen steps on a
    few hundred points); a label dev never has keeps the identity-like (4, -2)."""
    if not any(gold) or all(gold):
        return 4.0, -2.0
    a, b = 4.0, -2.0
    for _ in range(50):
        ga = gb = haa = hab = hbb = 0.0
        for x, y in zip(scores, gold, strict=True):
            p = _sigmoid(a * x + b)
            d = p - float(y)
            w = max(p * (1 - p), 1e-9)
            ga += d * x
            gb += d
            haa += w * x * x
            hab += w * x
            hbb += w
        haa += 1e-6
        hbb += 1e-6
        det = haa * hbb - hab * hab
        if abs(det) < 1e-12:
            break
        step_a = (hbb * ga - hab * gb) / det
        step_b = (haa * gb - hab * ga) / det
        a, b = a - step_a, b - step_b
        if abs(step_a) + abs(step_b) < 1e-6:
            break
    return a, b


def _sigmoid(x: float) -> float:
    return 1.0 / (1.0 + math.exp(-max(-30.0, min(30.0, x))))


def _speed(model: Any, examples: Sequence[LabelledExample]) -> float:
    started = time.perf_counter()
    count = sum(1 for _ in model.predict_many((ex.subject, ex.text) for ex in examples))
    return round(count / (time.perf_counter() - started))
