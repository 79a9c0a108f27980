"""The checker: replay a soak's history against a model of one lock per ticket.

Inputs, all recorded while the soak ran (see docs/reliability.md, "The soak"):
- the tools' operation log (GIT_CLAIM_OPLOG, `git_claim/oplog.py`, one file
  per loop): every claim push, heartbeat, release, reap and run, with start,
  end and outcome; a start without an end is an operation whose process was
  killed;
- the workers' own log (`worker.py`, `worker.sh`): when each process that
  really worked on a ticket started, that it was still working (a line every
  0.2 s), the signals it got and when it stopped;
- the faults the soak injected (kills, pauses, signals, cut connections,
  claim refs deleted or replaced with plain git, stale pushes), with times;
- the server's own log of every ref update it committed (a
  `reference-transaction` hook), and at the end the notes history of each
  ticket (each note's event, and a release's outcome) and each ticket's
  newest claim and state.

The protocol (docs/protocol.md) is an append-only log per ticket: each claim
is a new ref (T, then T@2, T@3, ...; only the newest counts), created only
as the next epoch once the newest claim ended, and never updated or deleted
by an agent; every later change is one note on the claim in the ticket's
notes ref: heartbeats, then at most one end (a release as free, a reap) or
a release as done or blocked and at most one reopening after it.

The server's log is the truth about what happened on the remote, the
workers' log the truth about who worked; the operation log is what each
agent believed. The checker fails on:
- a double hold: two workers whose working times on one ticket overlap,
  unless the earlier one's claim was lost without its doing (reaped,
  deleted, overwritten) before the later one started and it stopped within
  the bound `Checker.knew_by` states; a worker that logged after its run
  ended, or longer than the grace period after a signal to its run;
- a double claim: two agents that both believed they held a ticket past the
  last point the earlier one could have known it lost it; a reap decided
  before the claim's lease (its last landed beat + TTL) ran out; a claim
  created out of turn (not the next epoch) or while the newest claim was
  still in force; a claim ref replaced by another claim; a beat, release,
  reap or reopening accepted on a claim that had already ended, or that was
  not the ticket's newest claim when the call started;
- a lost claim: an acknowledged claim that never reached the remote, or
  reached it at another epoch than it recorded; a claim ref deleted or
  rewritten by anything but an injected foreign change; an acknowledged
  beat, release or reap that the remote does not have; a state change
  nobody recorded;
- a stuck ticket: a newest claim still held after the run, once every agent
  stopped and a final reap ran.
"""

from __future__ import annotations

import bisect
import json
import statistics
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

INF = float("inf")
ZERO = "0" * 40
CLAIM_PREFIX = "refs/claims/"
NOTES_PREFIX = "refs/notes/claims/"

# Scheduling on a loaded two-core machine: a timer's wake-up, a signal's
# delivery, a worker's reaction. Half the short soak's heartbeat interval, so a
# holder that skipped a whole beat is still caught.
SLACK = 0.5
KILLS = ("kill", "kill-run", "kill-group", "stop")  # SIGKILL: the tool's process is gone at once
SIGNALS = KILLS + ("term-run", "int-run", "term-group", "int-group")
INJECTED = ("foreign-delete", "foreign-replace", "stale-push")  # plain-git changes of claim refs
EPOCH_MARK = "@"
MAX_EPOCH_DIGITS = 4000  # as the tool reads them
OUTCOMES = ("done", "blocked")


def claim_of_ref(ref: str, prefix: str = CLAIM_PREFIX) -> tuple[str, int] | None:
    """(ticket, epoch) of a claim ref: T is epoch 1, T@N (N from 2, ASCII digits, no leading
    zero, at most MAX_EPOCH_DIGITS of them) epoch N; None for any other ref."""
    if not ref.startswith(prefix):
        return None
    name = ref[len(prefix):]
    if EPOCH_MARK not in name:
        return (name, 1) if name and "/" not in name else None
    ticket, _, number = name.rpartition(EPOCH_MARK)
    if not ticket or "/" in ticket or not (number.isascii() and number.isdigit()) \
            or number.startswith("0") or len(number) > MAX_EPOCH_DIGITS or int(number) < 2:
        return None
    return ticket, int(number)


def claim_ref(prefix: str, ticket: str, epoch: int) -> str:
    return prefix + ticket + ("" if epoch == 1 else f"{EPOCH_MARK}{epoch}")


def ends(event: str, outcome: str = "") -> bool:
    """Whether a note with this event frees the ticket (a reap, a release as free, a reopening)."""
    return event in ("reaped", "reopened") or event == "released" and outcome not in OUTCOMES


def ticket_state(claim_state: str, event: str, outcome: str) -> str:
    """A ticket's state from its newest claim's Claim-State and that claim's latest note."""
    event, outcome = event.lower(), outcome.lower()
    if event == "reopened":
        return "free"
    if claim_state in OUTCOMES:
        return claim_state  # an outcome tag (older remotes) stays until it is reopened
    if event == "released" and outcome in OUTCOMES:
        return outcome if claim_state == "held" else claim_state
    return "free" if ends(event, outcome) else claim_state


@dataclass
class Op:
    id: str
    op: str
    ticket: str
    agent: str
    pid: int
    start: float
    end: float | None = None  # None: no end line (the process was killed mid-operation)
    outcome: str = "unknown"
    fields: dict[str, Any] = field(default_factory=dict)
    tries: list[dict[str, Any]] = field(default_factory=list)
    ended: dict[str, Any] = field(default_factory=dict)
    killed: bool = False
    loop: str = ""  # the soak's loop that ran it (its oplog file); "" in hand-made histories

    @property
    def proc(self) -> str:
        """The process that wrote it (its pid and a token: pids are reused)."""
        return self.id.rsplit(".", 1)[0]

    @property
    def who(self) -> str:
        """The loop (several loops of one clone may share an agent name), else the agent."""
        return self.loop or self.agent

    @property
    def tag(self) -> str | None:
        return self.ended.get("tag") or self.fields.get("tag")

    def commits(self) -> list[str]:
        return [t["commit"] for t in self.tries if "commit" in t]


@dataclass
class Fault:
    kind: str
    t: float
    agent: str | None = None  # the loop it hit
    until: float | None = None  # pauses: when the agent was resumed; pushes: when they returned
    detail: dict[str, Any] = field(default_factory=dict)


@dataclass
class RefChange:
    t: float
    old: str | None
    new: str | None
    ref: str


@dataclass
class Note:
    commit: str
    target: str  # the claim tag the note is on
    event: str  # heartbeat, released, reaped, reopened
    outcome: str = ""  # a release's: free, done or blocked

    @property
    def ends(self) -> bool:
        return ends(self.event, self.outcome)


@dataclass
class Worker:
    """One process that worked on a ticket, as its own log lines tell."""

    pid: int
    run: str  # the soak's run that started it, "<loop>.<n>"
    loop: str
    ticket: str
    agent: str
    mode: str
    script: int | None  # the pid of the agent script that started it (the run's command)
    start: float
    last: float  # its last line: its stop, or when killed its last "working" line
    stop: str | None = None  # why it stopped, when it logged a stop
    signals: list[int] = field(default_factory=list)

    @property
    def name(self) -> str:
        return f"worker {self.pid} ({self.mode}, run {self.run})"


@dataclass
class RunRecord:
    """One `git claim run` process of the soak: when it was started and when it exited."""

    run: str
    loop: str
    spawn: float
    exit: float | None = None
    status: int | None = None
    clone: str = ""
    agent: str = ""


@dataclass
class History:
    ops: list[Op]
    faults: list[Fault]
    changes: list[RefChange]  # the server's committed ref updates, in log order
    notes: dict[str, list[Note]]  # per ticket, oldest first
    final: dict[str, tuple[str, str]]  # ticket -> (its newest claim's tag, the ticket's state)
    ttl: float
    end: float  # when the soak stopped its agents
    workers: list[Worker] = field(default_factory=list)
    runs: dict[str, RunRecord] = field(default_factory=dict)
    interval: float = 2.0  # the agents' heartbeat interval
    grace: float = 1.0  # `run --grace`
    claim_prefix: str = CLAIM_PREFIX


@dataclass
class Violation:
    kind: str  # double-hold, orphan, lost-signal, double-claim, stale-start, lost-claim, stuck,
    # unrecorded
    ticket: str
    message: str

    def __str__(self) -> str:
        return f"[{self.kind}] {self.ticket}: {self.message}"


@dataclass
class Report:
    violations: list[Violation]
    figures: dict[str, Any]

    @property
    def ok(self) -> bool:
        return not self.violations


# --------------------------------------------------------------------------
# loading


def load_ops(lines: Iterable[str], loop: str = "") -> list[Op]:
    ops: dict[str, Op] = {}
    for line in lines:
        line = line.strip()
        if not line:
            continue
        try:
            record = json.loads(line)
        except ValueError:
            continue  # a torn line can only be the last one of a killed writer
        ident, phase = record.pop("id", None), record.pop("ph", None)
        if phase == "start":
            ops[ident] = Op(ident, record.pop("op"), record.pop("ticket"), record.pop("agent"),
                            record.pop("pid"), record.pop("t"), fields=record, loop=loop)
        elif ident in ops and phase == "try":
            ops[ident].tries.append(record)
        elif ident in ops and phase == "end":
            op = ops[ident]
            op.end = record.pop("t")
            op.outcome = record.pop("outcome")
            op.ended = record
    return list(ops.values())


def load_faults(lines: Iterable[str]) -> list[Fault]:
    faults = []
    for line in lines:
        if line.strip():
            record = json.loads(line)
            faults.append(Fault(record.pop("kind"), record.pop("t"), record.pop("agent", None),
                                record.pop("until", None), record))
    return faults


def load_changes(lines: Iterable[str]) -> list[RefChange]:
    changes = []
    for line in lines:
        parts = line.split()
        if len(parts) == 4:
            t, old, new, ref = parts
            changes.append(RefChange(float(t), None if old == ZERO else old,
                                     None if new == ZERO else new, ref))
    return changes


def load_workers(lines: Iterable[str]) -> list[Worker]:
    """The workers' lines, one Worker per (run, pid); lines that do not parse are skipped."""
    workers: dict[tuple[str, int], Worker] = {}
    for line in lines:
        try:
            record = json.loads(line)
            t, event, pid = float(record["t"]), record["ev"], int(record["pid"])
        except (ValueError, KeyError, TypeError):
            continue
        key = (str(record.get("run")), pid)
        worker = workers.get(key)
        if worker is None:
            worker = workers[key] = Worker(pid, str(record.get("run")), str(record.get("loop")),
                                           str(record.get("ticket")), str(record.get("agent")),
                                           str(record.get("mode")), record.get("script"), t, t)
        worker.start = min(worker.start, t)
        worker.last = max(worker.last, t)
        if event == "signal":
            worker.signals.append(int(record.get("sig", 0)))
        elif event == "stop":
            worker.stop = str(record.get("why"))
    return list(workers.values())


def load_runs(lines: Iterable[str]) -> dict[str, RunRecord]:
    runs = {}
    for line in lines:
        if line.strip():
            r = json.loads(line)
            runs[r["run"]] = RunRecord(r["run"], r["loop"], r["spawn"], r.get("exit"),
                                       r.get("status"), r.get("clone", ""), r.get("agent", ""))
    return runs


def _lines(path: Path) -> list[str]:
    return path.read_text().splitlines() if path.exists() else []


def load(folder: Path, *, ttl: float, end: float, interval: float = 2.0, grace: float = 1.0,
         claim_prefix: str = CLAIM_PREFIX) -> History:
    """A history as the soak leaves it in `folder` (see tests/soak/driver.py)."""
    state = json.loads((folder / "remote.json").read_text())
    ops = []
    for path in sorted(folder.glob("oplog*.jsonl")):
        loop = path.stem[len("oplog-"):] if path.stem.startswith("oplog-") else ""
        ops += load_ops(path.read_text().splitlines(), loop)
    return History(
        ops=ops,
        faults=load_faults(_lines(folder / "faults.jsonl")),
        changes=load_changes(_lines(folder / "server.log")),
        notes={t: [Note(**n) for n in notes] for t, notes in state["notes"].items()},
        final={t: (v[0], v[1]) for t, v in state["final"].items()}, ttl=ttl, end=end,
        workers=load_workers(_lines(folder / "work.jsonl")),
        runs=load_runs(_lines(folder / "runs.jsonl")),
        interval=interval, grace=grace, claim_prefix=claim_prefix)


# --------------------------------------------------------------------------
# the model


@dataclass
class Belief:
    """One agent believing it holds one claim: from the claim's ack to the point it stopped."""

    agent: str
    proc: str
    ticket: str
    tag: str
    ack: float
    end: float
    lease_start: float  # when the claim was written (its `at`)
    who: str = ""


@dataclass
class Loss:
    """How a claim left its holder: when, how, and the operation that did it, if any."""

    t: float
    how: str  # reaped, released, deleted by a foreign push, ...
    op: Op | None = None
    injected: bool = False  # by a plain-git change the soak injected
    final: bool = False  # an end recorded in the notes: the claim cannot come back


@dataclass
class Gap:
    """A time a worker's claim was not held: from its loss until it came back (or for good).

    The worker may go on until `allowed` (its holder's deadline `knew` plus
    grace and SLACK; at once for its own release) and never after it.
    """

    tag: str
    loop: str
    loss: Loss
    back: float
    knew: float
    allowed: float
    why: str
    own: bool = False

    def late(self, worker: Worker) -> tuple[float, float] | None:
        """When the worker worked past its bound in this gap, if it did."""
        lo, hi = max(self.allowed, worker.start), min(self.back, worker.last)
        return (lo, hi) if hi > lo + 1e-6 else None

    def story(self, worker: Worker) -> str:
        if self.own:
            return (f"{self.loop} released {self.tag[:12]} at {self.loss.t:.3f} while its worker"
                    " still worked")
        return (f"{self.loop}'s claim {self.tag[:12]} was {self.loss.how} at {self.loss.t:.3f};"
                f" {self.loop} had to know by {self.knew:.3f} ({self.why}) and its worker to"
                f" stop by {self.allowed:.3f} (grace + {SLACK:g}s),"
                f" {worker.last - self.allowed:.2f}s earlier")


def _minus(span: tuple[float, float], gaps: list[Gap]) -> list[tuple[float, float]]:
    """`span` without the gaps' [loss, back) times."""
    parts = [span]
    for gap in gaps:
        cut = []
        for lo, hi in parts:
            if gap.back <= lo or gap.loss.t >= hi:
                cut.append((lo, hi))
                continue
            if lo < gap.loss.t:
                cut.append((lo, gap.loss.t))
            if gap.back < hi:
                cut.append((gap.back, hi))
        parts = cut
    return parts


class Checker:
    def __init__(self, history: History) -> None:
        self.h = history
        self.prefix = history.claim_prefix
        self.violations: list[Violation] = []
        self.kills: dict[str, list[float]] = defaultdict(list)
        self.signalled: dict[str, list[float]] = defaultdict(list)
        self.stopped: dict[str, list[tuple[float, float]]] = defaultdict(list)
        self.run_faults: dict[str, list[Fault]] = defaultdict(list)
        for fault in history.faults:
            if fault.kind in KILLS and fault.agent:
                self.kills[fault.agent].append(fault.t)
            if fault.kind in SIGNALS and fault.agent:
                self.signalled[fault.agent].append(fault.t)
                if fault.detail.get("run"):
                    self.run_faults[fault.detail["run"]].append(fault)
            if fault.kind == "pause" and fault.agent:
                self.stopped[fault.agent].append((fault.t, fault.until or history.end))
        self._close_killed()
        self.by_tag: dict[str, list[Op]] = defaultdict(list)
        self.by_commit: dict[str, Op] = {}
        for op in history.ops:
            if op.tag:
                self.by_tag[op.tag].append(op)
            for commit in op.commits():
                self.by_commit[commit] = op
        self.last_line: dict[str, float] = defaultdict(float)
        for op in history.ops:
            self.last_line[op.proc] = max(self.last_line[op.proc], op.start,
                                         *(t["t"] for t in op.tries), op.end or 0.0)
        self.injected = self._attribute()
        self.landed_claims, self.removed = self._claim_ref_history()
        self.landed_commits = {n.commit for notes in history.notes.values() for n in notes}
        self.note_of = {n.commit: n for notes in history.notes.values() for n in notes}
        self.note_landed: dict[str, float] = {}
        self.timeline: dict[str, tuple[list[float], list[str | None]]] = {}
        self.epoch_refs: dict[str, dict[int, str]] = defaultdict(dict)  # ticket -> epoch -> ref
        for change in history.changes:
            if change.ref.startswith(NOTES_PREFIX) and change.new is not None:
                self.note_landed.setdefault(change.new, change.t)
            times, values = self.timeline.setdefault(change.ref, ([], []))
            times.append(change.t)
            values.append(change.new)
            found = claim_of_ref(change.ref, self.prefix)
            if found is not None:
                self.epoch_refs[found[0]][found[1]] = change.ref

    def flag(self, kind: str, ticket: str, message: str) -> None:
        self.violations.append(Violation(kind, ticket, message))

    def ticket_of(self, ref: str) -> str:
        found = claim_of_ref(ref, self.prefix)
        return found[0] if found else ref[len(self.prefix):]

    def newest_at(self, ticket: str, at: float) -> tuple[int, str] | None:
        """(epoch, tag) of the ticket's newest claim on the server at `at`, by its log."""
        best: tuple[int, str] | None = None
        for epoch, ref in self.epoch_refs.get(ticket, {}).items():
            times, values = self.timeline[ref]
            index = bisect.bisect_right(times, at)
            value = values[index - 1] if index else None
            if value is not None and (best is None or epoch > best[0]):
                best = (epoch, value)
        return best

    # ------------------------------------------------------------------

    def _close_killed(self) -> None:
        """An operation with no end was cut short by a signal to its agent: it ends then."""
        for op in self.h.ops:
            if op.end is None:
                after = [t for t in self.signalled.get(op.who, []) if t >= op.start]
                op.end = min(after) if after else self.h.end
                op.killed = True
                op.outcome = "unknown"

    def _attribute(self) -> dict[int, Fault]:
        """Claim ref changes made by the soak's foreign processes (id of the change -> fault)."""
        faults = [f for f in self.h.faults if f.kind in INJECTED]
        found: dict[int, Fault] = {}
        for change in self.h.changes:
            if not change.ref.startswith(self.prefix):
                continue
            for fault in faults:
                if not fault.t <= change.t <= (fault.until or fault.t):
                    continue
                detail = fault.detail
                if fault.kind == "foreign-delete" and detail.get("ref") == change.ref \
                        and change.new is None \
                        or fault.kind == "foreign-replace" and detail.get("ref") == change.ref \
                        and change.new == detail.get("value") \
                        or fault.kind == "stale-push" and change.new is not None \
                        and (detail.get("refs") or {}).get(change.ref) == change.new:
                    found[id(change)] = fault
                    break
        return found

    def _claim_ref_history(self) -> tuple[dict[str, float], dict[str, RefChange]]:
        """Which claim tags the server ever set, when, and the changes that removed each."""
        landed: dict[str, float] = {}
        removed: dict[str, RefChange] = {}
        self.ref_changes: dict[str, list[RefChange]] = defaultdict(list)  # by the tags in them
        for change in self.h.changes:
            if not change.ref.startswith(self.prefix):
                continue
            for value in {change.old, change.new} - {None}:
                self.ref_changes[value].append(change)
            ticket = self.ticket_of(change.ref)
            if change.new is not None:
                landed.setdefault(change.new, change.t)
            if change.old is not None:
                removed[change.old] = change
            if change.old is not None and change.new is not None and self._is_claim(change.old) \
                    and self._is_claim(change.new) and id(change) not in self.injected:
                self.flag("double-claim", ticket, f"{change.ref} went from claim"
                          f" {change.old[:12]} straight to claim {change.new[:12]}")
        return landed, removed

    def _is_claim(self, oid: str) -> bool:
        return any(op.op == "claim" for op in self.by_tag.get(oid, ()))

    # ------------------------------------------------------------------

    def check(self) -> Report:
        self.check_writes_recorded()
        self.check_notes_model()
        self.check_epochs()
        self.check_guards()
        beliefs = self.beliefs()
        self.check_leases()
        self.check_starts()
        self.check_overlaps(beliefs)
        self.check_lost_claims()
        self.check_stuck()
        self.check_workers()
        return Report(self.violations, self.figures(beliefs))

    def check_writes_recorded(self) -> None:
        """Every acknowledged write is on the remote; every write on the remote was recorded."""
        for op in self.h.ops:
            if op.outcome != "ok" or op.ended.get("noop"):
                continue
            if op.op == "claim" and op.tag not in self.landed_claims:
                self.flag("lost-claim", op.ticket, f"{op.agent}'s claim {op.tag[:12]} was"
                          " acknowledged but the server never set it")
            if op.op in ("heartbeat", "release", "reap"):
                landed = [c for c in op.commits() if c in self.landed_commits]
                if not landed:
                    self.flag("lost-claim", op.ticket, f"{op.agent}'s {op.op} of"
                              f" {str(op.tag)[:12]} was acknowledged but is not in the notes")
        for ticket, notes in self.h.notes.items():
            for note in notes:
                if note.commit not in self.by_commit:
                    self.flag("unrecorded", ticket, f"a {note.event} note {note.commit[:12]}"
                              " that no operation recorded")
        for change in self.h.changes:
            if not change.ref.startswith(self.prefix) or change.new is None \
                    or id(change) in self.injected:
                continue
            if not self._is_claim(change.new):
                self.flag("unrecorded", self.ticket_of(change.ref), f"{change.ref} was set"
                          f" to {change.new[:12]}, which no claim recorded")

    def _put_back(self, tag: str, before: float) -> bool:
        """`tag` was set on a claim ref by an injected (stale or foreign) push before `before`."""
        return any(change.new == tag and change.t < before and id(change) in self.injected
                   for change in self.h.changes)

    def check_notes_model(self) -> None:
        """Per claim: beats, then at most one end (a release as free, a reap), or a release as
        done or blocked and at most one reopening after it; then nothing.

        Except the operator's repair: a forced release of an old claim that a
        stale push put back on a claim ref.
        """
        for ticket, notes in self.h.notes.items():
            ended: dict[str, str] = {}  # target -> how it ended
            outcome: dict[str, str] = {}  # target -> the outcome in force (done, blocked)
            for note in notes:
                wrong = ""
                if note.target in ended:
                    wrong = f"after it was {ended[note.target]}"
                elif note.target in outcome and note.event != "reopened":
                    wrong = f"after it was released as {outcome[note.target]}"
                elif note.event == "reopened" and note.target not in outcome:
                    wrong = "although no outcome was in force"
                if wrong:
                    op = self.by_commit.get(note.commit)
                    repair = op is not None and op.op == "release" and op.fields.get("force") \
                        and self._put_back(note.target, op.start)
                    if not repair:
                        self.flag("double-claim", ticket, f"a {note.event} of {note.target[:12]}"
                                  f" was accepted {wrong}")
                if note.ends:
                    ended.setdefault(note.target, note.event)
                elif note.event == "released":
                    outcome.setdefault(note.target, note.outcome)

    def check_epochs(self) -> None:
        """Each claim is created as its ticket's next epoch, once the newest claim has ended.

        Replays the server's log in order: the claim refs present and the
        notes landed so far. A claim ref created by an injected push is not
        judged (it changes what the next claim finds). Each acknowledged
        claim landed at the epoch it recorded (its fencing token).
        """
        present: dict[str, dict[int, str]] = defaultdict(dict)  # ticket -> epoch -> tag
        last_note: dict[str, Note] = {}  # claim tag -> its latest note so far
        for change in self.h.changes:
            if change.ref.startswith(NOTES_PREFIX):
                note = self.note_of.get(change.new or "")
                if note is not None:
                    last_note[note.target] = note
                continue
            found = claim_of_ref(change.ref, self.prefix)
            if found is None:
                continue
            ticket, epoch = found
            judged = change.old is None and change.new is not None \
                and id(change) not in self.injected
            if judged:
                newest = max(present[ticket], default=0)
                if epoch != newest + 1:
                    self.flag("double-claim", ticket, f"claim {change.new[:12]} was created as"
                              f" {change.ref}, out of turn: the newest claim was epoch {newest}")
                elif newest:
                    before = present[ticket][newest]
                    note = last_note.get(before)
                    if note is None or not note.ends:
                        last = f"{note.event} {note.outcome}".strip() if note else "none"
                        self.flag("double-claim", ticket, f"claim {change.new[:12]} was created"
                                  f" as {change.ref} while epoch {newest}'s claim {before[:12]}"
                                  f" was still in force (its last note: {last})")
            if change.new is None:
                present[ticket].pop(epoch, None)
            else:
                present[ticket][epoch] = change.new
        first_ref: dict[str, str] = {}
        for change in self.h.changes:
            if change.new is not None and claim_of_ref(change.ref, self.prefix) is not None:
                first_ref.setdefault(change.new, change.ref)
        for op in self.h.ops:
            if op.op != "claim" or op.outcome != "ok" or not op.tag or "epoch" not in op.fields:
                continue
            expected = claim_ref(self.prefix, op.ticket, int(op.fields["epoch"]))
            landed = first_ref.get(op.tag)
            if landed is not None and landed != expected:
                self.flag("lost-claim", op.ticket, f"{op.agent}'s claim {op.tag[:12]} recorded"
                          f" epoch {op.fields['epoch']}, but the server set it as {landed}")

    def newest_value(self, ticket: str, at: float) -> str | None:
        """The tag of the ticket's newest claim on the server at `at`, by the server's log."""
        found = self.newest_at(ticket, at)
        return found[1] if found else None

    def check_guards(self) -> None:
        """A beat, release, reap or reopening lands only while its claim is the newest claim.

        The guard is read with the push; a claim replaced after the call began
        may be missed by that call (docs/protocol.md: the next beat catches
        it), so only a call that started after its claim had left is judged.
        """
        for op in self.h.ops:
            if op.op not in ("heartbeat", "release", "reap", "reopen") or not op.tag:
                continue
            for attempt in op.tries:
                if attempt.get("commit") not in self.landed_commits:
                    continue
                tag = attempt.get("tag") or op.tag
                value = self.newest_value(op.ticket, op.start)
                if value != tag:
                    self.flag("double-claim", op.ticket, f"{op.agent}'s {op.op} of {tag[:12]}"
                              f" landed, but when it started at {op.start:.3f} the newest claim"
                              f" was {str(value)[:12]}")

    def lease_start(self, tag: str, *, before: float = INF) -> float | None:
        """When the claim's last landed beat (else the claim itself) was written."""
        starts = [op.fields["at"] for op in self.by_tag.get(tag, ())
                  if op.op == "claim" and "at" in op.fields]
        for op in self.by_tag.get(tag, ()):
            if op.op == "heartbeat" and op.end is not None and op.end <= before:
                starts += [t["at"] for t in op.tries if t.get("commit") in self.landed_commits]
        return max(starts) if starts else None

    def check_leases(self) -> None:
        """A reap is decided only once TTL has passed since the claim's last sign of life."""
        for ticket, notes in self.h.notes.items():
            for note in notes:
                if note.event != "reaped":
                    continue
                reaper = self.by_commit.get(note.commit)
                start = self.lease_start(note.target)
                if reaper is None or start is None or "judged" not in reaper.fields:
                    continue  # already reported as unrecorded
                early = start + self.h.ttl - reaper.fields["judged"]
                if early > 0:
                    self.flag("double-claim", ticket, f"{reaper.agent} reaped {note.target[:12]}"
                              f" {early:.2f}s before its lease ran out (TTL {self.h.ttl:g}s)")

    def check_starts(self) -> None:
        """`run` starts its command only on a claim whose lease has not run out.

        A win acknowledged late (the claimer froze or crawled between its push
        and the server's answer) may already have been reaped: the runner can
        know it from the claim's age, and must beat before it starts anything.
        """
        for op in self.h.ops:
            if op.op != "run" or not op.tag:
                continue
            start = self.lease_start(op.tag, before=op.start)
            if start is not None and op.start > start + self.h.ttl:
                self.flag("stale-start", op.ticket, f"{op.agent} started its command on"
                          f" {op.tag[:12]} {op.start - start - self.h.ttl:.2f}s after the"
                          " claim's lease ran out")

    def beliefs(self) -> list[Belief]:
        found = []
        for op in self.h.ops:
            if op.op != "claim" or op.outcome != "ok" or not op.tag or op.end is None:
                continue
            ack, tag = op.end, op.tag
            ends = [t for t in self.kills.get(op.who, []) if t >= ack]
            for other in self.by_tag.get(tag, ()):
                if other.proc != op.proc or other.start < ack:
                    continue
                if other.op == "release":
                    ends.append(other.start)
                if other.op == "run":
                    ends.append(other.end or INF)
                    fences = [t["t"] for t in other.tries if "fence" in t]
                    if fences:
                        ends.append(self._learnt(op.proc, tag, fences[0]))
            if not ends:  # a process that claimed and ended without running anything
                ends.append(self.last_line[op.proc])
            found.append(Belief(op.agent, op.proc, op.ticket, tag, ack, max(ack, min(ends)),
                                op.fields.get("at", op.start), op.who))
        return found

    def _learnt(self, proc: str, tag: str, fence: float) -> float:
        """The end of the heartbeat call that told the runner it lost (it fences right after)."""
        calls = [o.end for o in self.by_tag.get(tag, ()) if o.op == "heartbeat" and o.proc == proc
                 and o.end is not None and o.end <= fence]
        return max(calls) if calls else fence

    def stopped_between(self, agent: str, start: float, end: float) -> float:
        return sum(max(0.0, min(b, end) - max(a, start)) for a, b in self.stopped.get(agent, ()))

    def gaps(self, tag: str, at: float = -INF) -> list[tuple[Loss, float]]:
        """When the claim `tag`, as it stood on the remote at `at`, was not held: (loss, back).

        Counted from the last time the server set the tag at or before `at`
        (a claim push retried with the same tag can set it again). A claim is
        lost when a note that ends it lands (a reap, a release: for good) or
        when it leaves its claim ref (only a plain-git change the soak
        injected does that). A claim that a foreign push removed can come back
        with the same tag (a stale clone's `git push --tags`): `back` is when
        the server set it again as the ticket's newest claim, INF when it
        never did or the loss was for good.
        """
        changes = self.ref_changes.get(tag, [])
        since = max((c.t for c in changes if c.new == tag and c.t <= at), default=-INF)
        ticket = next((self.ticket_of(c.ref) for c in changes), "")
        events: list[tuple[float, int, Loss | None]] = []  # (time, order, loss or None: set)
        for change in changes:
            if change.t < since:
                continue
            if change.old == tag:
                fault = self.injected.get(id(change))
                how = {"foreign-delete": "deleted by a foreign push",
                       "foreign-replace": "replaced by a foreign push",
                       "stale-push": "overwritten by a stale push"}.get(
                           fault.kind if fault else "", "removed")
                events.append((change.t, 1, Loss(change.t, how, injected=fault is not None)))
            elif change.new == tag and change.t > since \
                    and self.newest_value(ticket, change.t) == tag:
                events.append((change.t, 0, None))  # back, as the newest claim: it counts again
        for op in self.by_tag.get(tag, ()):
            if op.op not in ("release", "reap"):
                continue
            for commit in op.commits():
                if self.note_landed.get(commit, -INF) >= since:
                    how = "reaped" if op.op == "reap" else \
                        "released (forced)" if op.fields.get("force") else "released"
                    events.append((self.note_landed[commit], 2,
                                   Loss(self.note_landed[commit], how, op, final=True)))
        found: list[tuple[Loss, float]] = []
        open_loss: Loss | None = None
        for t, _, loss in sorted(events, key=lambda e: (e[0], e[1])):
            if loss is None:  # set again
                if open_loss is not None and not open_loss.final:
                    found.append((open_loss, t))
                    open_loss = None
            elif open_loss is None:
                open_loss = loss
            elif loss.final:
                open_loss.final = True  # an end recorded meanwhile: it will not come back
        if open_loss is not None:
            found.append((open_loss, INF))
        return found

    def lost(self, tag: str, at: float = -INF) -> Loss | None:
        """The first loss of `tag` after it was last set at or before `at` (see `gaps`)."""
        found = self.gaps(tag, at)
        return found[0][0] if found else None

    def knew_by(self, proc: str, who: str, tag: str, loss: float, until: float,
                back: float = INF) -> tuple[float, str] | None:
        """By when the holder `proc` of `tag` must have known that the claim was lost at `loss`.

        `run` beats every interval; a beat that reaches the remote after the
        loss is refused (the notes moved, or the guard on the claim ref
        failed), and `run` stops the command's whole tree at once. So the
        holder must know by the earliest of:
        - the end of a heartbeat call, in flight at the loss or started after
          it, that was refused;
        - its run's giving up (the remote unreachable for most of the TTL);
        - the moment a beat was due and none had started: one interval after
          the loss or after the end of the previous call (whichever is later),
          not counting time the loop was frozen, plus SLACK.
        Calls that got no answer (a cut, a refused connection) tell nothing;
        the next one is due one interval later at most. None when the claim
        came back (at `back`) before the holder could know: it holds again.
        """
        interval = self.h.interval
        best = (INF, "")
        fences = [t["t"] for o in self.by_tag.get(tag, ()) if o.op == "run" and o.proc == proc
                  for t in o.tries if "fence" in t and loss <= t["t"] < back]
        if fences:
            best = (min(fences), "its run gave the claim up")
        calls = sorted((o for o in self.by_tag.get(tag, ()) if o.op == "heartbeat"
                        and o.proc == proc and o.end is not None), key=lambda o: o.start)
        t = loss
        for call in calls:
            assert call.end is not None
            if call.end <= loss:
                continue
            if call.start >= back:
                break
            if call.start < loss:  # in flight when the claim was lost
                if call.outcome == "failed":
                    return min(best, (call.end, "the heartbeat in flight was refused"))
                t = max(t, call.end)
                continue
            due = t + interval + self.stopped_between(who, t, call.start) + SLACK
            if call.start > due:
                return min(best, (due, "a heartbeat was due"))
            if call.outcome == "failed":
                return min(best, (call.end, "its first heartbeat after the loss was refused"))
            t = call.end
        due = t + interval + self.stopped_between(who, t, max(t, min(until, back))) + SLACK
        if due >= back and best[0] >= back:
            return None
        return min(best, (due, "a heartbeat was due"))

    def check_overlaps(self, beliefs: list[Belief]) -> None:
        """The earlier holder may overlap the next only until it could have known it lost.

        That point is the end of its first heartbeat call that ended after the
        next claim was acknowledged; with no such call, its lease end (last
        landed beat + TTL) pushed back by the time it spent frozen. A claim
        taken away by a plain-git change the soak injected (a holder cut off
        from the remote cannot hear of it) is judged by `knew_by` instead.
        """
        self.overlaps: list[float] = []
        by_ticket: dict[str, list[Belief]] = defaultdict(list)
        for belief in beliefs:
            by_ticket[belief.ticket].append(belief)
        for ticket, held in by_ticket.items():
            held.sort(key=lambda b: b.ack)
            for i, a in enumerate(held):
                for b in held[i + 1:]:
                    if a.end <= b.ack:
                        continue
                    calls = sorted(o.end for o in self.by_tag.get(a.tag, ())
                                   if o.op == "heartbeat" and o.proc == a.proc and o.end is not None
                                   and o.end > b.ack)
                    gap = next(((g, back) for g, back in self.gaps(a.tag, a.ack)
                                if g.injected and g.t <= b.ack), None)
                    if gap is not None:
                        knew = self.knew_by(a.proc, a.who, a.tag, gap[0].t, a.end, gap[1])
                        if knew is None:
                            continue  # its claim came back before it could know: it holds
                        bound, why = knew
                        why = f"{why} (its claim was {gap[0].how})"
                    elif calls:
                        bound, why = calls[0], "its first heartbeat after that ended"
                    else:
                        start = self.lease_start(a.tag) or a.lease_start
                        frozen = self.stopped_between(a.who, start, a.end)
                        bound = start + self.h.ttl + frozen
                        why = f"its lease ran out (frozen {frozen:.1f}s)"
                    awake = a.end - b.ack - self.stopped_between(a.who, b.ack, a.end)
                    self.overlaps.append(awake)
                    if a.end > bound + 1e-6:
                        self.flag("double-claim", ticket,
                                  f"{a.agent} still believed it held {a.tag[:12]} at"
                                  f" {a.end:.3f}, {a.end - b.ack:.2f}s after {b.agent}'s claim"
                                  f" {b.tag[:12]} was acknowledged and {a.end - bound:.2f}s"
                                  f" after {why}")

    def check_lost_claims(self) -> None:
        """A claim ref is never deleted or rewritten, but by an injected foreign change; every
        note that ends a claim was written by a release, a reap or a reopening."""
        for change in self.h.changes:
            if change.old is None or id(change) in self.injected \
                    or claim_of_ref(change.ref, self.prefix) is None:
                continue
            ticket = self.ticket_of(change.ref)
            how = "deleted" if change.new is None else f"replaced by {change.new[:12]}"
            kind = "lost-claim" if self._is_claim(change.old) else "unrecorded"
            self.flag(kind, ticket, f"{change.ref} held {change.old[:12]} and was {how}, but"
                      " claim refs are only ever created (no injected change did it)")
        writers = {"released": "release", "reaped": "reap", "reopened": "reopen"}
        for ticket, notes in self.h.notes.items():
            for note in notes:
                if note.event not in writers:
                    continue
                decider = self.by_commit.get(note.commit)
                if decider is None or decider.op != writers[note.event]:
                    by = f"a {decider.op}" if decider else "no operation"
                    self.flag("lost-claim", ticket, f"claim {note.target[:12]} was ended by a"
                              f" {note.event} that {by} recorded")

    def check_stuck(self) -> None:
        """Every ticket's newest claim ended after the run (or records an outcome)."""
        for ticket, (value, state) in self.h.final.items():
            if state == "held":
                self.flag("stuck", ticket, f"claim {value[:12]} is still held after the run and"
                          " the final reap")

    # ------------------------------------------------------------------
    # the workers

    def worker_claim(self, worker: Worker) -> tuple[Op | None, str | None, str | None]:
        """The run operation that started `worker`, its tool process and its claim tag.

        The run op names the command's pid (the agent script), and the worker
        the pid of the script that started it; the loop and the time keep
        reused pids apart. Without a run op (its process died before writing
        it), the claim the loop's tool process won during that run.
        """
        best: Op | None = None
        for op in self.run_ops.get((worker.loop, worker.script), ()):
            if op.start <= worker.start + 5.0 and (best is None or op.start > best.start):
                best = op
        if best is not None:
            return best, best.proc, best.tag
        run = self.h.runs.get(worker.run)
        if run is not None:
            for op in self.h.ops:
                if op.who == worker.loop and op.op == "claim" and op.outcome == "ok" \
                        and op.ticket == worker.ticket and run.spawn <= op.start \
                        and op.start <= (run.exit or INF):
                    return None, op.proc, op.tag
        return None, None, None

    def check_workers(self) -> None:
        """No two workers on one ticket at once; no worker outlives its run or a signal to it."""
        self.run_ops: dict[tuple[str, int | None], list[Op]] = defaultdict(list)
        for op in self.h.ops:
            if op.op == "run":
                self.run_ops[(op.who, op.fields.get("child"))].append(op)
        self.held_by = {id(w): self.worker_claim(w) for w in self.h.workers}
        self.unheld = {id(w): self.unheld_times(w) for w in self.h.workers}
        self.excused: list[float] = []  # overlaps within the bound
        self.stop_after_loss: list[tuple[str, float]] = []  # (how, seconds)
        self.signal_stops: dict[str, list[float]] = defaultdict(list)
        for worker in self.h.workers:
            self.check_orphan(worker)
        by_ticket: dict[str, list[Worker]] = defaultdict(list)
        for worker in self.h.workers:
            by_ticket[worker.ticket].append(worker)
        self.holding: set[int] = set()  # workers found in a double hold
        for ticket, workers in by_ticket.items():
            workers.sort(key=lambda w: (w.start, w.pid))
            for i, a in enumerate(workers):
                for b in workers[i + 1:]:
                    if b.start >= a.last or a.run == b.run:
                        continue
                    self.judge_overlap(ticket, a, b)
        for worker in self.h.workers:
            for gap in self.unheld[id(worker)]:
                if gap.back == INF and not gap.own:
                    frozen = self.stopped_between(worker.loop, gap.loss.t, worker.last)
                    self.stop_after_loss.append((gap.loss.how,
                                                 worker.last - gap.loss.t - frozen))
                if id(worker) not in self.holding and gap.late(worker) is not None:
                    self.flag("unheld-work", worker.ticket, f"{worker.name} of {worker.loop}"
                              f" worked till {worker.last:.3f}, but {gap.story(worker)}")
                    break

    def unheld_times(self, worker: Worker) -> list[Gap]:
        """The times the worker's claim was not held while it worked, each with its bound."""
        _, proc, tag = self.held_by[id(worker)]
        if tag is None or proc is None:
            return []
        found = []
        for loss, back in self.gaps(tag, worker.start):
            if loss.t >= worker.last:
                break
            if loss.op is not None and loss.op.proc == proc and not loss.op.fields.get("force"):
                found.append(Gap(tag, worker.loop, loss, back, loss.t, loss.t,
                                 "its own release", own=True))
                continue
            knew = self.knew_by(proc, worker.loop, tag, loss.t, worker.last, back)
            if knew is None:  # the claim came back before its holder could know: never late
                found.append(Gap(tag, worker.loop, loss, back, INF, INF, "it came back"))
                continue
            found.append(Gap(tag, worker.loop, loss, back, knew[0],
                             knew[0] + self.h.grace + SLACK, knew[1]))
        return found

    def judge_overlap(self, ticket: str, a: Worker, b: Worker) -> None:
        """a started first and still worked when b started: allowed only while one of them
        was not holding its claim and within its bound to stop."""
        _, _, tag_a = self.held_by[id(a)]
        _, _, tag_b = self.held_by[id(b)]
        start, end = b.start, min(a.last, b.last)
        both = (f"{a.name} of {a.loop} and {b.name} of {b.loop} both worked on {ticket} from"
                f" {start:.3f} to {end:.3f} ({end - start:.2f}s)")
        if tag_a is None or tag_b is None or tag_a == tag_b:
            self.holding.update((id(a), id(b)))
            self.flag("double-hold", ticket, f"{both}, under claims {str(tag_a)[:12]} and"
                      f" {str(tag_b)[:12]}")
            return
        for worker in (a, b):
            for gap in self.unheld[id(worker)]:
                late = gap.late(worker)
                if late is not None and late[0] < end and late[1] > start:
                    self.holding.add(id(worker))
                    self.flag("double-hold", ticket, f"{both}: {gap.story(worker)}")
                    return
        held_a = _minus((a.start, a.last), self.unheld[id(a)])
        held_b = _minus((b.start, b.last), self.unheld[id(b)])
        for x0, x1 in held_a:
            for y0, y1 in held_b:
                lo, hi = max(x0, y0, start), min(x1, y1, end)
                if lo < hi:
                    self.holding.update((id(a), id(b)))
                    self.flag("double-hold", ticket, f"{both}: from {lo:.3f} to {hi:.3f} the"
                              f" server held neither's claim as lost ({tag_a[:12]},"
                              f" {tag_b[:12]})")
                    return
        self.excused.append(end - start)

    def check_orphan(self, worker: Worker) -> None:
        """A worker ends with its run: before the run reports the command's tree gone, and
        within the grace period (plus SLACK) of a signal to the run or of the run's exit."""
        run_op, _, _ = self.held_by[id(worker)]
        grace = self.h.grace
        bounds: list[tuple[float, str, Fault | None]] = []
        if run_op is not None and not run_op.killed and run_op.end is not None:
            bounds.append((run_op.end, f"its run reported at {run_op.end:.3f} that every process"
                                       " of the command had ended", None))
        for fault in self.run_faults.get(worker.run, ()):
            if fault.t > worker.last:
                continue
            since = max(fault.t, worker.start)
            self.signal_stops[fault.kind].append(worker.last - since)
            bounds.append((since + grace + SLACK, f"{fault.kind} at {fault.t:.3f}: gone by"
                                                  f" grace {grace:g}s + {SLACK:g}s", fault))
        record = self.h.runs.get(worker.run)
        if record is not None and record.exit is not None:
            bounds.append((record.exit + grace + SLACK, f"its run exited at {record.exit:.3f}:"
                                                        f" gone by grace {grace:g}s + {SLACK:g}s",
                           None))
        late = [b for b in bounds if worker.last > b[0] + 1e-3]
        if not late:
            return
        bound, why, fault = min(late, key=lambda b: b[0])
        last = worker.stop or "working (no stop)"
        if fault is not None and fault.t < worker.start:
            self.flag("lost-signal", worker.ticket, f"the run {worker.run} of {worker.loop} got"
                      f" {fault.kind} at {fault.t:.3f}, then started {worker.name} at"
                      f" {worker.start:.3f}, which worked on till {worker.last:.3f}"
                      f" ({worker.last - bound:.2f}s past grace {grace:g}s + {SLACK:g}s;"
                      f" its last line: {last}, signals it got: {worker.signals or 'none'}):"
                      " the run never acted on the signal")
            return
        self.flag("orphan", worker.ticket, f"{worker.name} of {worker.loop} logged at"
                  f" {worker.last:.3f}, {worker.last - bound:.2f}s after it should have been"
                  f" gone ({why}); its last line: {last}")

    # ------------------------------------------------------------------

    def figures(self, beliefs: list[Belief]) -> dict[str, Any]:
        ops = self.h.ops
        claims = [op for op in ops if op.op == "claim"]
        contended = 0
        by_ticket: dict[str, list[Op]] = defaultdict(list)
        for op in claims:
            by_ticket[op.ticket].append(op)
        for group in by_ticket.values():
            group.sort(key=lambda o: o.start)
            for i, op in enumerate(group):
                near = group[max(0, i - 20):i + 20]
                if any(o.who != op.who and o.start < (op.end or INF)
                       and op.start < (o.end or INF) for o in near if o is not op):
                    contended += 1
        ambiguous: dict[str, dict[str, int]] = defaultdict(lambda: defaultdict(int))
        for op in ops:
            if op.outcome != "unknown" or op.op == "run":
                continue
            if op.op == "claim":
                applied = op.tag in self.landed_claims
            else:
                applied = any(c in self.landed_commits for c in op.commits())
            how = "killed" if op.killed else "error"
            ambiguous[op.op][f"{how}, {'applied' if applied else 'not applied'}"] += 1
        faults: dict[str, int] = defaultdict(int)
        for fault in self.h.faults:
            if fault.kind not in ("stop", "stale-fetch", "repair", "reaper-clock"):
                faults[fault.kind] += 1
        runs = [op for op in ops if op.op == "run"]
        fenced: dict[str, int] = defaultdict(int)
        for op in runs:
            fences = [t["fence"] for t in op.tries if "fence" in t]
            if fences:
                fenced["unreachable" if "unreachable" in fences[0] else "refused"] += 1
        latencies = self.crash_to_reap()
        created = [found[1] for change in self.h.changes
                   if change.old is None and change.new is not None
                   and id(change) not in self.injected
                   and (found := claim_of_ref(change.ref, self.prefix)) is not None]
        kinds = defaultdict(int)
        for v in self.violations:
            kinds[v.kind] += 1
        return {
            "operations": len(ops),
            "claims": {"pushes": len(claims), "won": sum(o.outcome == "ok" for o in claims),
                       "contended": contended},
            "heartbeats": sum(o.op == "heartbeat" for o in ops),
            "releases": sum(o.op == "release" and o.outcome == "ok" for o in ops),
            "reaps": sum(o.op == "reap" and o.outcome == "ok" for o in ops),
            "runs": len(runs),
            "epochs": {"claim refs created": len(created),
                       "tickets claimed": len(self.epoch_refs),
                       "highest epoch": max(created, default=0)},
            "runs_fenced": dict(fenced),
            "holders_overlapping": len(self.overlaps),
            "longest_overlap_s": round(max(self.overlaps), 3) if self.overlaps else 0.0,
            "faults": dict(faults),
            "ambiguous": {k: dict(v) for k, v in ambiguous.items()},
            "violations": dict(kinds),
            "double_claims": kinds.get("double-claim", 0),
            "double_holds": kinds.get("double-hold", 0),
            "orphans": kinds.get("orphan", 0),
            "lost_signals": kinds.get("lost-signal", 0),
            "unheld_work": kinds.get("unheld-work", 0),
            "claims_lost": kinds.get("lost-claim", 0),
            "stuck": kinds.get("stuck", 0),
            "crash_to_reap_s": latencies,
            "setups": self.setups(),
        }

    def setups(self) -> dict[str, Any]:
        """Counts per set-up: clones and loops, workers, signals, clocks, foreign changes."""
        loops: dict[str, set[str]] = defaultdict(set)
        names: dict[str, str] = {}
        for run in self.h.runs.values():
            loops[run.clone].add(run.loop)
            names[run.loop] = run.agent
        shared = [c for c, ls in loops.items() if len(ls) > 1]
        workers: dict[str, dict[str, int]] = defaultdict(lambda: defaultdict(int))
        for w in self.h.workers:
            counts = workers[w.mode]
            counts["started"] += 1
            counts["stopped by a signal"] += bool(w.stop and w.stop.startswith("SIG"))
            counts["no stop line (killed)"] += w.stop is None
            counts["signalled twice"] += len(w.signals) > 1
        by_kind: dict[str, list[Fault]] = defaultdict(list)
        for fault in self.h.faults:
            by_kind[fault.kind].append(fault)
        injected_changes = defaultdict(int)
        overwritten = 0
        for change in self.h.changes:
            fault = self.injected.get(id(change))
            if fault is None:
                continue
            injected_changes[fault.kind] += 1
            if change.old is not None and self._is_claim(change.old) \
                    and (self.lost(change.old, change.t - 1e-6) or Loss(INF, "")).t >= change.t:
                overwritten += 1
        stops: dict[str, list[float]] = defaultdict(list)
        for how, seconds in self.stop_after_loss:
            stops[how].append(seconds)
        return {
            "clones": {"clones": len(loops), "loops": len(names),
                       "clones with several loops": len(shared),
                       "loops sharing a clone under the default name":
                           sum(1 for c in shared for lp in loops[c] if names[lp] == "default"),
                       "loops sharing a clone under their own names":
                           sum(1 for c in shared for lp in loops[c] if names[lp] != "default")},
            "workers": {mode: dict(counts) for mode, counts in sorted(workers.items())},
            "signals": {kind: {"count": len(by_kind[kind]),
                               "worker last line after it, max s":
                                   round(max(self.signal_stops[kind], default=0.0), 3)}
                        for kind in SIGNALS if kind != "stop" and by_kind[kind]},
            "reaper_clock": {
                "back": sum(f.detail.get("offset", 0) < 0 for f in by_kind["reaper-clock"]),
                "forward": sum(f.detail.get("offset", 0) > 0 for f in by_kind["reaper-clock"]),
                "claims reaped while stepped": sum(f.detail.get("reaped", 0)
                                                   for f in by_kind["reaper-clock"])},
            "foreign": {"deletes": len(by_kind["foreign-delete"]),
                        "replaces": len(by_kind["foreign-replace"]),
                        "claim ref changes": injected_changes["foreign-delete"]
                        + injected_changes["foreign-replace"]},
            "stale": {"fetches": len(by_kind["stale-fetch"]),
                      "pushes": sum(not f.detail.get("force") for f in by_kind["stale-push"]),
                      "forced pushes": sum(bool(f.detail.get("force"))
                                           for f in by_kind["stale-push"]),
                      "claim ref changes": injected_changes["stale-push"]},
            "live claims taken by a foreign or stale push": overwritten,
            "repairs": len(by_kind["repair"]),
            "holders whose claim was lost while their worker worked":
                {how: {"count": len(s), "worker stopped after the loss, max s (not frozen)":
                       round(max(s), 3)} for how, s in sorted(stops.items())},
            "overlaps within bounds": {
                "count": len(self.excused),
                "longest s": round(max(self.excused, default=0.0), 3)},
        }

    def _ended_before(self, tag: str, t: float) -> bool:
        """A release or reap of `tag` was decided before `t` (the claim was no longer held)."""
        return any(op.op in ("release", "reap") and op.end is not None and op.end < t
                   and any(c in self.landed_commits for c in op.commits())
                   for op in self.by_tag.get(tag, ()))

    def crash_to_reap(self) -> dict[str, Any]:
        """For each claim its agent held when killed: from the kill to the reap that freed it."""
        reap_of = {}
        for notes in self.h.notes.values():
            for note in notes:
                if note.event == "reaped" and note.commit in self.by_commit:
                    reaper = self.by_commit[note.commit]
                    reap_of[note.target] = reaper.end
        samples = []
        for fault in self.h.faults:
            if fault.kind not in ("kill", "kill-run", "kill-group"):
                continue
            held = {op.tag for op in ops_of(self.h.ops, fault.agent)
                    if op.op == "claim" and op.tag in self.landed_claims and op.start <= fault.t}
            for tag in held:
                landed, removed = self.landed_claims[tag], self.removed.get(tag)
                reaped = reap_of.get(tag)
                if landed <= fault.t and (removed is None or removed.t > fault.t) \
                        and reaped is not None and reaped > fault.t \
                        and not self._ended_before(tag, fault.t):
                    samples.append(reaped - fault.t)
        if not samples:
            return {"count": 0}
        return {"count": len(samples), "min": round(min(samples), 1),
                "median": round(statistics.median(samples), 1), "max": round(max(samples), 1)}


def ops_of(ops: list[Op], agent: str | None) -> list[Op]:
    return [op for op in ops if op.who == agent]


def check(history: History) -> Report:
    return Checker(history).check()
