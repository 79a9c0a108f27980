"""The tracker boundary: where the backlog comes from and where claims are mirrored.

The tracker is display only, never the lock: a claim is decided by the git
remote, and labels, comments and board columns merely show it. So every
tracker call may fail without harming a claim, and callers treat a
TrackerError as "the mirror is behind", never as "the claim failed".

Text from a tracker is foreign: titles and labels are kept raw here (the
printer cleans them) but bounded in size, so a hostile issue cannot make the
tool hold megabytes per ticket. This package never prints.

Every Tracker method raises only TrackerError (a bad label name or ticket id
included), so a caller's `except TrackerError` covers every way a mirror can
fail and a claim that was won is never reported as failed. Only opening a
source (`sources.open_tracker`) raises a usage error, for a backlog file that
cannot be read.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from ..errors import TrackerError as TrackerError  # every tracker raises it
from ..errors import UsageError
from ..safetext import quoted

MAX_TITLE = 500
MAX_LABELS = 100
MAX_LABEL_NAME = 100
MAX_URL = 2000
MAX_BODY = 65536
TIER_NAMES = ("critical", "high", "medium", "low", "backlog")  # priority tiers 0-4


@dataclass(frozen=True)
class Link:
    """Another ticket this one names: a blocker, or a sub-issue.

    `id` is a ticket id of this source when the linked ticket is one (it may
    then be claimed, and released as done, through git-claim), else how the
    source names it (`octo/other#12`), for messages only. `open` is the linked
    ticket's state as the source reports it; None when the source does not say.
    """

    id: str
    open: bool | None = True
    local: bool = True  # a ticket of this backlog's own tracker (git-claim may hold it)


@dataclass(frozen=True)
class Ticket:
    """One backlog entry; `id` is canonical (it passed `parse_ticket`)."""

    id: str
    title: str = ""
    labels: tuple[str, ...] = ()
    # False when the source could not tell: a plain id line, or the tracker
    # failed for this ticket. Gates that need labels must not read "no labels".
    labels_known: bool = True
    open: bool = True
    url: str = ""
    # Dependencies and sub-issues. `links_known` is False when the source
    # could not read them (an old gh, no permission, a field the host lacks):
    # a rule that needs them fails closed, and `links_problem` says why.
    # Why the labels are unknown when the source had a field it could not read
    # (fails closed: not filled in as "no labels" when there is no tracker).
    labels_problem: str = ""
    blocked_by: tuple[Link, ...] = ()
    children: tuple[Link, ...] = ()
    links_known: bool = True
    links_problem: str = ""
    # A priority tier the source states outright (0 = critical, 3 = low), as
    # the file backlog's `priority` field does; None: read it from the labels.
    priority: int | None = None


@dataclass(frozen=True)
class PullRequest:
    number: int
    head: str
    title: str
    body: str


class BacklogSourceError(UsageError):
    """The backlog named on the command line cannot be read (missing file, a directory)."""

    kind = "backlog"


class Tracker(ABC):
    """A source of tickets that may also mirror claims (labels, comments, a board)."""

    name: str = "tracker"
    can_mirror: bool = False

    def __init__(self) -> None:
        # Reasons for entries the source held but the tool could not use, with
        # counts, so the CLI can say "skipped 3 lines (invalid ticket id)".
        self.skipped: dict[str, int] = {}

    def _skip(self, reason: str, count: int = 1) -> None:
        self.skipped[reason] = self.skipped.get(reason, 0) + count

    @abstractmethod
    def backlog(self) -> list[Ticket]:
        """Open tickets in priority order, which is the source's own order."""

    @abstractmethod
    def ticket(self, ticket_id: str) -> Ticket:
        """One ticket, with its labels for the design gate; TrackerError when unreadable."""

    @abstractmethod
    def add_labels(self, ticket_id: str, labels: list[str]) -> None: ...

    @abstractmethod
    def remove_labels(self, ticket_id: str, labels: list[str]) -> None: ...

    @abstractmethod
    def comment(self, ticket_id: str, body: str) -> None: ...

    @abstractmethod
    def open_pull_requests(self) -> list[PullRequest]: ...

    @abstractmethod
    def set_board_status(self, ticket_id: str, project: str, owner: str, status: str) -> None:
        """Move the ticket's card; TrackerError("project boards are unavailable: ...")."""

    def assign(self, ticket_id: str, who: str) -> None:  # noqa: B027 (optional for trackers)
        """Assign the ticket (display only); trackers without assignees do nothing."""

    @abstractmethod
    def labelled(self, label: str) -> list[str]:
        """Ids of open tickets carrying `label`, to repair labels that drifted from claims."""


def bound_text(value: Any, limit: int) -> str:
    """A string from untrusted data: non-strings become "", long ones are cut."""
    if not isinstance(value, str):
        return ""
    return value[:limit]


def bound_labels(names: Iterable[Any]) -> tuple[str, ...]:
    """Label names from untrusted data: strings only, each and their number bounded."""
    out: list[str] = []
    for name in names:
        if len(out) >= MAX_LABELS:
            break
        if isinstance(name, str) and name:
            out.append(name[:MAX_LABEL_NAME])
    return tuple(out)


def missing_source(shown: str, why: str) -> BacklogSourceError:
    return BacklogSourceError(f"cannot read the backlog {quoted(shown)}: {why}")


def parse_priority(value: object) -> int | None:
    """A file backlog's `priority`: 0-4, `P0`-`P4`, or critical/high/medium/low/backlog.

    None for anything else (the caller counts the line as unreadable there).
    """
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value if 0 <= value < len(TIER_NAMES) else None
    if not isinstance(value, str):
        return None
    text = value.strip().lower()
    if text in TIER_NAMES:
        return TIER_NAMES.index(text)
    if text.startswith("p"):
        text = text[1:]
    return int(text) if text.isdigit() and int(text) < len(TIER_NAMES) else None
