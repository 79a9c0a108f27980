"""The claim lock: claim, release and reopen, each a compare-and-swap on the remote.

State changes and where they linearise (see docs/protocol.md):
- claim: create the ticket's next claim ref (refs/claims/640, then 640@2,
  ...; expect: absent), guarded by the notes tip that showed the previous
  claim ended. The server accepts one creator. Claim refs are never
  updated or deleted by agents: each claim is a new ref.
- release, reap, reopening: one note on the claim tag in the ticket's notes
  ref (expect: the notes tip we read, which shows the claim still open). That
  fast-forward is the whole change: a release as done or blocked records the
  outcome, the others free the ticket for the next epoch.
- hand-off: one note like a release (event `handed`, `Claim-To: <agent>`):
  the claim ends, and the ticket waits for that agent alone, who takes it
  up by creating the next claim ref exactly as a claim after a release.
- heartbeat: a note in the same notes ref with the same lease, so a beat and
  a reap can never both be accepted.
So an agent needs only the right to create refs under the claim namespace
and to fast-forward those under the notes namespace.
This module never prints; it returns values or raises ClaimError subclasses.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from . import oplog
from .cas import EMAIL_DOMAIN, MAX_ROUNDS, GuardBroken, swap
from .claims import ClaimView, read_claim
from .clock import now
from .errors import GitError, RefusedError
from .gateway.transport import Guard, RefUpdate
from .holders import describe_holder, find_mine, lost_message
from .ownership import Ownership
from .record import (
    EVENT_HANDED,
    EVENT_RELEASED,
    EVENT_REOPENED,
    OUTCOME_STATES,
    STATE_HELD,
    ClaimRecord,
    LivenessRecord,
    new_claim,
    one_line,
    parse_claim,
    parse_liveness,
)
from .safetext import clean
from .session import Session
from .testpoints import pause

OUTCOME_FREE = "free"


@dataclass(frozen=True)
class ClaimResult:
    ticket: str
    ref: str
    tag: str
    record: ClaimRecord
    already_ours: bool = False
    mine: Ownership | None = None  # the record this process holds for the claim
    epoch: int = 1  # the claim's place in its ticket's log: the fencing token


def claim(session: Session, ticket: str, *, no_gate: bool = False,
          reuse: bool = True, view: ClaimView | None = None,
          describe_loss: bool = True) -> ClaimResult:
    """Win `ticket` or raise RefusedError naming the holder (exit 1).

    Won means the server accepted *this process's* own tag, and only that.
    Processes of one checkout are separate contenders, whatever their agent
    names: each pushes a tag of its own. The one exception is `reuse`: a live
    claim of this agent that no live process supervises (its record's lock is
    free) is taken over as "already yours", and this process supervises it
    from then on. `--next` passes reuse=False: it takes only free tickets.

    A pending record is written before the first push, so that an ambiguous
    outcome is settled by comparing the remote's claims with our own tag id,
    and a retry pushes the same tag rather than a second nonce. A pending
    record left by a process of ours that died is adopted (by taking its
    lock) and retried while its epoch is still the next one; one whose
    process still lives belongs to that contender.

    A ticket handed to this agent (`git release T --to <us>`) is taken up
    here: the next epoch is created as after a release, guarded by the notes
    tip that showed the hand-off, so of two processes taking it up one wins.

    `view`: the ticket as a listing for this push just read it (`--next`
    reads the whole remote once); by default the ticket is read here. Either
    way the listing came over the connection the push then uses, where the
    transport keeps one open. `describe_loss=False` (`--next`, which reads
    the remote again after a loss anyway): a race lost at the server is
    refused at once, without reading who won.
    """
    settings = session.settings
    store = session.store
    ours = [r for r in store.records(ticket, ref=settings.claim_ref(ticket),
                                     remote_url=session.remote_url)
            if r.agent == settings.agent]
    view = _taking_up(session, view if view is not None
                      else read_claim(session, ticket, for_push=True))
    reused = _reusable(session, view, [r for r in ours if not r.pending], reuse=reuse)
    if reused is not None:
        return ClaimResult(ticket, view.ref, reused.tag, _own_record(session, reused),
                           already_ours=True, mine=reused, epoch=view.epoch)
    mine = _adopt_pending(session, [r for r in ours if r.pending])
    for _ in range(MAX_ROUNDS):
        if mine is not None and mine.tag == view.oid:
            if view.held:
                # a push of ours that landed (an earlier try's)
                return _won(session, mine)
            store.drop(mine)  # it landed, and someone has ended it as done or blocked since
            mine = None
        if mine is not None and (mine.tag in dict(view.claims).values() or mine.ref != view.ref
                                 or not session.local.has(mine.tag)):
            # it landed once and ended since, or was minted for an epoch now taken
            # (pushing it again would bring an ended claim back or never win), or
            # its tag never left this clone and a `git gc --prune` removed it
            store.drop(mine)
            mine = None
        if view.oid is not None:
            if mine is not None:
                store.drop(mine)
            raise RefusedError(describe_holder(view, me=settings.agent),
                               holder=holder_fields(view))
        if settings.claim_of_ref(view.ref) is None:
            raise GitError(f"cannot claim {clean(ticket)}: its next epoch would not be readable"
                           f" ({clean(view.ref, 80)}); a foreign ref holds an absurd epoch")
        if mine is None:
            mine = _new_ownership(session, view, no_gate=no_gate)
        pause("claim:before-push")
        # The notes tip that showed the previous claim ended: if it moved, re-read.
        guard = Guard(settings.notes_ref(ticket), view.notes_tip) \
            if view.previous is not None and view.notes_tip is not None else None
        with oplog.begin("claim", ticket, agent=settings.agent, tag=mine.tag,
                         epoch=view.epoch, at=oplog.wall(mine.claimed_at)) as op:
            try:
                current = swap(session, RefUpdate(view.ref, mine.tag, None, guard))
            except GuardBroken:
                current = None
            op.end(oplog.OK if current == mine.tag else oplog.FAILED, holder=current)
        pause("claim:after-push")
        if current == mine.tag:
            return _won(session, mine)
        if current is not None and not describe_loss:
            # another claim holds the epoch ref we pushed: ours can never land there
            store.drop(mine)
            raise RefusedError(f"{clean(ticket)} was claimed first by another agent")
        view = _taking_up(session, read_claim(session, ticket, for_push=True))
    raise GitError(f"could not settle the claim on {ticket} after {MAX_ROUNDS} attempts")


def _taking_up(session: Session, view: ClaimView) -> ClaimView:
    """A ticket handed to this agent reads, to it alone, as free for the next epoch.

    The handed claim stays `previous`, and the notes tip that showed the
    hand-off guards the creation: if anything was written since (a reap, a
    forced release), the claim is judged again on what it is now.
    """
    if view.handed_to is None or view.handed_to != one_line(session.settings.agent):
        return view
    return replace(view, ref=session.settings.claim_ref(view.ticket, view.epoch + 1), oid=None,
                   record=None, epoch=view.epoch + 1, previous=view.oid)


def _won(session: Session, mine: Ownership) -> ClaimResult:
    """Record the win; renew a claim whose time is old (an earlier attempt's push).

    A claim pushed again long after it was made carries its old time, and a
    reaper would judge it stale at once: one heartbeat renews it.
    """
    mine.pending = False
    session.store.put(mine)
    if now() - mine.claimed_at >= session.settings.heartbeat:
        from .liveness import heartbeat

        heartbeat(session, mine.ticket, mine)
    found = session.settings.claim_of_ref(mine.ref)
    return ClaimResult(mine.ticket, mine.ref, mine.tag, _own_record(session, mine), mine=mine,
                       epoch=found[1] if found else 1)


def _reusable(session: Session, view: ClaimView, held: list[Ownership], *,
              reuse: bool) -> Ownership | None:
    """A live claim of this agent that may be taken over; RefusedError if it is supervised.

    Records of claims that ended or vanished are dropped on the way (when no
    live process holds them).
    """
    store = session.store
    ticket = view.ticket
    for record in held:
        if view.oid == record.tag and view.held:
            if not reuse:
                raise RefusedError(f"{clean(ticket)} is already held by you"
                                   f" ({clean(record.agent, 80)}); --next takes only free"
                                   " tickets", holder=holder_fields(view))
            if store.hold(record):
                return record
            pid = store.holder_pid(record)
            who = f" (git claim run, pid {pid}, or its command)" if pid else ""
            raise RefusedError(f"{clean(ticket)} is held by you ({clean(record.agent, 80)}),"
                               f" and another process{who} is working on it",
                               holder=holder_fields(view))
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


def _new_ownership(session: Session, view: ClaimView, *, no_gate: bool) -> Ownership:
    """A new claim tag for the ticket's next epoch, recorded (pending) before any push."""
    settings = session.settings
    ticket = view.ticket
    record = new_claim(ticket, agent=settings.agent, host=settings.host, time=now(),
                       base=session.local.remote_default_commit(settings.remote),
                       no_gate=no_gate, epoch=view.epoch,
                       handed_from=view.handed_from or "" if view.handed_to else "")
    tag = session.local.create_tag(f"claim/{ticket}", record.to_message(),
                                   tagger=settings.agent, email=f"agent@{EMAIL_DOMAIN}",
                                   time=record.time or now())
    mine = Ownership(ticket=ticket, ref=view.ref, remote_url=session.remote_url, tag=tag,
                     nonce=record.nonce, agent=settings.agent,
                     claimed_at=record.time or now(), pending=True)
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
    """Read, judge, write one note; again when the notes ref moved under us."""
    for _ in range(MAX_ROUNDS):
        view = read_claim(session, ticket)
        if not pinned:
            mine = find_mine(session, ticket, view.oid) or mine
        earlier = _already_released(session, view, mine)
        if earlier is not None:
            return earlier
        is_mine = _check_releasable(session, view, mine, force=force)
        event = _release_event(session, view, outcome=outcome, reason=reason, is_mine=is_mine)
        pause("release:before-decide")
        if decide(session, view, event, op):
            op.end(oplog.OK, tag=view.oid)  # decided: the release happened
            if is_mine and mine is not None:
                session.store.drop(mine)
            return ReleaseResult(ticket, outcome, bool(event.forced_by), event.holder)
    raise GitError(f"could not settle the release of {ticket} after {MAX_ROUNDS} attempts")


def _already_released(session: Session, view: ClaimView,
                      mine: Ownership | None) -> ReleaseResult | None:
    """Our own earlier release of this claim: repeating it succeeds, changing nothing."""
    if mine is None:
        return None
    earlier = _released_by_us(session, view, mine)
    if earlier is None and view.record is not None and view.record.claim_of == mine.tag \
            and view.record.state in OUTCOME_STATES:
        earlier = view.record.state  # our release, finished by an older version
    if earlier is None:
        return None
    session.store.drop(mine)
    return ReleaseResult(view.ticket, earlier, False, mine.agent, noop=True)


def _check_releasable(session: Session, view: ClaimView, mine: Ownership | None, *,
                      force: bool) -> bool:
    """Whether the claim in force is ours; RefusedError when we may not end it."""
    ticket = clean(view.ticket)
    if view.handed_to is not None and not force:
        if mine is not None and view.oid == mine.tag:
            raise RefusedError(lost_message(session, view, mine))
        raise RefusedError(f"{describe_holder(view)}; only {clean(view.handed_to, 80)} may take"
                           " it up (--force releases it)")
    ended = view.oid is None or (view.record is not None
                                 and view.record.state in OUTCOME_STATES)
    if ended and mine is not None and not force:
        raise RefusedError(lost_message(session, view, mine))
    if view.oid is None:
        raise RefusedError(f"{ticket} is not claimed")
    if ended:
        raise RefusedError(describe_holder(view))
    is_mine = mine is not None and view.oid == mine.tag
    if force:
        return is_mine
    if mine is None:
        raise RefusedError(f"{describe_holder(view)}, not by you"
                           " (only the holder may release it; --force overrides)")
    if not is_mine:
        raise RefusedError(lost_message(session, view, mine))
    _refuse_if_supervised(session, mine)
    return True


def _release_event(session: Session, view: ClaimView, *, outcome: str, reason: str,
                   is_mine: bool) -> LivenessRecord:
    """The note that ends the claim: who ended it, for whom, and how."""
    agent = session.settings.agent
    return LivenessRecord(event=EVENT_RELEASED, time=now(), agent=agent,
                          seq=view.note.seq + 1 if view.note else 1, outcome=outcome,
                          reason=reason, forced_by="" if is_mine else agent,
                          holder=view.record.agent if view.record else "")


@dataclass(frozen=True)
class HandOffResult:
    ticket: str
    to: str  # the agent the ticket now waits for
    holder: str  # who held the claim, and handed it
    noop: bool = False  # an earlier hand-off of ours to the same agent had decided it


def hand_off(session: Session, ticket: str, to: str, *, tag: str | None = None) -> HandOffResult:
    """Pass our live claim to agent `to`: one note on the claim, as a release writes.

    Only the holder may, and only the process that may release it (one
    supervised by another live process of ours is refused). The note is
    leased on the notes tip that showed the claim ours and live, and guarded
    by the claim ref, so a claim reaped or forced away meanwhile is a clean
    loss (exit 1) with nothing written. `tag`: hand exactly that claim (run).
    """
    settings = session.settings
    to = one_line(to)
    mine = find_mine(session, ticket, tag)
    if tag is not None and (mine is None or mine.tag != tag):
        raise RefusedError(f"{clean(ticket)} is no longer yours (the record of its claim is gone)")
    with oplog.begin("hand-off", ticket, agent=settings.agent, tag=mine.tag if mine else None,
                     to=to) as op:
        for _ in range(MAX_ROUNDS):
            view = read_claim(session, ticket)
            if tag is None:
                mine = find_mine(session, ticket, view.oid) or mine
            if mine is not None and view.oid == mine.tag and view.handed_to == to \
                    and view.note is not None and view.note.agent == settings.agent:
                session.store.drop(mine)  # our own hand-off, repeated after an interruption
                op.end(oplog.OK, noop=True)
                return HandOffResult(ticket, to, view.handed_from or mine.agent, noop=True)
            _check_releasable(session, view, mine, force=False)
            assert mine is not None and view.record is not None
            event = LivenessRecord(event=EVENT_HANDED, time=now(), agent=settings.agent,
                                   seq=view.note.seq + 1 if view.note else 1,
                                   holder=view.record.agent, to=to)
            pause("hand-off:before-decide")
            if decide(session, view, event, op):
                op.end(oplog.OK, tag=view.oid)
                session.store.drop(mine)
                return HandOffResult(ticket, to, event.holder)
        op.end(oplog.FAILED)
    raise GitError(f"could not settle the hand-off of {ticket} after {MAX_ROUNDS} attempts")


def _refuse_if_supervised(session: Session, mine: Ownership) -> None:
    """Only the process working on a claim ends it: another live one holds its lock."""
    store = session.store
    if store.hold(mine):
        return
    pid = store.holder_pid(mine)
    raise RefusedError(f"{clean(mine.ticket)} is being worked on by another process of yours"
                       f"{f' (git claim run, pid {pid}, or its command)' if pid else ''}:"
                       " it releases the claim when its command ends (--force overrides)")


def _released_by_us(session: Session, view: ClaimView, mine: Ownership) -> str | None:
    """The outcome of our own unforced release of our claim, if its last note is that."""
    raw = session.local.note_on(view.notes_tip, mine.tag)
    note = parse_liveness(raw) if raw is not None else None
    if note and note.event == EVENT_RELEASED and not note.forced_by and note.holder == mine.agent:
        return note.outcome or OUTCOME_FREE
    return None


def reopen(session: Session, ticket: str) -> ClaimView:
    """Free a done or blocked ticket so it can be claimed again.

    One note on the outcome's tag (a `reopened` event), leased on the notes
    tip that showed the outcome: the next claim creates the next epoch.
    """
    settings = session.settings
    for _ in range(MAX_ROUNDS):
        view = read_claim(session, ticket)
        if view.record is None or view.record.state not in OUTCOME_STATES:
            raise RefusedError(f"{clean(ticket)} is not done or blocked ({view.state})")
        assert view.oid is not None
        with oplog.begin("reopen", ticket, agent=settings.agent, tag=view.oid) as op:
            event = LivenessRecord(event=EVENT_REOPENED, time=now(), agent=settings.agent,
                                   seq=(view.note.seq if view.note else 0) + 1,
                                   outcome=view.record.state, holder=view.record.agent)
            if decide(session, view, event, op):
                op.end(oplog.OK)
                return replace(view, note=event)
            op.end(oplog.FAILED)
    raise GitError(f"could not settle the reopening of {ticket} after {MAX_ROUNDS} attempts")
