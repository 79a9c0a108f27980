"""Where the backlog comes from and where claims are shown: gh, a file or stdin.

The tracker is display only; the git remote stays the lock. See `base`.
"""

from .base import BacklogSourceError, PullRequest, Ticket, Tracker, TrackerError
from .filesource import FileTracker
from .gh import GhAuthError, GhCommandError, GhTracker
from .sources import open_tracker

__all__ = ["BacklogSourceError", "FileTracker", "GhAuthError", "GhCommandError", "GhTracker",
           "PullRequest", "Ticket", "Tracker", "TrackerError", "open_tracker"]
