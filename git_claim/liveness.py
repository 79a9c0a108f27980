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

from collections.abc import Callable, Sequence
from contextlib import nullcontext
from dataclasses import dataclass, field, replace
from enum import Enum
from typing import Any

from . import oplog
from .cas import EMAIL_DOMAIN, MAX_ROUNDS, GuardBroken, swap
from .claims import ClaimView, read_claim, read_claims
from .clock import now
from .errors import GitError, RefusedError
from .gateway.transport import Guard, RefUpdate, UpdateResult, UpdateStatus
from .holders import find_mine, lost_message
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
    # Fast path: no read first; the push checks everything. The first beat of
    # a claim reads: its guard proves our claim ref holds our tag, not that no
    # newer epoch exists, so a notes ref deleted or rewound by plain git (a
    # stale clone's `push --mirror`) after a reap and a newer claim would let
    # a beat that expects "no notes" land. The read sees the newer epoch.
    # A tip this clone no longer has (pruned by `git gc` since our last beat) is
    # read again from the remote, which brings its objects back.
    tip = mine.notes_tip
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
            raise RefusedError(
                lost_message(session, read_claim(session, ticket), mine)) from None
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


class SkipKind(str, Enum):
    """Why the reaper kept a stale (or unreadable) claim; the value names it in a summary."""

    UNREADABLE = "unreadable claim"  # never reaped by guesswork
    KEPT_BY_CHECK = "open pull request"  # a skip check said keep it (an open pull request)
    CHECK_UNANSWERED = "open pull requests unknown"  # the check could not tell: kept, undone
    REFUSED = "the remote refused the reap"  # the remote refused the reap's note: undone
    UNWRITABLE = "notes ref unusable"  # no note can be built on the notes ref: undone


class Undone(str, Enum):
    """Why a stale claim the reaper meant to free is still in place (`git reap` exits 5)."""

    REFUSED = "refused"  # the remote refused the reap's note (a rule, a hook)
    UNCHECKED = "unchecked"  # a skip check could not tell (open pull requests unknown)
    UNWRITABLE = "unwritable"  # the notes ref is no notes commit: no reap can be recorded


# Kept for callers that name the reasons as strings.
UNDONE_REFUSED = Undone.REFUSED
UNDONE_UNCHECKED = Undone.UNCHECKED


@dataclass(frozen=True)
class ReapEntry:
    ticket: str
    holder: str
    idle_seconds: float | None
    reason: str = ""
    kind: SkipKind | None = None  # set on skipped claims
    undone: Undone | None = None  # a stale claim that should have been freed and wasn't

    def as_dict(self) -> dict[str, Any]:
        found: dict[str, Any] = {
            "ticket": self.ticket, "holder": self.holder,
            "idle_seconds": None if self.idle_seconds is None else round(self.idle_seconds),
            "reason": self.reason}
        if self.undone is not None:
            found["undone"] = self.undone.value
        return found


@dataclass(frozen=True)
class ReapReport:
    reaped: tuple[ReapEntry, ...] = ()
    live: tuple[ReapEntry, ...] = ()
    skipped: tuple[ReapEntry, ...] = ()
    lost_races: tuple[ReapEntry, ...] = ()  # a beat or release came first

    @property
    def undone(self) -> tuple[ReapEntry, ...]:
        """Stale claims left in place for want of the remote's consent or of an answer."""
        return tuple(entry for entry in self.skipped if entry.undone is not None)


@dataclass(frozen=True)
class Skip:
    """A skip check's verdict: keep this stale claim.

    `sure` is False when the check could not tell (the tracker did not
    answer) and kept the claim to be safe: that reap is left undone.
    """

    reason: str
    sure: bool = True

    @property
    def kind(self) -> SkipKind:
        return SkipKind.KEPT_BY_CHECK if self.sure else SkipKind.CHECK_UNANSWERED


# A check that may keep a stale claim (open pull requests, through the tracker).
SkipCheck = Callable[[ClaimView], Skip | None]


# Records keep whole seconds, rounded down: a beat written at 12:00:00.9 reads
# as 12:00:00. Its true age may be up to this much less than it looks.
RECORD_RESOLUTION = 1.0


@dataclass(frozen=True)
class Staleness:
    """One held claim judged by the staleness rule at one moment: the board's and the reaper's.

    `reap_in`: seconds until the rule frees it if nothing changes (0 when
    stale; None when the claim carries no time and nothing remembers it).
    """

    stale: bool
    age: float | None
    reap_in: float | None


def staleness(view: ClaimView, *, ttl: float, max_skew: float, at: float,
              seen_for: float | None = None) -> Staleness:
    """The one staleness rule (docs/protocol.md, "Clock skew"), for `list` and `reap` alike.

    Rule 1 on the records' wall-clock times, read at `at` (the judge's now());
    rule 2 on `seen_for`, how long a reaper of this clone has seen the claim
    unchanged on a clock that never steps (None: not remembered). `at` never
    enters rule 2: a wall clock stepped between two runs would count as time
    the claim stood unchanged.
    """
    age = view.age(at)
    limit = ttl + max_skew + RECORD_RESOLUTION
    waits = [wait for wait in (None if age is None else limit - age,
                               None if seen_for is None else ttl - seen_for)
             if wait is not None]
    by_time = age is not None and age > limit
    by_memory = seen_for is not None and seen_for >= ttl
    if by_time or by_memory:
        return Staleness(True, age, 0.0)
    return Staleness(False, age, min(waits) if waits else None)


def is_stale(view: ClaimView, *, ttl: float, max_skew: float, at: float,
             memory: ReaperMemory | None) -> tuple[bool, float | None]:
    """The reaper's reading of the rule: `memory` records what it judged (rule 2)."""
    seen_for = memory.unchanged_for(view) if memory is not None else None
    judged = staleness(view, ttl=ttl, max_skew=max_skew, at=at, seen_for=seen_for)
    return judged.stale, judged.age


def reaper_memory(session: Session) -> ReaperMemory:
    """This clone's reaper memory (rule 2), shared by every reaper and board of the clone."""
    return ReaperMemory(session.location.common_dir / "git-claim" / "reaper-seen.json")


@dataclass
class _Judged:
    """The reaper's verdicts on one listing, before anything is written."""

    reaped: list[ReapEntry] = field(default_factory=list)
    live: list[ReapEntry] = field(default_factory=list)
    skipped: list[ReapEntry] = field(default_factory=list)
    to_reap: list[ClaimView] = field(default_factory=list)


def reap(session: Session, *, ttl: float, max_skew: float, dry_run: bool = False,
         tickets: Sequence[str] | None = None, skip_checks: Sequence[SkipCheck] = (),
         progress: Callable[[int, int], None] | None = None) -> ReapReport:
    """Free stale claims. Round trips: one listing, one fetch, one push."""
    views = read_claims(session, list(tickets) if tickets else None, progress=progress)
    at = now()
    memory = reaper_memory(session)
    judged = _Judged()
    for view in views.values():
        _judge(view, judged, ttl=ttl, max_skew=max_skew, at=at, memory=memory,
               skip_checks=skip_checks)
    if tickets:  # judged only some: keep what we knew of the others
        memory.updated = {**memory.seen, **memory.updated}
    memory.save()
    if dry_run:
        return ReapReport(tuple(judged.reaped), tuple(judged.live), tuple(judged.skipped))
    pause("reap:before-decide")
    decided, left = _decide_reaps(session, judged.to_reap, ttl=ttl, at=at)
    return _settled(judged, decided, left)


def _judge(view: ClaimView, judged: _Judged, *, ttl: float, max_skew: float, at: float,
           memory: ReaperMemory, skip_checks: Sequence[SkipCheck]) -> None:
    """Sort one claim into live, skipped or to be reaped; ended claims are not the reaper's."""
    record = view.record
    if record is None or record.state in OUTCOME_STATES:
        return
    holder = record.agent
    if record.state != STATE_HELD:
        judged.skipped.append(ReapEntry(view.ticket, holder, None,
                                        f"unreadable claim: {record.problem}",
                                        SkipKind.UNREADABLE))
        return
    stale, age = is_stale(view, ttl=ttl, max_skew=max_skew, at=at, memory=memory)
    if not stale:
        judged.live.append(ReapEntry(view.ticket, holder, age))
        return
    skip = next((verdict for verdict in (check(view) for check in skip_checks) if verdict), None)
    if skip is not None:
        judged.skipped.append(ReapEntry(view.ticket, holder, age, skip.reason, skip.kind,
                                        None if skip.sure else Undone.UNCHECKED))
        return
    judged.to_reap.append(view)
    judged.reaped.append(ReapEntry(view.ticket, holder, age))


def _settled(judged: _Judged, decided: list[ClaimView],
             left: dict[str, tuple[SkipKind, str]]) -> ReapReport:
    """The report once the push is answered: reaped, left in place (undone) or lost to a beat."""
    done = {view.ticket for view in decided}
    skipped = list(judged.skipped)
    reaped, lost = [], []
    for entry in judged.reaped:
        if entry.ticket in left:
            kind, reason = left[entry.ticket]
            skipped.append(replace(entry, reason=reason, kind=kind, undone=_LEFT_UNDONE[kind]))
        elif entry.ticket in done:
            reaped.append(entry)
        else:
            lost.append(entry)
    return ReapReport(tuple(reaped), tuple(judged.live), tuple(skipped), tuple(lost))


# Why a reap the reaper meant to write is not done, by the kind of skip it becomes.
_LEFT_UNDONE = {SkipKind.REFUSED: Undone.REFUSED, SkipKind.UNWRITABLE: Undone.UNWRITABLE}
# From this many reaps in one run, their notes are written as one pack, not
# as three loose objects each (see gateway/memory_objects.py).
ONE_PACK_AT = 16


def _decide_reaps(session: Session, views: list[ClaimView], *, ttl: float,
                  at: float) -> tuple[list[ClaimView], dict[str, tuple[SkipKind, str]]]:
    """Write a reap note on each claim, leased on the tip judged stale; one push.

    Returns the claims decided, and the tickets left in place for a reason
    other than a lost race, with that reason: the remote refused the note (a
    hook, a protected ref, a server that cannot check connectivity), or no
    note could be built on the ticket's notes ref (never reap what we cannot
    record).
    """
    settings = session.settings
    left: dict[str, tuple[SkipKind, str]] = {}
    updates: list[RefUpdate] = []
    by_ref: dict[str, tuple[ClaimView, LivenessRecord, str]] = {}
    ops: dict[str, oplog.Op] = {}
    batch = session.local.writing_one_pack() if len(views) >= ONE_PACK_AT else nullcontext()
    with batch:
        for view in views:
            assert view.oid is not None and view.record is not None
            event = LivenessRecord(event=EVENT_REAPED, time=at, agent=settings.agent,
                                   seq=(view.note.seq if view.note else 0) + 1, ttl=ttl,
                                   holder=view.record.agent)
            try:
                commit = session.local.notes_commit(
                    view.notes_tip, view.oid, event.to_text(), message=f"reaped {view.ticket}",
                    author=settings.agent, email=f"agent@{EMAIL_DOMAIN}", time=at)
            except GitError as error:
                left[view.ticket] = (SkipKind.UNWRITABLE,
                                     f"the reap could not be written: {error.message}")
                continue
            ref = settings.notes_ref(view.ticket)
            updates.append(RefUpdate(ref, commit, view.notes_tip, Guard(view.ref, view.oid)))
            by_ref[ref] = (view, event, commit)
    for ref, (view, _, commit) in by_ref.items():
        # logged once the notes are on disk: a crash before then leaves no op behind
        ops[ref] = oplog.begin("reap", view.ticket, agent=settings.agent, tag=view.oid,
                               judged=oplog.wall(at), ttl=ttl)
        ops[ref].step(commit=commit)
    decided = []
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
            left[view.ticket] = (SkipKind.REFUSED, "the remote refused the reap:"
                                                   f" {result.message or 'rejected'}")
    return _without_taken_up(session, decided), left


def _without_taken_up(session: Session, decided: list[ClaimView]) -> list[ClaimView]:
    """Drop the hand-offs whose taker won the race with our note.

    A reap of an untaken hand-off is guarded by the handed claim, which
    never changes; the taker's claim is a new ref, which the guard cannot
    see. So a note that landed after the take-up sits on a claim that is no
    longer the newest and freed nothing: it is a race lost to the taker,
    never "reaped". One listing of the next epochs, only when a hand-off
    was reaped.
    """
    handed = [view for view in decided if view.handed_to is not None]
    if not handed:
        return decided
    settings = session.settings
    next_refs = {view.ticket: settings.claim_ref(view.ticket, view.epoch + 1) for view in handed}
    try:
        present = session.transport.list_refs(list(next_refs.values()))
    except GitError:
        return decided  # the notes landed; what the taker did is for the next reap to see
    return [view for view in decided
            if view.handed_to is None or present.get(next_refs[view.ticket]) is None]


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
        for update, result in zip(pending, batch, strict=False):
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
