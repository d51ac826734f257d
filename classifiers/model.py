"""`RightsClassifier`: the trained pipeline plus its per-label thresholds, behind the core's
`Classifier` protocol (`rightsdesk.pipeline`)."""

from __future__ import annotations

import json
from collections import deque
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Any

import spacy
from spacy.language import Language
from spacy.tokens import Doc

import classifiers.components  # noqa: F401  (registers the factories before spacy.load)
from classifiers.labels import LABELS, NOT_A_REQUEST
from classifiers.pipeline import adapt_tokenizer
from classifiers.text import detect_language, joined, model_units, normalise
from rightsdesk.identifiers import find_identifiers
from rightsdesk.models import RequestType
from rightsdesk.pipeline import Classification

MODEL_DIR = Path(__file__).parent / "model"
META_FILE = "rightsdesk.json"
RULE_SCORE = 0.99  # a rule match: as sure as the model ever gets, still below 1 for the eye


@dataclass(frozen=True)
class Prediction:
    labels: list[str]
    scores: dict[str, float]
    lang: str
    needs_review: bool
    entities: list[dict[str, object]] = field(default_factory=list)
    rules: list[str] = field(default_factory=list)

    def as_json(self, id_: Any) -> dict[str, Any]:
        return {
            "id": id_,
            "labels": self.labels,
            "scores": self.scores,
            "lang": self.lang,
            "needs_review": self.needs_review,
            "entities": self.entities,
        }


class ModelMissing(RuntimeError):
    pass


def decide(scores: dict[str, float], thresholds: dict[str, float]) -> tuple[list[str], bool]:
    """Labels over their thresholds; doubt when none is, or when "not a request" and a request
    both are (a person reads those: answering either way could be wrong)."""
    labels = [label for label in LABELS if scores[label] >= thresholds[label]]
    if not labels:
        return [max(LABELS, key=lambda label: scores[label])], True
    if NOT_A_REQUEST in labels and len(labels) > 1:
        return [label for label in labels if label != NOT_A_REQUEST], True
    return labels, False


class RightsClassifier:
    def __init__(self, nlp: Language, thresholds: dict[str, float], meta: dict[str, Any]) -> None:
        self.nlp = nlp
        self.thresholds = thresholds
        self.meta = meta

    @classmethod
    def load(cls, path: Path = MODEL_DIR) -> RightsClassifier:
        meta_path = path / META_FILE
        if not meta_path.exists():
            raise ModelMissing(
                f"no trained classifier at {path}: run `rightsdesk classifier train`"
            )
        meta = json.loads(meta_path.read_text(encoding="utf-8"))
        return cls(adapt_tokenizer(spacy.load(path)), meta["thresholds"], meta)

    def predict(self, subject: str, text: str) -> Prediction:
        return next(self.predict_many([(subject, text)]))

    def predict_many(
        self, items: Iterable[tuple[str, str]], batch_size: int = 256
    ) -> Iterator[Prediction]:
        """Streams: holds about one batch at a time, yields in input order."""
        # Per message: its original text, how many units it has, whether its one unit is all
        # of it (then the unit's identifiers are the message's).
        pending: deque[tuple[str, int, bool]] = deque()

        def units() -> Iterator[str]:
            for subject, text in items:
                original = joined(subject, text)
                parts = model_units(subject, text)
                pending.append((original, len(parts), parts == [normalise(original)]))
                yield from parts

        group: list[Doc] = []
        for doc in self.nlp.pipe(units(), batch_size=batch_size):
            group.append(doc)
            original, count, whole = pending[0]
            if len(group) == count:
                pending.popleft()
                yield self._prediction(original, group, whole)
                group = []

    def classify(self, subject: str, text: str) -> Classification:
        """The core's `Classifier` protocol."""
        found = self.predict(subject, text)
        return Classification(
            types=[RequestType(label) for label in found.labels],
            needs_review=found.needs_review,
            language=found.lang,
            scores=found.scores,
            entities=found.entities,
        )

    def _prediction(self, original: str, units: list[Doc], whole: bool) -> Prediction:
        """A message asks for a type if any of its units does; it is "not a request" only if
        every unit is. A rule match makes its label certain in that unit."""
        rules: set[str] = set()
        per_unit = []
        only_codes = True
        for doc in units:
            unit = dict(doc.cats)
            for span in doc.spans["rules"]:
                rules.add(span.label_)
                unit[span.label_] = max(unit[span.label_], RULE_SCORE)
            only_codes = only_codes and _nothing_but_a_code(doc)
            per_unit.append(unit)
        if len(per_unit) == 1:
            raw = per_unit[0]
        else:
            raw = {
                label: (min if label == NOT_A_REQUEST else max)(unit[label] for unit in per_unit)
                for label in LABELS
            }
        scores = {label: round(float(raw[label]), 4) for label in LABELS}
        labels, needs_review = decide(scores, self.thresholds)
        if only_codes:
            labels, needs_review = [NOT_A_REQUEST], False
        # When the model read parts of the message, identifiers come from all of it.
        found = units[0]._.identifiers if whole else find_identifiers(normalise(original))
        entities: list[dict[str, object]] = [
            {
                **ident.as_dict(),
                # Case matters for usernames; the model read lower case at the same offsets.
                "text": original[ident.start : ident.end]
                if ident.label == "USERNAME"
                else ident.text,
            }
            for ident in found
        ]
        return Prediction(
            labels=labels,
            scores=scores,
            lang=detect_language(original),
            needs_review=needs_review,
            entities=entities,
            rules=sorted(rules),
        )


def _nothing_but_a_code(doc: Doc) -> bool:
    """The rule layer saw a code typed back, or no words at all (`RequestRules`)."""
    return any(
        span.label_ == NOT_A_REQUEST and span.start == 0 and span.end == len(doc)
        for span in doc.spans["rules"]
    )


class LazyRightsClassifier:
    """Loads the model on first use: CLI commands that never classify don't pay for spaCy and
    jieba (about two seconds), and every desk in one process shares one loaded model."""

    def __init__(self, path: Path = MODEL_DIR) -> None:
        self.path = path

    @property
    def model(self) -> RightsClassifier:
        return _loaded(self.path)

    def classify(self, subject: str, text: str) -> Classification:
        return self.model.classify(subject, text)


@cache
def _loaded(path: Path) -> RightsClassifier:
    return RightsClassifier.load(path)


def model_exists(path: Path = MODEL_DIR) -> bool:
    return (path / META_FILE).exists()
