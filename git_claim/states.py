"""What a claim can be, how its holder ended it, and what its log records: named once.

The board (board.py) says which state each ticket's claim is in, the log
(history.py) which events it went through, and the operations return both in
their results (ops/results.py names them for the ops layer's callers). So the
names live here, below both, and everything above compares enums, never
strings.
"""

from __future__ import annotations

from enum import Enum


class ClaimState(str, Enum):
    """What a ticket's newest claim is, as the board and the reaper see it."""

    FREE = "free"  # no claim in force
    LIVE = "live"  # in force, heartbeat within the TTL
    STALE = "stale"  # in force, no heartbeat for longer than the TTL: reapable
    DONE = "done"
    BLOCKED = "blocked"
    UNKNOWN = "unknown"  # in force but unreadable: never reaped by guesswork


class Outcome(str, Enum):
    """How a claim was ended by its holder (recorded in the release note).

    HANDED is the one end that is not a release: a `handed` note passes the
    ticket to another agent (`git release --to`, `git claim run --hand-off-to`).
    """

    FREE = "free"
    DONE = "done"
    BLOCKED = "blocked"
    HANDED = "handed"


class Event(str, Enum):
    """One change in a ticket's history (`git claim log`): every state change has one."""

    CLAIMED = "claimed"
    HEARTBEAT = "heartbeat"
    RELEASED = "released"  # as free, done or blocked: see the event's outcome
    REAPED = "reaped"
    REOPENED = "reopened"
    HANDED = "handed"  # the holder passed the claim to another agent (see the event's `to`)
    DONE = "done"  # an outcome tag written by an older version
    BLOCKED = "blocked"
    UNKNOWN = "unknown"  # a note or a tag this version cannot read

    @classmethod
    def of(cls, name: str) -> Event:
        try:
            return cls(name)
        except ValueError:
            return cls.UNKNOWN
