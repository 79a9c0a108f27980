"""The soak: M agents run `git claim run --next` over one backlog while faults hit them.

Everything is real: a `git daemon` on 127.0.0.1 serves the repository, the
agents' connections go through the fault harness's TCP proxy (so they can be
cut, refused or slowed while the reaper, connected directly, goes on), and
every agent is a clone running the installed commands in its own process
group (so a kill or a pause takes the `git` wrapper, the tool and its command
at once). The history is recorded three ways: the tools' operation log
(GIT_CLAIM_OPLOG), the faults injected, and the server's own log of every ref
update it committed (a `reference-transaction` hook). `checker.py` replays it.
"""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import threading
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable

HERE = Path(__file__).resolve().parent
TESTS = HERE.parent
for folder in (TESTS, TESTS / "faults"):
    if str(folder) not in sys.path:
        sys.path.insert(0, str(folder))

from agents import base_env  # noqa: E402
from faultkit import FaultProxy  # noqa: E402
from servers import start_server  # noqa: E402

from git_claim.runner import process_tree  # noqa: E402

from . import checker  # noqa: E402

FAULT_KINDS = ("kill", "pause", "cut", "partition", "cut-upload", "slow")
CHILD = 'sleep "$0"; exit "$1"'  # the agents' command: work for a while, succeed or fail

SERVER_HOOK = """#!/bin/sh
[ "$1" = committed ] || exit 0
t=$(date +%s.%N)
while read old new ref; do printf '%s %s %s %s\\n' "$t" "$old" "$new" "$ref"; done >> "{log}"
"""


@dataclass
class Config:
    agents: int = 16
    seconds: float = 300.0
    seed: int = 1
    tickets: int = 0  # 0: one and a half per agent
    ttl: float = 10.0
    interval: float = 2.0
    max_skew: float = 2.0
    reap_every: float = 3.0
    reopen_every: float = 5.0
    work: tuple[float, float] = (2.0, 8.0)  # how long each command runs
    done_rate: float = 0.3  # the share of commands that succeed (the rest fail: released)
    fault_every: tuple[float, float] = (3.0, 8.0)
    partition_for: tuple[float, float] = (2.0, 12.0)
    slow_for: tuple[float, float] = (3.0, 8.0)
    skewed: float = 0.35  # the share of agents whose clock is off (within max_skew)

    @property
    def pause_for(self) -> tuple[float, float]:
        """Long enough for the reaper to free the frozen agent's claim, sometimes."""
        low = self.ttl + 2 * self.max_skew + self.reap_every
        return (low * 0.6, low + 8.0)

    @property
    def backlog_size(self) -> int:
        return self.tickets or max(2, self.agents + self.agents // 2)


@dataclass
class Slot:
    name: str
    workdir: Path
    env: dict[str, str]
    rng: random.Random
    process: subprocess.Popen[bytes] | None = None
    paused: bool = False
    exits: dict[str, int] = field(default_factory=dict)


class Soak:
    def __init__(self, config: Config, folder: Path, *, say: Callable[[str], None] = print) -> None:
        self.config = config
        self.folder = folder.resolve()
        self.say = say
        self.rng = random.Random(config.seed)
        self.stopping = threading.Event()
        self.faults_path = self.folder / "faults.jsonl"
        self.lock = threading.Lock()
        self.errors: list[str] = []
        self.reaps = 0
        self.reopens = 0

    # setup --------------------------------------------------------------------

    def setup(self) -> None:
        folder = self.folder
        folder.mkdir(parents=True, exist_ok=True)
        for name in ("oplog.jsonl", "faults.jsonl", "server.log"):
            (folder / name).write_text("")
        home = folder / "home"
        home.mkdir(exist_ok=True)
        self.env = base_env(home)
        self.env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"
        self.env["GIT_CLAIM_OPLOG"] = str(folder / "oplog.jsonl")
        self.server = start_server("git", folder / "srv")
        self.repo = self.server.create_repo("soak")
        hook = self.repo.path / "hooks" / "reference-transaction"
        hook.write_text(SERVER_HOOK.format(log=folder / "server.log"))
        hook.chmod(0o755)
        seed = folder / "seed"
        self._git("init", "-q", "-b", "main", str(seed))
        (seed / "README").write_text("soak\n")
        self._git("-C", str(seed), "add", "README")
        self._git("-C", str(seed), "commit", "-qm", "seed")
        self._git("-C", str(seed), "push", "-q", self.repo.url, "main")
        self.proxy = FaultProxy(self.server.port)
        c = self.config
        self.backlog = folder / "backlog.txt"
        self.backlog.write_text("".join(f"t{n:03d}\n" for n in range(1, c.backlog_size + 1)))
        self.reaper = self._clone("reaper", direct=True, transport="libgit2", offset=0.0)
        self.slots = []
        for n in range(1, c.agents + 1):
            rng = random.Random(f"{c.seed}-{n}")
            offset = round(rng.uniform(-c.max_skew, c.max_skew), 2) \
                if rng.random() < c.skewed else 0.0
            slot = self._clone(f"a{n:02d}", direct=False, offset=offset,
                               transport="git" if n % 3 == 0 else "libgit2", rng=rng)
            if offset:
                self.fault("skew", agent=slot.name, offset=offset)
            self.slots.append(slot)

    def _git(self, *args: str, cwd: Path | None = None) -> str:
        done = subprocess.run(["git", *args], cwd=cwd, env=self.env, capture_output=True,
                              text=True, timeout=120)
        if done.returncode != 0:
            raise RuntimeError(f"git {' '.join(args)}: {done.stderr.strip()}")
        return done.stdout

    def _clone(self, name: str, *, direct: bool, transport: str, offset: float,
               rng: random.Random | None = None) -> Slot:
        c = self.config
        workdir = self.folder / name
        self._git("clone", "-q", self.repo.url, str(workdir))
        if not direct:
            self._git("remote", "set-url", "origin", self.proxy.url_for(self.repo.url), cwd=workdir)
        for key, value in (("claim.transport", transport), ("claim.ttl", f"{c.ttl:g}s"),
                           ("claim.maxSkew", f"{c.max_skew:g}s"),
                           ("claim.heartbeat", f"{c.interval:g}s")):
            self._git("config", key, value, cwd=workdir)
        env = {**self.env, "GIT_CLAIM_AGENT": name}
        if offset:
            env["GIT_CLAIM_CLOCK_OFFSET"] = str(offset)
        return Slot(name, workdir, env, rng or random.Random(name))

    def fault(self, kind: str, **fields: Any) -> None:
        record = {"kind": kind, "t": fields.pop("t", time.time()), **fields}
        with self.lock:
            with open(self.faults_path, "a") as handle:
                handle.write(json.dumps(record) + "\n")

    # the actors -----------------------------------------------------------------

    def agent_loop(self, slot: Slot) -> None:
        c = self.config
        while not self.stopping.is_set():
            work = round(slot.rng.uniform(*c.work), 2)
            code = "0" if slot.rng.random() < c.done_rate else "1"
            argv = ["git", "claim", "run", "--next", "--from", str(self.backlog),
                    "--interval", f"{c.interval:g}s", "--grace", "1s",
                    "--on-failure", "release", "--", "sh", "-c", CHILD, str(work), code]
            with open(self.folder / f"{slot.name}.log", "ab") as log:
                with self.lock:
                    if self.stopping.is_set():
                        return
                    slot.process = subprocess.Popen(argv, cwd=slot.workdir, env=slot.env,
                                                    stdout=log, stderr=log,
                                                    start_new_session=True)
                status = slot.process.wait()
            key = str(status)
            slot.exits[key] = slot.exits.get(key, 0) + 1
            self.stopping.wait(slot.rng.uniform(0.3, 1.5))

    def reaper_loop(self) -> None:
        c = self.config
        while not self.stopping.wait(c.reap_every):
            self.reap()

    def reap(self) -> dict[str, Any] | None:
        c = self.config
        done = subprocess.run(["git", "reap", "--ttl", f"{c.ttl:g}s", "--max-skew",
                               f"{c.max_skew:g}s", "--json"], cwd=self.reaper.workdir,
                              env=self.reaper.env, capture_output=True, text=True, timeout=120)
        self.reaps += 1
        if done.returncode != 0:
            self.errors.append(f"git reap exited {done.returncode}: {done.stdout[-300:]}"
                               f" {done.stderr[-300:]}")
            return None
        return json.loads(done.stdout)

    def reopen_loop(self) -> None:
        while not self.stopping.wait(self.config.reopen_every):
            for ticket, (_, state) in self.claim_refs().items():
                if state in ("done", "blocked") and not self.stopping.is_set():
                    subprocess.run(["git", "claim", "reopen", ticket], cwd=self.reaper.workdir,
                                   env=self.reaper.env, capture_output=True, timeout=120)
                    self.reopens += 1

    def injector_loop(self) -> None:
        c = self.config
        kinds = list(FAULT_KINDS)
        self.rng.shuffle(kinds)  # every kind once first, then at random
        while not self.stopping.wait(self.rng.uniform(*c.fault_every)):
            kind = kinds.pop(0) if kinds else self.rng.choice(FAULT_KINDS)
            try:
                made = getattr(self, "inject_" + kind.replace("-", "_"))()
            except Exception as error:  # a fault that could not be made is reported, not fatal
                self.errors.append(f"injecting {kind}: {error!r}")
                made = False
            if not made and kind not in kinds:
                kinds.insert(0, kind)  # not possible now (nothing running, a window open)

    def _running(self) -> list[Slot]:
        return [s for s in self.slots
                if s.process is not None and s.process.poll() is None and not s.paused]

    def inject_kill(self) -> bool:
        with self.lock:
            running = self._running()
            if not running:
                return False
            slot = self.rng.choice(running)
            pids = process_tree(slot.process.pid)
            t = time.time()
            try:
                os.killpg(slot.process.pid, signal.SIGKILL)
            except ProcessLookupError:
                return False
        self.fault("kill", t=t, agent=slot.name, pids=pids)
        return True

    def inject_pause(self) -> bool:
        c = self.config
        with self.lock:
            running = self._running()
            if not running or sum(s.paused for s in self.slots) >= max(1, c.agents // 4):
                return False
            slot = self.rng.choice(running)
            t = time.time()
            os.killpg(slot.process.pid, signal.SIGSTOP)
            slot.paused = True
        length = self.rng.uniform(*c.pause_for)
        process = slot.process

        def resume() -> None:
            with self.lock:
                if not slot.paused:
                    return
                slot.paused = False
                try:
                    os.killpg(process.pid, signal.SIGCONT)
                except ProcessLookupError:
                    pass
            self.fault("pause", t=t, agent=slot.name, until=time.time())

        self._later(length, resume)
        self.resumers.append(resume)
        return True

    def inject_cut(self) -> bool:
        t = time.time()
        cut = self.proxy.cut()
        if cut:
            self.fault("cut", t=t, connections=cut)
        return cut > 0

    def inject_partition(self) -> bool:
        if self.proxy.mode != "pass":
            return False
        t = time.time()
        self.proxy.cut(then="refuse")
        length = self.rng.uniform(*self.config.partition_for)

        def heal() -> None:
            with self.lock:
                if self.proxy.mode != "refuse":
                    return  # healed already (by its timer, or at the end)
                self.proxy.set_mode("pass")
            self.fault("partition", t=t, until=time.time())

        self._later(length, heal)
        self.healers.append(heal)
        return True

    def inject_cut_upload(self) -> bool:
        if self.proxy.mode != "pass":
            return False
        self.proxy.set_mode("cut-upload")
        self.fault("cut-upload")
        return True

    def inject_slow(self) -> bool:
        if self.proxy.delay:
            return False
        t = time.time()
        self.proxy.delay = round(self.rng.uniform(0.05, 0.4), 2)

        def fast() -> None:
            with self.lock:
                delay, self.proxy.delay = self.proxy.delay, 0.0
            if delay:
                self.fault("slow", t=t, until=time.time(), delay=delay)

        self._later(self.rng.uniform(*self.config.slow_for), fast)
        self.healers.append(fast)
        return True

    def _later(self, seconds: float, action: Callable[[], None]) -> None:
        timer = threading.Timer(seconds, action)
        timer.daemon = True
        timer.start()
        self.timers.append(timer)

    # reading the server -----------------------------------------------------------

    def claim_refs(self) -> dict[str, tuple[str, str]]:
        """ticket -> (claim ref value, its Claim-State), read on the server."""
        git_dir = str(self.repo.path)
        listing = subprocess.run(["git", "--git-dir", git_dir, "for-each-ref",
                                  "--format=%(objectname) %(refname)", checker.CLAIM_PREFIX],
                                 capture_output=True, text=True, check=True).stdout.split("\n")
        refs = dict(reversed(line.split(" ", 1)) for line in listing if line)
        states = {}
        for ref, oid in refs.items():
            body = subprocess.run(["git", "--git-dir", git_dir, "cat-file", "-p", oid],
                                  capture_output=True, text=True).stdout
            state = next((line.split(":", 1)[1].strip() for line in body.splitlines()
                          if line.startswith("Claim-State:")), "unknown")
            states[ref[len(checker.CLAIM_PREFIX):]] = (oid, state)
        return states

    def notes_history(self) -> dict[str, list[dict[str, str]]]:
        git_dir = str(self.repo.path)
        listing = subprocess.run(["git", "--git-dir", git_dir, "for-each-ref",
                                  "--format=%(refname)", checker.NOTES_PREFIX],
                                 capture_output=True, text=True, check=True).stdout.split()
        history: dict[str, list[dict[str, str]]] = {}
        for ref in listing:
            log = subprocess.run(["git", "--git-dir", git_dir, "log", "--first-parent", "--root",
                                  "--raw", "--no-abbrev", "--format=C %H %s", ref],
                                 capture_output=True, text=True, check=True).stdout
            notes: list[dict[str, str]] = []
            for line in log.splitlines():
                if line.startswith("C "):
                    _, commit, subject = line.split(" ", 2)
                    notes.append({"commit": commit, "event": subject.split(" ", 1)[0],
                                  "target": ""})
                elif line.startswith(":") and notes:
                    notes[-1]["target"] = line.split("\t", 1)[1].replace("/", "")
            history[ref[len(checker.NOTES_PREFIX):]] = list(reversed(notes))
        return history

    # the run --------------------------------------------------------------------------

    def run(self) -> dict[str, Any]:
        c = self.config
        self.timers: list[threading.Timer] = []
        self.resumers: list[Callable[[], None]] = []
        self.healers: list[Callable[[], None]] = []
        started = time.time()
        load_before = os.getloadavg()
        self.say(f"soak: {c.agents} agents, {c.seconds:g}s, seed {c.seed}, TTL {c.ttl:g}s,"
                 f" heartbeat {c.interval:g}s, max skew {c.max_skew:g}s, in {self.folder}")
        threads = [threading.Thread(target=self.agent_loop, args=(s,), daemon=True)
                   for s in self.slots]
        threads += [threading.Thread(target=f, daemon=True)
                    for f in (self.reaper_loop, self.reopen_loop, self.injector_loop)]
        for thread in threads:
            thread.start()
        load_samples = []
        deadline = started + c.seconds
        while time.time() < deadline:
            time.sleep(min(5.0, max(0.0, deadline - time.time())))
            load_samples.append(os.getloadavg()[0])
        stopped = self.stop(threads)
        self.say("soak: agents stopped; waiting out the TTL for the final reap")
        time.sleep(c.ttl + 2 * c.max_skew + 2)
        final_reap = self.reap()
        self.proxy.stop()
        remote = {"final": self.claim_refs(), "notes": self.notes_history()}
        (self.folder / "remote.json").write_text(json.dumps(remote, indent=1))
        self.server.stop()
        history = checker.load(self.folder, ttl=c.ttl, end=stopped)
        report = checker.check(history)
        figures = report.figures
        figures["faults"]["skew"] = sum(1 for s in self.slots if "GIT_CLAIM_CLOCK_OFFSET" in s.env)
        figures["faults"]["cut-upload fired"] = sum(e == "cut-upload" for e in self.proxy.events)
        exits: dict[str, int] = {}
        for slot in self.slots:
            for key, count in slot.exits.items():
                exits[key] = exits.get(key, 0) + count
        summary = {
            "config": {**asdict(c), "pause_for": list(c.pause_for)},
            "command": command_line(c),
            "started": time.strftime("%Y-%m-%d %H:%M:%S %Z", time.localtime(started)),
            "seconds": round(stopped - started, 1),
            "cpus": os.cpu_count(),
            "load": {"before": round(load_before[0], 2),
                     "mean": round(sum(load_samples) / max(1, len(load_samples)), 2),
                     "max": round(max(load_samples, default=0.0), 2)},
            "exits": dict(sorted(exits.items())),
            "reaper_runs": self.reaps, "reopens": self.reopens,
            "final_reap": final_reap and {k: len(final_reap[k]) for k in ("reaped", "completed")},
            "harness_errors": self.errors,
            "figures": figures,
            "violations": [str(v) for v in report.violations],
            "ok": report.ok,
        }
        (self.folder / "summary.json").write_text(json.dumps(summary, indent=1))
        return summary

    def stop(self, threads: list[threading.Thread]) -> float:
        """Stop faults and agents: the network heals, frozen agents resume, commands end."""
        self.stopping.set()
        for timer in self.timers:
            timer.cancel()
        for action in self.healers + self.resumers:
            action()
        self.proxy.set_mode("pass")
        self.proxy.delay = 0.0
        with self.lock:
            for slot in self.slots:  # SIGTERM: `run` passes it on, then releases the claim
                if slot.process is not None and slot.process.poll() is None:
                    try:
                        os.killpg(slot.process.pid, signal.SIGTERM)
                    except ProcessLookupError:
                        pass
        deadline = time.time() + 30
        for slot in self.slots:
            process = slot.process
            if process is None:
                continue
            if not wait_group(process, deadline):
                t = time.time()
                try:
                    os.killpg(process.pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
                wait_group(process, time.time() + 10)
                self.fault("stop", t=t, agent=slot.name)
        for thread in threads:
            thread.join(timeout=10)
        return time.time()


def wait_group(process: subprocess.Popen[bytes], deadline: float) -> bool:
    """Wait until every process of the group `process` leads has exited."""
    while True:
        process.poll()
        try:
            os.killpg(process.pid, 0)
        except ProcessLookupError:
            return True
        if time.time() > deadline:
            return False
        time.sleep(0.05)


def command_line(c: Config) -> str:
    return (f"python -m tests.soak --agents {c.agents} --seconds {c.seconds:g} --seed {c.seed}"
            f" --ttl {c.ttl:g} --interval {c.interval:g} --max-skew {c.max_skew:g}")
