"""Which tracker a backlog source names: `gh`, `-` (stdin) or a file.

Kept apart from `base`, the interface every tracker implements, so that the
trackers import the interface and only this module imports the trackers.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import TextIO

from .base import BacklogSourceError, Tracker


def open_tracker(source: str, *, stdin: TextIO | None = None, cwd: Path | None = None,
                 timeout: float = 20.0, links: bool = True) -> Tracker:
    """`gh` for GitHub through the gh CLI, `-` for a backlog on stdin, else a file.

    A file that happens to be called `gh` is reached as `./gh`. `links`
    False: gh reads no blockers or sub-issues (claim.dependencies off); a
    file's own are free to read and ignored by the rules.
    """
    from .filesource import FileTracker
    from .gh import GhTracker

    if source == "gh":
        return GhTracker(cwd=cwd, timeout=timeout, links=links)
    if source == "-":
        return FileTracker.from_stream(stdin if stdin is not None else sys.stdin, name="stdin")
    if not source:
        raise BacklogSourceError("the backlog source is empty: give `gh`, `-` or a file")
    path = Path(source)
    if cwd is not None and not path.is_absolute():
        path = cwd / path
    return FileTracker.from_path(path, shown=source)
