"""`classifier retrain`: learn from the DPO's corrections, and replace the live model only when
that makes nothing worse.

The candidate is trained on the data plus the corrections (which only ever join the train
split), then it and the live model are judged on the same fixed test split and the same
held-out sets. It replaces the live model only when, on each of them, neither macro-F1 nor the
exact label set goes down and no more rights requests are dismissed unread; otherwise the old
model stays and the reasons are given. The replacement is a directory swap with the meta file
written last, which is what a running service watches (classifiers.model.LazyRightsClassifier).
"""

from __future__ import annotations

import shutil
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from classifiers.dataset import LabelledExample
from classifiers.heldout import HeldOut, judge
from classifiers.model import RightsClassifier, model_exists
from classifiers.training import EPOCHS, Progress, Report, evaluate, save, train


@dataclass(frozen=True)
class Figures:
    macro_f1: float
    exact_match: float
    dismissed: int = 0


@dataclass
class Outcome:
    replaced: bool
    version: str | None
    old_version: str | None
    # Per judged set ("test", a held-out file's name): (old, new).
    figures: dict[str, tuple[Figures | None, Figures]] = field(default_factory=dict)
    reasons: list[str] = field(default_factory=list)


def retrain(
    examples: Sequence[LabelledExample],
    target: Path,
    heldout: Mapping[str, Sequence[HeldOut]],
    architecture: str = "bow",
    progress: Progress | None = None,
    epochs: int = EPOCHS,
) -> Outcome:
    old = RightsClassifier.load(target) if model_exists(target) else None
    candidate = train(examples, architecture, epochs, progress=progress).classifier
    test = [ex for ex in examples if ex.split == "test"]
    outcome = Outcome(replaced=False, version=None, old_version=old.version if old else None)
    judged: dict[str, tuple[Figures | None, Figures]] = {}
    new_test = evaluate(candidate, test, "test")
    judged["test"] = (
        _test_figures(old, test),
        Figures(new_test.macro_f1, new_test.exact_match),
    )
    for name, items in heldout.items():
        new = judge(candidate, items, name)
        before = judge(old, items, name) if old else None
        judged[name] = (
            Figures(before.macro_f1, before.exact_match, len(before.dismissed)) if before else None,
            Figures(new.macro_f1, new.exact_match, len(new.dismissed)),
        )
    outcome.figures = judged
    for name, (before_f, after) in judged.items():
        if before_f is None:
            continue
        if after.macro_f1 < before_f.macro_f1:
            outcome.reasons.append(
                f"{name}: macro-F1 {after.macro_f1:.3f} < {before_f.macro_f1:.3f} now"
            )
        if after.exact_match < before_f.exact_match:
            outcome.reasons.append(
                f"{name}: exact {after.exact_match:.3f} < {before_f.exact_match:.3f} now"
            )
        if after.dismissed > before_f.dismissed:
            outcome.reasons.append(
                f"{name}: {after.dismissed} requests dismissed unread, {before_f.dismissed} now"
            )
    if outcome.reasons:
        return outcome
    install(candidate, target, [new_test])
    outcome.replaced = True
    outcome.version = candidate.version
    return outcome


def _test_figures(old: RightsClassifier | None, test: Sequence[LabelledExample]) -> Figures | None:
    if old is None:
        return None
    report = evaluate(old, test, "test")
    return Figures(report.macro_f1, report.exact_match)


def install(classifier: RightsClassifier, target: Path, reports: Sequence[Report] = ()) -> None:
    """Save beside the live model, then swap the directories: a reader sees the old model or
    the new one, and the watched meta file changes once, when the new one is in place."""
    staging = target.with_name(f".{target.name}.new")
    retired = target.with_name(f".{target.name}.old")
    for leftover in (staging, retired):
        shutil.rmtree(leftover, ignore_errors=True)
    staging.mkdir(parents=True)
    save(classifier, staging, reports)
    if target.exists():
        target.rename(retired)
    staging.rename(target)
    shutil.rmtree(retired, ignore_errors=True)
