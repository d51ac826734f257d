"""`RightsClassifier`: the trained pipeline plus its per-label thresholds, behind the core's
`Classifier` protocol (`rightsdesk.pipeline`)."""

from __future__ import annotations

import json
import logging
import re
import threading
import time
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field, replace
from functools import cache
from pathlib import Path
from typing import Any

import spacy
from spacy.language import Language
from spacy.tokens import Doc

from classifiers.ask_patterns import ASK_PATTERNS, not_asked
from classifiers.citations import cited_labels
from classifiers.components import MINOR, doc_text  # (also registers the spaCy factories)
from classifiers.labels import LABELS, NOT_A_REQUEST
from classifiers.pipeline import TEXTCAT, adapt_tokenizer, clause_doc
from classifiers.rules import RULES, child_ages, guardian_then_age, states_child_under_14
from classifiers.text import (
    adds_an_ask,
    asks_how,
    business_letter,
    clauses,
    detect_language,
    hypothetical,
    is_ask,
    joined,
    keeps_account,
    makes_complaint,
    model_units,
    normalise,
    rights_signal,
    statements,
    tells_a_past_request,
    tells_it_done,
)
from classifiers.units import item_labels, list_item, names_an_account, only_asks_about
from rightsdesk.identifiers import find_identifiers
from rightsdesk.models import RequestType
from rightsdesk.pipeline import Classification

MODEL_DIR = Path(__file__).parent / "model"
META_FILE = "rightsdesk.json"
RULE_SCORE = 0.99  # a rule match: as sure as the model ever gets, still below 1 for the eye
# An article cited in an ask (classifiers.citations): evidence, a little below a rule's certainty.
CITED_SCORE = 0.95
ACCOUNT_DELETION, ERASURE, DECEASED = "account_deletion", "erasure", "deceased"
# Who asks, not what: a rule for these holds in a question too.
WHO_ASKS = frozenset({"minor", "deceased", NOT_A_REQUEST})
# Beside a cited ask, another sentence of the letter counts as a second ask only this sure.
SECOND_ASK = 0.8
# "Not a request" is never final below this score, whatever dev says (classifiers.training):
# 0.85 caught every request on our test split and our own probe of other voices; 0.9 leaves room
# for writers we have not read, at about 12% of messages to review.
SURE_NOT_MIN = 0.9
# What a clause that asks how ("how do I withdraw my consent?") may add: not the right itself.
QUESTION_LABELS = ("inquiry", "complaint", "minor", "deceased")
REQUEST_LABELS = tuple(label for label in LABELS if label != NOT_A_REQUEST)
# Below this "not a request" score, a message no label is sure of is guessed a request
# (`decide`): on the model of 2026-12-01 it raised exact label sets on the test split by 0.3
# points and on classifiers/devsets by 2.6 (0.0: as before; 0.3 and 0.5 about the same).
BEST_GUESS_NOT = 0.5
NO_LEAN = 0.001
# A clause adds a label at this score or more, unless the model's meta says otherwise (tuned on
# dev, classifiers.training); above 1, clauses are not read (models from before clauses).
CLAUSE_GATE = 0.7

log = logging.getLogger(__name__)


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


def decide(
    scores: dict[str, float],
    thresholds: dict[str, float],
    sure_not: float = 0.0,
    signal: bool = False,
) -> tuple[list[str], bool]:
    """Labels over their thresholds; doubt when none is, or when "not a request" and a request
    both are (a person reads those: answering either way could be wrong).

    Safety before accuracy: "not a request" is final only when its score reaches `sure_not`
    (tuned on dev so that no request there is dismissed) and the message has no rights signal
    (words of one: classifiers.text.rights_signal); otherwise a person reads it. Dismissing a
    request unread is the one mistake the desk cannot take back."""
    labels = [label for label in LABELS if scores[label] >= thresholds[label]]
    if not labels:
        # Unsure of everything: the best guess is a request unless "not a request" is more
        # likely than not. Each label's score is its own yes/no; a message in words the model
        # has not seen scores low on all of them, "not a request" included, and then the
        # request it leans to is the better guess for the person who reads it.
        best = max(REQUEST_LABELS, key=lambda label: scores[label])
        # A request scored nothing at all (0.0) is no lean: then the plain best guess.
        if scores[NOT_A_REQUEST] >= BEST_GUESS_NOT or scores[best] < NO_LEAN:
            return [max(LABELS, key=lambda label: scores[label])], True
        return [best], True
    if NOT_A_REQUEST in labels and len(labels) > 1:
        return [label for label in labels if label != NOT_A_REQUEST], True
    if labels == [NOT_A_REQUEST]:
        return labels, signal or scores[NOT_A_REQUEST] < sure_not
    return labels, False


class RightsClassifier:
    def __init__(self, nlp: Language, thresholds: dict[str, float], meta: dict[str, Any]) -> None:
        self.nlp = nlp
        self.thresholds = thresholds
        self.meta = meta
        self.sure_not = float(meta.get("sure_not", 0.0))
        self.clause_gate = float(meta.get("clause_gate", 1.01))
        # spaCy's vocabulary keeps every string it meets (addresses, numbers, names): in a
        # service that classifies for months it grew without bound (20,000 messages: 8,762 ->
        # 89,042 strings, +37 MB). Each chunk is read in a memory zone, which forgets the new
        # strings when it closes; zones share the vocabulary, so one chunk at a time.
        self._zone = threading.Lock()

    @property
    def version(self) -> str | None:
        """A digest of the weights and thresholds (`training.save`): the same data and code
        give the same version, and every ticket's classification records it."""
        version = self.meta.get("version")
        return str(version) if version else None

    @classmethod
    def load(cls, path: Path = MODEL_DIR) -> RightsClassifier:
        meta_path = path / META_FILE
        if not meta_path.exists():
            raise ModelMissing(
                f"no trained classifier at {path}: run `rightsdesk classifier train`"
            )
        meta = json.loads(meta_path.read_text(encoding="utf-8"))
        nlp = adapt_tokenizer(spacy.load(path), str(meta.get("architecture", "bow")))
        return cls(nlp, meta["thresholds"], meta)

    def predict(self, subject: str, text: str) -> Prediction:
        return next(self.predict_many([(subject, text)]))

    def predict_many(
        self, items: Iterable[tuple[str, str]], batch_size: int = 256
    ) -> Iterator[Prediction]:
        """Streams: holds about one batch of messages at a time, yields in input order."""
        chunk: list[tuple[str, str]] = []
        for item in items:
            chunk.append(item)
            if len(chunk) >= batch_size:
                yield from self._predict_chunk(chunk, batch_size)
                chunk = []
        if chunk:
            yield from self._predict_chunk(chunk, batch_size)

    def _predict_chunk(self, chunk: list[tuple[str, str]], batch_size: int) -> Iterator[Prediction]:
        # Per message: its original text, normalised text, how many units it has, whether its
        # one unit is all of it (then the unit's identifiers are the message's), and whether
        # its ask was found.
        pending: list[tuple[str, str, int, bool, bool]] = []
        units: list[str] = []
        for subject, text in chunk:
            original = joined(subject, text)
            plain = normalise(original)
            parts, understood = model_units(subject, text)
            pending.append((original, plain, len(parts), parts == [plain], understood))
            units.extend(parts)
        with self._zone, self.nlp.memory_zone():
            found = self._read(pending, units, batch_size)
        yield from found

    def _read(
        self, pending: list[tuple[str, str, int, bool, bool]], units: list[str], batch_size: int
    ) -> list[Prediction]:
        """The chunk's predictions, as plain values: its Docs and Spans end with this call,
        inside the memory zone (what they point at is forgotten when the zone closes)."""
        docs = list(self.nlp.pipe(units, batch_size=batch_size))
        parts_of = self._clauses(docs, batch_size)
        found: list[Prediction] = []
        at = 0
        for original, plain, count, whole, understood in pending:
            group, group_clauses = docs[at : at + count], parts_of[at : at + count]
            at += count
            one = self._prediction(original, plain, group, group_clauses, whole)
            found.append(one if understood else replace(one, needs_review=True))
        return found

    def _clauses(
        self, docs: list[Doc], batch_size: int
    ) -> list[list[tuple[str, dict[str, float]]]]:
        """Per unit, its clauses' text and textcat scores, when it has two or more
        (classifiers.text.clauses); the clauses reuse the unit's tokens."""
        if self.clause_gate > 1:
            return [[] for _ in docs]
        spans = [clauses(doc_text(doc)) for doc in docs]
        made = [
            clause_doc(self.nlp, doc, a, b)
            for doc, found in zip(docs, spans, strict=True)
            for a, b in found
        ]
        if made:
            textcat: Any = self.nlp.get_pipe(TEXTCAT)
            made = list(textcat.pipe(made, batch_size=batch_size))
        scored = iter(made)
        return [
            [(doc_text(c), dict(c.cats)) for c in (next(scored) for _ in found)] for found in spans
        ]

    def classify(self, subject: str, text: str) -> Classification:
        """The core's `Classifier` protocol."""
        return self._classification(self.predict(subject, text))

    def classify_many(self, items: Sequence[tuple[str, str]]) -> list[Classification]:
        """`classify` for many messages: one pass of the pipeline for all of them (the
        intake's batches), the same answers as one call each."""
        return [self._classification(found) for found in self.predict_many(items)]

    def _classification(self, found: Prediction) -> Classification:
        return Classification(
            types=[RequestType(label) for label in found.labels],
            needs_review=found.needs_review,
            language=found.lang,
            scores=found.scores,
            entities=found.entities,
            model_version=self.version,
        )

    def _prediction(
        self,
        original: str,
        plain: str,
        units: list[Doc],
        unit_clauses: list[list[tuple[str, dict[str, float]]]],
        whole: bool,
    ) -> Prediction:
        """A message asks for a type if any of its units does; it is "not a request" only if
        every unit is. A rule match makes its label certain in that unit; a clause of a unit
        adds the labels it is sure of (`clause_gate`). `plain` is the message normalised."""
        rules: set[str] = set()
        per_unit = []
        cited: list[set[str]] = []
        another: list[bool] = []  # the unit says it adds an ask ("in addition", "另外")
        history: list[bool] = []  # the unit tells of a request made before
        only_codes = True
        for doc, parts in zip(units, unit_clauses, strict=True):
            unit = dict(doc.cats)
            text = doc_text(doc)
            how = asks_how(text)
            self._add_clauses(unit, parts)
            for span in doc.spans["rules"]:
                if (how or hypothetical(text, span.start_char, span.end_char)) and (
                    span.label_ not in WHO_ASKS
                ):
                    # "how do I delete my account?", "if I close my account, what stays?":
                    # they ask about it, not for it.
                    continue
                rules.add(span.label_)
                unit[span.label_] = max(unit[span.label_], RULE_SCORE)
            for label, word, pattern in ASK_PATTERNS:
                hit = pattern.search(text) if word in text else None
                if label == "inquiry" and makes_complaint(text):
                    continue  # the explanation a complaint demands is the complaint's
                if hit and not how and not not_asked(text, hit.start(), hit.end()):
                    rules.add(label)
                    unit[label] = max(unit[label], RULE_SCORE)
            if how and whole and only_asks_about(text):
                self._as_question(unit)
            told = not whole and tells_a_past_request(text)
            if told:
                # A letter's history ("In October I asked you to delete my recordings"): that
                # request was made then; what the letter asks now is in its other sentences.
                for label in REQUEST_LABELS:
                    if label not in WHO_ASKS and unit[label] < RULE_SCORE:
                        unit[label] = min(unit[label], 0.9 * self.thresholds[label])
            # An item of a list an ask opened asks, verb or no verb; its leading verb ("（二）删除
            # …") is evidence like an article.
            # (The cheap looks first: the ask patterns are long, and most messages cite nothing.)
            item = not whole and list_item(text)
            asked = _may_cite(text) and not told and (item or is_ask(text))
            cites = cited_labels(text) if asked else set()
            cites |= item_labels(text) if item and not told else set()
            for label in cites:
                rules.add(f"cited:{label}")
                unit[label] = max(unit[label], CITED_SCORE)
            if cites:  # a sentence that asks and cites the article of a right is a request
                unit[NOT_A_REQUEST] = min(unit[NOT_A_REQUEST], 1 - CITED_SCORE)
            if keeps_account(text) and unit[ACCOUNT_DELETION] < RULE_SCORE:
                # "delete it all except the account": an erasure, whatever the words.
                unit[ERASURE] = max(unit[ERASURE], unit[ACCOUNT_DELETION])
                unit[ACCOUNT_DELETION] = min(unit[ACCOUNT_DELETION], 0.05)
            if not whole and not names_an_account(text):
                unit[ACCOUNT_DELETION] = min(unit[ACCOUNT_DELETION], 0.05)
            if not whole and makes_complaint(text):  # in a letter; short ones are the model's
                rules.add("complaint")
                unit["complaint"] = max(unit["complaint"], RULE_SCORE)
            cited.append(cites)
            history.append(told)
            another.append(adds_an_ask(text))
            only_codes = only_codes and _nothing_but_a_code(doc)
            per_unit.append(unit)
        if len(per_unit) > 1 and any(found - WHO_ASKS for found in cited):
            # (第四十九条 alone says who asks, not what: the other sentences say that.)
            self._second_asks(per_unit, cited, another)
        if len(per_unit) == 1:
            raw = per_unit[0]
        else:
            # A sentence telling of an old request says nothing of whether this letter asks
            # ("本人于11月2日提交的删除申请，贵公司已回复…"): "not a request" is the others'.
            now = [unit for unit, old in zip(per_unit, history, strict=True) if not old]
            raw = {label: max(unit[label] for unit in per_unit) for label in LABELS}
            raw[NOT_A_REQUEST] = min(unit[NOT_A_REQUEST] for unit in now or per_unit)
        if not whole and all(history) and any(map(tells_it_done, map(doc_text, units))):
            # It only confirms that we carried out its old request: nothing is asked now.
            raw = {**raw, NOT_A_REQUEST: max(raw[NOT_A_REQUEST], BEST_GUESS_NOT)}
        if (
            not whole
            and raw[ACCOUNT_DELETION] < CITED_SCORE  # not asked in words, nor by its article
            and any(keeps_account(sentence) for sentence in statements(plain))
        ):
            # A letter says in one sentence that the account stays and asks in another to
            # erase ("please erase the data listed above"): an erasure, not a closure.
            raw = {
                **raw,
                ERASURE: max(raw[ERASURE], raw[ACCOUNT_DELETION]),
                ACCOUNT_DELETION: min(raw[ACCOUNT_DELETION], 0.05),
            }
        if not whole and _states_a_child(plain):
            # Who asks (a guardian) is often said outside the sentence that asks.
            raw = {**raw, MINOR: max(raw[MINOR], RULE_SCORE)}
            rules.add(MINOR)
        if not whole and _states_a_death(plain):
            # So is who asks for a deceased user ("I am the son of the late Mr Lin").
            raw = {**raw, DECEASED: max(raw[DECEASED], RULE_SCORE)}
            rules.add(DECEASED)
        scores = {label: round(float(raw[label]), 4) for label in LABELS}
        labels, needs_review = decide(scores, self.thresholds, self.sure_not, rights_signal(plain))
        if ACCOUNT_DELETION in labels and ERASURE in labels:
            # Closing the account deletes its data: one ask, not two (LABELS.md).
            labels = [label for label in labels if label != ERASURE]
        if not whole and business_letter(plain):
            # Its best label is "not a request"; a person still reads it (safety before
            # accuracy: the sender's words are all the rule has to go on).
            labels, needs_review = [NOT_A_REQUEST], True
        if only_codes:
            labels, needs_review = [NOT_A_REQUEST], False
        # When the model read parts of the message, identifiers come from all of it.
        found = units[0]._.identifiers if whole else find_identifiers(plain)
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

    def _add_clauses(
        self, unit: dict[str, float], parts: list[tuple[str, dict[str, float]]]
    ) -> None:
        """A unit with two asks ("fix my name and stop the newsletter", "thanks; also delete
        X") gives each half the evidence when read whole: a clause read alone adds the one
        label it scores highest, when that score reaches `clause_gate` and beats its "not a
        request"; the unit is then "not a request" only as much as that clause is. A clause
        that asks how adds only what a question can be (QUESTION_LABELS)."""
        for text, cats in parts:
            allowed = QUESTION_LABELS if asks_how(text) else REQUEST_LABELS
            best = max(allowed, key=lambda label: cats[label])
            score = cats[best]
            if score >= self.clause_gate and score > cats[NOT_A_REQUEST] and score > unit[best]:
                unit[best] = score
                unit[NOT_A_REQUEST] = min(unit[NOT_A_REQUEST], cats[NOT_A_REQUEST])

    def _as_question(self, unit: dict[str, float]) -> None:
        """A question about a right asks about it: the right's score is the inquiry's."""
        for label in REQUEST_LABELS:
            if label not in QUESTION_LABELS and unit[label] < RULE_SCORE:
                unit["inquiry"] = max(unit["inquiry"], unit[label])
                unit[label] = min(unit[label], 0.9 * self.thresholds[label])

    def _second_asks(
        self, per_unit: list[dict[str, float]], cited: list[set[str]], another: list[bool]
    ) -> None:
        """A letter whose ask cites its article has said what it asks: its other sentences
        (the details of that ask, conditions, "tell me who received it") add a label only
        when the model is sure of it (SECOND_ASK), and never `inquiry` beside a cited access
        request (what was shared with whom is part of access, GDPR Art. 15(1)(c)). The same
        holds for the labels a citing sentence does not cite. A sentence that says it adds an
        ask ("In addition, I ask you to…", "另外，请…") is heard like
        any other."""
        all_cited = set().union(*cited)
        for unit, cites, adds in zip(per_unit, cited, another, strict=True):
            if adds and not cites:
                continue
            if cites and cites <= WHO_ASKS:
                # PIPL 第四十九条 says who asks (a relative), not what: the sentence's own
                # words (查阅、复制, 注销) say that, as in a sentence with no article.
                continue
            requests = [label for label in REQUEST_LABELS if label not in WHO_ASKS]
            top = max(requests, key=lambda label: unit[label])
            for label in LABELS:
                if label == NOT_A_REQUEST or label in cites or label in rule_labels(unit):
                    continue
                # A sentence beside the cited ask adds at most its own best label: the items
                # of an access request ("a copy of that data, including call recordings…")
                # also score erasure, whose words they share.
                weak = unit[label] < SECOND_ASK or (
                    not cites and label != top and label not in WHO_ASKS
                )
                if weak or (label == "inquiry" and "access" in all_cited):
                    unit[label] = min(unit[label], 0.9 * self.thresholds[label])


def rule_labels(unit: dict[str, float]) -> set[str]:
    """Labels a rule made certain in a unit (RULE_SCORE): never weakened."""
    return {label for label, score in unit.items() if score >= RULE_SCORE}


def _may_cite(text: str) -> bool:
    """A cheap look before the citation patterns: most messages name no article."""
    return "第" in text or "art" in text


def _states_a_child(text: str) -> bool:
    """A sentence of the writer's own (not a citation of the policy's "children under 14")
    states a child's age under 14."""
    return any(
        states_child_under_14(found)
        for sentence in statements(text)
        for found in child_ages(sentence)
    ) or any(states_child_under_14(found) for found in guardian_then_age(text))


_DEATH = re.compile(
    "|".join(
        rf"\b{re.escape(phrase)}\b" if phrase.isascii() else re.escape(phrase)
        for phrase in RULES[DECEASED]
    )
)


def _states_a_death(text: str) -> bool:
    """A sentence of the writer's own (not a citation of PIPL 第四十九条's "近亲属…死者")
    says someone died."""
    return any(_DEATH.search(sentence) for sentence in statements(text))


def _nothing_but_a_code(doc: Doc) -> bool:
    """The rule layer saw a code typed back, or no words at all (`RequestRules`)."""
    return any(
        span.label_ == NOT_A_REQUEST and span.start == 0 and span.end == len(doc)
        for span in doc.spans["rules"]
    )


class LazyRightsClassifier:
    """Loads the model on first use: CLI commands that never classify don't pay for spaCy and
    jieba (about two seconds), and every desk in one process shares one loaded model.

    A new model (`classifier retrain` replaces the directory) is picked up without a restart:
    at most every `check_seconds` the meta file's stamp is compared and, when it changed, the
    new model loads in a thread while the old one goes on answering; `reload()` (SIGHUP in the
    service) loads it at once. A model that fails to load leaves the old one serving."""

    def __init__(self, path: Path = MODEL_DIR, check_seconds: float = 10.0) -> None:
        self.path = path
        self.check_seconds = check_seconds
        self._checked = time.monotonic()

    @property
    def model(self) -> RightsClassifier:
        return _shared(self.path).current()

    def reload(self) -> bool:
        """Load the model on disk if it is not the one serving; True when it changed."""
        return _shared(self.path).reload()

    def classify(self, subject: str, text: str) -> Classification:
        now = time.monotonic()
        if now - self._checked >= self.check_seconds:
            self._checked = now
            _shared(self.path).reload_soon()
        return self.model.classify(subject, text)

    def classify_many(self, items: Sequence[tuple[str, str]]) -> list[Classification]:
        now = time.monotonic()
        if now - self._checked >= self.check_seconds:
            self._checked = now
            _shared(self.path).reload_soon()
        return self.model.classify_many(items)


class _Live:
    """The model serving from one directory, and the stamp of the meta file it came from."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.lock = threading.Lock()
        self.stamp: tuple[int, int] | None = None
        self.loaded: RightsClassifier | None = None
        self.loading: threading.Thread | None = None

    def current(self) -> RightsClassifier:
        with self.lock:
            if self.loaded is None:
                self.stamp = _stamp(self.path)
                self.loaded = RightsClassifier.load(self.path)
            return self.loaded

    def reload_soon(self) -> None:
        """A stamp check (one stat); a changed model loads in a thread of its own."""
        if _stamp(self.path) == self.stamp or (self.loading and self.loading.is_alive()):
            return
        self.loading = threading.Thread(target=self.reload, name="classifier-reload", daemon=True)
        self.loading.start()

    def reload(self) -> bool:
        stamp = _stamp(self.path)
        if self.loaded is not None and stamp == self.stamp:
            return False
        try:
            fresh = RightsClassifier.load(self.path)  # outside the lock: the old one answers
        except (ModelMissing, OSError, ValueError, KeyError) as exc:
            # Mid-replacement, or a broken model: keep serving the old one.
            log.warning("classifier at %s not reloaded: %s", self.path, exc)
            return False
        with self.lock:
            old = self.loaded.version if self.loaded else None
            self.loaded, self.stamp = fresh, stamp
        log.info("classifier reloaded from %s (version %s, was %s)", self.path, fresh.version, old)
        return True


def _stamp(path: Path) -> tuple[int, int] | None:
    try:
        found = (path / META_FILE).stat()
    except OSError:
        return None
    return found.st_mtime_ns, found.st_ino


@cache
def _shared(path: Path) -> _Live:
    return _Live(path)


def model_exists(path: Path = MODEL_DIR) -> bool:
    return (path / META_FILE).exists()
