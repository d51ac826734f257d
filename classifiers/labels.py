"""The label set, in one order used for scores, tables and thresholds."""

from __future__ import annotations

from rightsdesk.models import RequestType

LABELS: tuple[str, ...] = tuple(t.value for t in RequestType)
NOT_A_REQUEST = RequestType.NOT_RIGHTS_REQUEST.value
