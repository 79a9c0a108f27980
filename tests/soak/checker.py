"""The checker: replay a soak's history against a model of one lock per ticket.

Inputs, all recorded while the soak ran (see docs/reliability.md, "The soak"):
- the tools' operation log (GIT_CLAIM_OPLOG, `git_claim/oplog.py`): every
  claim push, heartbeat, release, reap and run, with start, end and outcome;
  a start without an end is an operation whose process was killed;
- the faults the soak injected (kills, pauses, cut connections), with times;
- the server's own log of every ref update it committed (a
  `reference-transaction` hook), and at the end the notes history of each
  ticket and the claim refs left.

The server's log is the truth about what happened; the operation log is what
each agent believed. The checker fails on:
- a double claim: two agents that both believed they held a ticket past the
  last point the earlier one could have known it lost it; a reap decided
  before the claim's lease (its last landed beat + TTL) ran out; a claim ref
  replaced by another claim; a beat, release or reap accepted on a claim that
  had already ended;
- a lost claim: an acknowledged claim that never reached the remote, or left
  it without a recorded release or reap; an acknowledged beat, release or reap
  that the remote does not have; a state change nobody recorded;
- a stuck ticket: a claim still held after the run, once every agent stopped
  and a final reap ran.
"""

from __future__ import annotations

import json
import statistics
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable

INF = float("inf")
ZERO = "0" * 40
CLAIM_PREFIX = "refs/claims/"
NOTES_PREFIX = "refs/notes/claims/"


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

    @property
    def proc(self) -> str:
        """The process that wrote it (its pid and a token: pids are reused)."""
        return self.id.rsplit(".", 1)[0]

    @property
    def tag(self) -> str | None:
        return self.ended.get("tag") or self.fields.get("tag")

    def commits(self) -> list[str]:
        return [t["commit"] for t in self.tries if "commit" in t]


@dataclass
class Fault:
    kind: str
    t: float
    agent: str | None = None
    until: float | None = None  # pauses: when the agent was resumed
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
    event: str  # heartbeat, released, reaped


@dataclass
class History:
    ops: list[Op]
    faults: list[Fault]
    changes: list[RefChange]  # the server's committed ref updates, in log order
    notes: dict[str, list[Note]]  # per ticket, oldest first
    final: dict[str, tuple[str, str]]  # ticket -> (claim ref value, its Claim-State)
    ttl: float
    end: float  # when the soak stopped its agents


@dataclass
class Violation:
    kind: str  # double-claim, lost-claim, stuck, unrecorded
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


def load_ops(lines: Iterable[str]) -> list[Op]:
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
                            record.pop("pid"), record.pop("t"), fields=record)
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


def load(folder: Path, *, ttl: float, end: float) -> History:
    """A history as the soak leaves it in `folder` (see tests/soak/driver.py)."""
    state = json.loads((folder / "remote.json").read_text())
    return History(
        ops=load_ops((folder / "oplog.jsonl").read_text().splitlines()),
        faults=load_faults((folder / "faults.jsonl").read_text().splitlines()),
        changes=load_changes((folder / "server.log").read_text().splitlines()),
        notes={t: [Note(**n) for n in notes] for t, notes in state["notes"].items()},
        final={t: (v[0], v[1]) for t, v in state["final"].items()}, ttl=ttl, end=end)


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


class Checker:
    def __init__(self, history: History) -> None:
        self.h = history
        self.violations: list[Violation] = []
        self.kills: dict[str, list[float]] = defaultdict(list)
        self.stopped: dict[str, list[tuple[float, float]]] = defaultdict(list)
        for fault in history.faults:
            if fault.kind in ("kill", "stop") and fault.agent:
                self.kills[fault.agent].append(fault.t)
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
        self.landed_claims, self.removed = self._claim_ref_history()
        self.landed_commits = {n.commit for notes in history.notes.values() for n in notes}

    def flag(self, kind: str, ticket: str, message: str) -> None:
        self.violations.append(Violation(kind, ticket, message))

    # ------------------------------------------------------------------

    def _close_killed(self) -> None:
        """An operation with no end was cut short by the kill of its agent: it ends then."""
        for op in self.h.ops:
            if op.end is None:
                after = [t for t in self.kills.get(op.agent, []) if t >= op.start]
                op.end = min(after) if after else self.h.end
                op.killed = True
                op.outcome = "unknown"

    def _claim_ref_history(self) -> tuple[dict[str, float], dict[str, RefChange]]:
        """Which claim tags the server ever set, when, and the change that removed each."""
        landed: dict[str, float] = {}
        removed: dict[str, RefChange] = {}
        for change in self.h.changes:
            if not change.ref.startswith(CLAIM_PREFIX):
                continue
            ticket = change.ref[len(CLAIM_PREFIX):]
            if change.new is not None:
                landed.setdefault(change.new, change.t)
            if change.old is not None:
                removed[change.old] = change
            if change.old is not None and change.new is not None and self._is_claim(change.old) \
                    and self._is_claim(change.new):
                self.flag("double-claim", ticket, f"the claim ref went from claim {change.old[:12]}"
                          f" straight to claim {change.new[:12]}")
        return landed, removed

    def _is_claim(self, oid: str) -> bool:
        return any(op.op == "claim" for op in self.by_tag.get(oid, ()))

    # ------------------------------------------------------------------

    def check(self) -> Report:
        self.check_writes_recorded()
        self.check_notes_model()
        beliefs = self.beliefs()
        self.check_leases()
        self.check_starts()
        self.check_overlaps(beliefs)
        self.check_lost_claims()
        self.check_stuck()
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
            if not change.ref.startswith(CLAIM_PREFIX) or change.new is None:
                continue
            outcome = change.old is not None and self._is_claim(change.old)  # done, blocked
            if not self._is_claim(change.new) and not outcome:
                self.flag("unrecorded", change.ref[len(CLAIM_PREFIX):], f"the claim ref was set"
                          f" to {change.new[:12]}, which no claim recorded")

    def check_notes_model(self) -> None:
        """Per claim: beats, then at most one end (release or reap), then nothing."""
        for ticket, notes in self.h.notes.items():
            ended: dict[str, str] = {}
            for note in notes:
                if note.target in ended:
                    self.flag("double-claim", ticket, f"a {note.event} of {note.target[:12]} was"
                              f" accepted after it was {ended[note.target]}")
                if note.event in ("released", "reaped"):
                    ended.setdefault(note.target, note.event)

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
            ends = [t for t in self.kills.get(op.agent, []) if t >= ack]
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
                                op.fields.get("at", op.start)))
        return found

    def _learnt(self, proc: str, tag: str, fence: float) -> float:
        """The end of the heartbeat call that told the runner it lost (it fences right after)."""
        calls = [o.end for o in self.by_tag.get(tag, ()) if o.op == "heartbeat" and o.proc == proc
                 and o.end is not None and o.end <= fence]
        return max(calls) if calls else fence

    def stopped_between(self, agent: str, start: float, end: float) -> float:
        return sum(max(0.0, min(b, end) - max(a, start)) for a, b in self.stopped.get(agent, ()))

    def check_overlaps(self, beliefs: list[Belief]) -> None:
        """The earlier holder may overlap the next only until it could have known it lost.

        That point is the end of its first heartbeat call that ended after the
        next claim was acknowledged; with no such call, its lease end (last
        landed beat + TTL) pushed back by the time it spent frozen.
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
                    if calls:
                        bound, why = calls[0], "its first heartbeat after that ended"
                    else:
                        start = self.lease_start(a.tag) or a.lease_start
                        frozen = self.stopped_between(a.agent, start, a.end)
                        bound = start + self.h.ttl + frozen
                        why = f"its lease ran out (frozen {frozen:.1f}s)"
                    awake = a.end - b.ack - self.stopped_between(a.agent, b.ack, a.end)
                    self.overlaps.append(awake)
                    if a.end > bound + 1e-6:
                        self.flag("double-claim", ticket,
                                  f"{a.agent} still believed it held {a.tag[:12]} at"
                                  f" {a.end:.3f}, {a.end - b.ack:.2f}s after {b.agent}'s claim"
                                  f" {b.tag[:12]} was acknowledged and {a.end - bound:.2f}s"
                                  f" after {why}")

    def check_lost_claims(self) -> None:
        """A claim leaves the remote only after a recorded release or reap decided it."""
        ends = {n.target: n for notes in self.h.notes.values() for n in notes
                if n.event in ("released", "reaped")}
        for tag, change in self.removed.items():
            if not self._is_claim(tag):
                continue
            ticket = change.ref[len(CLAIM_PREFIX):]
            note = ends.get(tag)
            if note is None:
                self.flag("lost-claim", ticket, f"claim {tag[:12]} left the remote with no"
                          " release or reap recorded")
                continue
            decider = self.by_commit.get(note.commit)
            if decider is None or decider.op not in ("release", "reap"):
                self.flag("lost-claim", ticket, f"claim {tag[:12]} was ended by a {note.event}"
                          " that no release or reap recorded")

    def check_stuck(self) -> None:
        for ticket, (value, state) in self.h.final.items():
            if state == "held":
                self.flag("stuck", ticket, f"claim {value[:12]} is still held after the run and"
                          " the final reap")

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
                if any(o.agent != op.agent and o.start < (op.end or INF)
                       and op.start < (o.end or INF) for o in near if o is not op):
                    contended += 1
        ambiguous: dict[str, dict[str, int]] = defaultdict(lambda: defaultdict(int))
        for op in ops:
            if op.outcome != "unknown" or op.op == "run":
                continue
            if op.op == "claim":
                applied = op.tag in self.landed_claims
            elif op.op == "reopen":
                applied = op.tag in self.removed
            else:
                applied = any(c in self.landed_commits for c in op.commits())
            how = "killed" if op.killed else "error"
            ambiguous[op.op][f"{how}, {'applied' if applied else 'not applied'}"] += 1
        faults: dict[str, int] = defaultdict(int)
        for fault in self.h.faults:
            if fault.kind != "stop":
                faults[fault.kind] += 1
        runs = [op for op in ops if op.op == "run"]
        fenced: dict[str, int] = defaultdict(int)
        for op in runs:
            fences = [t["fence"] for t in op.tries if "fence" in t]
            if fences:
                fenced["unreachable" if "unreachable" in fences[0] else "refused"] += 1
        latencies = self.crash_to_reap()
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
            "runs_fenced": dict(fenced),
            "holders_overlapping": len(self.overlaps),
            "longest_overlap_s": round(max(self.overlaps), 3) if self.overlaps else 0.0,
            "faults": dict(faults),
            "ambiguous": {k: dict(v) for k, v in ambiguous.items()},
            "violations": dict(kinds),
            "double_claims": kinds.get("double-claim", 0),
            "claims_lost": kinds.get("lost-claim", 0),
            "stuck": kinds.get("stuck", 0),
            "crash_to_reap_s": latencies,
        }

    def _ended_before(self, tag: str, t: float) -> bool:
        """A release or reap of `tag` was decided before `t` (the claim was no longer held)."""
        return any(op.op in ("release", "reap") and op.end is not None and op.end < t
                   and any(c in self.landed_commits for c in op.commits())
                   for op in self.by_tag.get(tag, ()))

    def crash_to_reap(self) -> dict[str, Any]:
        """For each claim its agent held when killed: from the kill to the reap that freed it."""
        reap_of = {}
        for ticket, notes in self.h.notes.items():
            for note in notes:
                if note.event == "reaped" and note.commit in self.by_commit:
                    reaper = self.by_commit[note.commit]
                    reap_of[note.target] = reaper.end
        samples = []
        for fault in self.h.faults:
            if fault.kind != "kill":
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
    return [op for op in ops if op.agent == agent]


def check(history: History) -> Report:
    return Checker(history).check()
