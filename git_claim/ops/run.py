"""`git claim run`: claim, run an agent's command under a kept-alive claim, end the claim.

The decisions of the agent loop live here: the lease arithmetic (how long
a command may go on without a beat that went through), that no command
starts on an old lease or after a signal, how the command's status ends
the claim, which worktree is removed or kept (and that a kept one is
reported), and, with `until_empty`, the drain that keeps taking tickets
until nothing is eligible. The process tree itself is runner's and the
watchdog's; the CLI parses a RunRequest and renders the result.
"""

from __future__ import annotations

import signal
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from enum import Enum
from pathlib import Path
from types import MappingProxyType
from typing import TYPE_CHECKING

from ..errors import ClaimError, ExitCode, RefusedError, UsageError
from .claim import Claimed, NextRequest, NothingEligible, TakeRequest, WorktreeRequest
from .results import Outcome

if TYPE_CHECKING:
    from types import FrameType

    from ..session import Session

__all__ = ["Drained", "Lease", "OnFailure", "OnLost", "RunRequest", "RunResult", "drain",
           "lease_for", "run"]

EARLY_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)
Report = Callable[[str], None]


class OnFailure(str, Enum):
    """--on-failure: what a non-zero status of the command does to the claim."""

    BLOCKED = "blocked"
    RELEASE = "release"
    KEEP = "keep"


class OnLost(str, Enum):
    """--on-lost: stop the command when the claim is lost, or only warn."""

    STOP = "stop"
    WARN = "warn"


@dataclass(frozen=True)
class RunRequest:
    """`git claim run`: what to claim, what to run, and how to end the claim.

    `claim` carries no worktree (run makes it itself, after the lease is
    renewed); `worktree` says whether and where. `report` takes each line
    run has to say while it works (the CLI prints them on stderr);
    `on_claimed` is told of each win before its command starts.
    """

    command: tuple[str, ...]
    claim: TakeRequest | NextRequest
    worktree: WorktreeRequest = WorktreeRequest()
    interval: float | None = None  # None: claim.heartbeat
    grace: float = 10.0
    on_failure: OnFailure = OnFailure.BLOCKED
    on_lost: OnLost = OnLost.STOP
    until_empty: bool = False
    hand_off_to: str | None = None  # exit 0 hands the claim to this agent (validated)
    report: Report = field(default=lambda _line: None)
    on_claimed: Callable[[Claimed], None] = field(default=lambda _claimed: None)


@dataclass(frozen=True)
class RunResult:
    """One ticket's run. `exit_code` is what `run` exits with for it alone."""

    exit_code: int
    claimed: Claimed | None = None  # None: interrupted before anything was won
    status: int | None = None  # the command's status; None: it never started
    beats: int = 0
    failed_beats: int = 0
    lost: str | None = None  # why the claim was lost
    worktree: Path | None = None  # where the command ran (None: the current directory)
    kept_worktree: str | None = None  # the claim's worktree left in place, and why
    released: Outcome | None = None  # HANDED: passed to `handed_to` instead of released
    handed_to: str | None = None
    release_error: str | None = None
    interrupted: int | None = None  # the signal that reached run
    not_started: str | None = None  # why the command never ran on a won claim (a drain)

    @property
    def ticket(self) -> str | None:
        return self.claimed.ticket if self.claimed is not None else None

    @property
    def ok(self) -> bool:
        return self.status == 0 and self.lost is None and self.release_error is None

    @property
    def clean(self) -> bool:
        """Ended as its status said: nothing lost, refused, given back or left undone."""
        return (self.status is not None and self.lost is None and self.release_error is None
                and self.not_started is None)


@dataclass(frozen=True)
class Drained:
    """`run --until-empty`: every run, and why the drain ended."""

    runs: tuple[RunResult, ...]
    exit_code: int
    empty: str | None = None  # the nothing-eligible message: the backlog was drained
    skipped: Mapping[str, int] = field(default_factory=lambda: MappingProxyType({}))
    stopped: ClaimError | None = None  # the error that ended it early
    interrupted: int | None = None


@dataclass(frozen=True)
class Lease:
    """How long the command may go on without a beat that went through.

    `give_up` is when run itself assumes the claim lost for a silent remote
    (the TTL less a margin); `span` is the watchdog's deadline, shortened so
    that the tree is gone, --grace included, before a reaper could free the
    claim (TTL after the last beat).
    """

    interval: float
    grace: float
    give_up: float
    span: float


def lease_for(session: Session, request: RunRequest) -> Lease:
    """The lease, checked before anything is claimed: a beat must be able to renew it."""
    from ..clock import format_duration

    settings = session.settings
    beat_every = request.interval if request.interval is not None else settings.heartbeat
    margin = max(settings.max_skew, beat_every)
    give_up = max(beat_every, settings.ttl - margin)
    span = min(give_up, settings.ttl - request.grace)
    if request.on_lost is OnLost.STOP and span <= beat_every:
        raise UsageError(
            f"--interval {format_duration(beat_every)} and --grace {format_duration(request.grace)}"
            f" leave no lease within claim.ttl {format_duration(settings.ttl)}: the command"
            " would be stopped before a heartbeat could renew it (the lease is the TTL less"
            " the larger of claim.maxSkew and the interval, and less --grace; shorten the"
            " interval or the grace, or raise claim.ttl)")
    return Lease(beat_every, request.grace, give_up, span)


def check(request: RunRequest) -> None:
    """Usage errors of a request, before anything touches git."""
    if not request.command:
        raise UsageError("give the command to run after `--`, e.g."
                         " `git claim run 640 -- ./agent.sh`")
    if request.until_empty and not isinstance(request.claim, NextRequest):
        raise UsageError("--until-empty goes with --next")
    if isinstance(request.claim, TakeRequest) and len(request.claim.tickets) != 1:
        raise UsageError("give one ticket id or --next")


def _check_receiver(session: Session, request: RunRequest) -> None:
    """--hand-off-to names another agent (before anything is claimed)."""
    from .release import check_not_ourselves

    if request.hand_off_to is not None:
        check_not_ourselves(session, request.hand_off_to, "--hand-off-to")


def run(session: Session, request: RunRequest) -> RunResult:
    """Claim one ticket, run the command on it, end the claim as its status says.

    Errors before the command starts (refused, usage, git) are raised; from
    the start on, everything is in the result, its exit code included.
    """
    check(request)
    _check_receiver(session, request)
    lease = lease_for(session, request)
    with _noting_signals() as early:
        try:
            claimed = _claim(session, request.claim)
        except ClaimError:
            if early:
                return RunResult(128 + early[0], interrupted=early[0])
            raise
        request.on_claimed(claimed)
        return _supervise(session, request, claimed, lease, early)


def drain(session: Session, request: RunRequest) -> Drained:
    """`run --next --until-empty`: run ticket after ticket until nothing is eligible.

    A failing command is ended as --on-failure says and the drain goes on;
    so does a claim lost while its command ran, a release refused because
    the claim was no longer ours, or a ticket refused before its command
    started (its worktree, a lease lost meanwhile); each is in the result,
    and the drain then ends with INCOMPLETE (5), never as clean. A git,
    remote or tracker error stops the drain at once (its own code, 3), as
    do a usage error and a signal to run (128 + N, after the current
    command has ended and its claim with it). No ticket is run twice.
    """
    check(request)
    if not request.until_empty or not isinstance(request.claim, NextRequest):
        raise UsageError("--until-empty goes with --next")
    _check_receiver(session, request)
    lease = lease_for(session, request)
    runs: list[RunResult] = []
    pick: NextRequest = request.claim
    with _noting_signals() as early:
        while not early:
            tried = frozenset(result.ticket for result in runs if result.ticket)
            try:
                claimed = _claim(session, replace(pick, skip_ids=tried))
            except NothingEligible as empty:  # a signal while looking still ends it so
                return _drained(runs, empty=empty, interrupted=early[0] if early else None)
            except ClaimError as error:
                return _drained(runs, stopped=error, interrupted=early[0] if early else None)
            if pick.backlog is None and session.settings.source == "-":
                pick = replace(pick, backlog=claimed.backlog)  # stdin is read once
            request.on_claimed(claimed)
            result, stop = _drain_one(session, request, claimed, lease, early)
            runs.append(result)
            if stop is not None or result.interrupted is not None:
                return _drained(runs, stopped=stop, interrupted=result.interrupted)
        return _drained(runs, interrupted=early[0])


def _drain_one(session: Session, request: RunRequest, claimed: Claimed, lease: Lease,
               early: list[int]) -> tuple[RunResult, ClaimError | None]:
    """One ticket of a drain, and the error that must stop the drain (None: go on).

    A refusal before the command started (the worktree is someone else's,
    the claim was lost meanwhile) is this ticket's alone; a git error, or a
    release the remote failed, would fail the next tickets too.
    """
    try:
        result = _supervise(session, request, claimed, lease, early)
    except RefusedError as refusal:
        request.report(refusal.message)
        return RunResult(int(refusal.exit_code), claimed, not_started=refusal.message), None
    except ClaimError as error:
        return RunResult(int(error.exit_code), claimed, not_started=error.message), error
    if result.release_error is not None and result.exit_code != ExitCode.LOST:
        return result, ClaimError(result.release_error)
    return result, None


def _drained(runs: list[RunResult], *, empty: NothingEligible | None = None,
             stopped: ClaimError | None = None, interrupted: int | None = None) -> Drained:
    if interrupted is not None:
        code = 128 + interrupted
    elif stopped is not None:
        code = int(stopped.exit_code)
    elif all(result.clean for result in runs):
        code = int(ExitCode.OK)
    else:
        code = int(ExitCode.INCOMPLETE)
    skipped = dict(empty.details.get("skipped") or {}) if empty is not None else {}
    return Drained(tuple(runs), code, empty.message if empty is not None else None,
                   MappingProxyType(skipped), stopped, interrupted)


def _claim(session: Session, request: TakeRequest | NextRequest) -> Claimed:
    from .claim import claim_ids, claim_next

    if isinstance(request, NextRequest):
        return claim_next(session, replace(request, worktree=WorktreeRequest()))
    return claim_ids(session, replace(request, worktree=WorktreeRequest()))


@contextmanager
def _noting_signals() -> Iterator[list[int]]:
    """Until a command starts, SIGINT, SIGTERM and SIGHUP are only noted.

    A KeyboardInterrupt raised inside libgit2's callbacks would be swallowed
    there, and the command would start after the user asked to stop; a
    noted signal keeps it from starting instead (runner raises NotStarted).
    A signal ignored when run started stays ignored.
    """
    noted: list[int] = []

    def note(signum: int, _frame: FrameType | None) -> None:
        noted.append(signum)

    previous = {sig: signal.signal(sig, note) for sig in EARLY_SIGNALS
                if signal.getsignal(sig) is not signal.SIG_IGN}
    try:
        yield noted
    finally:
        for sig, handler in previous.items():
            if signal.getsignal(sig) is not handler:
                signal.signal(sig, handler)


def _supervise(session: Session, request: RunRequest, claimed: Claimed, lease: Lease,
               early: list[int]) -> RunResult:
    """From a won claim to the command's end: renew, worktree, run, release.

    Signals noted in `early` until the command starts mean it never starts,
    whichever step they arrive in: the claim is given back.
    """
    from ..runner import NotStarted

    try:
        return _start(session, request, claimed, lease, early)
    except NotStarted as stopped:
        return _give_back_unstarted(session, claimed, stopped.signum, request.report)


def _start(session: Session, request: RunRequest, claimed: Claimed, lease: Lease,
           early: list[int]) -> RunResult:
    import os

    from ..runner import NotStarted, run_with_heartbeat
    from ..safetext import clean
    from .claim import wants_worktree, worktree_or_release

    if early:
        raise NotStarted(early[0])
    _renew_before_start(session, claimed, lease.interval)
    env = {"GIT_CLAIM_TICKET": claimed.ticket, "GIT_CLAIM_AGENT": session.settings.agent,
           "GIT_CLAIM_EPOCH": str(claimed.epoch),
           "GIT_CLAIM_TITLE": clean(claimed.title or "", 500),
           "GIT_CLAIM_LABELS": clean(",".join(claimed.labels or ()), 2000)}
    cwd = None
    if wants_worktree(session, request.worktree):
        from ..worktree import ticket_env

        claimed = worktree_or_release(session, claimed, request.worktree)
        assert claimed.worktree is not None
        cwd = claimed.worktree.path
        env.update(ticket_env(claimed.worktree, {"title": claimed.title or "",
                                                 "labels": list(claimed.labels or ())}))
    outcome = run_with_heartbeat(session, claimed.ticket, list(request.command), cwd=cwd,
                                 env={**os.environ, **env}, interval=lease.interval,
                                 give_up_after=lease.give_up, grace=lease.grace,
                                 stop_on_lost=request.on_lost is OnLost.STOP,
                                 report=request.report, lease_for=lease.span, early=early)
    result = RunResult(outcome.status, claimed, outcome.status, outcome.beats,
                       outcome.failed_beats, outcome.lost, cwd, interrupted=outcome.signal)
    if outcome.lost is not None:
        return _kept(replace(result, exit_code=int(ExitCode.LOST)), "the claim was lost",
                     request.report)
    if outcome.status == 0 and request.hand_off_to is not None:
        return _hand_off(session, result, request.hand_off_to, request.report)
    if outcome.status == 0:
        return _end(session, result, Outcome.DONE, request.report)
    if request.on_failure is OnFailure.KEEP:
        return _kept(result, f"exit status {outcome.status}; the claim is still held"
                             " (--on-failure keep)", request.report)
    return _end(session, result, Outcome.FREE if request.on_failure is OnFailure.RELEASE
                else Outcome.BLOCKED, request.report)


def _end(session: Session, result: RunResult, outcome: Outcome, report: Report) -> RunResult:
    """Release as the command's status says, then clean up or report the worktree.

    Exactly the claim this run supervised (its tag), never a later claim of
    the same name on the same ticket. Never a success when the release did
    not happen: a claim lost meanwhile is 4, a remote that refused or failed
    is its own code.
    """
    from ..lock import release
    from ..mirror import on_released, open_label_tracker

    claimed = result.claimed
    assert claimed is not None and result.status is not None
    reason = f"exit status {result.status}" if outcome is Outcome.BLOCKED else ""
    try:
        release(session, claimed.ticket, outcome=outcome.value, reason=reason, tag=claimed.tag)
    except ClaimError as error:
        report(f"could not release {claimed.ticket}: {error.message}")
        code = ExitCode.LOST if isinstance(error, RefusedError) else error.exit_code
        return _kept(replace(result, exit_code=int(code), release_error=error.message),
                     "the claim was not released", report)
    for warning in on_released(session, open_label_tracker(session), claimed.ticket,
                               outcome.value, reason):
        report(f"warning: {warning}")
    result = replace(result, released=outcome)
    if outcome is not Outcome.DONE:
        return _kept(result, f"exit status {result.status}, {outcome.value}; `git claim gc`"
                             " removes it", report)
    return _cleanup_worktree(session, result, report)


def _hand_off(session: Session, result: RunResult, to: str, report: Report) -> RunResult:
    """Exit 0 with --hand-off-to: pass exactly the claim this run supervised to `to`.

    The worktree and branch stay for the new holder (named as kept). A claim
    lost meanwhile is 4, a remote that refused or failed the note its own
    code, as for a release.
    """
    from .release import hand_off

    claimed = result.claimed
    assert claimed is not None
    try:
        handed = hand_off(session, claimed.ticket, to, tag=claimed.tag)
    except ClaimError as error:
        report(f"could not hand {claimed.ticket} to {to}: {error.message}")
        code = ExitCode.LOST if isinstance(error, RefusedError) else error.exit_code
        return _kept(replace(result, exit_code=int(code), release_error=error.message),
                     "the claim was not handed off", report)
    for warning in handed.warnings:
        report(f"warning: {warning}")
    report(f"handed {claimed.ticket} to {to}")
    return _kept(replace(result, released=Outcome.HANDED, handed_to=to), f"handed to {to}",
                 report)


def _kept(result: RunResult, why: str, report: Report) -> RunResult:
    """A run's worktree stays (to look at a failure, or the claim is not ended): say so."""
    tree = result.claimed.worktree if result.claimed is not None else None
    if tree is None:
        return result
    report(f"kept worktree {tree.path} on {tree.branch} ({why})")
    return replace(result, kept_worktree=str(tree.path))


def _cleanup_worktree(session: Session, result: RunResult, report: Report) -> RunResult:
    """Done: remove the ticket's worktree and branch of ours, unless that loses work."""
    from ..worktree import branch_name, our_worktrees, remove_worktree

    claimed = result.claimed
    assert claimed is not None
    trees = [tree for tree in our_worktrees(session.location) if tree.ticket == claimed.ticket]
    if not trees:
        return result
    removed, message = remove_worktree(
        session.location, ticket=claimed.ticket,
        branch=branch_name(session.settings.branch_prefix, claimed.ticket))
    if message:
        report(message)
    return result if removed else replace(result, kept_worktree=str(trees[0].path))


def _give_back_unstarted(session: Session, claimed: Claimed, signum: int,
                         report: Report) -> RunResult:
    """Interrupted while claiming: the command never starts, and the claim goes back."""
    from ..lock import release

    try:
        release(session, claimed.ticket)
        report(f"interrupted before the command started; released {claimed.ticket}")
        released: Outcome | None = Outcome.FREE
    except ClaimError as error:
        report(f"interrupted before the command started; could not release {claimed.ticket}:"
               f" {error.message}")
        released = None
    return RunResult(128 + signum, claimed, released=released, interrupted=signum)


def _renew_before_start(session: Session, claimed: Claimed, interval: float) -> None:
    """Never start a command on an old lease: beat first.

    A claim reused from an earlier run (already ours) may have been silent
    for most of its TTL, and a win may have come late; either could be
    reaped moments after the command starts. A beat renews the lease, or
    says the claim is lost (RefusedError, exit 1) before anything runs.
    """
    from ..clock import now
    from ..holders import find_mine
    from ..liveness import heartbeat

    mine = find_mine(session, claimed.ticket, claimed.tag)
    if mine is None:
        return
    if claimed.already_ours or now() - mine.claimed_at >= interval:
        heartbeat(session, claimed.ticket, mine)
