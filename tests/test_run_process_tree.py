"""`git claim run` owns every process its command starts, however run ends.

The agent script starts a Python worker without `exec`: as its foreground
child, in the background with `&` and `wait`, or as a daemon that forks
twice and calls setsid. The worker logs "started", "got N" when signal N
arrives and, after a short cleanup, "stopped N" with the state of the ticket
on the remote at that moment, read with the tests' oracle (ticket_state): a
release recorded before the worker ended would show there. Nothing here
sleeps to wait for another process: every wait polls a condition with a
deadline.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest

from agents import ticket_state, with_env

GRACE = 2.0
MARGIN = 1.0  # for the machine: the worker itself ends 0.3 s after its SIGTERM
STUBBORN_GRACE = 8.0  # a worker that ignores SIGTERM, while a second run is tried
TICKET = "700"

WORKER = r'''
import os, signal, sys, time
from pathlib import Path

log, mode = sys.argv[1], sys.argv[2]
sys.path.insert(0, os.environ["CLAIM_ORACLE"])
from agents import ticket_state  # noqa: E402
from servers import ServedRepo  # noqa: E402


def note(text):
    with open(log, "a") as handle:
        handle.write(f"{os.getpid()} {time.time():.6f} {text}\n")


def claim_state():
    served = ServedRepo(Path(os.environ["CLAIM_REPO"]), "")
    return ticket_state(served, os.environ["CLAIM_TICKET"]).state


def stop(signum, frame):
    note(f"got {signum}")
    time.sleep(0.3)  # a cleanup that takes a while
    note(f"stopped {signum} claim={claim_state()}")
    os._exit(128 + signum)


if mode.endswith("daemon"):  # the classic double fork, out of the session and the process group
    if os.fork():
        os._exit(0)
    os.setsid()
    if os.fork():
        os._exit(0)
for signum in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
    signal.signal(signum, stop)
if mode.startswith("stubborn"):
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
if mode == "cancel":  # SIGINT only cancels what it is doing, as in many interactive tools
    signal.signal(signal.SIGINT, lambda signum, frame: note(f"got {signum}"))
note("started")
while True:
    time.sleep(0.1)
    if mode.startswith("stubborn"):
        note(f"alive claim={claim_state()}")
'''

WORKER_LINE = '"$WORKER_PYTHON" "$WORKER" "$WORKER_LOG"'
SCRIPTS = {
    # the worker as the script's foreground child, not exec'd
    "foreground": f"{WORKER_LINE} plain\nexit $?\n",
    # in the background, and the script waits for it
    "background": f"{WORKER_LINE} plain &\nwait $!\nexit $?\n",
    # a daemon: not a child of the script, not in its process group or session
    "daemon": f"{WORKER_LINE} daemon\nsleep 30\nexit $?\n",
    # a daemon ignoring SIGTERM
    "stubborn-daemon": f"{WORKER_LINE} stubborn-daemon\nsleep 30\nexit $?\n",
    # in the background, ignoring SIGTERM
    "stubborn": f"{WORKER_LINE} stubborn &\nwait $!\nexit $?\n",
    # in the background, going on after SIGINT
    "cancel": f"{WORKER_LINE} cancel &\nwait $!\nexit $?\n",
}
# the script ends at once (status 0) and leaves its worker running
LEAVES = ("until grep -q started \"$WORKER_LOG\" 2>/dev/null; do sleep 0.05; done\nexit 0\n")


def proc_stat(pid: int) -> list[str] | None:
    try:
        with open(f"/proc/{pid}/stat") as handle:
            return handle.read().rsplit(")", 1)[1].split()
    except OSError:
        return None


def alive(pid: int) -> bool:
    """Running, sleeping or stopped: not gone and not a zombie."""
    fields = proc_stat(pid)
    return fields is not None and fields[0] not in ("Z", "X")


def session_members(sid: int) -> list[int]:
    members = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            fields = proc_stat(int(entry))
            if fields is not None and int(fields[3]) == sid and fields[0] not in ("Z", "X"):
                members.append(int(entry))
    return members


def poll(condition: Callable[[], bool], timeout: float, what: str) -> float:
    """Seconds until `condition` held; fails after `timeout`."""
    start = time.monotonic()
    while not condition():
        if time.monotonic() - start > timeout:
            raise AssertionError(f"{what}: not within {timeout:.1f}s")
        time.sleep(0.02)
    return time.monotonic() - start


@dataclass
class Run:
    """`git-claim run` started directly (no `git` wrapper), as the leader of its own session."""

    process: subprocess.Popen[bytes]
    log: Path
    err: Path
    world: object

    def lines(self) -> list[list[str]]:
        text = self.log.read_text() if self.log.exists() else ""
        return [line.split() for line in text.splitlines()]  # pid, time, what, details

    def logged(self, what: str) -> list[tuple[int, ...]]:
        return [(int(line[0]), *line[3:]) for line in self.lines() if line[2] == what]

    def times(self, what: str) -> list[float]:
        return [float(line[1]) for line in self.lines() if line[2] == what]

    def worker(self) -> int:
        """The worker's pid, once it has logged that it started."""
        def started() -> bool:
            assert self.process.poll() is None, (self.process.returncode, self.err.read_text())
            return bool(self.logged("started"))
        poll(started, 30, "the worker never started")
        return self.logged("started")[0][0]

    def got(self) -> list[tuple[int, ...]]:
        """(pid, signal) for each signal the worker got."""
        return [(pid, int(signum)) for pid, signum in self.logged("got")]

    def stopped(self) -> list[tuple[int, ...]]:
        """(pid, signal, claim=state) for each stop the worker completed."""
        return [(pid, int(signum), state) for pid, signum, state in self.logged("stopped")]

    def finish(self, timeout: float = 60) -> int:
        return self.process.wait(timeout=timeout)

    def state(self) -> str:
        """The ticket's state on the remote (free, held, done, blocked, unknown)."""
        return ticket_state(self.world.repo, TICKET).state

    def reason(self) -> str:
        return ticket_state(self.world.repo, TICKET).reason


@pytest.fixture
def start_run(make_world, tmp_path):
    """Start `git claim run 700 -- agent.sh`; whatever is left is killed at the end."""
    started: list[Run] = []
    worker = tmp_path / "worker.py"
    worker.write_text(WORKER)

    def start(body: str, *, world: object = None, interval: str = "0.5s",
              grace: float = GRACE, config: dict[str, str] | None = None,
              wrapper: bool = False) -> Run:
        world = world or make_world("git", "libgit2")
        alice = world.agent("alice")
        for key, value in (config or {}).items():
            alice.git("config", key, value)
        script = tmp_path / "agent.sh"
        script.write_text("#!/bin/sh\n" + body)
        script.chmod(0o755)
        log, out, err = tmp_path / "worker.log", tmp_path / "run.out", tmp_path / "run.err"
        env = with_env(alice, WORKER_PYTHON=sys.executable, WORKER=str(worker),
                       WORKER_LOG=str(log), CLAIM_REPO=str(world.repo.path),
                       CLAIM_TICKET=TICKET, CLAIM_ORACLE=str(Path(__file__).parent))
        tool = ["git", "claim"] if wrapper else [str(Path(sys.executable).parent / "git-claim")]
        with open(out, "wb") as stdout, open(err, "wb") as stderr:
            process = subprocess.Popen(
                [*tool, "run", TICKET, "--interval", interval, "--grace", f"{grace:g}s",
                 "--", str(script)], cwd=alice.workdir, env=env, stdout=stdout, stderr=stderr,
                start_new_session=True)
        run = Run(process, log, err, world)
        started.append(run)
        return run

    yield start
    for run in started:  # a failing test must not leave its processes behind
        pids = session_members(run.process.pid) + [pid for pid, *_ in run.logged("started")]
        for pid in pids:
            try:
                with open(f"/proc/{pid}/cmdline", "rb") as handle:
                    ours = str(worker).encode() in handle.read() or pid in session_members(
                        run.process.pid)
                if ours:
                    os.kill(pid, signal.SIGKILL)
            except OSError:
                pass
        if run.process.poll() is None:
            run.process.kill()
            run.process.wait()


@pytest.mark.parametrize("variant", ["foreground", "background", "daemon", "stubborn"])
def test_sigkill_to_run_alone_ends_every_process_of_the_command_within_grace(start_run, variant):
    run = start_run(SCRIPTS[variant])
    worker = run.worker()
    everything = session_members(run.process.pid)
    assert len(everything) >= 3  # run, the script, what it started
    os.kill(run.process.pid, signal.SIGKILL)
    run.finish()
    took = poll(lambda: not alive(worker) and session_members(run.process.pid) == [],
                GRACE + MARGIN, f"processes of the command outlived run: {everything}")
    if variant == "stubborn":  # ignored SIGTERM: SIGKILL after the grace period
        assert took >= GRACE - 0.5 and run.stopped() == []
    else:  # SIGTERM first: the worker stopped in an orderly way
        assert run.stopped() == [(worker, signal.SIGTERM, "claim=held")], run.lines()


@pytest.mark.parametrize("signum,variant", [
    (signal.SIGTERM, "foreground"), (signal.SIGTERM, "background"), (signal.SIGTERM, "daemon"),
    (signal.SIGINT, "foreground"), (signal.SIGINT, "daemon"), (signal.SIGHUP, "background"),
], ids=["TERM-foreground", "TERM-background", "TERM-daemon", "INT-foreground", "INT-daemon",
        "HUP-background"])
def test_a_signal_to_run_alone_reaches_the_worker_before_the_ticket_is_released(
        start_run, signum, variant):
    run = start_run(SCRIPTS[variant])
    worker = run.worker()
    os.kill(run.process.pid, signum)
    status = run.finish()
    assert status == 128 + signum, run.err.read_text()
    assert run.got() == [(worker, signum)], run.lines()  # once, not twice
    # when the worker ended, the claim was still held: the release came after
    assert run.stopped() == [(worker, signum, "claim=held")], run.lines()
    assert not alive(worker)
    assert run.state() == "blocked"
    assert run.reason() == f"exit status {128 + signum}"


def test_a_worker_that_goes_on_after_sigint_gets_sigterm_a_grace_period_later(start_run):
    """Not SIGKILL without a SIGTERM first, and not SIGTERM in the middle of its SIGINT."""
    run = start_run(SCRIPTS["cancel"])
    worker = run.worker()
    os.kill(run.process.pid, signal.SIGINT)
    poll(lambda: run.got() == [(worker, signal.SIGINT)], 10, "SIGINT never reached the worker")
    status = run.finish()
    assert status == 130, run.err.read_text()  # the script, ended by SIGINT
    assert run.got() == [(worker, signal.SIGINT), (worker, signal.SIGTERM)], run.lines()
    assert run.stopped() == [(worker, signal.SIGTERM, "claim=held")], run.lines()
    interrupted, termed = run.times("got")
    assert termed - interrupted >= GRACE - 0.5, run.lines()
    assert "leftover" not in run.err.read_text()
    assert run.state() == "blocked"


@pytest.mark.parametrize("variant", ["background", "daemon"])
def test_sigint_to_the_whole_group_reaches_each_process_once(start_run, variant):
    """As Ctrl-C at a terminal: the group gets it from the terminal, a daemon from run."""
    run = start_run(SCRIPTS[variant])
    worker = run.worker()
    os.killpg(run.process.pid, signal.SIGINT)
    status = run.finish()
    assert status == 130, run.err.read_text()
    assert run.got() == [(worker, signal.SIGINT)], run.lines()
    assert run.stopped() == [(worker, signal.SIGINT, "claim=held")], run.lines()
    assert run.state() == "blocked"


@pytest.mark.parametrize("trial", range(2))
def test_sigint_to_the_whole_group_through_the_git_wrapper_reaches_each_process_once(
        start_run, trial):
    """`git claim run` under git: git passes the group's SIGINT on to the tool a second time."""
    run = start_run(SCRIPTS["background"], wrapper=True)
    worker = run.worker()
    os.killpg(run.process.pid, signal.SIGINT)
    run.finish()
    assert run.got() == [(worker, signal.SIGINT)], run.lines()


def test_sigkill_to_the_whole_group_leaves_nothing_running(start_run):
    run = start_run(SCRIPTS["background"])
    worker = run.worker()
    os.killpg(run.process.pid, signal.SIGKILL)
    run.finish()
    poll(lambda: not alive(worker) and session_members(run.process.pid) == [], MARGIN,
         "processes of the group outlived a SIGKILL of the group")
    assert run.state() == "held"  # nothing released: the reaper will free it


@pytest.mark.parametrize("variant", ["daemon", "stubborn-daemon"])
def test_sigkill_to_the_whole_group_ends_a_daemon_that_left_it_within_grace(start_run, variant):
    """`kill -KILL -PGID`, as some supervisors stop a job: run and its group die at once.

    The daemon called setsid: the group's SIGKILL does not reach it, and run
    is not there any more to stop it. It is stopped all the same (SIGTERM,
    SIGKILL after the grace period) while the claim is still held: nobody
    released it, and no reaper could have freed it yet.
    """
    run = start_run(SCRIPTS[variant])
    worker = run.worker()
    assert os.getpgid(worker) != run.process.pid  # it left the group
    os.killpg(run.process.pid, signal.SIGKILL)
    run.finish()
    took = poll(lambda: not alive(worker) and session_members(run.process.pid) == [],
                GRACE + MARGIN, "the daemon outlived a SIGKILL of run's process group")
    assert run.state() == "held"  # nothing released: the reaper will free it
    if variant == "stubborn-daemon":  # ignored SIGTERM: SIGKILL after the grace period
        assert took >= GRACE - 0.5 and run.stopped() == [], run.lines()
        assert {state for _, state in run.logged("alive")} == {"claim=held"}, run.lines()
    else:  # SIGTERM first: the daemon stopped in an orderly way, the claim held till then
        assert run.got() == [(worker, signal.SIGTERM)], run.lines()
        assert run.stopped() == [(worker, signal.SIGTERM, "claim=held")], run.lines()


@pytest.mark.parametrize("variant", ["background", "daemon", "stubborn"])
def test_a_command_that_exits_leaving_a_worker_is_done_only_once_the_worker_is_gone(
        start_run, variant):
    mode = {"background": "plain &", "daemon": "daemon", "stubborn": "stubborn &"}[variant]
    run = start_run(f"{WORKER_LINE} {mode}\n{LEAVES}")
    worker = run.worker()
    status = run.finish()
    assert status == 0, run.err.read_text()
    assert not alive(worker)
    assert run.state() == "done"
    assert (f"git claim run: stopped 1 leftover process of the command (pid {worker})"
            in run.err.read_text().splitlines()), run.err.read_text()
    if variant == "stubborn":  # killed after the grace period, the claim held till then
        states = {state for _, state in run.logged("alive")}
        assert states == {"claim=held"}, run.lines()
    else:
        assert run.got() == [(worker, signal.SIGTERM)], run.lines()
        assert run.stopped() == [(worker, signal.SIGTERM, "claim=held")], run.lines()


def test_a_killed_runs_claim_is_not_reused_until_its_tree_is_gone(start_run):
    """The locks on the claim's records live in the watchdog and the command too.

    The stubborn worker lives a grace period after the guardian's SIGTERM; the
    grace is long enough here for a second `run` to start and read the remote
    while it lives, on a loaded machine too (CI once took longer than 2 s).
    """
    run = start_run(SCRIPTS["stubborn"], grace=STUBBORN_GRACE)
    worker = run.worker()
    os.kill(run.process.pid, signal.SIGKILL)
    run.finish()
    env = {**os.environ, "GIT_CLAIM_AGENT": "alice"}
    clone = run.world.root / "alice"
    early = subprocess.run(["git", "claim", "run", TICKET, "--", "true"], cwd=clone, env=env,
                           capture_output=True, text=True, timeout=60)
    still_working = alive(worker)
    poll(lambda: not alive(worker), STUBBORN_GRACE + MARGIN + 5,
         "the stubborn worker outlived grace")
    assert still_working, "the worker ended before the second run was tried"
    assert early.returncode == 1 and "another process" in early.stderr, early
    resumed = subprocess.run(["git", "claim", "run", TICKET, "--", "true"], cwd=clone, env=env,
                             capture_output=True, text=True, timeout=60)
    assert resumed.returncode == 0, resumed
    assert run.state() == "done"


# --------------------------------------------------------------------------
# the lease, enforced by the watchdog (and its guardian), not by run's beats

# run gives up on a lease TTL - max(max-skew, interval) = 3 s after the start
# of its last beat that went through; with a grace of 1 s the tree is gone
# 4 s after it, before a reaper could free the claim (TTL 4 s after it).
LEASE = 3.0
LEASE_GRACE = 1.0
LEASE_CONFIG = {"claim.ttl": "4s", "claim.maxSkew": "1s"}


def silence(run: Run) -> int:
    """The seconds run says no heartbeat renewed the lease for."""
    import re

    found = re.search(r"no heartbeat renewed the lease for (\d+)s", run.err.read_text())
    return int(found.group(1)) if found else -1


def start_leased(start_run, **options) -> Run:
    return start_run(SCRIPTS["background"], interval="1s", grace=LEASE_GRACE,
                     config=LEASE_CONFIG, **options)


def test_a_stopped_run_does_not_keep_its_command_working_past_the_lease(start_run):
    """`kill -STOP` of run alone: nothing beats, and the watchdog stops the tree itself."""
    run = start_leased(start_run)
    worker = run.worker()
    os.kill(run.process.pid, signal.SIGSTOP)  # its last beat started before this
    try:
        poll(lambda: not alive(worker), LEASE + LEASE_GRACE + MARGIN,
             "the worker went on working while run was stopped")
        assert run.process.poll() is None  # still stopped: nobody asked it anything
        assert run.got() == [(worker, signal.SIGTERM)], run.lines()
        assert run.stopped() == [(worker, signal.SIGTERM, "claim=held")], run.lines()
    finally:
        os.kill(run.process.pid, signal.SIGCONT)
    assert run.finish() == 4, run.err.read_text()
    assert ("no heartbeat renewed the lease" in run.err.read_text()
            and "stopped before any reaper could free the ticket" in run.err.read_text()), \
        run.err.read_text()
    assert silence(run) >= LEASE, run.err.read_text()  # not the time since a late beat
    assert run.state() == "held"  # never released: the reaper frees it


def test_a_beat_after_the_lease_ran_out_renews_nothing(start_run):
    """run resumes while its stopped tree is still ending (a worker that ignores SIGTERM
    waits out the grace period): its next beat goes through, but the lease had run out;
    run says for how long nothing renewed it, not the moments since that late beat."""
    lease = 5.0  # TTL 6 s less the interval; the grace of 3 s ends before a reaper's TTL
    run = start_run(SCRIPTS["stubborn"], interval="1s", grace=3.0,
                    config={"claim.ttl": "6s", "claim.maxSkew": "1s"})
    run.worker()

    def script_running() -> bool:  # the script dies of the SIGTERM its worker ignores
        for pid in session_members(run.process.pid):
            try:
                with open(f"/proc/{pid}/cmdline", "rb") as handle:
                    if b"agent.sh" in handle.read():
                        return True
            except OSError:
                pass
        return False

    assert script_running()
    os.kill(run.process.pid, signal.SIGSTOP)
    try:
        poll(lambda: not script_running(), lease + MARGIN + 1, "the lease never ran out")
    finally:
        os.kill(run.process.pid, signal.SIGCONT)  # the worker lives on for the grace period
    assert run.finish() == 4, run.err.read_text()
    assert silence(run) >= lease - 1, run.err.read_text()
    assert run.state() == "held"


def test_a_stopped_group_does_not_keep_its_command_working_past_the_lease(start_run):
    """`kill -STOP -PGID`: the guardian, outside the group, stops the tree without a SIGCONT."""
    run = start_leased(start_run)
    worker = run.worker()
    os.killpg(run.process.pid, signal.SIGSTOP)
    try:
        # SIGTERM waits for a SIGCONT in a stopped process: SIGKILL after the grace period
        poll(lambda: not alive(worker), LEASE + LEASE_GRACE + MARGIN,
             "the stopped worker outlived the lease")
    finally:
        os.killpg(run.process.pid, signal.SIGCONT)
    assert run.finish() == 4, run.err.read_text()
    assert run.stopped() == [], run.lines()  # no work done after the SIGCONT
    assert "no heartbeat renewed the lease" in run.err.read_text(), run.err.read_text()
    assert silence(run) >= LEASE, run.err.read_text()
    assert run.state() == "held"


@pytest.mark.parametrize("transport", ["libgit2", "git"])
def test_a_remote_that_stops_answering_does_not_keep_the_command_working(
        start_run, make_world, tmp_path, transport):
    """The git daemon freezes: run's heartbeat hangs, and the watchdog ends the tree on time."""
    from servers import start_server

    World = make_world.__globals__["World"]  # tests/conftest.py's, whatever else is named conftest
    server = start_server("git", tmp_path / "own-daemon")
    frozen = None
    try:
        world = World("git", transport, server, tmp_path / "world")
        run = start_leased(start_run, world=world)
        worker = run.worker()
        frozen = os.getpgid(server._proc.pid)
        os.killpg(frozen, signal.SIGSTOP)  # accepts connections, never answers
        poll(lambda: not alive(worker), LEASE + LEASE_GRACE + MARGIN,
             "the worker went on working while run's heartbeat hung")
        assert run.process.poll() is None  # run itself is still stuck in its heartbeat
        assert run.stopped() == [(worker, signal.SIGTERM, "claim=held")], run.lines()
        os.killpg(frozen, signal.SIGCONT)
        frozen = None
        assert run.finish() == 4, run.err.read_text()
        assert run.state() == "held", run.err.read_text()
    finally:
        if frozen is not None:
            os.killpg(frozen, signal.SIGCONT)
        server.stop()
