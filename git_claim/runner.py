"""`git claim run`: run an agent's command while keeping its claim alive.

The command runs under a watchdog process (see `watchdog`) that owns its
whole process tree: this process waits for the tree to end and beats the
claim every interval meanwhile (a wait with a timeout, not a busy loop). A
beat that fails for lack of the remote is retried with backoff; a beat
refused because the claim was lost stops the tree. If the remote stays
unreachable for longer than the TTL minus a margin, the claim is assumed
lost: the owner stops itself before any reaper could free the ticket. The
lease is counted on `clock.elapsed()`, which goes on through a suspend.

That check runs here only between beats, so the lease is also enforced by a
process that never waits on the network: after each beat that went through
(and at the start) this process sends the watchdog `lease T`, T on the boot
clock, and when T passes without a newer lease the watchdog stops the tree
and reports `expired` (so does its guardian if the watchdog is stopped).
A `run` frozen by SIGSTOP, or stuck for minutes in one heartbeat on a remote
that stopped answering, does not keep its command working on a ticket a
reaper may have freed. With `stop_on_lost` false (--on-lost warn) there is
no lease: the command goes on.
"""

from __future__ import annotations

import signal
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Sequence

from . import oplog
from .clock import elapsed, now
from .errors import ClaimError, RefusedError
from .liveness import heartbeat
from .session import Session
from .testpoints import pause
from .watchdog import LeaseRanOut, Watchdog, process_tree

__all__ = ["RunOutcome", "child_environment", "process_tree", "run_with_heartbeat"]

FORWARDED = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)
MIN_RETRY = 1.0
NOT_STARTED_STATUS = 125  # the status reported for a command that never started (as env(1) does)


class NotStarted(Exception):
    """A signal came before the command started: it was not started."""

    def __init__(self, signum: int) -> None:
        super().__init__(signum)
        self.signum = signum


@dataclass
class RunOutcome:
    status: int  # the child's exit status (128 + signal when killed)
    lost: str | None  # why the claim was lost, when it was
    beats: int
    failed_beats: int
    interrupted: bool


def run_with_heartbeat(session: Session, ticket: str, command: Sequence[str], *,
                       cwd: Path | None, env: dict[str, str], interval: float,
                       give_up_after: float, grace: float, stop_on_lost: bool,
                       report: Callable[[str], None],
                       lease_for: float | None = None,
                       early: list[int] | None = None) -> RunOutcome:
    """Run `command`, beating `ticket` every `interval` seconds until its whole tree ends.

    The command stays in our process group: at a terminal it can read it and
    Ctrl-C reaches it directly. SIGINT, SIGTERM and SIGHUP sent to us go to
    every process of its tree; if we die, even by SIGKILL, the watchdog stops
    the tree (its guardian does, if a SIGKILL of our process group killed it
    too); when the command exits, what it left running is stopped before we
    return, so the ticket is never released while work on it still runs.

    With `stop_on_lost`, the watchdog stops the tree `lease_for` seconds
    (default `give_up_after`) after the start of the last beat that went
    through, whatever this process is doing then; the claim then counts as
    lost.
    """
    lease_span = give_up_after if lease_for is None else lease_for
    started: list[Watchdog] = []
    # Signals that came before the command started (`early`: those the caller
    # noted while it claimed): the command is then never started.
    pending: list[int] = early if early is not None else []
    interrupted = False

    def forward(signum: int, _frame: object) -> None:
        nonlocal interrupted
        interrupted = True
        if started:
            started[0].forward(signum)
        else:
            pending.append(signum)  # arrived before the command started

    mine = session.store.get(ticket, ref=session.settings.claim_ref(ticket),
                             remote_url=session.remote_url)
    lease_age = 0.0
    if mine is not None and mine.seq == 0:  # not beaten yet: the lease began at the claim
        lease_age = max(0.0, now() - mine.claimed_at)
    leased_at = elapsed() - lease_age
    beats = 0
    if lease_age >= give_up_after:
        # A win that came late (the claimer froze or crawled between its push and
        # the answer, or an old push of its own landed): a reaper may have freed
        # the ticket already. A beat renews the lease or says it is lost, before
        # the command starts.
        leased_at = elapsed()
        heartbeat(session, ticket)
        beats = 1

    # Handlers first: a signal between the start and the handlers must not be lost.
    previous = {sig: signal.signal(sig, forward) for sig in FORWARDED
                if signal.getsignal(sig) is not signal.SIG_IGN}  # ignored stays ignored
    if pending:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        raise NotStarted(pending[0])
    pause("run:before-start")
    try:
        # The locks on our claim's records go to the watchdog (and the command)
        # too: they stay held, and the claim stays ours to no other process of
        # this checkout, until the last process of the tree is gone, even when
        # `run` itself was killed and the tree is still being stopped.
        watch = Watchdog.start(list(command), cwd=cwd, env=env, grace=grace,
                               keep_fds=session.store.hold_fds(mine) if mine else (),
                               lease_at=leased_at + lease_span if stop_on_lost else None,
                               on_stuck=lambda pids: report("waiting for " + _processes(
                                   pids, "process", "that SIGKILL did not end")))
    except OSError as error:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        raise ClaimError(f"cannot run {command[0]!r}: {error.strerror or error}")
    except LeaseRanOut:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        lost = _expired(session, ticket, elapsed() - leased_at, False)
        report(f"{lost}; the command was not started")
        return RunOutcome(NOT_STARTED_STATUS, lost, beats, 0, interrupted)
    started.append(watch)
    op = oplog.begin("run", ticket, agent=session.settings.agent, tag=mine.tag if mine else None,
                     child=watch.pid)
    for signum in pending:
        watch.forward(signum)
    finished = watch.finished
    failed = 0
    lost: str | None = None
    last_success = leased_at
    wait = interval
    try:
        while not finished.wait(wait):
            # The lease runs from the moment the beat is written, not from its
            # acknowledgement: silence is counted from the start of the call.
            attempt = elapsed()
            try:
                heartbeat(session, ticket)
                beats += 1
                last_success = attempt
                wait = interval
                if stop_on_lost:
                    watch.lease(attempt + lease_span)
            except RefusedError as refusal:
                lost = refusal.message
            except ClaimError as error:
                failed += 1
                silent = elapsed() - last_success
                if silent >= give_up_after:
                    lost = (f"{ticket}: the remote has been unreachable for {int(silent)}s,"
                            f" longer than the TTL allows: assuming the claim is lost")
                else:
                    retry = MIN_RETRY if wait >= interval else min(wait * 2, interval)
                    wait = max(0.1, min(retry, give_up_after - silent))
                    report(f"heartbeat failed ({error.message}); retrying in {wait:.0f}s")
            if lost is None and watch.expired:
                lost = _expired(session, ticket, elapsed() - last_success, failed > 0)
            if lost is not None:
                op.step(fence=lost[:200])
                report(lost)
                if not stop_on_lost:
                    report("--on-lost warn: the command goes on without a claim")
                    break
                watch.stop()
                break
        finished.wait()  # signals go on to the tree till its last process is gone
        if lost is None and watch.expired:  # the lease ran out while we waited
            lost = _expired(session, ticket, elapsed() - last_success, failed > 0)
            op.step(fence=lost[:200])
            report(lost)
    except BaseException:
        watch.stop()  # we are failing: the command must not outlive what we know of it
        finished.wait()
        raise
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    watch.close()
    _report_tree(watch, report)
    status = watch.status
    op.end(oplog.OK if status == 0 else oplog.FAILED, status=status, lost=lost is not None)
    return RunOutcome(status, lost, beats, failed, interrupted)


def _expired(session: Session, ticket: str, silent: float, failing: bool) -> str:
    """Why the claim counts as lost once the watchdog let the lease run out.

    One heartbeat names the cause when it can: a refusal says who reaped or
    took the claim. Whatever it says, the claim is not ours to release: the
    command was stopped, and the lease had lapsed.
    """
    try:
        heartbeat(session, ticket)
    except RefusedError as refusal:
        return refusal.message
    except ClaimError:
        if failing:
            return (f"{ticket}: the remote has been unreachable for {int(silent)}s, longer than"
                    f" the TTL allows: assuming the claim is lost; the command was stopped"
                    f" before any reaper could free the ticket")
    return (f"{ticket}: no heartbeat renewed the lease for {int(silent)}s: the command was"
            f" stopped before any reaper could free the ticket")


def _report_tree(watch: Watchdog, report: Callable[[str], None]) -> None:
    if watch.exit_status is None:
        report(f"lost track of the command: its watchdog ended with status {watch.status}")
    if watch.leftovers:
        report(f"stopped {_processes(watch.leftovers, 'leftover process', 'of the command')}")


def _processes(pids: list[int], noun: str, qualifier: str) -> str:
    """`2 leftover processes of the command (pids 12, 13)`: for messages."""
    many = len(pids) != 1
    return (f"{len(pids)} {noun}{'es' if many else ''} {qualifier}"
            f" (pid{'s' if many else ''} {', '.join(str(pid) for pid in pids)})")


def child_environment(base: dict[str, str], extra: dict[str, str]) -> dict[str, str]:
    env = dict(base)
    env.update(extra)
    return env

