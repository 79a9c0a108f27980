"""`git release` and `git claim reopen`: ending a claim, and freeing an ended ticket again.

The lock decides (lock.release, lock.hand_off, lock.reopen); what follows a
decision lives here: the tracker's picture (a warning when it could not
follow, never a failed release: the claim ref is the lock, the label only
its picture) and the worktree of a ticket that is done. A hand-off
(`--to AGENT`) leaves the worktree and branch for the new holder.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from ..errors import ExitCode, UsageError
from .results import ClaimState, Outcome

if TYPE_CHECKING:
    from ..session import Session

__all__ = ["ReleaseRequest", "Released", "ReopenRequest", "Reopened", "check_not_ourselves",
           "check_receiver", "cleanup_worktree", "hand_off", "release", "reopen"]


@dataclass(frozen=True)
class ReleaseRequest:
    """`git release TICKET [--done | --blocked [--reason TEXT] | --to AGENT] [--force]`."""

    ticket: str  # already validated
    outcome: Outcome = Outcome.FREE
    reason: str = ""
    force: bool = False
    to: str | None = None  # hand the claim to this agent (outcome HANDED); validated

    @classmethod
    def from_flags(cls, ticket: str, *, done: bool, blocked: bool, reason: str,
                   force: bool, to: str | None = None) -> ReleaseRequest:
        """The request the flags describe; UsageError for flags that exclude each other."""
        if done and blocked:
            raise UsageError("--done and --blocked exclude each other")
        if to is not None:
            if done or blocked or reason or force:
                raise UsageError("--to hands the claim on: it goes without --done, --blocked,"
                                 " --reason and --force")
            return cls(ticket, Outcome.HANDED, to=check_receiver(to))
        outcome = Outcome.DONE if done else Outcome.BLOCKED if blocked else Outcome.FREE
        if reason and outcome is not Outcome.BLOCKED:
            raise UsageError("--reason goes with --blocked")
        return cls(ticket, outcome, reason, force)


def check_receiver(agent: str, option: str = "--to") -> str:
    """An agent a claim may be handed to: a valid agent name, checked as --agent is.

    Checked as given: a name with a line break or another control character
    is refused, never folded into a name nobody has (the ticket would wait
    for no one until a reaper came).
    """
    from ..settings import check_agent

    try:
        check_agent(agent)
    except UsageError as error:
        raise UsageError(f"{option}: {error.message}") from None
    from ..record import one_line

    if one_line(agent) != agent:
        raise UsageError(f"{option}: {agent!r} has a space at an end or spaces in a row,"
                         " which the notes fold away: no agent's name is recorded so")
    return agent


def check_not_ourselves(session: Session, agent: str, option: str = "--to") -> None:
    """Handing a claim to its own holder would only end it: refused (exit 2)."""
    from ..record import one_line

    if agent == one_line(session.settings.agent):
        raise UsageError(f"{option} {agent}: that is you; a claim is handed to another agent")


@dataclass(frozen=True)
class Released:
    ticket: str
    outcome: Outcome
    forced: bool
    holder: str
    noop: bool = False  # an earlier release of ours had already decided it
    warnings: tuple[str, ...] = ()  # the tracker could not follow; the release stands
    worktree: tuple[str, ...] = ()  # what became of the ticket's worktree (done only)
    exit_code: ExitCode = ExitCode.OK
    to: str | None = None  # handed to this agent (outcome HANDED)


def release(session: Session, request: ReleaseRequest) -> Released:
    """End the claim as asked; RefusedError (exit 1) when it is not ours to end."""
    from ..lock import release as release_claim
    from ..mirror import on_released, open_label_tracker

    if request.to is not None:
        return hand_off(session, request.ticket, request.to)
    decided = release_claim(session, request.ticket, outcome=request.outcome.value,
                            reason=request.reason, force=request.force)
    outcome = Outcome(decided.outcome)
    warnings = on_released(session, open_label_tracker(session), request.ticket,
                           outcome.value, request.reason)
    worktree = cleanup_worktree(session, request.ticket) if outcome is Outcome.DONE else ()
    return Released(decided.ticket, outcome, decided.forced, decided.holder, decided.noop,
                    tuple(warnings), worktree)


def hand_off(session: Session, ticket: str, to: str, *, tag: str | None = None) -> Released:
    """Pass our live claim to agent `to`; RefusedError (exit 1) when it is not ours to pass.

    The worktree and branch stay where they are, for the new holder. The
    tracker is told (a comment; the in-progress label stays); a tracker that
    cannot follow is a warning, never a failed hand-off.
    """
    from ..lock import hand_off as hand_off_claim
    from ..mirror import on_handed, open_label_tracker

    check_not_ourselves(session, to)
    decided = hand_off_claim(session, ticket, to, tag=tag)
    warnings = () if decided.noop else tuple(on_handed(session, open_label_tracker(session),
                                                       ticket, to))
    return Released(decided.ticket, Outcome.HANDED, False, decided.holder, decided.noop,
                    warnings, to=decided.to)


def cleanup_worktree(session: Session, ticket: str) -> tuple[str, ...]:
    """Remove the worktree of a finished ticket if it is ours (never one with unsaved work)."""
    from ..worktree import branch_name, our_worktrees, remove_worktree

    if not any(tree.ticket == ticket for tree in our_worktrees(session.location)):
        return ()
    _, message = remove_worktree(session.location, ticket=ticket,
                                 branch=branch_name(session.settings.branch_prefix, ticket))
    return (message,) if message else ()


@dataclass(frozen=True)
class ReopenRequest:
    ticket: str  # already validated


@dataclass(frozen=True)
class Reopened:
    ticket: str
    was: ClaimState  # done or blocked
    exit_code: ExitCode = ExitCode.OK


def reopen(session: Session, request: ReopenRequest) -> Reopened:
    """Free a done or blocked ticket; RefusedError (exit 1) when it is neither."""
    from ..lock import reopen as reopen_ticket

    view = reopen_ticket(session, request.ticket)
    return Reopened(request.ticket, ClaimState(view.state))
