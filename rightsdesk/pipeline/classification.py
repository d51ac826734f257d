"""The classification seam: what the pipeline asks of a classifier, and the one to use
when no model is installed."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Protocol

from rightsdesk.models import RequestType


@dataclass(frozen=True)
class Classification:
    types: list[RequestType]
    needs_review: bool
    language: str | None = None
    scores: dict[str, float] = field(default_factory=dict)
    # Identifiers in the text (`rightsdesk.identifiers.Identifier.as_dict`; ID numbers masked).
    entities: list[dict[str, object]] = field(default_factory=list)
    model_version: str | None = None  # which trained model said so (None: no model)


class Classifier(Protocol):
    def classify(self, subject: str, text: str) -> Classification: ...


class ClassifiesOffLoop(Protocol):
    """How the pipeline and the chat call the classifier: awaited, off the event loop, on a
    bounded input (`rightsdesk.classifying.OffLoopClassifier`)."""

    async def classify(self, subject: str, text: str) -> Classification: ...

    def classify_here(self, subject: str, text: str) -> Classification:
        """The same, in the calling thread: for a caller already off the loop."""
        ...

    def classify_many_here(self, items: Sequence[tuple[str, str]]) -> list[Classification]:
        """Many (subject, text) at once, in the calling thread, in their order."""
        ...


class TriageEverything:
    """The classifier to use when no model is installed: every request is an `inquiry` in the
    DPO's triage queue, so a person reads it before anything is answered automatically."""

    def classify(self, subject: str, text: str) -> Classification:
        return Classification(types=[RequestType.INQUIRY], needs_review=True)
