"""Liveness: heartbeats, verification and the reaper, all through the notes ref.

Each ticket has its own notes ref (refs/notes/claims/<ticket>); the note on a
claim tag is that claim's latest event. A heartbeat, a release and a reap
are each a new notes commit pushed with a lease on the tip its writer read,
so of a beat and a reap racing, exactly one is accepted: a reaped owner's
next beat is refused, and a beat that landed makes the reaper's write fail.

Staleness (docs/protocol.md, "Clock skew"): a held claim is stale when
  - the reaper's clock says its last sign of life (last heartbeat, else the
    claim time) is older than TTL + max-skew (+1 s: records keep whole seconds), or
  - this reaper has itself seen the same claim and notes tip, unchanged, for
    at least TTL of its own clock (kept in the git dir between runs).
The first rule needs no memory and tolerates clocks that differ by up to
max-skew; the second needs no clock agreement at all, so a reaper that runs
every few seconds frees a dead claim within TTL plus one run interval.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Sequence

from . import oplog
from .claims import ClaimView, read_claim, read_claims
from .clock import now
from .errors import GitError, RefusedError
from .gateway.transport import Guard, RefUpdate, UpdateResult, UpdateStatus
from .lock import EMAIL_DOMAIN, MAX_ROUNDS, GuardBroken, find_mine, lost_message, swap
from .ownership import Ownership
from .reaper_memory import ReaperMemory
from .record import EVENT_HEARTBEAT, EVENT_REAPED, OUTCOME_STATES, STATE_HELD, LivenessRecord
from .safetext import clean
from .session import Session
from .testpoints import pause


def _mine(session: Session, ticket: str, oid: str | None = None) -> Ownership:
    mine = find_mine(session, ticket, oid)
    if mine is None:
        raise RefusedError(f"you hold no claim on {clean(ticket)} here")
    return mine


@dataclass(frozen=True)
class Beat:
    ticket: str
    seq: int
    time: float
    notes_tip: str


def heartbeat(session: Session, ticket: str, mine: Ownership | None = None) -> Beat:
    """Record that we are alive; RefusedError if the claim is no longer ours.

    `mine`: the claim to beat (`run` passes the one it supervises); by
    default, our record for the ticket in this git dir.
    """
    settings = session.settings
    mine = mine or _mine(session, ticket)
    with oplog.begin("heartbeat", ticket, agent=settings.agent, tag=mine.tag) as op:
        beat = _heartbeat(session, ticket, mine, op)
        op.end(oplog.OK, commit=beat.notes_tip)
        return beat


def _heartbeat(session: Session, ticket: str, mine: Ownership, op: oplog.Op) -> Beat:
    """One notes commit, leased on the notes tip and guarded by the claim ref.

    The lease catches every release and reap (they move the notes tip); the
    guard, checked in the same push, catches a claim ref that was deleted or
    replaced without our protocol (plain git, a stale clone's push), so a
    holder whose claim was replaced hears it at its next beat.
    """
    settings = session.settings
    tip = mine.notes_tip  # fast path: no read first; the push checks everything
    # A tip this clone no longer has (pruned by `git gc` since our last beat) is
    # read again from the remote, which brings its objects back.
    known = tip is not None and session.local.has(tip)
    for _ in range(MAX_ROUNDS):
        if not known:
            view = read_claim(session, ticket)
            if view.oid != mine.tag or not view.held:
                raise RefusedError(lost_message(session, view, mine))
            tip = view.notes_tip
        at = now()
        event = LivenessRecord(event=EVENT_HEARTBEAT, time=at, agent=settings.agent,
                               seq=mine.seq + 1, holder=mine.agent)
        commit = session.local.notes_commit(
            tip, mine.tag, event.to_text(), message=f"heartbeat {ticket} #{event.seq}",
            author=settings.agent, email=f"agent@{EMAIL_DOMAIN}", time=at)
        pause("heartbeat:before-push")
        op.step(commit=commit, at=oplog.wall(at))
        update = RefUpdate(settings.notes_ref(ticket), commit, tip, Guard(mine.ref, mine.tag))
        try:
            landed = swap(session, update) == commit
        except GuardBroken:
            raise RefusedError(lost_message(session, read_claim(session, ticket), mine))
        if landed:
            mine.notes_tip = commit
            mine.seq = event.seq
            session.store.put(mine)
            return Beat(ticket, event.seq, at, commit)
        known = False
    raise GitError(f"could not record a heartbeat for {ticket} after {MAX_ROUNDS} attempts")


def verify(session: Session, ticket: str) -> ClaimView:
    """Return the view if the remote claim is still ours, else RefusedError.

    One listing reads the claim ref and the notes ref together: the claim
    must be our tag, and no recorded release or reap may have ended it.
    """
    _mine(session, ticket)
    view = read_claim(session, ticket)
    mine = _mine(session, ticket, view.oid)
    if view.oid != mine.tag or not view.held:
        raise RefusedError(lost_message(session, view, mine))
    return view


# Why a stale claim was left in place although the reaper meant to free it:
# the reap is not done, and `git reap` says so with exit 5.
UNDONE_REFUSED = "refused"  # the remote refused the reap's note (a rule, a hook)
UNDONE_UNCHECKED = "unchecked"  # a skip check could not tell (open pull requests unknown)


@dataclass
class ReapEntry:
    ticket: str
    holder: str
    idle_seconds: float | None
    reason: str = ""
    undone: str = ""  # one of UNDONE_*: a stale claim that should have been freed and wasn't

    def as_dict(self) -> dict[str, Any]:
        found = {"ticket": self.ticket, "holder": self.holder,
                 "idle_seconds": None if self.idle_seconds is None else round(self.idle_seconds),
                 "reason": self.reason}
        if self.undone:
            found["undone"] = self.undone
        return found


@dataclass
class ReapReport:
    reaped: list[ReapEntry] = field(default_factory=list)
    live: list[ReapEntry] = field(default_factory=list)
    skipped: list[ReapEntry] = field(default_factory=list)
    lost_races: list[ReapEntry] = field(default_factory=list)  # a beat or release came first

    @property
    def undone(self) -> list[ReapEntry]:
        """Stale claims left in place for want of the remote's consent or of an answer."""
        return [entry for entry in self.skipped if entry.undone]


@dataclass(frozen=True)
class Skip:
    """A skip check's verdict: keep this stale claim.

    `sure` is False when the check could not tell (the tracker did not
    answer) and kept the claim to be safe: that reap is left undone.
    """

    reason: str
    sure: bool = True


# A check that may keep a stale claim (open pull requests, through the tracker).
SkipCheck = Callable[[ClaimView], Skip | None]


# Records keep whole seconds, rounded down: a beat written at 12:00:00.9 reads
# as 12:00:00. Its true age may be up to this much less than it looks.
RECORD_RESOLUTION = 1.0


def is_stale(view: ClaimView, *, ttl: float, max_skew: float, at: float,
             memory: ReaperMemory | None) -> tuple[bool, float | None]:
    """Rule 1 on the records' wall-clock times, read at `at` (the reaper's now());
    rule 2 on the memory's own clock, which never steps.

    `at` never enters rule 2: a wall clock stepped between two runs would
    count as time the claim stood unchanged.
    """
    age = view.age(at)
    seen_for = memory.unchanged_for(view) if memory is not None else None
    by_time = age is not None and age > ttl + max_skew + RECORD_RESOLUTION
    by_memory = seen_for is not None and seen_for >= ttl
    return by_time or by_memory, age


def reap(session: Session, *, ttl: float, max_skew: float, dry_run: bool = False,
         tickets: Sequence[str] | None = None, skip_checks: Sequence[SkipCheck] = (),
         progress: Callable[[int, int], None] | None = None) -> ReapReport:
    """Free stale claims. Round trips: one listing, one fetch, one push."""
    views = read_claims(session, list(tickets) if tickets else None, progress=progress)
    at = now()
    memory = ReaperMemory(session.location.common_dir / "git-claim" / "reaper-seen.json")
    report = ReapReport()
    to_reap: list[ClaimView] = []
    for view in views.values():
        record = view.record
        if record is None or record.state in OUTCOME_STATES:
            continue
        holder = record.agent
        if record.state != STATE_HELD:
            report.skipped.append(ReapEntry(view.ticket, holder, None,
                                            f"unreadable claim: {record.problem}"))
            continue
        stale, age = is_stale(view, ttl=ttl, max_skew=max_skew, at=at, memory=memory)
        if not stale:
            report.live.append(ReapEntry(view.ticket, holder, age))
            continue
        skip = next((r for r in (check(view) for check in skip_checks) if r), None)
        if skip is not None:
            report.skipped.append(ReapEntry(view.ticket, holder, age, skip.reason,
                                            "" if skip.sure else UNDONE_UNCHECKED))
            continue
        to_reap.append(view)
        report.reaped.append(ReapEntry(view.ticket, holder, age))
    if not tickets:
        memory.save()
    else:
        memory.updated = {**memory.seen, **memory.updated}
        memory.save()
    if dry_run:
        return report

    pause("reap:before-decide")
    decided, refused = _decide_reaps(session, to_reap, ttl=ttl, at=at)
    if refused:
        for entry in report.reaped:
            if entry.ticket in refused:
                entry.reason = f"the remote refused the reap: {refused[entry.ticket]}"
                entry.undone = UNDONE_REFUSED
                report.skipped.append(entry)
        report.reaped = [e for e in report.reaped if e.ticket not in refused]
    lost = {view.ticket for view in to_reap} - {view.ticket for view in decided} - set(refused)
    if lost:
        report.lost_races = [e for e in report.reaped if e.ticket in lost]
        report.reaped = [e for e in report.reaped if e.ticket not in lost]
    return report


def _decide_reaps(session: Session, views: list[ClaimView], *, ttl: float,
                  at: float) -> tuple[list[ClaimView], dict[str, str]]:
    """Write a reap note on each claim, leased on the tip judged stale; one push.

    Returns the claims decided, and the tickets whose note the remote refused
    for a reason other than a lost race (a hook, a protected ref, a server
    that cannot check connectivity), with the server's reason.
    """
    from dataclasses import replace

    settings = session.settings
    updates: list[RefUpdate] = []
    by_ref: dict[str, tuple[ClaimView, LivenessRecord, str]] = {}
    ops: dict[str, oplog.Op] = {}
    for view in views:
        assert view.oid is not None and view.record is not None
        event = LivenessRecord(event=EVENT_REAPED, time=at, agent=settings.agent,
                               seq=(view.note.seq if view.note else 0) + 1, ttl=ttl,
                               holder=view.record.agent)
        try:
            commit = session.local.notes_commit(
                view.notes_tip, view.oid, event.to_text(), message=f"reaped {view.ticket}",
                author=settings.agent, email=f"agent@{EMAIL_DOMAIN}", time=at)
        except GitError:
            continue  # a notes ref we cannot build on: never reap what we cannot record
        ref = settings.notes_ref(view.ticket)
        updates.append(RefUpdate(ref, commit, view.notes_tip, Guard(view.ref, view.oid)))
        by_ref[ref] = (view, event, commit)
        ops[ref] = oplog.begin("reap", view.ticket, agent=settings.agent, tag=view.oid,
                               judged=oplog.wall(at), ttl=ttl)
        ops[ref].step(commit=commit)
    decided = []
    refused: dict[str, str] = {}
    try:
        results = push_all(session, updates)
    except BaseException as error:
        for op in ops.values():
            op.end(oplog.UNKNOWN, error=str(error)[:200])
        raise
    for result in results:
        view, event, commit = by_ref[result.ref]
        ops[result.ref].end(oplog.OK if result.ok else oplog.FAILED if result.status in (
            UpdateStatus.STALE, UpdateStatus.GUARD_BROKEN) else oplog.UNKNOWN)
        if result.ok:
            decided.append(replace(view, note=event))
        elif result.status is UpdateStatus.REJECTED:
            refused[view.ticket] = result.message or "rejected"
    return decided, refused


def push_all(session: Session, updates: list[RefUpdate]) -> list[UpdateResult]:
    """Push many independent compare-and-swaps; settle unknown outcomes by re-reading.

    libgit2 aborts the whole push when one lease breaks; the rest are retried.
    """
    results: dict[str, UpdateResult] = {}
    pending = list(updates)
    for _ in range(MAX_ROUNDS):
        if not pending:
            break
        batch = session.transport.push(pending)
        retry = []
        for update, result in zip(pending, batch):
            if result.status is UpdateStatus.NOT_TRIED:
                retry.append(update)
            else:
                results[update.ref] = result
        pending = retry
    unsure = [u for u in updates if u.ref in results and
              results[u.ref].status in (UpdateStatus.UNKNOWN, UpdateStatus.REJECTED)]
    if unsure:
        current = session.transport.list_refs([u.ref for u in unsure])
        for update in unsure:
            if current.get(update.ref) == update.new:
                results[update.ref] = UpdateResult(update.ref, UpdateStatus.OK)
            elif current.get(update.ref) != update.expect:
                # refused because someone else moved the ref first: a lost race
                results[update.ref] = UpdateResult(update.ref, UpdateStatus.STALE,
                                                   "remote changed", current.get(update.ref),
                                                   True)
    return [results.get(u.ref, UpdateResult(u.ref, UpdateStatus.NOT_TRIED)) for u in updates]
