"""`git reap`: free the claims of crashed agents, then make the tracker's picture match.

The protocol judges and writes (liveness.reap); the decisions around it
live here: a TTL below the heartbeat interval is refused unless forced, the
open-pull-request check runs when the tracker can tell, labels follow the
reaps, and stale claims left in place make the command incomplete (exit 5).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from ..errors import ExitCode, IncompleteError, UsageError

if TYPE_CHECKING:
    from ..liveness import ReapEntry, SkipKind
    from ..session import Session

__all__ = ["ReapRequest", "Reaped", "reap"]


@dataclass(frozen=True)
class ReapRequest:
    """`git reap`; the TTL and the skew tolerated are the session's settings."""

    tickets: tuple[str, ...] = ()  # already validated; empty: every claim
    dry_run: bool = False
    force: bool = False  # a TTL shorter than the heartbeat interval
    pr_check: bool = True  # keep stale claims with an open pull request


@dataclass(frozen=True)
class Reaped:
    dry_run: bool
    ttl: float
    max_skew: float
    reaped: tuple[ReapEntry, ...]  # freed (or, in a dry run, to be freed)
    live: tuple[ReapEntry, ...]
    skipped: tuple[ReapEntry, ...]
    revived: tuple[ReapEntry, ...]  # a heartbeat or a release landed first
    repaired: tuple[str, ...] = ()  # labels made to match the claims
    warnings: tuple[str, ...] = ()  # the tracker could not follow; the reaps stand

    @property
    def undone(self) -> tuple[ReapEntry, ...]:
        """Stale claims left in place: the remote refused the reap, or no check answered."""
        return tuple(entry for entry in self.skipped if entry.undone is not None)

    @property
    def skips(self) -> tuple[tuple[SkipKind, int], ...]:
        """How many claims were skipped for each reason, in the order first met."""
        counts: dict[SkipKind, int] = {}
        for entry in self.skipped:
            if entry.kind is not None:
                counts[entry.kind] = counts.get(entry.kind, 0) + 1
        return tuple(counts.items())

    @property
    def failure(self) -> IncompleteError | None:
        """Why the command is incomplete (exit 5), if stale claims were left in place."""
        from ..safetext import clean

        undone = self.undone
        if not undone:
            return None
        listed = "; ".join(f"{clean(e.ticket)}: {clean(e.reason, 200)}" for e in undone[:3])
        more = f"; and {len(undone) - 3} more" if len(undone) > 3 else ""
        return IncompleteError(f"{len(undone)} claim{'s' if len(undone) != 1 else ''} not"
                               f" freed: {listed}{more}")

    @property
    def exit_code(self) -> ExitCode:
        return ExitCode.INCOMPLETE if self.undone else ExitCode.OK


def reap(session: Session, request: ReapRequest, *,
         progress: Callable[[int, int], None] | None = None) -> Reaped:
    """Judge every claim (or `request.tickets`) and free the stale ones; one push."""
    from ..claims import read_claims
    from ..clock import format_duration
    from ..liveness import reap as reap_claims
    from ..mirror import on_reaped, open_label_tracker, open_pr_check, repair_labels

    settings = session.settings
    if settings.ttl < settings.heartbeat and not request.force:
        raise UsageError(
            f"TTL {format_duration(settings.ttl)} is shorter than the heartbeat interval"
            f" ({int(settings.heartbeat)}s): live claims would be reaped (--force overrides)")
    tracker = open_label_tracker(session)
    check = open_pr_check(session, tracker) if request.pr_check else None
    report = reap_claims(session, ttl=settings.ttl, max_skew=settings.max_skew,
                         dry_run=request.dry_run, tickets=request.tickets or None,
                         skip_checks=[check] if check else [], progress=progress)
    warnings: list[str] = []
    repaired: list[str] = []
    if not request.dry_run and tracker is not None:
        warnings += on_reaped(session, tracker, [e.ticket for e in report.reaped], settings.ttl)
        if not request.tickets:
            repaired, more = repair_labels(session, tracker, read_claims(session))
            warnings += more
    return Reaped(request.dry_run, settings.ttl, settings.max_skew, report.reaped, report.live,
                  report.skipped, report.lost_races, tuple(repaired), tuple(warnings))
