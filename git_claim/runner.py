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
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from . import oplog
from .clock import elapsed, now
from .errors import ClaimError, RefusedError
from .liveness import heartbeat
from .ownership import Ownership
from .session import Session
from .testpoints import pause
from .watchdog import LeaseRanOut, StartCancelled, Watchdog, process_tree

__all__ = ["NotStarted", "RunOutcome", "process_tree", "run_with_heartbeat"]

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
    signal: int | None = None  # the first signal passed on to the command, if any


@dataclass
class _Lease:
    """What the beats have done so far, and until when the claim is known to be ours.

    Times are on `clock.elapsed()`. `last_success` is the start of the last
    beat that went through (the lease runs from when a beat is written, not
    from its acknowledgement); `wait` is the time until the next beat.
    """

    last_success: float
    wait: float
    beats: int = 0
    failed: int = 0
    lost: str | None = None


class _Forwarding:
    """SIGINT, SIGTERM and SIGHUP go to the command's tree once it runs.

    A signal before the watchdog is there is kept in `pending` (the caller's
    list of signals noted while it claimed, when it gave one). Once the
    watchdog waits for its start order, `attach` passes those on to it and
    every later signal goes there at once: one that reaches the watchdog
    before the start order cancels the start, so the command never starts
    after a signal to run. Handlers are installed before the start, so no
    signal falls between the two; a signal ignored when we started stays
    ignored.
    """

    def __init__(self, pending: list[int]) -> None:
        self.pending = pending
        self.send: Callable[[int], None] | None = None
        self.first: int | None = None
        self.previous = {sig: signal.signal(sig, self._forward) for sig in FORWARDED
                         if signal.getsignal(sig) is not signal.SIG_IGN}

    def _forward(self, signum: int, _frame: object) -> None:
        if self.first is None:
            self.first = signum
        if self.send is not None:
            self.send(signum)
        else:
            self.pending.append(signum)  # arrived before the watchdog could take it

    def attach(self, send: Callable[[int], None]) -> None:
        """From now on signals go to `send`; those noted so far go there first."""
        self.send = send
        for signum in list(self.pending):
            send(signum)

    def started(self, watch: Watchdog) -> None:
        self.send = watch.forward

    def restore(self) -> None:
        self.send = None
        for sig, handler in self.previous.items():
            signal.signal(sig, handler)


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
    lost. Signals in `early` (noted by the caller while it claimed) mean the
    command is never started: NotStarted.
    """
    lease_span = give_up_after if lease_for is None else lease_for
    mine = session.store.get(ticket, ref=session.settings.claim_ref(ticket),
                             remote_url=session.remote_url)
    lease = _first_lease(session, ticket, mine, give_up_after, interval)
    signals = _Forwarding(early if early is not None else [])
    if signals.pending:
        signals.restore()
        raise NotStarted(signals.pending[0])

    def gate(send: Callable[[int], None]) -> None:
        signals.attach(send)
        pause("run:before-start")

    try:
        watch = _launch(session, command, mine, cwd=cwd, env=env, grace=grace,
                        lease_at=lease.last_success + lease_span if stop_on_lost else None,
                        report=report, gate=gate)
    except StartCancelled as cancelled:
        signals.restore()
        raise NotStarted(cancelled.signum) from None
    except LeaseRanOut:
        signals.restore()
        lost = _expired(session, ticket, elapsed() - lease.last_success, False)
        report(f"{lost}; the command was not started")
        return RunOutcome(NOT_STARTED_STATUS, lost, lease.beats, 0, signals.first is not None,
                          signals.first)
    except BaseException:
        signals.restore()
        raise
    signals.started(watch)
    op = oplog.begin("run", ticket, agent=session.settings.agent, tag=mine.tag if mine else None,
                     child=watch.pid)
    try:
        _beat_until_done(session, ticket, watch, lease, op, interval=interval,
                         give_up_after=give_up_after, lease_span=lease_span,
                         stop_on_lost=stop_on_lost, report=report)
    except BaseException:
        watch.stop()  # we are failing: the command must not outlive what we know of it
        watch.finished.wait()
        raise
    finally:
        signals.restore()
    watch.close()
    _report_tree(watch, report)
    status = watch.status
    op.end(oplog.OK if status == 0 else oplog.FAILED, status=status, lost=lease.lost is not None)
    return RunOutcome(status, lease.lost, lease.beats, lease.failed, signals.first is not None,
                      signals.first)


def _launch(session: Session, command: Sequence[str], mine: Ownership | None, *,
            cwd: Path | None, env: dict[str, str], grace: float, lease_at: float | None,
            report: Callable[[str], None],
            gate: Callable[[Callable[[int], None]], None] | None = None) -> Watchdog:
    """Start the command under its watchdog; ClaimError (exit 3) when it cannot run.

    `gate` runs once the watchdog waits for the order to start (see
    Watchdog.start): a signal it passes on before then cancels the start.

    The locks on our claim's records go to the watchdog (and the command)
    too: they stay held, and the claim stays ours to no other process of
    this checkout, until the last process of the tree is gone, even when
    `run` itself was killed and the tree is still being stopped.
    """
    try:
        return Watchdog.start(list(command), cwd=cwd, env=env, grace=grace,
                              keep_fds=session.store.hold_fds(mine) if mine else (),
                              lease_at=lease_at, gate=gate,
                              on_stuck=lambda pids: report("waiting for " + _processes(
                                  pids, "process", "that SIGKILL did not end")))
    except OSError as error:
        raise ClaimError(f"cannot run {command[0]!r}: {error.strerror or error}") from None


def _first_lease(session: Session, ticket: str, mine: Ownership | None, give_up_after: float,
                 interval: float) -> _Lease:
    """When the lease of a claim not yet beaten began: at the claim itself.

    A win that came late (the claimer froze or crawled between its push and
    the answer, or an old push of its own landed) may be freed by a reaper
    already: a beat renews the lease or says it is lost, before the command
    starts.
    """
    age = 0.0
    if mine is not None and mine.seq == 0:  # not beaten yet: the lease began at the claim
        age = max(0.0, now() - mine.claimed_at)
    if age < give_up_after:
        return _Lease(last_success=elapsed() - age, wait=interval)
    lease = _Lease(last_success=elapsed(), wait=interval, beats=1)
    heartbeat(session, ticket)
    return lease


def _beat_until_done(session: Session, ticket: str, watch: Watchdog, lease: _Lease,
                     op: oplog.Op, *, interval: float, give_up_after: float, lease_span: float,
                     stop_on_lost: bool, report: Callable[[str], None]) -> None:
    """Beat every `interval` until the tree ends; stop it once the claim is lost."""
    finished = watch.finished
    while not finished.wait(lease.wait):
        renewed = lease.last_success  # a beat that comes back late renews nothing that ran out
        _beat_once(session, ticket, watch, lease, interval=interval,
                   give_up_after=give_up_after, lease_span=lease_span,
                   stop_on_lost=stop_on_lost, report=report)
        if lease.lost is None and watch.expired:
            lease.lost = _expired(session, ticket, elapsed() - renewed, lease.failed > 0)
        if lease.lost is not None:
            op.step(fence=lease.lost[:200])
            report(lease.lost)
            if stop_on_lost:
                watch.stop()
            else:
                report("--on-lost warn: the command goes on without a claim")
            break
    finished.wait()  # signals go on to the tree till its last process is gone
    if lease.lost is None and watch.expired:  # the lease ran out while we waited
        lease.lost = _expired(session, ticket, elapsed() - lease.last_success, lease.failed > 0)
        op.step(fence=lease.lost[:200])
        report(lease.lost)


def _beat_once(session: Session, ticket: str, watch: Watchdog, lease: _Lease, *,
               interval: float, give_up_after: float, lease_span: float, stop_on_lost: bool,
               report: Callable[[str], None]) -> None:
    """One beat: renew the lease, note the claim lost, or retry sooner with backoff."""
    # Silence is counted from the start of the call: the lease runs from the
    # moment the beat is written, not from its acknowledgement.
    attempt = elapsed()
    try:
        heartbeat(session, ticket)
    except RefusedError as refusal:
        lease.lost = refusal.message
        return
    except ClaimError as error:
        lease.failed += 1
        silent = elapsed() - lease.last_success
        if silent >= give_up_after:
            lease.lost = (f"{ticket}: the remote has been unreachable for {int(silent)}s,"
                          f" longer than the TTL allows: assuming the claim is lost")
            return
        retry = MIN_RETRY if lease.wait >= interval else min(lease.wait * 2, interval)
        lease.wait = max(0.1, min(retry, give_up_after - silent))
        report(f"heartbeat failed ({error.message}); retrying in {lease.wait:.0f}s")
        return
    lease.beats += 1
    lease.last_success = attempt
    lease.wait = interval
    if stop_on_lost:
        watch.lease(attempt + lease_span)


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

