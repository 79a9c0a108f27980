"""`git claim run`: run an agent's command while keeping its claim alive.

The child runs undisturbed; this process waits for it and beats the claim
every interval from the same process (a wait with a timeout, not a busy
loop). A beat that fails for lack of the remote is retried with backoff; a
beat refused because the claim was lost stops the child. If the remote stays
unreachable for longer than the TTL minus a margin, the claim is assumed
lost: the owner stops itself before any reaper could free the ticket.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Sequence

from . import oplog
from .clock import now
from .errors import ClaimError, RefusedError
from .liveness import heartbeat
from .session import Session

FORWARDED = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)
MIN_RETRY = 1.0


@dataclass
class RunOutcome:
    status: int  # the child's exit status (128 + signal when killed)
    lost: str | None  # why the claim was lost, when it was
    beats: int
    failed_beats: int
    interrupted: bool


def _status(returncode: int) -> int:
    return 128 - returncode if returncode < 0 else returncode


def run_with_heartbeat(session: Session, ticket: str, command: Sequence[str], *,
                       cwd: Path | None, env: dict[str, str], interval: float,
                       give_up_after: float, grace: float, stop_on_lost: bool,
                       report: Callable[[str], None]) -> RunOutcome:
    """Run `command`, beating `ticket` every `interval` seconds until it ends."""
    # The command stays in our process group: at a terminal it can read it and
    # Ctrl-C reaches it directly, and a supervisor that kills our group kills
    # it too. Stopping it after a lost claim signals its whole process tree.
    started: list[subprocess.Popen[bytes]] = []
    pending: list[int] = []
    interrupted = False

    def forward(signum: int, _frame: object) -> None:
        nonlocal interrupted
        interrupted = True
        if started:
            _signal(started[0], signum)
        else:
            pending.append(signum)  # arrived before the command started

    mine = session.store.get(ticket, ref=session.settings.claim_ref(ticket),
                             remote_url=session.remote_url)
    lease_age = 0.0
    if mine is not None and mine.seq == 0:  # not beaten yet: the lease began at the claim
        lease_age = max(0.0, now() - mine.claimed_at)
    leased_at = time.monotonic() - lease_age
    beats = 0
    if lease_age >= give_up_after:
        # A win that came late (the claimer froze or crawled between its push and
        # the answer, or an old push of its own landed): a reaper may have freed
        # the ticket already. A beat renews the lease or says it is lost, before
        # the command starts.
        leased_at = time.monotonic()
        heartbeat(session, ticket)
        beats = 1

    # Handlers first: a signal between the start and the handlers must not be lost.
    previous = {sig: signal.signal(sig, forward) for sig in FORWARDED}
    try:
        child = subprocess.Popen(list(command), cwd=cwd, env=env,
                                 preexec_fn=_die_with_parent)
    except OSError as error:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        raise ClaimError(f"cannot run {command[0]!r}: {error.strerror or error}")
    started.append(child)
    op = oplog.begin("run", ticket, agent=session.settings.agent, tag=mine.tag if mine else None,
                     child=child.pid)
    for signum in pending:
        _signal(child, signum)
    finished = threading.Event()
    threading.Thread(target=lambda: (child.wait(), finished.set()), daemon=True).start()
    failed = 0
    lost: str | None = None
    last_success = leased_at
    wait = interval
    try:
        while not finished.wait(wait):
            # The lease runs from the moment the beat is written, not from its
            # acknowledgement: silence is counted from the start of the call.
            attempt = time.monotonic()
            try:
                heartbeat(session, ticket)
                beats += 1
                last_success = attempt
                wait = interval
            except RefusedError as refusal:
                lost = refusal.message
            except ClaimError as error:
                failed += 1
                silent = time.monotonic() - last_success
                if silent >= give_up_after:
                    lost = (f"{ticket}: the remote has been unreachable for {int(silent)}s,"
                            f" longer than the TTL allows: assuming the claim is lost")
                else:
                    retry = MIN_RETRY if wait >= interval else min(wait * 2, interval)
                    wait = max(0.1, min(retry, give_up_after - silent))
                    report(f"heartbeat failed ({error.message}); retrying in {wait:.0f}s")
            if lost is not None:
                op.step(fence=lost[:200])
                report(lost)
                if not stop_on_lost:
                    report("--on-lost warn: the command goes on without a claim")
                    finished.wait()
                    break
                _stop(child, finished, grace)
                break
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    finished.wait()
    op.end(oplog.OK if child.returncode == 0 else oplog.FAILED,
           status=_status(child.returncode), lost=lost is not None)
    return RunOutcome(_status(child.returncode), lost, beats, failed, interrupted)


def _die_with_parent() -> None:
    """In the child, before exec: get SIGTERM if `run` itself is killed (Linux)."""
    if sys.platform.startswith("linux"):
        import ctypes

        try:
            ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
        except (OSError, AttributeError):
            pass


def _signal(child: subprocess.Popen[bytes], signum: int) -> None:
    if child.poll() is None:
        try:
            child.send_signal(signum)
        except ProcessLookupError:
            pass


def process_tree(root: int) -> list[int]:
    """`root` and its descendants, from /proc where there is one."""
    parents: dict[int, list[int]] = {}
    try:
        entries = os.listdir("/proc")
    except OSError:
        return [root]
    for entry in entries:
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat", "rb") as handle:
                fields = handle.read().rsplit(b")", 1)[1].split()
            parents.setdefault(int(fields[1]), []).append(int(entry))
        except (OSError, IndexError, ValueError):
            continue
    found, pending = [], [root]
    while pending:
        pid = pending.pop()
        found.append(pid)
        pending.extend(parents.get(pid, []))
    return found


def _signal_tree(root: int, signum: int) -> None:
    for pid in process_tree(root):
        try:
            os.kill(pid, signum)
        except (ProcessLookupError, PermissionError):
            pass


def _stop(child: subprocess.Popen[bytes], finished: threading.Event, grace: float) -> None:
    """SIGTERM to the command and what it started, then SIGKILL after the grace period."""
    _signal_tree(child.pid, signal.SIGTERM)
    if not finished.wait(grace):
        _signal_tree(child.pid, signal.SIGKILL)


def child_environment(base: dict[str, str], extra: dict[str, str]) -> dict[str, str]:
    env = dict(base)
    env.update(extra)
    return env

