"""The reaper's memory: when it first saw each claim in its current state.

Rule 2 of the staleness rule (docs/protocol.md, "Clock skew") frees a claim
that this reaper has itself seen unchanged for the TTL. Kept between runs in
the git dir.
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .claims import ClaimView


class ReaperMemory:
    """When this reaper first saw each claim in its current state (its own clock)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        try:
            self.seen: dict[str, list[Any]] = json.loads(path.read_text())
        except (OSError, ValueError):
            self.seen = {}
        self.updated: dict[str, list[Any]] = {}

    def unchanged_for(self, view: ClaimView, at: float) -> float:
        key = [view.oid, view.notes_tip]
        previous = self.seen.get(view.ticket)
        first = previous[2] if previous and previous[:2] == key and \
            isinstance(previous[2], (int, float)) else at
        self.updated[view.ticket] = [*key, min(first, at)]
        return at - min(first, at)

    def save(self) -> None:
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            fd, temp = tempfile.mkstemp(dir=self.path.parent, prefix=".tmp-")
            with os.fdopen(fd, "w") as handle:
                json.dump(self.updated, handle)
            os.replace(temp, self.path)
        except OSError:
            pass  # memory is an optimisation; the timestamp rule still holds
