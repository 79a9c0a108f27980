"""Exit codes and the typed errors that carry them.

Scripts and agents branch on these codes, so they live in one enum and are
documented in the man pages; the protocol raises, the CLI maps to an exit.
"""

from __future__ import annotations

from enum import IntEnum
from typing import Any


class ExitCode(IntEnum):
    OK = 0
    NO = 1  # the answer is no: lost, held by another, not the holder, refused
    USAGE = 2  # usage or bad input
    GIT_ERROR = 3  # remote or local git error: unreachable, auth, not a repository
    LOST = 4  # `git claim run`: the claim was lost while the command ran
    INCOMPLETE = 5  # work left undone: claims a reap or a compaction could not change
    EMPTY = 6  # `--next`: nothing in the backlog is eligible (nothing was claimed)
    INTERRUPTED = 130  # Ctrl-C


class ClaimError(Exception):
    """Base of every error a user may see; its message is one line."""

    exit_code: ExitCode = ExitCode.GIT_ERROR
    kind: str = "error"

    def __init__(self, message: str, **details: Any) -> None:
        super().__init__(message)
        self.message = message
        self.details = details


class UsageError(ClaimError):
    exit_code = ExitCode.USAGE
    kind = "usage"


class BadTicketError(UsageError):
    kind = "bad-ticket"


class RefusedError(ClaimError):
    """The answer is no: someone else holds it, it is done, we are not the holder."""

    exit_code = ExitCode.NO
    kind = "refused"


class GitError(ClaimError):
    """git itself failed: unreachable remote, auth, not a repository, server refusal."""

    exit_code = ExitCode.GIT_ERROR
    kind = "git"


class HostRefused(GitError):
    """The remote refused an update and the ref did not move: a rule, a hook, a lock."""

    kind = "host-refused"


class TrackerError(ClaimError):
    """The tracker failed or cannot do this; the claim itself is unaffected.

    Defined here, beside the other errors, so that a module which only
    catches it (mirror, backlog) need not load the tracker interface.
    """

    exit_code = ExitCode.GIT_ERROR
    kind = "tracker"


class IncompleteError(ClaimError):
    """Work left undone by a command that changes many claims at once.

    A reap that left stale claims in place (the remote refused the note, or
    open pull requests could not be checked), a compaction the remote
    refused some deletes of. Never reported as success: scripts see exit 5.
    """

    exit_code = ExitCode.INCOMPLETE
    kind = "incomplete"


class NoteUnreadable(Exception):
    """A notes commit this clone cannot read whole: whether a note is there is unknown."""

    def __init__(self, message: str, missing: str | None = None) -> None:
        super().__init__(message)
        self.missing = missing  # the note's blob id, when the tree that names it was read
