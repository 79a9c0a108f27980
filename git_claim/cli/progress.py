"""One status line on a terminal for long work; nothing at all on a pipe."""

from __future__ import annotations

import sys

MIN_TOTAL = 50  # below this, work is quick enough to need no progress


class StatusLine:
    """`update(done, total)` redraws one line on stderr when it is a terminal."""

    def __init__(self, label: str) -> None:
        self.label = label
        self.enabled = sys.stderr.isatty()
        self.shown = False

    def update(self, done: int, total: int) -> None:
        if not self.enabled or total < MIN_TOTAL:
            return
        if done % max(1, total // 100) == 0 or done == total:
            sys.stderr.write(f"\r{self.label}: {done}/{total}")
            sys.stderr.flush()
            self.shown = True

    def finish(self) -> None:
        if self.shown:
            sys.stderr.write("\r\x1b[K")
            sys.stderr.flush()
            self.shown = False

