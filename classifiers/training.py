"""Training, threshold tuning and evaluation. Deterministic: fixed seeds, fixed splits, one
thread; the same data gives the same model and the same figures."""

from __future__ import annotations

import hashlib
import json
import random
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from spacy.language import Language
from spacy.training import Example
from spacy.util import fix_random_seed, minibatch  # type: ignore[attr-defined]

from classifiers.dataset import LabelledExample, Split, load_devsets
from classifiers.labels import LABELS, NOT_A_REQUEST
from classifiers.model import (
    CLAUSE_GATE,
    META_FILE,
    SURE_NOT_MIN,
    Prediction,
    RightsClassifier,
)
from classifiers.pipeline import TEXTCAT, blank_pipeline
from classifiers.text import FOCUS_OVER, detect_language, joined, normalise

SEED = 20261128
EPOCHS = 20
DROPOUT = 0.2
BATCH = 16
_GRID = [round(0.05 * i, 2) for i in range(2, 19)]  # 0.10 … 0.90
_GATES = (0.5, 0.6, 0.7, 0.8, 0.9, 1.01)

Progress = Callable[[str], None]


class Predictor(Protocol):
    """What judging needs of a model: RightsClassifier, or a combination of them."""

    def predict_many(
        self, items: Iterable[tuple[str, str]], batch_size: int = 256
    ) -> Iterator[Prediction]: ...


@dataclass(frozen=True)
class LabelScore:
    label: str
    precision: float
    recall: float
    f1: float
    support: int


@dataclass(frozen=True)
class Report:
    split: str
    count: int
    labels: list[LabelScore]
    macro_f1: float
    exact_match: float
    needs_review: float
    by_language: dict[str, dict[str, float]] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return {
            "split": self.split,
            "count": self.count,
            "macro_f1": self.macro_f1,
            "exact_match": self.exact_match,
            "needs_review": self.needs_review,
            "by_language": self.by_language,
            "labels": [vars(score) for score in self.labels],
        }


@dataclass(frozen=True)
class Trained:
    classifier: RightsClassifier
    dev: Report  # of the model before the refit: the one the thresholds were tuned on


def train(
    examples: Sequence[LabelledExample],
    architecture: str = "bow",
    epochs: int = EPOCHS,
    progress: Progress | None = None,
    refit: bool = True,
    safety_probe: Sequence[LabelledExample] | None = None,
) -> Trained:
    """Fit on the train split, tune per-label thresholds on dev and report dev; then (refit)
    fit again on train + dev with the same settings and thresholds. The test split is never
    seen."""
    # Whole letters are for judging; the model learns from their asks and their neutral parts,
    # and from the train split's letters short enough to be read whole (FOCUS_OVER): those
    # teach it that a story around the ask is no ask of its own.
    learnable = [ex for ex in examples if ex.source != "letter" or len(ex.text) <= FOCUS_OVER]
    train_set = [ex for ex in learnable if ex.split == "train"]
    dev = [ex for ex in examples if ex.split == "dev"]
    nlp = _fit(train_set, architecture, epochs, progress)
    settings: dict[str, Any] = {"architecture": architecture, "clause_gate": CLAUSE_GATE}
    untuned = RightsClassifier(nlp, dict.fromkeys(LABELS, 0.5), settings)
    thresholds = tune_thresholds(untuned, dev)
    gate = tune_clause_gate(nlp, thresholds, settings, dev)
    settings = {**settings, "clause_gate": gate}
    thresholds = tune_thresholds(RightsClassifier(nlp, thresholds, settings), dev)
    # Safety is tuned on messages unlike our data too (classifiers/devsets, never learned
    # from): no request there may be dismissed unread either.
    probe = list(safety_probe) if safety_probe is not None else load_devsets()
    sure_not = tune_sure_not(RightsClassifier(nlp, thresholds, settings), [*dev, *probe])
    settings = {**settings, "sure_not": sure_not}
    tuned = RightsClassifier(nlp, thresholds, settings)
    dev_report = evaluate(tuned, dev, "dev")
    trained_on = len(train_set)
    if refit:
        if progress:
            progress("refit on train + dev")
        refit_set = [*train_set, *(ex for ex in learnable if ex.split == "dev")]
        nlp = _fit(refit_set, architecture, epochs, progress)
        trained_on = len(refit_set)
    meta = {
        "architecture": architecture,
        "epochs": epochs,
        "seed": SEED,
        "thresholds": thresholds,
        "sure_not": sure_not,
        "clause_gate": gate,
        "trained_on": trained_on,
        "corrections": sum(ex.source == "correction" for ex in train_set),
        "refit_on_dev": refit,
    }
    return Trained(RightsClassifier(nlp, thresholds, meta), dev_report)


def _fit(
    examples: Sequence[LabelledExample],
    architecture: str,
    epochs: int,
    progress: Progress | None,
) -> Language:
    fix_random_seed(SEED)
    rng = random.Random(SEED)
    nlp = blank_pipeline(architecture)
    train_set = [_example(nlp, ex) for ex in examples]
    optimizer = nlp.initialize(lambda: train_set)
    with nlp.select_pipes(enable=[TEXTCAT]):
        for epoch in range(1, epochs + 1):
            started = time.perf_counter()
            rng.shuffle(train_set)
            losses: dict[str, float] = {}
            for batch in minibatch(train_set, size=BATCH):  # type: ignore[no-untyped-call]
                nlp.update(batch, drop=DROPOUT, sgd=optimizer, losses=losses)
            if progress:
                progress(
                    f"epoch {epoch}/{epochs}: loss {losses.get(TEXTCAT, 0.0):.3f} "
                    f"({time.perf_counter() - started:.1f} s)"
                )
    return nlp


def save(classifier: RightsClassifier, path: Path, reports: Iterable[Report] = ()) -> None:
    """The pipeline, then its meta file last (the file a running service watches), with the
    model's version: a digest of the weights and the decision settings."""
    classifier.nlp.to_disk(path)
    classifier.meta["version"] = model_version(classifier)
    meta = {**classifier.meta, "reports": [r.as_dict() for r in reports]}
    (path / META_FILE).write_text(json.dumps(meta, indent=2, ensure_ascii=False), "utf-8")


def model_version(classifier: RightsClassifier) -> str:
    textcat: Any = classifier.nlp.get_pipe(TEXTCAT)
    digest = hashlib.sha256(textcat.to_bytes())
    decision = {
        "thresholds": classifier.thresholds,
        "sure_not": classifier.sure_not,
        "clause_gate": classifier.clause_gate,
    }
    digest.update(json.dumps(decision, sort_keys=True).encode())
    return digest.hexdigest()[:12]


def tune_sure_not(
    classifier: Predictor, dev: Sequence[LabelledExample], margin: float = 0.05
) -> float:
    """The "not a request" score below which that verdict goes to review: `margin` over the
    highest such score of any dev request the model dismissed (called "not a request" with no
    doubt), so that none of them would be; at least SURE_NOT_MIN, at most 0.95. The classifier
    given has its thresholds and no such floor yet.

    Why this score and not the requests' own: on dev, the requests dismissed had request scores
    as low as true negatives (0.05) but "not a request" scores of 0.6-0.7, where few of the
    true negatives are (3% of dev more to review, against 15% for a floor on request scores)."""
    predictions = classifier.predict_many((ex.subject, ex.text) for ex in dev)
    dismissed = [
        p.scores[NOT_A_REQUEST]
        for ex, p in zip(dev, predictions, strict=True)
        if NOT_A_REQUEST not in ex.labels and p.labels == [NOT_A_REQUEST] and not p.needs_review
    ]
    highest = max(dismissed, default=0.0)
    return round(min(0.95, max(SURE_NOT_MIN, highest + margin)), 4)


def tune_clause_gate(
    nlp: Language,
    thresholds: dict[str, float],
    settings: dict[str, Any],
    dev: Sequence[LabelledExample],
) -> float:
    """The score at which a clause read alone adds its label (classifiers.model): the one with
    the most exact label sets on dev, ties to the higher (fewer labels from fragments); above
    1 turns clauses off, which wins when they only add noise."""

    def exact(gate: float) -> tuple[int, int, float]:
        model = RightsClassifier(nlp, thresholds, {**settings, "clause_gate": gate})
        said = [set(p.labels) for p in model.predict_many((ex.subject, ex.text) for ex in dev)]
        hits = [set(ex.labels) == s for ex, s in zip(dev, said, strict=True)]
        return (
            sum(hits),
            sum(h for h, ex in zip(hits, dev, strict=True) if len(ex.labels) > 1),
            gate,
        )

    return max(exact(gate) for gate in _GATES)[2]


def tune_thresholds(classifier: Predictor, dev: Sequence[LabelledExample]) -> dict[str, float]:
    """Per label, the threshold with the best F1 on dev; ties go to the one nearest 0.5, and a
    label dev cannot judge (no examples either way) keeps 0.5."""
    raw = _raw_scores(classifier, dev)
    thresholds: dict[str, float] = {}
    for label in LABELS:
        gold = [label in ex.labels for ex in dev]
        if not any(gold):
            thresholds[label] = 0.5
            continue

        def f1_at(threshold: float, label: str = label, gold: list[bool] = gold) -> float:
            predicted = [scores[label] >= threshold for scores in raw]
            return _f1(predicted, gold)[2]

        thresholds[label] = max(_GRID, key=lambda t: (round(f1_at(t), 6), -abs(t - 0.5)))
    return thresholds


def evaluate(
    classifier: Predictor, examples: Sequence[LabelledExample], split: Split | str
) -> Report:
    predictions = list(classifier.predict_many((ex.subject, ex.text) for ex in examples))
    report = report_of(split, examples, [set(p.labels) for p in predictions])
    review = sum(p.needs_review for p in predictions) / max(1, len(predictions))
    by_language: dict[str, dict[str, float]] = {}
    for lang in ("zh", "en"):
        chosen = [
            i
            for i, ex in enumerate(examples)
            if detect_language(joined(ex.subject, ex.text)) == lang
        ]
        if chosen:
            part = report_of(
                split, [examples[i] for i in chosen], [set(predictions[i].labels) for i in chosen]
            )
            by_language[lang] = {
                "count": part.count,
                "macro_f1": part.macro_f1,
                "exact_match": part.exact_match,
            }
    return Report(
        split=report.split,
        count=report.count,
        labels=report.labels,
        macro_f1=report.macro_f1,
        exact_match=report.exact_match,
        needs_review=round(review, 4),
        by_language=by_language,
    )


def report_of(
    split: str, examples: Sequence[LabelledExample], predicted: Sequence[set[str]]
) -> Report:
    scores = []
    for label in LABELS:
        gold = [label in ex.labels for ex in examples]
        said = [label in p for p in predicted]
        if not any(gold) and not any(said):
            continue  # nothing to judge this label on in this part
        precision, recall, f1 = _f1(said, gold)
        scores.append(LabelScore(label, precision, recall, f1, sum(gold)))
    macro = sum(s.f1 for s in scores) / max(1, len(scores))
    exact = sum(set(ex.labels) == p for ex, p in zip(examples, predicted, strict=True))
    return Report(
        split=split,
        count=len(examples),
        labels=scores,
        macro_f1=round(macro, 4),
        exact_match=round(exact / max(1, len(examples)), 4),
        needs_review=0.0,
    )


def _f1(predicted: Sequence[bool], gold: Sequence[bool]) -> tuple[float, float, float]:
    tp = sum(p and g for p, g in zip(predicted, gold, strict=True))
    fp = sum(p and not g for p, g in zip(predicted, gold, strict=True))
    fn = sum(g and not p for p, g in zip(predicted, gold, strict=True))
    precision = tp / (tp + fp) if tp + fp else 1.0
    recall = tp / (tp + fn) if tp + fn else 1.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return round(precision, 4), round(recall, 4), round(f1, 4)


def _raw_scores(
    classifier: Predictor, examples: Sequence[LabelledExample]
) -> list[dict[str, float]]:
    return [p.scores for p in classifier.predict_many((ex.subject, ex.text) for ex in examples)]


def _example(nlp: Any, ex: LabelledExample) -> Example:
    doc = nlp.make_doc(joined(normalise(ex.subject), normalise(ex.text)))
    return Example.from_dict(doc, {"cats": {label: float(label in ex.labels) for label in LABELS}})
