"""The claim lock: claim, release and reopen, each a compare-and-swap on the remote.

State changes and where they linearise (see docs/protocol.md):
- claim: create the claim ref (expect: absent). The server accepts one creator.
- release, reap: first a note on the claim tag in the ticket's notes ref
  (expect: the notes tip we read, which shows the claim still open); that
  write *decides*. Then the claim ref is deleted or replaced by an outcome tag
  (expect: the claim tag). Anyone who finds a decided but unfinished change
  completes it (roll forward), so a crash between the two steps never leaves
  a ticket stuck.
- heartbeat: a note in the same notes ref with the same lease, so a beat and
  a reap can never both be accepted.
This module never prints; it returns values or raises ClaimError subclasses.
"""

from __future__ import annotations

import random
import time
from dataclasses import dataclass, replace
from time import monotonic

from .claims import ClaimView, read_claim
from . import oplog
from .clock import format_duration, local_hhmm, now
from .errors import GitError, HostRefused, IncompleteError, RefusedError
from .gateway.transport import Guard, RefUpdate, UpdateStatus
from .ownership import Ownership
from .record import (EVENT_REAPED, EVENT_RELEASED, EVENT_REOPENED, OUTCOME_STATES, STATE_HELD,
                     STATE_UNKNOWN,
                     ClaimRecord, LivenessRecord, new_claim, outcome_of, parse_claim,
                     parse_liveness)
from .safetext import clean
from .session import Session
from .testpoints import pause

MAX_ROUNDS = 5
LOCK_RETRY_SECONDS = 2.0  # how long a refusal for a contended ref lock is retried
EMAIL_DOMAIN = "git-claim.invalid"
OUTCOME_FREE = "free"


@dataclass(frozen=True)
class ClaimResult:
    ticket: str
    ref: str
    tag: str
    record: ClaimRecord
    already_ours: bool = False
    mine: Ownership | None = None  # the record this process holds for the claim


def describe_holder(view: ClaimView, *, me: str | None = None) -> str:
    """'640 is held by asif-laptop since 12:03 (4 min ago)' and its relatives.

    `me`: our agent name; a claim held under it by another process of this
    checkout says so, since the holder's name alone would read as ours.
    """
    record = view.record
    ticket = clean(view.ticket)
    if record is None:
        return f"{ticket} is free"
    who = clean(record.agent or "an unknown agent", 80)
    when = ""
    if record.time:
        when = f" since {local_hhmm(record.time)} ({format_duration(now() - record.time)} ago)"
    if record.state in OUTCOME_STATES:
        why = f": {clean(record.reason, 120)}" if record.reason else ""
        at = f" at {local_hhmm(record.time)}" if record.time else ""
        return (f"{ticket} is {record.state} (by {who}{at}){why};"
                f" reopen it with `git claim reopen {ticket}`")
    if record.state == STATE_UNKNOWN:
        return f"{ticket} is held by an unreadable claim ({clean(record.problem)})"
    ended = view.ended_by
    if ended is not None:
        return f"{ticket} is being {ended.event} (by {clean(ended.agent, 80)})"
    if me is not None and record.agent == me:
        return f"{ticket} is held by {who}{when}, in another process (another claim attempt)"
    return f"{ticket} is held by {who}{when}"


def lost_message(session: Session, view: ClaimView, mine: Ownership) -> str:
    """'640 is no longer yours (reaped by ci-reaper at 12:31)': what became of our claim."""
    ticket = clean(view.ticket)
    raw = session.local.note_on(view.notes_tip, mine.tag)
    if raw is not None:
        note = parse_liveness(raw)
        if note.ends_claim:
            verb = "reaped" if note.event == EVENT_REAPED else "released"
            at = f" at {local_hhmm(note.time)}" if note.time else ""
            return f"{ticket} is no longer yours ({verb} by {clean(note.agent, 80)}{at})"
    if view.oid is not None and view.oid != mine.tag:
        return f"{ticket} is no longer yours (the claim ref was replaced: {describe_holder(view)})"
    return f"{ticket} is no longer yours (the claim is gone from the remote)"


class GuardBroken(Exception):
    """The claim ref no longer held the claim an update was guarded by: nothing was written."""


def swap(session: Session, update: RefUpdate) -> str | None:
    """Apply one compare-and-swap and return what the remote holds afterwards.

    The update took effect exactly when the returned value equals `update.new`.
    A rejection or an unknown outcome is settled by re-reading the ref, never
    by trusting that a push "returned". A broken guard raises GuardBroken; a
    refusal that left the ref as we expected raises HostRefused, in the host's
    own words (a protected-ref rule, a hook), so no caller mistakes it for a
    lost race.
    """
    deadline = monotonic() + LOCK_RETRY_SECONDS
    pause_seconds = 0.05
    while True:
        result = session.transport.push([update])[0]
        if result.ok:
            return update.new
        if result.status is UpdateStatus.GUARD_BROKEN:
            raise GuardBroken(result.message)
        if result.status is UpdateStatus.STALE and result.current_known:
            return result.current
        current = session.transport.list_refs([update.ref]).get(update.ref)
        refused = result.status is UpdateStatus.REJECTED and current == update.expect
        if refused and _lock_contention(result.message) and monotonic() < deadline:
            # another writer held the ref's lock past the server's own patience
            # (git waits 100 ms): the compare-and-swap is safe to try again
            time.sleep(pause_seconds * random.uniform(0.5, 1.5))
            pause_seconds = min(pause_seconds * 2, 0.5)
            continue
        if refused:
            raise HostRefused(f"the remote refused to {_verb(update)} {update.ref}:"
                              f" {clean(result.message or 'rejected', 300)}",
                              ref=update.ref, host_message=clean(result.message, 300))
        return current


def _verb(update: RefUpdate) -> str:
    if update.new is None:
        return "delete"
    return "create" if update.expect is None else "update"


def _lock_contention(message: str) -> bool:
    """Whether a refusal reads like a ref lock held by another writer.

    git's receive-pack says "failed to update ref" or "failed to lock" when its
    wait for a `.lock` ran out; libgit2 and our path transport name the lock.
    """
    lowered = message.lower()
    return "lock" in lowered or "failed to update ref" in lowered


def my_records(session: Session, ticket: str) -> list[Ownership]:
    """Records that may prove a claim on `ticket` is ours, the likeliest first.

    This agent's settled records, the ones this process itself made or
    adopted first; and the copy a claim worktree carries (it was made for
    whoever works in that worktree, whose default name differs from the
    claimer's). Another agent's record in the same git dir proves nothing.
    """
    settings = session.settings
    store = session.store
    records = [r for r in store.records(ticket, ref=settings.claim_ref(ticket),
                                        remote_url=session.remote_url)
               if not r.pending and (r.agent == settings.agent or r.worktree_copy)]
    return sorted(records, key=lambda r: (not store.held_here(r), r.agent != settings.agent))


def find_mine(session: Session, ticket: str, oid: str | None = None) -> Ownership | None:
    """Our record for `ticket`: the one whose tag is `oid` when given, else the likeliest."""
    records = my_records(session, ticket)
    if oid is not None:
        for record in records:
            if record.tag == oid:
                return record
    return records[0] if records else None


def claim(session: Session, ticket: str, *, no_gate: bool = False,
          reuse: bool = True) -> ClaimResult:
    """Win `ticket` or raise RefusedError naming the holder (exit 1).

    Won means the server accepted *this process's* own tag, and only that.
    Processes of one checkout are separate contenders, whatever their agent
    names: each pushes a tag of its own. The one exception is `reuse`: a live
    claim of this agent that no live process supervises (its record's lock is
    free) is taken over as "already yours", and this process supervises it
    from then on. `--next` passes reuse=False: it takes only free tickets.

    A pending record is written before the first push, so that an ambiguous
    outcome is settled by comparing the remote ref with our own tag id, and a
    retry pushes the same tag rather than a second nonce. A pending record
    left by a process of ours that died is adopted (by taking its lock) and
    retried; one whose process still lives belongs to that contender.
    """
    settings = session.settings
    ref = settings.claim_ref(ticket)
    store = session.store
    ours = [r for r in store.records(ticket, ref=ref, remote_url=session.remote_url)
            if r.agent == settings.agent]
    reused = _reusable(session, ticket, [r for r in ours if not r.pending], reuse=reuse)
    if reused is not None:
        return ClaimResult(ticket, ref, reused.tag, _own_record(session, reused),
                           already_ours=True, mine=reused)
    mine = _adopt_pending(session, [r for r in ours if r.pending])
    # A pending tag left by an earlier attempt may have landed back then and been
    # reaped or released since: pushing it again would bring an ended claim back,
    # and winning with it is no win. Its notes say so, whatever happened after.
    if mine is not None and _ended_earlier(session, ticket, mine):
        store.drop(mine)
        mine = None
    earlier = mine is not None
    for _ in range(MAX_ROUNDS):
        if mine is None:
            mine = _new_ownership(session, ticket, no_gate=no_gate)
        pause("claim:before-push")
        with oplog.begin("claim", ticket, agent=settings.agent, tag=mine.tag,
                         at=oplog.wall(mine.claimed_at)) as op:
            current = swap(session, RefUpdate(ref, mine.tag, None))
            if current == mine.tag and earlier:
                earlier = False
                if _ended_earlier(session, ticket, mine):  # ended between the check and the push
                    op.end(oplog.FAILED, holder=current, ended="ended earlier")
                    store.drop(mine)  # that claim is over: the next round mints a new one
                    mine = None
                    continue
            op.end(oplog.OK if current == mine.tag else oplog.FAILED, holder=current)
        pause("claim:after-push")
        if current is None:
            continue  # not applied and still free: retry with the same tag
        if current == mine.tag:
            mine.pending = False
            store.put(mine)
            return ClaimResult(ticket, ref, mine.tag, _own_record(session, mine), mine=mine)
        view = read_claim(session, ticket)
        if view.oid is None or view.oid == mine.tag:
            continue
        if view.unfinished is not None:
            refusal = finish_ended(session, view)
            if refusal is not None:
                store.drop(mine)
                raise GitError(f"{describe_holder(view)}, recorded but not finished:"
                               f" {refusal.message}", holder=holder_fields(view),
                               needs=needed_right(view))
            continue
        store.drop(mine)
        raise RefusedError(describe_holder(view, me=settings.agent), holder=holder_fields(view))
    raise GitError(f"could not settle the claim on {ticket} after {MAX_ROUNDS} attempts")


def _ended_earlier(session: Session, ticket: str, mine: Ownership) -> bool:
    """Whether a note ends the claim `mine` (a pending tag that landed once and ended).

    The ended claim is taken off the claim ref if it shows there: finished
    when its end is the ticket's latest event, deleted (expecting our own
    tag) when our retry has just pushed it back.
    """
    view = read_claim(session, ticket)
    raw = session.local.note_on(view.notes_tip, mine.tag)
    if raw is None or not parse_liveness(raw).ends_claim:
        return False
    if view.oid == mine.tag:
        if view.unfinished is not None:
            complete_ended(session, view)
        else:
            swap(session, RefUpdate(view.ref, None, mine.tag))
    return True


def _reusable(session: Session, ticket: str, held: list[Ownership], *,
              reuse: bool) -> Ownership | None:
    """A live claim of this agent that may be taken over; RefusedError if it is supervised.

    Records of claims that ended or vanished are dropped on the way (when no
    live process holds them).
    """
    if not held:
        return None
    store = session.store
    view = read_claim(session, ticket)
    for record in held:
        if view.oid == record.tag and view.ended_by is None and view.held:
            if not reuse:
                raise RefusedError(f"{clean(ticket)} is already held by you ({clean(record.agent, 80)});"
                                   " --next takes only free tickets", holder=holder_fields(view))
            if store.hold(record):
                return record
            pid = store.holder_pid(record)
            who = f" (git claim run, pid {pid}, or its command)" if pid else ""
            raise RefusedError(f"{clean(ticket)} is held by you ({clean(record.agent, 80)}),"
                               f" and another process{who} is working on it",
                               holder=holder_fields(view))
        if view.oid == record.tag and view.ended_by is not None:
            complete_ended(session, view)
        if store.hold(record):
            store.drop(record)  # an old claim of ours that ended: start afresh
    return None


def _adopt_pending(session: Session, pending: list[Ownership]) -> Ownership | None:
    """A pending attempt of ours whose process died (its lock is free), to retry as it was."""
    store = session.store
    for record in pending:
        if not store.hold(record):
            continue  # a live contender of ours is pushing it right now
        fresh = store.reread(record)
        if fresh is not None and fresh.pending:
            return fresh
        store.drop(record)
    return None


def _new_ownership(session: Session, ticket: str, *, no_gate: bool) -> Ownership:
    settings = session.settings
    record = new_claim(ticket, agent=settings.agent, host=settings.host, time=now(),
                       base=session.local.remote_default_commit(settings.remote),
                       no_gate=no_gate)
    tag = session.local.create_tag(f"claim/{ticket}", record.to_message(),
                                   tagger=settings.agent, email=f"agent@{EMAIL_DOMAIN}",
                                   time=record.time or now())
    mine = Ownership(ticket=ticket, ref=settings.claim_ref(ticket),
                     remote_url=session.remote_url, tag=tag, nonce=record.nonce,
                     agent=settings.agent, claimed_at=record.time or now(), pending=True)
    session.store.hold(mine)  # locked for this process before the record exists
    session.store.put(mine)
    return mine


def _own_record(session: Session, mine: Ownership) -> ClaimRecord:
    info = session.local.read_tag(mine.tag)
    if info is None:
        return ClaimRecord(ticket=mine.ticket, state=STATE_HELD, agent=mine.agent,
                           time=mine.claimed_at, nonce=mine.nonce)
    return parse_claim(mine.ticket, info.raw_message, tagger_name=info.tagger_name,
                       tagger_time=info.tagger_time)


def holder_fields(view: ClaimView) -> dict[str, object]:
    record = view.record
    if record is None:
        return {}
    return {"agent": record.agent, "state": record.state, "time": record.time,
            "reason": record.reason, "tag": view.oid}


def decide(session: Session, view: ClaimView, event: LivenessRecord,
           op: oplog.Op | None = None) -> bool:
    """Write `event` as the note on the claim, leased on the notes tip we read.

    True when our note landed. False when the notes ref had moved (a beat, a
    reap, a release) or the claim ref no longer holds the claim judged (the
    guard): the caller re-reads and thinks again.
    """
    assert view.oid is not None
    commit = session.local.notes_commit(
        view.notes_tip, view.oid, event.to_text(), message=f"{event.event} {view.ticket}",
        author=session.settings.agent, email=f"agent@{EMAIL_DOMAIN}", time=event.time or now())
    if op is not None:
        op.step(tag=view.oid, commit=commit)
    update = RefUpdate(session.settings.notes_ref(view.ticket), commit, view.notes_tip,
                       Guard(view.ref, view.oid))
    try:
        return swap(session, update) == commit
    except GuardBroken:
        return False


def complete_ended(session: Session, view: ClaimView) -> bool:
    """Finish a decided release, reap or reopening; True when the claim ref shows it."""
    return finish_ended(session, view) is None


def finish_ended(session: Session, view: ClaimView) -> HostRefused | None:
    """Finish a decided release, reap or reopening: delete the claim ref or set its outcome.

    Anyone may do this, any number of times: the lease on the claim tag makes
    every attempt after the first a no-op. Only a decision that is the
    ticket's latest event is finished (claims.py tells one that came back
    with a stale push, and shows it as unknown instead). Returns the remote's
    refusal when it would not let the claim ref change (a protected-ref rule).
    """
    ended = view.note
    assert view.oid is not None and ended is not None
    new: str | None = None
    if finishing_replaces(view):
        assert view.record is not None
        outcome = outcome_of(view.record, view.oid, state=ended.outcome, agent=ended.agent,
                             host=session.settings.host, time=ended.time or now(),
                             reason=ended.reason, forced_by=ended.forced_by)
        new = session.local.create_tag(f"claim/{view.ticket}", outcome.to_message(),
                                       tagger=ended.agent or session.settings.agent,
                                       email=f"agent@{EMAIL_DOMAIN}", time=outcome.time or now())
    try:
        swap(session, RefUpdate(view.ref, new, view.oid))
    except HostRefused as refusal:
        return refusal
    return None


def change_name(event: str) -> str:
    """The noun for a recorded ending: release, reap or reopening."""
    return {EVENT_REAPED: "reap", EVENT_REOPENED: "reopening"}.get(event, "release")


def finishing_replaces(view: ClaimView) -> bool:
    """A decided done or blocked release replaces the claim tag (a rewind); the rest delete."""
    ended = view.note
    return bool(ended is not None and ended.event == EVENT_RELEASED and view.held
                and ended.outcome in OUTCOME_STATES and view.record)


def needed_right(view: ClaimView) -> str:
    """The right that finishing `view`'s decided change takes: 'delete refs/claims/640'."""
    return ("force-update (rewind)" if finishing_replaces(view) else "delete") + f" {view.ref}"


def unfinished_error(view: ClaimView, what: str, refusal: HostRefused) -> IncompleteError:
    """A decided change the remote would not finish: exit 5, with the host's words."""
    ticket = clean(view.ticket)
    return IncompleteError(
        f"the {what} of {ticket} is recorded, but {refusal.message}; {ticket} shows as"
        f" `ending` and stays unavailable until an identity with the right to"
        f" {needed_right(view)} runs `git reap`",
        pending={"ticket": view.ticket, "ref": view.ref, "change": what,
                 "needs": needed_right(view),
                 "host_message": refusal.details.get("host_message", "")})


@dataclass(frozen=True)
class ReleaseResult:
    ticket: str
    outcome: str
    forced: bool
    holder: str
    noop: bool = False  # an earlier release of ours had already decided it


def release(session: Session, ticket: str, *, outcome: str = OUTCOME_FREE, reason: str = "",
            force: bool = False, tag: str | None = None) -> ReleaseResult:
    """End a claim as free, done or blocked. Only the holder may, unless `force`.

    `tag`: end exactly that claim of ours (`run` ends the one it supervised,
    never a later claim of the same agent name on the same ticket).
    """
    settings = session.settings
    mine = find_mine(session, ticket, tag)
    if tag is not None and (mine is None or mine.tag != tag):
        raise RefusedError(f"{clean(ticket)} is no longer yours (the record of its claim is gone)")
    with oplog.begin("release", ticket, agent=settings.agent, tag=mine.tag if mine else None,
                     outcome=outcome, force=force) as op:
        result = _release(session, ticket, mine, op, outcome=outcome, reason=reason, force=force,
                          pinned=tag is not None)
        op.end(oplog.OK, noop=result.noop)
        return result


def _release(session: Session, ticket: str, mine: Ownership | None, op: oplog.Op, *,
             outcome: str, reason: str, force: bool, pinned: bool = False) -> ReleaseResult:
    settings = session.settings
    store = session.store
    for _ in range(MAX_ROUNDS):
        view = read_claim(session, ticket)
        if not pinned:
            mine = find_mine(session, ticket, view.oid) or mine
        is_mine = mine is not None and view.oid == mine.tag
        if view.oid is None or (view.record and view.record.state in OUTCOME_STATES):
            if mine is not None and view.record and view.record.claim_of == mine.tag:
                store.drop(mine)  # our own earlier release, completed
                return ReleaseResult(ticket, view.record.state, False, mine.agent, noop=True)
            if mine is not None and _released_by_us(session, view, mine):
                store.drop(mine)  # our own earlier release, completed
                return ReleaseResult(ticket, OUTCOME_FREE, False, mine.agent, noop=True)
            if mine is not None and not force:
                raise RefusedError(lost_message(session, view, mine))
            if view.oid is None:
                raise RefusedError(f"{clean(ticket)} is not claimed")
            raise RefusedError(describe_holder(view))
        if not is_mine and not force:
            if mine is not None and _released_by_us(session, view, mine):
                store.drop(mine)  # our own earlier release, completed
                return ReleaseResult(ticket, OUTCOME_FREE, False, mine.agent, noop=True)
            if mine is not None:
                raise RefusedError(lost_message(session, view, mine))
            raise RefusedError(f"{describe_holder(view)}, not by you"
                               " (only the holder may release it; --force overrides)")
        ended = view.ended_by
        if ended is not None:
            if is_mine and ended.event == EVENT_RELEASED and not ended.forced_by:
                assert mine is not None
                refusal = finish_ended(session, view)
                if refusal is not None:
                    raise unfinished_error(view, "release", refusal)
                store.drop(mine)
                return ReleaseResult(ticket, ended.outcome, False, settings.agent, noop=True)
            if is_mine:
                raise RefusedError(lost_message(session, view, mine))  # type: ignore[arg-type]
            refusal = finish_ended(session, view)
            if refusal is not None:
                raise unfinished_error(view, change_name(ended.event), refusal)
            continue
        if is_mine and not force:
            assert mine is not None
            _refuse_if_supervised(session, mine)
        holder = view.record.agent if view.record else ""
        forced_by = settings.agent if not is_mine else ""
        seq = view.note.seq + 1 if view.note else 1
        event = LivenessRecord(event=EVENT_RELEASED, time=now(), agent=settings.agent,
                               seq=seq, outcome=outcome, reason=reason, forced_by=forced_by,
                               holder=holder)
        pause("release:before-decide")
        if decide(session, view, event, op):
            op.end(oplog.OK, tag=view.oid)  # decided: the release happened
            pause("release:before-complete")
            decided = replace(view, note=event)
            refusal = finish_ended(session, decided)
            if refusal is not None:
                raise unfinished_error(decided, "release", refusal)
            if is_mine:
                assert mine is not None
                store.drop(mine)
            return ReleaseResult(ticket, outcome, bool(forced_by), holder)
    raise GitError(f"could not settle the release of {ticket} after {MAX_ROUNDS} attempts")


def _refuse_if_supervised(session: Session, mine: Ownership) -> None:
    """Only the process working on a claim ends it: another live one holds its lock."""
    store = session.store
    if store.hold(mine):
        return
    pid = store.holder_pid(mine)
    raise RefusedError(f"{clean(mine.ticket)} is being worked on by another process of yours"
                       f"{f' (git claim run, pid {pid}, or its command)' if pid else ''}:"
                       " it releases the claim when its command ends (--force overrides)")


def _released_by_us(session: Session, view: ClaimView, mine: Ownership) -> bool:
    """Our claim's last note is our own, unforced release: a repeated release succeeds."""
    raw = session.local.note_on(view.notes_tip, mine.tag)
    note = parse_liveness(raw) if raw is not None else None
    return bool(note and note.event == EVENT_RELEASED and not note.forced_by
                and note.holder == mine.agent)


def reopen(session: Session, ticket: str) -> ClaimView:
    """Free a done or blocked ticket so it can be claimed again.

    Like a release, two steps: a note on the outcome tag decides (and moves
    the ticket's notes ref, so an old claim tag pushed back later can be told
    from a current one), then the outcome ref is deleted; whoever finds a
    decided reopening finishes it.
    """
    settings = session.settings
    for _ in range(MAX_ROUNDS):
        view = read_claim(session, ticket)
        if view.record is None or view.record.state not in OUTCOME_STATES:
            raise RefusedError(f"{clean(ticket)} is not done or blocked ({view.state})")
        assert view.oid is not None
        with oplog.begin("reopen", ticket, agent=settings.agent, tag=view.oid) as op:
            if view.reopening is None:
                event = LivenessRecord(event=EVENT_REOPENED, time=now(), agent=settings.agent,
                                       seq=(view.note.seq if view.note else 0) + 1,
                                       outcome=view.record.state, holder=view.record.agent)
                if not decide(session, view, event, op):
                    op.end(oplog.FAILED)
                    continue
                view = replace(view, note=event)
            try:
                current = swap(session, RefUpdate(view.ref, None, view.oid))
            except HostRefused as refusal:
                op.end(oplog.FAILED, error=refusal.message[:200])
                raise unfinished_error(view, "reopening", refusal)
            op.end(oplog.OK if current is None else oplog.FAILED, holder=current)
        if current is None:
            return view
    raise GitError(f"could not settle the reopening of {ticket} after {MAX_ROUNDS} attempts")
