"""How the desk calls its classifier: a bounded input, in the CPU pool, never on the loop.

The classifier's cost grows with its input, and on some inputs faster than linearly: one
200 KB "word" in a subject took 74 s (a regular-expression scan for e-mail addresses goes
back over the whole run at every position). So what it reads is bounded twice:

- a prefix: `[classifier] max_subject_chars` of the subject, `max_text_chars` of the text
  (the request is stated at the top; the ticket keeps all of it for a person);
- runs: a run of more than `max_run_chars` characters without white space (no word is that
  long; jieba and the identifier patterns handle each run whole) gets a space every
  `max_run_chars` characters, so no scan goes back further than that.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from functools import cache

from rightsdesk.config_sections import ClassifierSettings
from rightsdesk.offload import CpuPool
from rightsdesk.pipeline import Classification, Classifier


@cache
def _long_run(max_run: int) -> re.Pattern[str]:
    return re.compile(rf"\S{{{max_run + 1},}}")


def bound_runs(text: str, max_run: int) -> str:
    """`text` with a space after every `max_run` characters of a longer run without one."""
    if len(text) <= max_run:
        return text
    return _long_run(max_run).sub(
        lambda m: " ".join(m.group(0)[i : i + max_run] for i in range(0, len(m.group(0)), max_run)),
        text,
    )


def bounded_input(subject: str, text: str, limits: ClassifierSettings) -> tuple[str, str]:
    """What the classifier reads of a message: see the module's docstring."""
    return (
        bound_runs(subject[: limits.max_subject_chars], limits.max_run_chars),
        bound_runs(text[: limits.max_text_chars], limits.max_run_chars),
    )


class OffLoopClassifier:
    """The desk's classifier as the pipeline and the chat call it: `await classify(...)`."""

    def __init__(self, classifier: Classifier, limits: ClassifierSettings, cpu: CpuPool) -> None:
        self.classifier = classifier
        self.limits = limits
        self.cpu = cpu

    async def classify(self, subject: str, text: str) -> Classification:
        return await self.cpu.run(self.classify_here, subject, text)

    def classify_here(self, subject: str, text: str) -> Classification:
        """In the calling thread, which must not be the event loop's."""
        return self.classifier.classify(*bounded_input(subject, text, self.limits))

    def classify_many_here(self, items: Sequence[tuple[str, str]]) -> list[Classification]:
        """Many messages in one call, in the calling thread (off the loop): a model that
        takes a batch (`classify_many`) runs its pipeline once for all of them, which costs
        less a message than one call each; any other classifier is asked one at a time."""
        bounded = [bounded_input(subject, text, self.limits) for subject, text in items]
        many = getattr(self.classifier, "classify_many", None)
        if many is None:
            return [self.classifier.classify(subject, text) for subject, text in bounded]
        found: list[Classification] = many(bounded)
        return found
