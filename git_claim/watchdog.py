"""The watchdog between `git claim run` and its command: run -> watchdog -> command.

On Linux a guardian sits above it: run -> guardian -> watchdog -> command (see below).

`run` must own everything its command starts. Agent scripts start workers
without `exec`, in the background with `&`, or as daemons that fork twice and
call setsid; such a worker outlives the script, and if `run` dies (even by
SIGKILL, which no handler sees) it goes on working on a ticket that is then
reaped and given to a second agent. So `run` does not start the command
itself: it starts this small process, which starts the command and

- is the child subreaper of the command's tree (Linux, PR_SET_CHILD_SUBREAPER):
  every process the command starts and then leaves as an orphan is
  re-parented here instead of to init, so the whole tree stays findable
  through /proc, and is reaped here;
- starts the command only on `run`'s order `start`: a `signal N` that comes
  before it (run was told to stop while the watchdog was starting) means the
  command never starts, and the watchdog reports `cancelled N`. The pipe
  keeps the two in the order `run` sent them, so a signal is either before
  the start, and nothing runs, or after it, and passed on;
- takes orders from `run` over a pipe: `signal N` passes signal N on to every
  process of the tree, `stop` sends SIGTERM to all of them and SIGKILL to
  those left after the grace period, `lease T` says that the claim is safe
  until T on the machine's boot clock (see `boot_clock`);
- enforces that lease: when T passes without a newer `lease`, it stops the
  tree the same way (SIGTERM, SIGKILL after the grace period) and reports
  `expired`. `run` renews it after each heartbeat that went through, and the
  watchdog never waits on the network: a `run` that is frozen (SIGSTOP) or
  stuck in a heartbeat on a remote that stopped answering does not keep the
  command working past the point where a reaper could free the ticket;
- stops the tree the same way when that pipe reaches end of file: `run` has
  ended, however it ended;
- when the command itself exits, stops what it left behind the same way, and
  exits only once the tree is gone: `run` releases the ticket only when no
  work on it can still be running.

It reports to `run` over a second pipe, one line each: `started PID`,
`cancelled N` (signal N came before `start`: nothing was started),
`error ERRNO` (the command could not be started), `exit STATUS` (the
command's own status, 128 + N when signal N ended it), `expired` (the lease
ran out: the tree is being stopped) and `leftover PID...`
(processes of the command still running, and not yet asked to stop, when it
exited: SIGTERM goes to them now) and `stuck PID...` (processes still there a
grace period after their SIGKILL: another user's, or stuck in the kernel;
the watchdog goes on waiting for them). End of file means the tree is gone
(or the watchdog died); the watchdog's exit status is the command's.

The watchdog and the command stay in run's process group: a terminal's
Ctrl-C and job control reach the command directly, and a SIGSTOP to the group
freezes all of them. The watchdog blocks SIGINT, SIGTERM and SIGHUP: its
orders come from `run` only. A blocked signal stays pending, and that tells
whether a signal `run` passes on was sent to the whole group (then the
processes of the group have it already, and only those that left the group
get it from here) or to `run` alone (then every process of the tree gets it
from here): no process gets it twice. Under `git claim run`, git itself passes
a group's signal on to `run` a second time, at once; that echo, the same
signal within ECHO_WINDOW of a group-wide one, is not passed on again.

A SIGKILL to the whole process group (`kill -KILL -PGID`, as some
supervisors stop a job) kills the watchdog with the rest: the processes still
in the group die with it, but one that left the group (a daemon that called
setsid) would be re-parented to init and go on working on a ticket that is
then reaped. So on Linux the process `run` starts is a guardian: it leaves
run's process group for one of its own (in the same session), becomes a
child subreaper too, and forks the watchdog, which goes back into run's
group. The guardian only waits for the watchdog, with SIGINT, SIGTERM and
SIGHUP still blocked. A watchdog that exits leaves nothing behind; one that
was killed leaves what is left of the tree to the guardian, the nearest
subreaper above it, which sends all of it SIGTERM and, after the grace
period, SIGKILL, and exits once it is gone, with the watchdog's status (137
for a SIGKILL). The guardian enforces the lease too: the watchdog passes each
`lease` on to it over a pipe (before taking it itself), and if the deadline
passes while the watchdog is stopped (a SIGSTOP to run's whole group, a
machine that froze the job) the guardian stops the watchdog's tree without
waiting for a SIGCONT: SIGTERM, and SIGKILL after the grace period, which
ends a stopped process too. (While the watchdog runs, the guardian leaves
the lease to it.) Once resumed, the watchdog finds its lease run out as well
and reports `expired`. Signals to the group do not reach the guardian, and the
watchdog's place is the same as without it: the signal rules above are
unchanged, a SIGSTOP to the group freezes everything but the guardian. (The
watchdog itself cannot leave the group: a kill(2) of the group and one of
`run` alone look the same to `run`, and it is the watchdog's blocked, pending
signal that tells them apart.) A process that the watchdog had asked to stop
already may get SIGTERM a second time from the guardian, and a grace period
of its own.

Elsewhere than Linux there is no subreaper and no /proc: the tree is the
command's own process, the only one signalled or stopped, and what it started
is left to itself. (Signalling the command's process group instead would hit
`run` and, in a script without job control, the shell that started `run`.)

Stdlib only, and started as a script with `python -I -S`, not with `-m`: it
starts in a few tens of milliseconds, imports nothing of git_claim's (no
click, no pygit2), and nothing in the command's working directory or the
environment can shadow a module it imports.
"""

from __future__ import annotations

import os
import select
import signal
import sys
import time

TYPE_CHECKING = False  # not imported from typing: that import alone costs a few ms at start
if TYPE_CHECKING:
    import subprocess
    import threading
    from collections.abc import Callable, Sequence

WATCHED = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)
PR_SET_CHILD_SUBREAPER = 36
SWEEPS = 3  # passes over the tree per signal: a process may fork while we signal
RESWEEP = 0.1  # seconds between SIGKILL passes once the grace period is over
# A parent that passes signals on (the `git` wrapper of `git claim run` does, to its
# child) sends run a group-wide signal a second time, at once: that copy is an echo.
ECHO_WINDOW = 0.5


# --------------------------------------------------------------------------
# the lease's clock


def boot_clock() -> float:
    """Seconds on the machine-wide boot clock: the clock of `run`'s `lease T` orders.

    The same clock as `git_claim.clock.elapsed()`, read the same way:
    CLOCK_BOOTTIME (Linux; never steps, counts through suspend), else
    time.monotonic(). This module imports nothing of git_claim's, so the two
    are kept in sync by hand: change one, change the other.
    """
    clock = getattr(time, "CLOCK_BOOTTIME", None)
    if clock is not None:
        try:
            return time.clock_gettime(clock)
        except OSError:
            pass
    return time.monotonic()


# --------------------------------------------------------------------------
# the process tree, from /proc


def process_table() -> dict[int, tuple[int, str]] | None:
    """pid -> (parent pid, state letter) for every process; None without /proc."""
    try:
        entries = os.listdir("/proc")
    except OSError:
        return None
    table: dict[int, tuple[int, str]] = {}
    for entry in entries:
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat", "rb") as handle:
                fields = handle.read().rsplit(b")", 1)[1].split()
            table[int(entry)] = (int(fields[1]), fields[0].decode("ascii", "replace"))
        except (OSError, IndexError, ValueError):
            continue
    return table


def process_tree(root: int, table: dict[int, tuple[int, str]] | None = None) -> list[int]:
    """`root` and its descendants, from /proc where there is one."""
    table = process_table() if table is None else table
    if table is None:
        return [root]
    children: dict[int, list[int]] = {}
    for pid, (parent, _) in table.items():
        children.setdefault(parent, []).append(pid)
    found, pending = [], [root]
    while pending:
        pid = pending.pop()
        found.append(pid)
        pending.extend(children.get(pid, []))
    return found


def heeds(pid: int, signum: int) -> bool:
    """Whether `signum` acts on `pid` (neither ignored nor blocked there); True without /proc."""
    try:
        with open(f"/proc/{pid}/status", "rb") as handle:
            masks = {key: int(value, 16) for key, _, value in
                     (line.partition(b":\t") for line in handle.read().splitlines())
                     if key in (b"SigIgn", b"SigBlk")}
    except (OSError, ValueError):
        return True
    bit = 1 << (signum - 1)
    return not any(mask & bit for mask in masks.values())


def _send(pids: Sequence[int], signum: int) -> None:
    for pid in pids:
        try:
            os.kill(pid, signum)
        except (ProcessLookupError, PermissionError):
            pass


def _sweep(tree: Callable[[], list[int]], signum: int,
           wanted: Callable[[int], bool] = lambda pid: True) -> set[int]:
    """Send `signum` to every process of `tree()` that is `wanted`; the pids signalled."""
    sent: set[int] = set()
    for _ in range(SWEEPS):
        pids = [pid for pid in tree() if pid not in sent and wanted(pid)]
        if not pids:
            break
        _send(pids, signum)
        sent.update(pids)
    return sent


def descendants(root: int, table: dict[int, tuple[int, str]] | None = None) -> list[int]:
    """The live processes below `root`, from /proc (none without it)."""
    table = process_table() if table is None else table
    if table is None:
        return []
    return [pid for pid in process_tree(root, table)
            if pid != root and table.get(pid, (0, "Z"))[1] not in "ZX"]


def _status(wait_status: int) -> int:
    code = os.waitstatus_to_exitcode(wait_status)
    return 128 - code if code < 0 else code


# --------------------------------------------------------------------------
# the watchdog process


def become_subreaper() -> bool:
    """Make orphans of our descendants our children (Linux 3.4 and later)."""
    if not sys.platform.startswith("linux"):
        return False
    try:
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        answer: int = libc.prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0)
        return answer == 0
    except (OSError, AttributeError):
        return False


class KilledBeforeExec(Exception):
    """A signal ended the command's process before it could exec: the command never ran."""

    def __init__(self, signum: int) -> None:
        super().__init__(signum)
        self.signum = signum


class ExpiredBeforeExec(Exception):
    """The lease ran out before the command's process could exec: it never ran."""


def spawn(command: Sequence[str], lease_at: float | None = None) -> int:
    """Fork and exec `command`; its pid, or OSError when it cannot be started.

    The child says `x` just before its exec (and an errno after it if the exec
    failed): end of file without it means a signal ended the child first
    (KilledBeforeExec), and the command never ran. With `lease_at` (on
    boot_clock) the child looks at the lease last, a moment before its exec,
    and says `e` instead when it ran out (ExpiredBeforeExec): a watchdog
    frozen between its own look and the fork must not start the command on a
    claim a reaper may have freed meanwhile.
    """
    read_end, write_end = os.pipe()  # close-on-exec: end of file once exec worked
    pid = os.fork()
    if pid == 0:
        try:
            os.close(read_end)
            signal.set_wakeup_fd(-1)
            # the dispositions subprocess gives a child: Python ignores SIGPIPE and SIGXFSZ
            for name in ("SIGCHLD", "SIGPIPE", "SIGXFZ", "SIGXFSZ"):
                if hasattr(signal, name):
                    signal.signal(getattr(signal, name), signal.SIG_DFL)
            # A signal pending now (sent to the whole group as we forked) acts as on
            # the command, by default, not as a Python handler raising here: it ends
            # this process before the exec, which the parent reads as "never ran".
            # One ignored when run started stays ignored.
            for signum in WATCHED:
                if signal.getsignal(signum) is not signal.SIG_IGN:
                    signal.signal(signum, signal.SIG_DFL)
            signal.pthread_sigmask(signal.SIG_UNBLOCK, WATCHED)
            if lease_at is not None and boot_clock() >= lease_at:
                os.write(write_end, b"e")
                os._exit(127)
            os.write(write_end, b"x")
            os.execvp(command[0], list(command))
        except OSError as error:
            os.write(write_end, str(error.errno or 0).encode())
        finally:
            os._exit(127)
    os.close(write_end)
    chunks = []
    while chunk := os.read(read_end, 64):
        chunks.append(chunk)
    os.close(read_end)
    said = b"".join(chunks)
    if said == b"e":
        os.waitpid(pid, 0)
        raise ExpiredBeforeExec()
    if not said.startswith(b"x"):  # ended before its exec: by a signal, or it could not run
        _, wait_status = os.waitpid(pid, 0)
        if os.WIFSIGNALED(wait_status):
            raise KilledBeforeExec(os.WTERMSIG(wait_status))
        raise OSError(0, "the command's process ended before it could start")
    if said[1:]:
        os.waitpid(pid, 0)
        code = int(said[1:])
        raise OSError(code, os.strerror(code))
    return pid


class Watch:
    """The watchdog's state: the command, what was asked of its tree, the deadline."""

    def __init__(self, orders: int, reports: int, grace: float,
                 guardian: int | None = None) -> None:
        self.orders: int | None = orders
        self.reports = reports
        self.grace = grace
        self.guardian = guardian  # where each lease is passed on, when there is a guardian
        self.lease_at: float | None = None  # on boot_clock(): the tree is stopped then
        self.expired = False
        self.me = os.getpid()
        self.group = os.getpgrp()
        self.main = 0
        self.status: int | None = None
        self.asked: set[int] = set()  # got a signal that ends it, or is cleaning up after one
        self.termed: set[int] = set()  # got SIGTERM
        self.credit: dict[int, int] = {}  # group-wide signals that run is yet to pass on
        self.group_seen: dict[int, float] = {}  # when each signal last came group-wide
        self.term_at: float | None = None  # SIGTERM for the rest, after an interrupt
        self.kill_at: float | None = None
        self.told_stuck = False
        self.buffer = b""

    def report(self, line: str) -> None:
        try:
            os.write(self.reports, f"{line}\n".encode())
        except OSError:
            pass  # run is gone: nobody to tell

    def tree(self) -> list[int]:
        """Every live process of the command, the command included."""
        table = process_table()
        if table is None:
            return [self.main] if self.status is None else []
        return descendants(self.me, table)

    def sweep(self, signum: int, wanted: Callable[[int], bool] = lambda pid: True) -> set[int]:
        """Send `signum` to every process of the tree that is `wanted`; the pids signalled."""
        return _sweep(self.tree, signum, wanted)

    def deadline(self) -> None:
        """SIGKILL for whatever is left once the grace period is over."""
        limit = time.monotonic() + self.grace
        self.kill_at = limit if self.kill_at is None else min(self.kill_at, limit)

    def forward(self, signum: int) -> None:
        """Run's order: pass `signum` on, unless it went to the whole group."""
        self.take_group_signals()
        if self.credit.get(signum, 0) > 0:
            self.credit[signum] -= 1  # sent to the whole group: passed on already
            return
        if time.monotonic() - self.group_seen.get(signum, float("-inf")) < ECHO_WINDOW:
            return  # a parent passing the group's signal on to run: passed on already
        self._deliver(signum, group_wide=False)

    def take_group_signals(self) -> None:
        """Act on signals sent to the whole process group, ours being pending here.

        The processes of the group have them already; those that left it get
        them now. Run, in the group too, got them as well and will pass each
        on: that order finds a credit here and does nothing more.
        """
        try:
            pending = signal.sigpending()
        except (AttributeError, OSError):
            return
        for signum in WATCHED:
            if signum in pending:
                signal.sigwait([signum])  # take it: it is pending, this returns at once
                self.credit[signum] = self.credit.get(signum, 0) + 1
                self.group_seen[signum] = time.monotonic()
                self._deliver(signum, group_wide=True)

    def _deliver(self, signum: int, *, group_wide: bool) -> None:
        tree = self.tree()
        if signum in WATCHED:  # asked to stop, unless it ignores that signal
            self.asked.update(pid for pid in tree if heeds(pid, signum))
        if group_wide:
            self.sweep(signum, lambda pid: _group_of(pid) not in (self.group, None))
        else:
            self.sweep(signum)
        if signum == signal.SIGTERM:
            self.termed.update(tree)

    def stop(self) -> None:
        """SIGTERM to every process that has not had one, SIGKILL after the grace period."""
        self.term_at = None
        self._term(lambda pid: pid not in self.termed)
        self.deadline()

    def _term(self, wanted: Callable[[int], bool]) -> set[int]:
        sent = self.sweep(signal.SIGTERM, wanted)
        self.termed.update(sent)
        self.asked.update(sent)
        return sent

    def obey(self, words: list[str]) -> None:
        if words[:1] == ["signal"] and len(words) == 2 and words[1].isdigit():
            signum = int(words[1])
            if 0 < signum < signal.NSIG:
                self.forward(signum)
        elif words == ["stop"]:
            self.stop()
        elif words[:1] == ["lease"] and len(words) == 2:
            try:
                deadline = float(words[1])
            except ValueError:
                return
            self.lease(deadline)

    def lease(self, deadline: float) -> None:
        """Run's order: the claim is safe until `deadline`; a lease that ran out stays out.

        The guardian hears of it first: if we are stopped between the two, it
        still has our deadline or an earlier one, never a later one.
        """
        self.check_lease()
        if self.expired:
            return  # a beat that came too late revives nothing
        if self.guardian is not None:
            try:
                os.write(self.guardian, f"lease {deadline!r}\n".encode())
            except OSError:
                pass  # the guardian is gone (killed): we enforce the lease alone
        self.lease_at = deadline

    def check_lease(self) -> float | None:
        """Stop the tree once the lease has run out; the seconds it has left, else None."""
        if self.lease_at is None or self.expired:
            return None
        left = self.lease_at - boot_clock()
        if left > 0:
            return left
        self.expired = True
        self.report("expired")
        self.stop()
        return None

    def await_start(self) -> int | None:
        """Wait for run's `start`; the signal that came first instead, if one did.

        Leases sent before the start are taken; `signal N` or `stop` before it
        cancel the start, and so does end of file (run has gone). Orders after
        `start` stay in the buffer: they are looked at once more right before
        the fork (a signal there cancels the start too), then the loop that
        watches the command obeys the rest.
        """
        assert self.orders is not None
        while True:
            while b"\n" in self.buffer:
                line, self.buffer = self.buffer.split(b"\n", 1)
                words = line.decode("ascii", "replace").split()
                if words == ["start"]:
                    return None  # what came after it is looked at right before the fork
                stop = _stop_order(words)
                if stop is not None:
                    return stop
                self.obey(words)  # a lease
            try:
                data = os.read(self.orders, 512)
            except InterruptedError:
                continue
            if not data:
                return int(signal.SIGHUP)  # run has ended before the start
            self.buffer += data

    def _stop_order_waiting(self) -> int | None:
        """The signal of a `signal N` or `stop` already sent after `start`, if any.

        The end of the orders means run is gone (killed while we were about to
        fork): the command must not start for nobody, and counts as stopped
        by SIGKILL.
        """
        assert self.orders is not None
        os.set_blocking(self.orders, False)
        try:
            while data := os.read(self.orders, 512):
                self.buffer += data
            return signal.SIGKILL  # end of file: run is gone
        except (BlockingIOError, InterruptedError):
            pass
        finally:
            os.set_blocking(self.orders, True)
        for line in self.buffer.split(b"\n")[:-1]:
            stop = _stop_order(line.decode("ascii", "replace").split())
            if stop is not None:
                return stop
        return _group_signal_pending()

    def take_waiting_orders(self) -> None:
        """Obey the orders already in the pipe, without waiting for more."""
        if self.orders is None:
            return
        os.set_blocking(self.orders, False)
        try:
            self.read_orders()
        except BlockingIOError:
            pass
        finally:
            if self.orders is not None:
                os.set_blocking(self.orders, True)

    def read_orders(self) -> None:
        assert self.orders is not None
        data = os.read(self.orders, 512)
        if not data:  # run has ended, however: nobody is left to wait for the command
            os.close(self.orders)
            self.orders = None
            self.stop()
            return
        self.buffer += data
        self.obey_buffered()

    def obey_buffered(self) -> None:
        """Obey the whole orders read so far (a partial line waits for the rest)."""
        while b"\n" in self.buffer:
            line, self.buffer = self.buffer.split(b"\n", 1)
            self.obey(line.decode("ascii", "replace").split())

    def exited(self, status: int) -> None:
        """The command is over: what it left running is stopped.

        Processes that it left running are leftovers: SIGTERM now. Those asked
        to stop already (an interrupted run) are ending by themselves: those
        that had SIGINT or SIGHUP get SIGTERM after the grace period (SIGINT
        may only cancel an operation), and SIGKILL one grace period after
        their SIGTERM; no process gets SIGTERM twice.
        """
        self.status = status
        self.check_lease()  # a lease that ran out is reported, even if the tree is gone now
        self.report(f"exit {status}")
        self.take_group_signals()  # what ended it may be a signal run has not passed on yet
        left = self._term(lambda pid: pid not in self.asked)
        if left:
            self.report("leftover " + " ".join(str(pid) for pid in sorted(left)))
        if any(pid not in self.termed for pid in self.tree()):
            self.term_at = time.monotonic() + self.grace
        else:
            self.deadline()

    def reap(self) -> bool:
        """Reap every child that ended; whether any child is left."""
        while True:
            try:
                pid, wait_status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                return False
            if pid == 0:
                return True
            if pid == self.main and self.status is None:
                self.exited(_status(wait_status))

    def run(self, command: Sequence[str]) -> int:
        wake_read, wake_write = os.pipe()
        for end in (wake_read, wake_write):
            os.set_blocking(end, False)
        signal.set_wakeup_fd(wake_write, warn_on_full_buffer=False)
        signal.signal(signal.SIGCHLD, lambda *_: None)  # wakes select() through the pipe
        cancelled = self.await_start()  # the first lease is in the pipe before the start
        if cancelled is not None:
            self.report(f"cancelled {cancelled}")
            return 0
        if self.expired:
            return 0  # reported already: the lease ran out while run was starting us
        if self.lease_at is not None and self.lease_at <= boot_clock():
            # run was frozen (or crawled) between taking its lease and starting us:
            # the claim may be reaped by now, so the command must not start at all
            self.report("expired")
            return 0
        _test_pause("watchdog:before-spawn")
        late = self._stop_order_waiting()  # the last look, a fork away from the start
        if late is not None:
            self.report(f"cancelled {late}")
            return 0
        try:
            self.main = spawn(command, self.lease_at)
        except KilledBeforeExec as killed:  # a signal to the group came first: nothing ran
            self.report(f"cancelled {killed.signum}")
            return 0
        except ExpiredBeforeExec:  # frozen after the look above, past the lease: nothing ran
            self.report("expired")
            return 0
        except OSError as error:
            self.report(f"error {error.errno or 0}")
            return 127
        self.report(f"started {self.main}")
        # what run sent after `start` may have come in the same read: a signal
        # there is for the command, now, not at the next order
        self.obey_buffered()
        while self.reap():
            lease_left = self.check_lease()
            if self.term_at is not None and time.monotonic() >= self.term_at:
                self.stop()
            timeout = None
            if self.term_at is not None:
                timeout = max(0.0, self.term_at - time.monotonic())
            elif self.kill_at is not None:
                timeout = self.kill_at - time.monotonic()
                if timeout <= 0:
                    self.sweep(signal.SIGKILL)
                    if not self.told_stuck and -timeout >= max(self.grace, 1.0):
                        self.told_stuck = True
                        self.report("stuck " + " ".join(str(pid) for pid in self.tree()))
                    timeout = RESWEEP
            if lease_left is not None:  # a wait until the lease runs out, not a poll
                timeout = lease_left if timeout is None else min(timeout, lease_left)
            watched = [wake_read] + ([self.orders] if self.orders is not None else [])
            ready, _, _ = select.select(watched, [], [], timeout)
            if wake_read in ready:
                try:
                    while os.read(wake_read, 512):
                        pass
                except BlockingIOError:
                    pass
            if self.orders is not None and self.orders in ready:
                self.read_orders()
        return self.status if self.status is not None else 1


def _test_pause(point: str) -> None:
    """The tool's test pause points (git_claim.testpoints), for the watchdog: stdlib only."""
    if os.environ.get("GIT_CLAIM_TEST_PAUSE") != point:
        return
    folder = os.environ.get("GIT_CLAIM_TEST_PAUSE_DIR", ".")
    name = os.path.join(folder, point.replace(":", "-"))
    with open(name + ".reached", "w") as marker:
        marker.write(str(os.getpid()))
    deadline = time.monotonic() + 120
    while not os.path.exists(name + ".go") and time.monotonic() < deadline:
        time.sleep(0.01)


def _group_signal_pending() -> int | None:
    """A signal sent to the whole group that is pending here (we block them), if any.

    The group's processes got it; a command started now would not have, and
    run passes it on as a group signal, which goes only to processes outside
    the group: so none must start. A signal run ignores (nohup) is left alone.
    """
    try:
        pending = signal.sigpending()
    except (AttributeError, OSError):
        return None
    for signum in WATCHED:
        if signum in pending and signal.getsignal(signum) is not signal.SIG_IGN:
            return int(signum)
    return None


def _stop_order(words: list[str]) -> int | None:
    """The signal an order stops the command with: `signal N` (N), `stop` (SIGTERM)."""
    if words[:1] == ["signal"] and len(words) == 2 and words[1].isdigit():
        return int(words[1])
    if words == ["stop"]:
        return int(signal.SIGTERM)
    return None


def _group_of(pid: int) -> int | None:
    try:
        return os.getpgid(pid)
    except OSError:
        return None


# --------------------------------------------------------------------------
# the guardian, outside run's process group


def split_off_watchdog() -> int:
    """Fork the watchdog, in run's process group, from the guardian, out of it.

    Like fork(): the watchdog's pid in the guardian, 0 in the watchdog. The
    guardian leaves the group before the fork: there is no moment at which
    the command has started and a group SIGKILL would still end both.
    """
    group = os.getpgrp()
    try:
        os.setpgid(0, 0)
    except OSError:
        pass  # still in run's group: a group SIGKILL ends us as it ends the watchdog
    pid = os.fork()
    if pid == 0:
        try:
            os.setpgid(0, group)
        except OSError:
            pass  # run's group is gone, so is run: its order pipe is at end of file
    return pid


def _stopped(pid: int) -> bool:
    """Whether `pid` is stopped (SIGSTOP, job control) or traced."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as handle:
            return handle.read().rsplit(b")", 1)[1].split()[0] in (b"T", b"t")
    except (OSError, IndexError):
        return False


def enforce_leases(watchdog: int, grace: float, leases: int) -> None:
    """Until the watchdog ends: stop its tree if a lease runs out while it is stopped.

    `leases` is the pipe on which the watchdog passes on each `lease T`; end
    of file means the watchdog has ended. A wait with a timeout until the
    deadline, not a poll. At the deadline a watchdog that runs enforces the
    lease itself (or has taken a newer one): we look again a moment later.
    One that is stopped cannot: its tree gets SIGTERM from here, and SIGKILL
    after the grace period (a stopped process ends only by SIGKILL).
    """
    deadline: float | None = None
    kill_at: float | None = None
    expired = False
    buffer = b""
    tree = lambda: descendants(watchdog)  # noqa: E731
    while True:
        timeout: float | None = None
        if kill_at is not None:
            timeout = kill_at - time.monotonic()
            if timeout <= 0:
                timeout = RESWEEP if _sweep(tree, signal.SIGKILL) else None
                if timeout is None:
                    kill_at = None  # all gone: wait for the watchdog
        elif deadline is not None and not expired:
            timeout = deadline - boot_clock()
            if timeout <= 0:
                if _stopped(watchdog):
                    expired = True
                    _sweep(tree, signal.SIGTERM)
                    kill_at = time.monotonic() + grace
                    timeout = grace
                else:
                    timeout = RESWEEP
        ready, _, _ = select.select([leases], [], [], timeout)
        if not ready:
            continue
        data = os.read(leases, 512)
        if not data:
            break
        *lines, buffer = (buffer + data).split(b"\n")
        for line in lines:
            words = line.split()
            if words[:1] == [b"lease"] and len(words) == 2 and not expired:
                try:
                    deadline = float(words[1])
                except ValueError:
                    pass
    os.close(leases)


def guard(watchdog: int, grace: float, leases: int | None = None) -> int:
    """The guardian: wait for the watchdog, stop what it left behind, exit with its status.

    Meanwhile it enforces the leases the watchdog passes on (`enforce_leases`).
    A watchdog that exits by itself leaves nothing: it exits only once the
    tree is gone. One that was killed leaves the rest of the tree to us (we
    are the nearest subreaper above it): SIGTERM to all of it, SIGKILL after
    the grace period, until the last process is gone.
    """
    signal.pthread_sigmask(signal.SIG_BLOCK, [signal.SIGCHLD])  # taken by sigtimedwait
    if leases is not None:
        enforce_leases(watchdog, grace, leases)
    _, wait_status = os.waitpid(watchdog, 0)
    me = os.getpid()
    _sweep(lambda: descendants(me), signal.SIGTERM)
    kill_at = time.monotonic() + grace
    while True:
        try:
            while os.waitpid(-1, os.WNOHANG)[0]:
                pass
        except ChildProcessError:
            break
        timeout = kill_at - time.monotonic()
        if timeout <= 0:
            _sweep(lambda: descendants(me), signal.SIGKILL)
            timeout = RESWEEP
        signal.sigtimedwait([signal.SIGCHLD], timeout)
    return _status(wait_status)


def main(argv: Sequence[str]) -> int:
    """argv: ORDERS-FD REPORTS-FD GRACE-SECONDS -- COMMAND..."""
    signal.pthread_sigmask(signal.SIG_BLOCK, WATCHED)  # run starts us with them blocked already
    orders, reports, grace = int(argv[0]), int(argv[1]), float(argv[2])
    command = list(argv[4:]) if argv[3:4] == ["--"] else []
    for fd in (orders, reports):
        os.set_inheritable(fd, False)  # the command gets neither pipe
    if not command:
        return 2
    if become_subreaper():  # the guardian's: the watchdog's orphans come here if it dies
        leases_read, leases_write = os.pipe()  # close-on-exec: the command gets neither end
        watchdog = split_off_watchdog()
        if watchdog:
            os.close(orders)  # the watchdog's: end of file on either must not wait for us
            os.close(reports)
            os.close(leases_write)  # end of file once the watchdog has ended
            return guard(watchdog, grace, leases_read)
        os.close(leases_read)
        # Never block on a guardian that does not read (stopped): a lease it
        # misses leaves it an earlier deadline, which only makes it stricter.
        os.set_blocking(leases_write, False)
        become_subreaper()  # not inherited
        return Watch(orders, reports, grace, guardian=leases_write).run(command)
    return Watch(orders, reports, grace).run(command)


# --------------------------------------------------------------------------
# run's end of it


class LeaseRanOut(Exception):
    """The first lease had run out before the command could start: it never started."""


class StartCancelled(Exception):
    """A signal reached run before it ordered the start: the command never started."""

    def __init__(self, signum: int) -> None:
        super().__init__(signum)
        self.signum = signum


class Watchdog:
    """`run`'s handle on the watchdog: start it with the command, give orders, read reports.

    `finished` is set once the command and every process it started are gone
    (when the watchdog itself died, once its guardian stopped what was left);
    then `status` is the command's status.
    """

    def __init__(self, process: subprocess.Popen[bytes], orders: int, reports: int,
                 pid: int, on_stuck: Callable[[list[int]], None] | None = None) -> None:
        import threading

        self.process = process
        self.pid = pid  # the command's
        self.orders: int | None = orders
        self.exit_status: int | None = None
        self.expired = False  # the lease ran out: the watchdog stopped the tree
        self.leftovers: list[int] = []
        self.on_stuck = on_stuck
        self.finished: threading.Event = threading.Event()
        self._reports = os.fdopen(reports, "rb")
        threading.Thread(target=self._read, daemon=True, name="watchdog-reports").start()

    @classmethod
    def start(cls, command: Sequence[str], *, cwd: str | os.PathLike[str] | None,
              env: dict[str, str], grace: float,
              on_stuck: Callable[[list[int]], None] | None = None,
              keep_fds: Sequence[int] = (), lease_at: float | None = None,
              gate: Callable[[Callable[[int], None]], None] | None = None) -> Watchdog:
        """Start the watchdog and through it `command`; OSError if it cannot start.

        The watchdog waits for the order to start the command. Before giving
        it, `gate` is called with a function that passes a signal on over the
        order pipe (safe in a signal handler): a signal passed on before the
        start order cancels the start (StartCancelled), one after it reaches
        the command. So a signal handler that uses it from then on needs no
        check of its own: the pipe decides which came first.

        `on_stuck` hears, from another thread, of processes that outlive their
        SIGKILL by a grace period (the tree is still waited for). `keep_fds`
        are inherited by the watchdog and the command (run's locks on its
        claim records, held until the whole tree is gone). `lease_at`, the
        first lease, is in the order pipe before the watchdog starts: there is
        no moment when the command runs without a deadline, even if `run` is
        frozen right after this call.
        """
        import subprocess

        orders_read, orders_write = os.pipe()
        reports_read, reports_write = os.pipe()
        if lease_at is not None:
            os.write(orders_write, f"lease {float(lease_at)!r}\n".encode())
        script = os.path.abspath(__file__)
        launcher = ([sys.executable, "-I", "-S", script] if os.path.isfile(script)
                    else [sys.executable, "-I", "-m", "git_claim.watchdog"])
        argv = [*launcher, str(orders_read), str(reports_write), repr(float(grace)), "--",
                *command]
        # Blocked from its first instruction: none of these can end it before it blocks them.
        old_mask = signal.pthread_sigmask(signal.SIG_BLOCK, WATCHED)
        try:
            process = subprocess.Popen(argv, cwd=cwd, env=env,
                                       pass_fds=(orders_read, reports_write, *keep_fds))
        except BaseException:
            os.close(orders_write)
            os.close(reports_read)
            raise
        finally:
            signal.pthread_sigmask(signal.SIG_SETMASK, old_mask)
            os.close(orders_read)
            os.close(reports_write)
        pipe: list[int | None] = [orders_write]  # None once closed: a late signal writes nothing

        def send(signum: int) -> None:
            fd = pipe[0]
            if fd is not None:
                try:
                    os.write(fd, f"signal {int(signum)}\n".encode())
                except OSError:
                    pass  # the watchdog has gone

        first = b""
        try:
            if gate is not None:
                gate(send)
            try:
                os.write(orders_write, b"start\n")
            except BrokenPipeError:
                pass  # the watchdog ended already (a signal cancelled the start): its report says
            while not first.endswith(b"\n"):
                chunk = os.read(reports_read, 1)
                if not chunk:
                    break
                first += chunk
            words = first.split()
            if words[:1] == [b"started"] and len(words) == 2:
                return cls(process, orders_write, reports_read, int(words[1]), on_stuck)
        except BaseException:
            pipe[0] = None
            os.close(orders_write)  # the watchdog stops the command on its own
            os.close(reports_read)
            raise
        pipe[0] = None
        os.close(orders_write)
        os.close(reports_read)
        process.wait()
        if words == [b"expired"]:
            raise LeaseRanOut()
        if words[:1] == [b"cancelled"] and len(words) == 2 and words[1].isdigit():
            raise StartCancelled(int(words[1]))
        if words[:1] == [b"error"] and len(words) == 2 and words[1].isdigit():
            code = int(words[1])
            raise OSError(code, os.strerror(code))
        raise OSError(0, f"its watchdog ended with status {process.returncode}")

    def _read(self) -> None:
        for line in self._reports:
            words = line.split()
            if words[:1] == [b"exit"] and len(words) == 2:
                self.exit_status = int(words[1])
            elif words == [b"expired"]:
                self.expired = True
            elif words[:1] == [b"leftover"]:
                self.leftovers.extend(int(word) for word in words[1:])
            elif words[:1] == [b"stuck"] and self.on_stuck is not None:
                self.on_stuck([int(word) for word in words[1:]])
        self._reports.close()
        self.process.wait()
        self.finished.set()

    @property
    def status(self) -> int:
        """The command's status; the watchdog's own when it died without saying (e.g. 137)."""
        if self.exit_status is not None:
            return self.exit_status
        code = self.process.returncode if self.process.returncode is not None else 1
        return 128 - code if code < 0 else code

    def _order(self, line: str) -> None:
        if self.orders is None:
            return
        try:
            os.write(self.orders, f"{line}\n".encode())
        except OSError:
            pass  # the watchdog has gone: so has the command

    def forward(self, signum: int) -> None:
        """Pass `signum` on to the command and every process it started.

        Safe in a signal handler.
        """
        self._order(f"signal {int(signum)}")

    def stop(self) -> None:
        """SIGTERM to the command and every process it started, SIGKILL after the grace period."""
        self._order("stop")

    def lease(self, deadline: float) -> None:
        """The claim is safe until `deadline` (on `boot_clock()`): the tree is stopped then."""
        self._order(f"lease {float(deadline)!r}")

    def close(self) -> None:
        if self.orders is not None:
            orders, self.orders = self.orders, None
            os.close(orders)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
