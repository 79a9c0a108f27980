"""Where the backlog comes from and where claims are shown: gh, a file or stdin.

The tracker is display only; the git remote stays the lock. See `base`.

The names below are looked up on first use (PEP 562), not imported with the
package: every command imports `tracker.base` (the interface), and importing
a submodule runs this file first; the gh and file trackers are imported only
by the commands that open one (through `sources.open_tracker`).
"""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .base import BacklogSourceError, PullRequest, Ticket, Tracker, TrackerError
    from .filesource import FileTracker
    from .gh import GhAuthError, GhCommandError, GhTracker
    from .sources import open_tracker

__all__ = ["BacklogSourceError", "FileTracker", "GhAuthError", "GhCommandError", "GhTracker",
           "PullRequest", "Ticket", "Tracker", "TrackerError", "open_tracker"]

_HOME = {"BacklogSourceError": "base", "PullRequest": "base", "Ticket": "base",
         "Tracker": "base", "TrackerError": "base", "FileTracker": "filesource",
         "GhAuthError": "gh", "GhCommandError": "gh", "GhTracker": "gh",
         "open_tracker": "sources"}


def __getattr__(name: str) -> Any:
    if name not in _HOME:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(import_module(f".{_HOME[name]}", __name__), name)
