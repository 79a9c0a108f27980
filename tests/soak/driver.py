"""The soak: agents run `git claim run --next` over one backlog while faults hit them.

Everything is real: a `git daemon` on 127.0.0.1 serves the repository, the
agents' connections go through the fault harness's TCP proxy (so they can be
cut, refused or slowed while the reaper, connected directly, goes on), and
every agent loop runs the installed commands in its own process group.
Agents are set up as teams really run them: some clones run two or three
`run` loops side by side in one checkout (under the default agent name,
shared by the loops of that clone, or under names of their own), and the
command is a shell script that starts its worker without exec (in the
foreground, in the background, or as a double-forked daemon). The worker
logs when it really works. Beside the faults of the network and of the
agents (kills, pauses, signals to `run` alone or to its whole group), a
reaper whose clock steps back and forth, a foreign process that deletes or
replaces a ticket's newest claim ref with plain git (the served repository
has no server-side guard, which would refuse both), and, in tags mode
(claim.refPrefix refs/tags/claim/), a stale clone that pushes its old tags
back with `git push --tags [--force]`.

Claims are an append-only log per ticket (docs/protocol.md): each claim is
a new ref (T, T@2, ...), and releases, reaps and reopenings are notes, so the
soak reads a ticket's state from its newest claim and that claim's note.

The history is recorded four ways: the tools' operation log
(GIT_CLAIM_OPLOG, one file per loop), the workers' own log, the faults
injected, and the server's log of every ref update it committed (a
`reference-transaction` hook). `checker.py` replays it.
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
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
TESTS = HERE.parent
for folder in (TESTS, TESTS / "faults"):
    if str(folder) not in sys.path:
        sys.path.insert(0, str(folder))

from agents import base_env  # noqa: E402
from faultkit import FaultProxy  # noqa: E402
from git_claim.runner import process_tree  # noqa: E402
from servers import start_server  # noqa: E402

from . import checker  # noqa: E402

FAULT_KINDS = ("kill", "pause", "cut", "partition", "cut-upload", "slow", "prune")
# signals to the tool's own process under the `git` wrapper, or to the loop's whole group
SIGNAL_KINDS = ("kill-run", "term-run", "int-run", "kill-group", "term-group", "int-group")
INJECTED = FAULT_KINDS + SIGNAL_KINDS  # what the injector picks from
MODES = ("py-fg", "py-bg", "py-daemon", "sh-fg")  # how agent.sh starts its worker
AGENT_SCRIPT = HERE / "agent.sh"
TAGS_PREFIX = "refs/tags/claim/"
# clones and their loops, repeated until every agent has a loop: how many `run`
# loops share the checkout, and under which names (default: no GIT_CLAIM_AGENT,
# so the loops of the clone share the default agent name; own: a name each;
# mixed: two under the default name and one of its own)
SHAPES = ((2, "default"), (1, "own"), (2, "own"), (1, "default"), (3, "mixed"), (1, "own"))

SERVER_HOOK = """#!/bin/sh
[ "$1" = committed ] || exit 0
t=$(date +%s.%N)
while read old new ref; do printf '%s %s %s %s\\n' "$t" "$old" "$new" "$ref"; done >> "{log}"
"""


@dataclass
class Config:
    agents: int = 16  # `run` loops, over clones shaped by SHAPES
    seconds: float = 300.0
    seed: int = 1
    tickets: int = 0  # 0: one and a half per agent
    ttl: float = 10.0
    interval: float = 2.0
    max_skew: float = 2.0
    grace: float = 1.0
    reap_every: float = 3.0
    reopen_every: float = 5.0
    work: tuple[float, float] = (2.0, 8.0)  # how long each worker works
    done_rate: float = 0.3  # the share of commands that succeed (the rest fail: released)
    fault_every: tuple[float, float] = (3.0, 8.0)
    partition_for: tuple[float, float] = (2.0, 12.0)
    slow_for: tuple[float, float] = (3.0, 8.0)
    skewed: float = 0.35  # the share of agents whose clock is off (see `agent_offset`)
    tags_mode: bool = False  # claim.refPrefix refs/tags/claim/ in every clone, and a stale clone
    reaper_steps: float = 0.2  # the share of reaper runs with a stepped clock (then back to 0)
    clock_back: float = 900.0  # a step back of the reaper's clock, seconds
    foreign_every: tuple[float, float] = (10.0, 25.0)  # a claim ref deleted or replaced
    stale_every: tuple[float, float] = (8.0, 20.0)  # tags mode: from a stale push to the next fetch
    stale_delay: tuple[float, float] = (3.0, 10.0)  # tags mode: from the stale fetch to its push
    repair_after: tuple[float, float] = (2.0, 6.0)  # an operator clears what a foreign push left

    @property
    def pause_for(self) -> tuple[float, float]:
        """Long enough for the reaper to free the frozen agent's claim, sometimes."""
        low = self.ttl + 2 * self.max_skew + self.reap_every
        return (low * 0.6, low + 8.0)

    @property
    def backlog_size(self) -> int:
        return self.tickets or max(2, self.agents + self.agents // 2)

    @property
    def claim_prefix(self) -> str:
        return TAGS_PREFIX if self.tags_mode else checker.CLAIM_PREFIX

    @property
    def mode_name(self) -> str:
        return "tags" if self.tags_mode else "claims"


def layout(agents: int) -> list[list[str | None]]:
    """Clones, each a list of its loops' agent names (None: the default name)."""
    clones: list[list[str | None]] = []
    count = 0
    while count < agents:
        size, naming = SHAPES[len(clones) % len(SHAPES)]
        loops: list[str | None] = []
        for index in range(min(size, agents - count)):
            count += 1
            own = naming == "own" or (naming == "mixed" and index == 2)
            loops.append(f"a{count:02d}" if own else None)
        clones.append(loops)
    return clones


def agent_offset(rng: random.Random, c: Config) -> float:
    """A skewed agent's clock: up to half the max skew behind, or up to the max skew ahead.

    The reaper's clock steps forward by up to half the max skew (`reaper_offset`),
    so an agent behind and a reaper ahead differ by at most max-skew, the bound
    the reaper's timestamp rule assumes.
    """
    if rng.random() >= c.skewed:
        return 0.0
    return round(rng.uniform(-c.max_skew / 2, c.max_skew), 2)


@dataclass
class Clone:
    name: str
    workdir: Path
    transport: str


@dataclass
class Slot:
    """One `git claim run --next` loop, in a clone it may share with other loops."""

    name: str
    clone: Clone
    agent: str | None  # GIT_CLAIM_AGENT; None: the default name of the clone
    env: dict[str, str]
    rng: random.Random
    process: subprocess.Popen[bytes] | None = None
    run: str = ""  # the current run's id, "<loop>.<n>"
    runs: int = 0
    paused: bool = False
    frozen: list[int] = field(default_factory=list)  # pids stopped by a pause
    exits: dict[str, int] = field(default_factory=dict)


class Soak:
    def __init__(self, config: Config, folder: Path, *, say: Callable[[str], None] = print,
                 kinds: list[str] | None = None) -> None:
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
        if kinds is None:
            kinds = list(INJECTED)
            self.rng.shuffle(kinds)  # every kind once first, then at random
        self.kinds = kinds  # shared with the next soak of a plan: what is still to inject first
        self.repairs: list[tuple[float, str, str]] = []  # (due, ticket, value) to clear
        self.injected_values: set[str] = set()

    # setup --------------------------------------------------------------------

    def setup(self) -> None:
        folder = self.folder
        folder.mkdir(parents=True, exist_ok=True)
        for name in ("faults.jsonl", "server.log", "work.jsonl", "runs.jsonl"):
            (folder / name).write_text("")
        (folder / "markers").mkdir(exist_ok=True)
        home = folder / "home"
        home.mkdir(exist_ok=True)
        self.env = base_env(home)
        self.env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"
        self.env.update({"SOAK_WORKLOG": str(folder / "work.jsonl"), "SOAK_DIR": str(HERE),
                         "SOAK_PYTHON": sys.executable, "SOAK_MARKERS": str(folder / "markers")})
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
        self.reaper = self._actor("reaper")
        self.janitor = self._actor("janitor")  # an operator: clears what foreign pushes left
        self.foreign = self._clone("foreign", direct=True, transport="git", tool=False)
        self.stale = self._clone("stale", direct=True, transport="git", tool=False) \
            if c.tags_mode else None
        self.slots: list[Slot] = []
        self.clones: list[dict[str, Any]] = []
        count = 0
        for number, names in enumerate(layout(c.agents), 1):
            clone = self._clone(f"c{number:02d}", direct=False,
                                transport="git" if number % 3 == 0 else "libgit2")
            loops: dict[str, str] = {}
            for agent in names:
                count += 1
                name = f"a{count:02d}"
                rng = random.Random(f"{c.seed}-{count}")
                offset = agent_offset(rng, c)
                env = {**self.env, "GIT_CLAIM_OPLOG": str(folder / f"oplog-{name}.jsonl"),
                       "SOAK_LOOP": name}
                if agent is not None:
                    env["GIT_CLAIM_AGENT"] = agent
                if offset:
                    env["GIT_CLAIM_CLOCK_OFFSET"] = str(offset)
                    self.fault("skew", agent=name, offset=offset)
                self.slots.append(Slot(name, clone, agent, env, rng))
                loops[name] = agent or "default"
            self.clones.append({"clone": clone.name, "loops": loops})

    def _git(self, *args: str, cwd: Path | None = None, check: bool = True) -> str:
        done = subprocess.run(["git", *args], cwd=cwd, env=self.env, capture_output=True,
                              text=True, timeout=120)
        if check and done.returncode != 0:
            raise RuntimeError(f"git {' '.join(args)}: {done.stderr.strip()}")
        return done.stdout

    def _clone(self, name: str, *, direct: bool, transport: str, tool: bool = True) -> Clone:
        c = self.config
        workdir = self.folder / name
        self._git("clone", "-q", self.repo.url, str(workdir))
        if not direct:
            self._git("remote", "set-url", "origin", self.proxy.url_for(self.repo.url), cwd=workdir)
        if tool:
            settings = [("claim.transport", transport), ("claim.ttl", f"{c.ttl:g}s"),
                        ("claim.maxSkew", f"{c.max_skew:g}s"),
                        ("claim.heartbeat", f"{c.interval:g}s")]
            if c.tags_mode:
                settings.append(("claim.refPrefix", TAGS_PREFIX))
            for key, value in settings:
                self._git("config", key, value, cwd=workdir)
        return Clone(name, workdir, transport)

    def _actor(self, name: str) -> Slot:
        clone = self._clone(name, direct=True, transport="libgit2")
        env = {**self.env, "GIT_CLAIM_AGENT": name,
               "GIT_CLAIM_OPLOG": str(self.folder / f"oplog-{name}.jsonl")}
        return Slot(name, clone, name, env, random.Random(name))

    def fault(self, kind: str, **fields: Any) -> None:
        record = {"kind": kind, "t": fields.pop("t", time.time()), **fields}
        with self.lock, open(self.faults_path, "a") as handle:
            handle.write(json.dumps(record) + "\n")

    # the agents -------------------------------------------------------------------

    def agent_loop(self, slot: Slot) -> None:
        c = self.config
        while not self.stopping.is_set():
            work = int(slot.rng.uniform(*c.work) * 1000)
            code = "0" if slot.rng.random() < c.done_rate else "1"
            mode = slot.rng.choice(MODES)
            argv = ["git", "claim", "run", "--next", "--from", str(self.backlog),
                    "--interval", f"{c.interval:g}s", "--grace", f"{c.grace:g}s",
                    "--on-failure", "release", "--", "sh", str(AGENT_SCRIPT), mode, str(work),
                    code]
            with open(self.folder / f"{slot.name}.log", "ab") as log:
                with self.lock:
                    if self.stopping.is_set():
                        return
                    slot.runs += 1
                    slot.run = f"{slot.name}.{slot.runs}"
                    spawned = time.time()
                    slot.process = subprocess.Popen(argv, cwd=slot.clone.workdir,
                                                    env={**slot.env, "SOAK_RUN": slot.run},
                                                    stdout=log, stderr=log,
                                                    start_new_session=True)
                    run = slot.run
                status = slot.process.wait()
                ended = time.time()
            key = str(status)
            slot.exits[key] = slot.exits.get(key, 0) + 1
            record = {"run": run, "loop": slot.name, "clone": slot.clone.name,
                      "agent": slot.agent or "default", "mode": mode, "spawn": spawned,
                      "exit": ended, "status": status}
            with self.lock, open(self.folder / "runs.jsonl", "a") as handle:
                handle.write(json.dumps(record) + "\n")
            self.stopping.wait(slot.rng.uniform(0.3, 1.5))

    # the reaper, with a clock that steps -------------------------------------------

    def reaper_loop(self) -> None:
        """`git reap` every reap_every; now and then its clock steps, and is corrected next run.

        The second run steps back and the fourth forward, so that even a short
        soak has both; later steps come at random (`reaper_steps`).
        """
        c = self.config
        rng = random.Random(f"{c.seed}-reaper")
        offset, steps, runs = 0.0, 0, 0
        while not self.stopping.wait(c.reap_every):
            runs += 1
            if offset != 0.0:
                offset = 0.0  # corrected at the next run
            elif runs in (2, 4) or rng.random() < c.reaper_steps:
                steps += 1
                offset = self.reaper_offset(steps, rng)
            t = time.time()
            result = self.reap(offset)
            if offset:
                self.fault("reaper-clock", t=t, until=time.time(), offset=offset,
                           reaped=len(result["reaped"]) if result else None)

    def reaper_offset(self, step: int, rng: random.Random) -> float:
        """Back 15 minutes, or forward by up to half the max skew (first one, then the other).

        A step forward beyond max-skew (minus the agents' own lag) is outside the
        model: the timestamp rule trusts the reaper's clock that far.
        """
        c = self.config
        back = step % 2 == 1 if step <= 2 else rng.random() < 0.5
        if back:
            return -c.clock_back
        return round(rng.uniform(c.max_skew / 4, c.max_skew / 2), 2)

    def reap(self, offset: float = 0.0) -> dict[str, Any] | None:
        c = self.config
        env = dict(self.reaper.env)
        if offset:
            env["GIT_CLAIM_CLOCK_OFFSET"] = str(offset)
        done = subprocess.run(["git", "reap", "--ttl", f"{c.ttl:g}s", "--max-skew",
                               f"{c.max_skew:g}s", "--json"], cwd=self.reaper.clone.workdir,
                              env=env, capture_output=True, text=True, timeout=120)
        self.reaps += 1
        if done.returncode != 0:
            self.errors.append(f"git reap exited {done.returncode}: {done.stdout[-300:]}"
                               f" {done.stderr[-300:]}")
            return None
        return json.loads(done.stdout)

    def reopen_loop(self) -> None:
        while not self.stopping.wait(self.config.reopen_every):
            for ticket, (_, state, _) in self.tickets().items():
                if state in ("done", "blocked") and not self.stopping.is_set():
                    subprocess.run(["git", "claim", "reopen", ticket],
                                   cwd=self.reaper.clone.workdir, env=self.reaper.env,
                                   capture_output=True, timeout=120)
                    self.reopens += 1

    # foreign processes: plain git on the claim refs ------------------------------

    def foreign_loop(self) -> None:
        """Now and then, a claim ref deleted or replaced by another tag with plain git."""
        c = self.config
        rng = random.Random(f"{c.seed}-foreign")
        made = 0
        while not self.stopping.wait(rng.uniform(*c.foreign_every)):
            held = sorted((t, ref) for t, (_, state, ref) in self.tickets().items()
                          if state == "held")
            if not held:
                continue
            ticket, ref = rng.choice(held)
            delete = made % 2 == 0 if made < 2 else rng.random() < 0.5
            try:
                self._foreign_change(ticket, ref, delete=delete, number=made + 1)
                made += 1
            except Exception as error:  # reported, not fatal
                self.errors.append(f"foreign change of {ticket}: {error!r}")

    def _foreign_change(self, ticket: str, ref: str, *, delete: bool, number: int) -> None:
        """`ref`, the ticket's newest claim, deleted or replaced by another tag."""
        workdir = self.foreign.workdir
        if delete:
            argv = ["push", "-q", "origin", f":{ref}"]
            value = None
        else:  # some other tag, forced onto the claim ref
            name = f"foreign-{number}"
            self._git("tag", "-a", "-m", f"release notes {number}", name, "HEAD", cwd=workdir)
            value = self._git("rev-parse", f"refs/tags/{name}", cwd=workdir).strip()
            argv = ["push", "-q", "--force", "origin", f"refs/tags/{name}:{ref}"]
        t = time.time()
        done = subprocess.run(["git", *argv], cwd=workdir, env=self.env, capture_output=True,
                              text=True, timeout=120)
        until = time.time()
        self.fault("foreign-delete" if delete else "foreign-replace", t=t, until=until,
                   ticket=ticket, ref=ref, value=value, code=done.returncode)
        if value is not None:
            due = until + self.rng.uniform(*self.config.repair_after)
            with self.lock:
                self.injected_values.add(value)
                self.repairs.append((due, ticket, value))

    def stale_loop(self) -> None:
        """Tags mode: a clone fetches the tags, and pushes them back later, plain or forced."""
        c = self.config
        rng = random.Random(f"{c.seed}-stale")
        assert self.stale is not None
        workdir = self.stale.workdir
        pushes = 0
        while not self.stopping.wait(rng.uniform(*c.stale_every)):
            t = time.time()
            self._git("fetch", "-q", "origin", "+refs/tags/*:refs/tags/*", cwd=workdir,
                      check=False)
            self.fault("stale-fetch", t=t, until=time.time())
            if self.stopping.wait(rng.uniform(*c.stale_delay)):
                return
            listing = self._git("for-each-ref", "--format=%(objectname) %(refname)",
                                TAGS_PREFIX, cwd=workdir)
            refs = dict(reversed(line.split(" ", 1)) for line in listing.splitlines() if line)
            force = pushes % 2 == 1 if pushes < 2 else rng.random() < 0.5
            argv = ["push", "-q", "--tags"] + (["--force"] if force else []) + ["origin"]
            t = time.time()
            done = subprocess.run(["git", *argv], cwd=workdir, env=self.env,
                                  capture_output=True, text=True, timeout=120)
            until = time.time()
            pushes += 1
            self.fault("stale-push", t=t, until=until, force=force, refs=refs,
                       code=done.returncode)
            due = until + rng.uniform(*c.repair_after)
            with self.lock:
                for ref, value in refs.items():
                    found = checker.claim_of_ref(ref, TAGS_PREFIX)
                    if found is not None:
                        self.injected_values.add(value)
                        self.repairs.append((due, found[0], value))

    def repair_loop(self) -> None:
        while not self.stopping.wait(1.0):
            self.repair(everything=False)

    def repair(self, *, everything: bool) -> None:
        """An operator clears what a foreign or stale push left: `git release --force`.

        Only a ticket whose newest claim ref still holds a value a foreign push
        put there and that the tool itself reports as unknown (a tag that is no
        claim): anything else is the tool's business.
        """
        now = time.time()
        with self.lock:
            due = [r for r in self.repairs if everything or r[0] <= now]
            self.repairs = [r for r in self.repairs if r not in due]
        wanted = {(ticket, value) for _, ticket, value in due}
        if everything:  # at the end: whatever foreign value is a ticket's newest claim
            wanted |= {(t, oid) for t, (oid, _, _) in self.tickets().items()
                       if oid in self.injected_values}
        if not wanted:
            return
        refs = {t: oid for t, (oid, _, _) in self.tickets().items()}
        wanted = {(t, v) for t, v in wanted if refs.get(t) == v}
        if not wanted:
            return
        listed = subprocess.run(["git", "claim", "list", "--json"],
                                cwd=self.janitor.clone.workdir, env=self.janitor.env,
                                capture_output=True, text=True, timeout=120)
        try:
            rows = {row["ticket"]: row for row in json.loads(listed.stdout)}
        except (ValueError, TypeError, KeyError):
            self.errors.append(f"git claim list exited {listed.returncode}: {listed.stderr[-300:]}")
            return
        for ticket, value in sorted(wanted):
            row = rows.get(ticket)
            if row is None or row.get("tag") != value or row.get("state") != "unknown":
                continue
            t = time.time()
            done = subprocess.run(["git", "release", "--force", ticket],
                                  cwd=self.janitor.clone.workdir, env=self.janitor.env,
                                  capture_output=True, text=True, timeout=120)
            self.fault("repair", t=t, until=time.time(), ticket=ticket, value=value,
                       code=done.returncode)
            moved = self.tickets().get(ticket, (None, None, None))[0] != value
            if done.returncode != 0 and not (done.returncode == 1 and moved):
                # (a refusal after the ref moved on, a stale push racing the
                # operator, is the tool answering right, not a harness error)
                self.errors.append(f"git release --force {ticket} exited {done.returncode}:"
                                   f" {done.stderr[-300:]}")

    # the injector --------------------------------------------------------------------

    def injector_loop(self) -> None:
        c = self.config
        kinds = self.kinds
        while not self.stopping.wait(self.rng.uniform(*c.fault_every)):
            kind = kinds.pop(0) if kinds else self.rng.choice(INJECTED)
            try:
                made = getattr(self, "inject_" + kind.replace("-", "_"))()
            except Exception as error:  # a fault that could not be made is reported, not fatal
                self.errors.append(f"injecting {kind}: {error!r}")
                made = False
            if not made and kind not in kinds:
                # not possible now (nothing running, no connection open, a window open):
                # tried again after the next kind still to come, which must not wait for it
                kinds.insert(1 if kinds else 0, kind)

    def _running(self) -> list[Slot]:
        return [s for s in self.slots
                if s.process is not None and s.process.poll() is None and not s.paused]

    def _everything(self, slot: Slot) -> tuple[list[int], list[int]]:
        """The loop's processes: its group's leader's tree, and those that left the group.

        A daemon that left the group is still in the tree: the watchdog of `run`
        is its subreaper.
        """
        assert slot.process is not None
        tree = process_tree(slot.process.pid)
        outside = [pid for pid in tree if _group(pid) not in (slot.process.pid, None)]
        return tree, outside

    def inject_kill(self) -> bool:
        """The agent's machine or container crashes: SIGKILL to its process group,
        and to everything that left the group. (A SIGKILL of the group alone,
        which `run`'s guardian outlives to stop what left the group, is the
        fault "kill-group".)
        """
        with self.lock:
            running = self._running()
            if not running:
                return False
            slot = self.rng.choice(running)
            assert slot.process is not None
            pids, outside = self._everything(slot)
            t = time.time()
            try:
                os.killpg(slot.process.pid, signal.SIGKILL)
            except ProcessLookupError:
                return False
            _send(outside, signal.SIGKILL)
            run = slot.run
        self.fault("kill", t=t, agent=slot.name, run=run, pids=pids, outside=outside)
        return True

    def inject_prune(self) -> bool:
        """`git gc --prune=now` or `git prune --expire=now`, again and again for a few
        seconds, in the reaper's clone or an agent's, while they work.

        Claim tags and notes are reachable from no local ref, so these delete
        them under a running command, one object at a time: a reader can find
        a notes commit without its note (it must not take that for "no note").
        """
        where = self.rng.choice([self.reaper, self.reaper, *self.slots])
        workdir = where.clone.workdir
        length = self.rng.uniform(2.0, 6.0)
        t = time.time()

        def prune_for_a_while() -> None:
            count = 0
            while time.time() < t + length and not self.stopping.is_set():
                command = ["gc", "--quiet", "--prune=now"] if self.rng.random() < 0.3 \
                    else ["prune", "--expire=now"]
                subprocess.run(["git", "-C", str(workdir), "-c", "gc.reflogExpire=now",
                                "-c", "gc.reflogExpireUnreachable=now", *command],
                               env=self.env, capture_output=True, timeout=60)
                count += 1
            self.fault("prune", t=t, until=time.time(), agent=where.name, runs=count)

        thread = threading.Thread(target=prune_for_a_while, daemon=True)
        thread.start()
        return True

    def inject_pause(self) -> bool:
        """The agent's machine freezes: SIGSTOP to its group and to what left it, then SIGCONT."""
        c = self.config
        with self.lock:
            running = self._running()
            if not running or sum(s.paused for s in self.slots) >= max(1, c.agents // 4):
                return False
            slot = self.rng.choice(running)
            process = slot.process
            assert process is not None
            _, outside = self._everything(slot)
            t = time.time()
            os.killpg(process.pid, signal.SIGSTOP)
            _send(outside, signal.SIGSTOP)
            slot.paused, slot.frozen = True, outside
            run = slot.run
        length = self.rng.uniform(*c.pause_for)

        def resume() -> None:
            with self.lock:
                if not slot.paused:
                    return
                slot.paused = False
                try:
                    os.killpg(process.pid, signal.SIGCONT)
                except ProcessLookupError:
                    pass
                _send(slot.frozen, signal.SIGCONT)
            self.fault("pause", t=t, agent=slot.name, run=run, until=time.time(),
                       outside=slot.frozen)

        self._later(length, resume)
        self.resumers.append(resume)
        return True

    def _signal_run(self, signum: int, kind: str, *, group: bool) -> bool:
        """`signum` to the tool's own process (under the `git` wrapper), or to the whole group."""
        with self.lock:
            running = self._running()
            if not running:
                return False
            slot = self.rng.choice(running)
            assert slot.process is not None
            leader = slot.process.pid
            target = leader if group else tool_process(leader)
            if target is None:
                return False
            t = time.time()
            try:
                if group:
                    os.killpg(leader, signum)
                else:
                    os.kill(target, signum)
            except ProcessLookupError:
                return False
            run = slot.run
        self.fault(kind, t=t, agent=slot.name, run=run, pid=target)
        return True

    def inject_kill_run(self) -> bool:
        return self._signal_run(signal.SIGKILL, "kill-run", group=False)

    def inject_term_run(self) -> bool:
        return self._signal_run(signal.SIGTERM, "term-run", group=False)

    def inject_int_run(self) -> bool:
        return self._signal_run(signal.SIGINT, "int-run", group=False)

    def inject_kill_group(self) -> bool:
        return self._signal_run(signal.SIGKILL, "kill-group", group=True)

    def inject_term_group(self) -> bool:
        return self._signal_run(signal.SIGTERM, "term-group", group=True)

    def inject_int_group(self) -> bool:
        return self._signal_run(signal.SIGINT, "int-group", group=True)

    def inject_cut(self) -> bool:
        """Cut the connections open through the proxy; when none is open, watch for
        one for a moment (agents beat every interval), so that a short soak on a
        loaded machine still cuts one instead of finding the proxy idle each time."""
        deadline = time.monotonic() + max(1.0, self.config.interval * 2)
        while True:
            t = time.time()
            cut = self.proxy.cut()
            if cut or time.monotonic() >= deadline or self.stopping.is_set():
                break
            time.sleep(0.01)
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

    def tickets(self) -> dict[str, tuple[str, str, str]]:
        """ticket -> (its newest claim's tag, the ticket's state, that claim's ref), on the server.

        Claims are an append-only log (T, T@2, ...): only the newest counts,
        and its latest note says whether it ended. The state is held, done,
        blocked, free or unknown, as the tool reads it (`frees_ticket`).
        """
        git_dir = str(self.repo.path)
        prefix = self.config.claim_prefix
        listing = subprocess.run(["git", "--git-dir", git_dir, "for-each-ref",
                                  "--format=%(objectname) %(refname)", prefix,
                                  checker.NOTES_PREFIX],
                                 capture_output=True, text=True, check=True).stdout.split("\n")
        newest: dict[str, tuple[int, str, str]] = {}
        tips: dict[str, str] = {}
        for line in listing:
            if not line:
                continue
            oid, ref = line.split(" ", 1)
            found = checker.claim_of_ref(ref, prefix)
            if found is not None:
                ticket, epoch = found
                if epoch > newest.get(ticket, (0, "", ""))[0]:
                    newest[ticket] = (epoch, ref, oid)
            elif ref.startswith(checker.NOTES_PREFIX):
                tips[ref[len(checker.NOTES_PREFIX):]] = oid
        names = [oid for _, _, oid in newest.values()]
        for ticket, (_, _, oid) in newest.items():
            if ticket in tips:  # the note, flat or in git's fan-out directories
                names += [f"{tips[ticket]}:{oid}", f"{tips[ticket]}:{oid[:2]}/{oid[2:]}"]
        bodies = cat_file(git_dir, names)
        found_tickets = {}
        for ticket, (_, ref, oid) in newest.items():
            record = trailers(bodies.get(oid, b""))
            tip = tips.get(ticket)
            note = trailers(bodies.get(f"{tip}:{oid}", bodies.get(f"{tip}:{oid[:2]}/{oid[2:]}",
                                                                  b"")))
            state = record.get("claim-state", "unknown")
            if state not in ("held", "done", "blocked"):
                state = "unknown"
            found_tickets[ticket] = (oid, checker.ticket_state(state, note.get("claim-event", ""),
                                                               note.get("claim-outcome", "")), ref)
        return found_tickets

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
                                  "target": "", "outcome": ""})
                elif line.startswith(":") and notes:
                    modes, path = line.split("\t", 1)
                    notes[-1]["target"] = path.replace("/", "")
                    notes[-1]["blob"] = modes.split()[3]
            history[ref[len(checker.NOTES_PREFIX):]] = list(reversed(notes))
        # a release's outcome (free, done, blocked) is in its note, not in the subject
        released = [n for notes in history.values() for n in notes if n["event"] == "released"]
        bodies = cat_file(git_dir, [n["blob"] for n in released if n.get("blob")])
        for notes in history.values():
            for note in notes:
                blob = note.pop("blob", None)
                if note["event"] == "released" and blob:
                    note["outcome"] = trailers(bodies.get(blob, b"")).get("claim-outcome", "")
        return history

    # the run --------------------------------------------------------------------------

    def run(self) -> dict[str, Any]:
        stopped = self.run_agents()
        return self.finish(stopped)

    def run_agents(self) -> float:
        """Agents, reaper, reopener and faults for `seconds`; then stop them. When they stopped."""
        c = self.config
        self.timers: list[threading.Timer] = []
        self.resumers: list[Callable[[], None]] = []
        self.healers: list[Callable[[], None]] = []
        self.started = time.time()
        self.load_before = os.getloadavg()
        self.say(f"soak: {c.agents} agents in {len(self.clones)} clones, {c.seconds:g}s, seed"
                 f" {c.seed}, TTL {c.ttl:g}s, heartbeat {c.interval:g}s, max skew"
                 f" {c.max_skew:g}s, {c.claim_prefix}, in {self.folder}")
        threads = [threading.Thread(target=self.agent_loop, args=(s,), daemon=True)
                   for s in self.slots]
        actors = [self.reaper_loop, self.reopen_loop, self.injector_loop, self.foreign_loop,
                  self.repair_loop] + ([self.stale_loop] if c.tags_mode else [])
        threads += [threading.Thread(target=f, daemon=True) for f in actors]
        for thread in threads:
            thread.start()
        self.load_samples: list[float] = []
        deadline = self.started + c.seconds
        while time.time() < deadline:
            time.sleep(min(5.0, max(0.0, deadline - time.time())))
            self.load_samples.append(os.getloadavg()[0])
        return self.stop(threads)

    def finish(self, stopped: float) -> dict[str, Any]:
        """Wait out the TTL, reap a last time, read the server, check the history."""
        c = self.config
        self.say(f"soak ({c.mode_name}): agents stopped; waiting out the TTL for the final reap")
        deadline = stopped + c.ttl + 2 * c.max_skew + 2
        while time.time() < deadline and any(state == "held" for _, state, _
                                             in self.tickets().values()):
            time.sleep(min(c.reap_every, max(0.0, deadline - time.time())))
            if time.time() < deadline:
                self.reap()  # claims of agents killed earlier need not wait for the last one
        final_reap = self.reap()
        self.proxy.stop()
        remote = {"final": self.tickets(), "notes": self.notes_history()}
        (self.folder / "remote.json").write_text(json.dumps(remote, indent=1))
        self.server.stop()
        history = checker.load(self.folder, ttl=c.ttl, end=stopped, interval=c.interval,
                               grace=c.grace, claim_prefix=c.claim_prefix)
        report = checker.check(history)
        figures = report.figures
        figures["faults"]["skew"] = sum(1 for s in self.slots if "GIT_CLAIM_CLOCK_OFFSET" in s.env)
        figures["faults"]["cut-upload fired"] = sum(e == "cut-upload" for e in self.proxy.events)
        exits: dict[str, int] = {}
        for slot in self.slots:
            for key, count in slot.exits.items():
                exits[key] = exits.get(key, 0) + count
        samples = self.load_samples
        summary = {
            "config": {**asdict(c), "pause_for": list(c.pause_for)},
            "mode": c.mode_name,
            "claim_prefix": c.claim_prefix,
            "command": command_line(c),
            "started": time.strftime("%Y-%m-%d %H:%M:%S %Z", time.localtime(self.started)),
            "seconds": round(stopped - self.started, 1),
            "cpus": os.cpu_count(),
            "load": {"before": round(self.load_before[0], 2),
                     "mean": round(sum(samples) / max(1, len(samples)), 2),
                     "max": round(max(samples, default=0.0), 2)},
            "clones": self.clones,
            "exits": dict(sorted(exits.items())),
            "reaper_runs": self.reaps, "reopens": self.reopens,
            "final_reap": final_reap and {k: len(final_reap[k]) for k in ("reaped", "undone")},
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
                outside = self._everything(slot)[1] if process.poll() is None else []
                try:
                    os.killpg(process.pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
                _send(outside, signal.SIGKILL)
                wait_group(process, time.time() + 10)
                self.fault("stop", t=t, agent=slot.name, run=slot.run)
        for thread in threads:
            thread.join(timeout=30)
        stopped = time.time()
        self.repair(everything=True)
        self._end_leftover_workers()
        return stopped

    def _end_leftover_workers(self) -> None:
        """Workers still running once every `run` ended (the checker flags their lines): killed."""
        worker = str(HERE / "worker")
        for line in (self.folder / "work.jsonl").read_text().splitlines():
            try:
                pid = json.loads(line)["pid"]
                with open(f"/proc/{pid}/cmdline", "rb") as handle:
                    ours = worker.encode() in handle.read()
                with open(f"/proc/{pid}/environ", "rb") as handle:
                    ours = ours and f"SOAK_WORKLOG={self.folder}".encode() in handle.read()
            except (OSError, ValueError, KeyError):
                continue
            if ours:
                self.errors.append(f"worker {pid} still running after every run ended: killed")
                _send([pid], signal.SIGKILL)


def cat_file(git_dir: str, names: list[str]) -> dict[str, bytes]:
    """The objects `names` (ids or `<tree-ish>:<path>`) by name, in one `git cat-file --batch`;
    names that do not resolve are left out."""
    if not names:
        return {}
    out = subprocess.run(["git", "--git-dir", git_dir, "cat-file", "--batch"],
                         input=("\n".join(names) + "\n").encode(), capture_output=True,
                         check=True).stdout
    found: dict[str, bytes] = {}
    at = 0
    for name in names:
        end = out.index(b"\n", at)
        header = out[at:end].split()
        at = end + 1
        if len(header) != 3 or header[-1] == b"missing":
            continue
        size = int(header[2])
        found[name] = out[at:at + size]
        at += size + 1
    return found


def trailers(body: bytes) -> dict[str, str]:
    """A record's `Key: value` lines, keys lowercased, the first of each kept."""
    found: dict[str, str] = {}
    for line in body[:65536].decode("utf-8", "replace").splitlines():
        key, sep, value = line.partition(":")
        if sep and key.strip() and " " not in key.strip():
            found.setdefault(key.strip().lower(), value.strip())
    return found


def tool_process(leader: int) -> int | None:
    """The pid of `git-claim run` under the `git` wrapper that leads the group, if it runs."""
    for pid in process_tree(leader):
        if pid == leader:
            continue
        try:
            with open(f"/proc/{pid}/cmdline", "rb") as handle:
                argv = handle.read().split(b"\0")
        except OSError:
            continue
        if any(arg.endswith(b"/git-claim") or arg == b"git-claim" for arg in argv[:2]) \
                and b"run" in argv:
            return pid
    return None


def _group(pid: int) -> int | None:
    try:
        return os.getpgid(pid)
    except OSError:
        return None


def _send(pids: list[int], signum: int) -> None:
    for pid in pids:
        try:
            os.kill(pid, signum)
        except (ProcessLookupError, PermissionError):
            pass


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
    line = (f"python -m tests.soak --agents {c.agents} --seconds {c.seconds:g} --seed {c.seed}"
            f" --ttl {c.ttl:g} --interval {c.interval:g} --max-skew {c.max_skew:g}")
    return line + (" --tags-mode" if c.tags_mode else "")


def plan(config: Config, mode: str = "both", *, tags_share: float = 1 / 3) -> list[Config]:
    """The configurations one soak command runs: refs/claims/, refs/tags/claim/, or both.

    Both: the agents' time is shared, `tags_share` of it in tags mode.
    """
    from dataclasses import replace

    if mode == "claims":
        return [replace(config, tags_mode=False)]
    if mode == "tags":
        return [replace(config, tags_mode=True)]
    tags = round(config.seconds * tags_share, 1)
    return [replace(config, tags_mode=False, seconds=config.seconds - tags),
            replace(config, tags_mode=True, seconds=tags, seed=config.seed + 1000)]


def run_plan(configs: list[Config], folder: Path, *,
             say: Callable[[str], None] = print) -> list[dict[str, Any]]:
    """Run the soaks one after the other, each checked on its own.

    The injector's kinds carry over (a kind not injected yet in one comes first
    in the next), and each soak's wait for its final reap runs while the next
    one's agents work.
    """
    kinds = list(INJECTED)
    random.Random(configs[0].seed).shuffle(kinds)
    soaks = []
    for config in configs:
        name = "tags" if config.tags_mode else "claims"
        soak = Soak(config, folder / name if len(configs) > 1 else folder, say=say, kinds=kinds)
        soak.setup()
        soaks.append(soak)
    summaries: list[dict[str, Any] | None] = [None] * len(soaks)
    finishing: list[threading.Thread] = []
    failures: list[BaseException] = []
    for index, soak in enumerate(soaks):
        stopped = soak.run_agents()

        def finish(index: int = index, soak: Soak = soak, stopped: float = stopped) -> None:
            try:
                summaries[index] = soak.finish(stopped)
            except BaseException as error:  # re-raised in the caller's thread
                failures.append(error)

        thread = threading.Thread(target=finish, daemon=True)
        thread.start()
        finishing.append(thread)
    for thread in finishing:
        thread.join()
    if failures:
        raise failures[0]
    return [s for s in summaries if s is not None]
