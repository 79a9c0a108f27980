"""Reading claims from the remote: one listing, one fetch of what we lack.

A ticket's state on the remote is its claim refs (an append-only log, one
ref per claim: refs/claims/640, 640@2, ...) and the ticket's notes ref
(heartbeats, and the decisions that end a claim or record its outcome). Tag
and note objects are immutable, so whatever is already in the local object
database is never fetched again.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from typing import Any

from .clock import now
from .errors import GitError, NoteUnreadable
from .record import (
    EVENT_HANDED,
    EVENT_HEARTBEAT,
    EVENT_RELEASED,
    OUTCOME_STATES,
    STATE_HELD,
    STATE_UNKNOWN,
    ClaimRecord,
    LivenessRecord,
    frees_ticket,
    parse_claim,
    parse_liveness,
)
from .session import Session

WILDCARD_THRESHOLD = 32  # above this many missing refs, fetch by pattern


@dataclass(frozen=True)
class ClaimView:
    """One ticket as the remote showed it at one listing.

    A ticket's claims are an append-only log: refs/claims/640, 640@2, ...
    Only the highest epoch counts. It is *in force* while it is held or
    records an outcome (done, blocked); a note that ends it (a release, a
    reap, a reopening) frees the ticket, and the next claim creates the
    next epoch.

    A hand-off (`git release T --to B`) ends the holder's claim, but the
    ticket is not free: it waits for B alone. Such a view keeps the handed
    claim as `oid` (a reap or a forced release writes its note there), reads
    as held by B since the hand-off (`record.agent`, `record.time`: the
    reaper's last sign of life), and is not `held` (no one holds it yet: its
    former holder's beats and releases are refused, and B takes it up by
    creating the next epoch, see lock.claim).
    """

    ticket: str
    ref: str  # the claim in force; when free, the ref the next claim creates
    oid: str | None  # the claim in force; None: the ticket is free
    record: ClaimRecord | None  # an outcome recorded in a note reads as that outcome
    notes_tip: str | None
    note: LivenessRecord | None  # the latest note on the newest claim (in force or ended)
    epoch: int = 1  # of `ref`
    previous: str | None = None  # when free: the newest claim's tag (ended), if any
    claims: tuple[tuple[int, str], ...] = ()  # every epoch listed, (epoch, tag id)
    handed_to: str | None = None  # a hand-off not yet taken up: the agent it waits for
    handed_from: str | None = None  # ... and the holder who handed it
    note_unreadable: bool = False  # the notes tip is here but not whole: state unknown
    note_missing: str | None = None  # ... and the note's blob id, when known

    @property
    def state(self) -> str:
        return "free" if self.record is None else self.record.state

    @property
    def held(self) -> bool:
        """Held by its claim's own holder (a hand-off waiting for its taker is not)."""
        return self.record is not None and self.record.state == STATE_HELD \
            and self.handed_to is None

    @property
    def last_alive(self) -> float | None:
        """The holder's last sign of life: its last heartbeat, else the claim time."""
        if self.note is not None and self.note.event == EVENT_HEARTBEAT and self.note.time:
            return self.note.time
        return self.record.time if self.record else None

    @property
    def beats(self) -> int:
        return self.note.seq if self.note and self.note.event == EVENT_HEARTBEAT else 0

    def age(self, at: float | None = None) -> float | None:
        alive = self.last_alive
        return None if alive is None else (at if at is not None else now()) - alive


def _view(session: Session, ticket: str, claims: dict[int, str],
          notes_tip: str | None) -> ClaimView:
    settings = session.settings
    listed = tuple(sorted(claims.items()))
    if not claims:
        return ClaimView(ticket, settings.claim_ref(ticket), None, None, notes_tip, None,
                         claims=listed)
    epoch = max(claims)
    oid = claims[epoch]
    ref = settings.claim_ref(ticket, epoch)
    record = _claim_record(session, ticket, oid)
    try:
        note_bytes = session.local.read_note(notes_tip, oid)
    except NoteUnreadable as unreadable:
        # its last heartbeat or release may be in there: never judged as no note
        return ClaimView(ticket, ref, oid, replace(record, state=STATE_UNKNOWN, problem=str(
            unreadable)), notes_tip, None, epoch, claims=listed, note_unreadable=True,
            note_missing=unreadable.missing)
    note = parse_liveness(note_bytes) if note_bytes is not None else None
    if note is not None and note.event == EVENT_HANDED and record.state == STATE_HELD:
        # in force for the agent it names alone, since the hand-off (its last sign of life)
        waiting = replace(record, agent=note.to, host="", time=note.time)
        return ClaimView(ticket, ref, oid, waiting, notes_tip, note, epoch, claims=listed,
                         handed_to=note.to, handed_from=note.holder or record.agent)
    if note is not None and frees_ticket(record, note):
        return ClaimView(ticket, settings.claim_ref(ticket, epoch + 1), None, None, notes_tip,
                         note, epoch + 1, previous=oid, claims=listed)
    if note is not None and record.state == STATE_HELD and note.event == EVENT_RELEASED \
            and note.outcome in OUTCOME_STATES:
        record = replace(record, state=note.outcome, agent=note.agent or record.agent,
                         time=note.time, reason=note.reason, forced_by=note.forced_by)
    return ClaimView(ticket, ref, oid, record, notes_tip, note, epoch, claims=listed)


def _claim_record(session: Session, ticket: str, oid: str) -> ClaimRecord:
    info = session.local.read_tag(oid)
    if info is None:
        return ClaimRecord(ticket=ticket, state=STATE_UNKNOWN, agent="", version=None,
                           problem="claim object could not be read")
    if info.target_type != "blob" and info.target_type != "commit" or not info.raw_message:
        return ClaimRecord(ticket=ticket, state=STATE_UNKNOWN, agent=info.tagger_name,
                           time=info.tagger_time, version=None,
                           problem=f"claim ref points to a {info.target_type}, not a claim tag")
    return parse_claim(ticket, info.raw_message, tagger_name=info.tagger_name,
                       tagger_time=info.tagger_time)


def read_claims(session: Session, tickets: Sequence[str] | None = None, *,
                progress: Callable[[int, int], None] | None = None,
                for_push: bool = False) -> dict[str, ClaimView]:
    """The remote's claims (all, or just `tickets`), objects fetched as needed.

    `for_push`: a claim's push follows at once: the listing is read from the
    connection that push will use, where the transport can keep one open, so
    the read costs no connection of its own. Guarded writes (a release, a
    beat) list the plain way: their push negotiates on a fresh advertisement.
    """
    settings = session.settings
    if tickets is None:
        patterns = [settings.ref_prefix, settings.notes_prefix]
    else:
        patterns = [r for t in tickets for r in (settings.claim_ref(t), settings.notes_ref(t))]
    transport = session.transport
    listed = transport.list_refs_for_push(patterns) if for_push \
        else transport.list_refs(patterns)
    wanted = set(tickets) if tickets is not None else None
    claims: dict[str, dict[int, str]] = {}
    notes_tips: dict[str, str] = {}
    kept: dict[str, str] = {}
    for ref, oid in listed.items():
        found = settings.claim_of_ref(ref)
        if found is not None and (wanted is None or found[0] in wanted):
            claims.setdefault(found[0], {})[found[1]] = oid
            kept[ref] = oid
            continue
        ticket = settings.ticket_of_notes_ref(ref)
        if ticket is not None and "/" not in ticket and (wanted is None or ticket in wanted):
            notes_tips[ticket] = oid
            kept[ref] = oid
    _fetch_missing(session, _newest_only(settings, kept, claims), wildcard_ok=tickets is None)
    names: list[str] = list(tickets) if tickets is not None else list(claims)
    views: dict[str, ClaimView] = {}
    for count, ticket in enumerate(names, 1):
        views[ticket] = _view(session, ticket, claims.get(ticket, {}), notes_tips.get(ticket))
        if progress is not None:
            progress(count, len(names))
    torn = [ticket for ticket, view in views.items() if view.note_unreadable]
    if torn:
        # A notes tip this clone has but cannot read whole (a copy cut short, a
        # `git gc` pruning it): a fetch skips tips that are present, so fetch
        # them again; what still cannot be read stays unknown, never "no note".
        missing = [view.note_missing for view in views.values() if view.note_missing]
        try:
            transport.refetch([settings.notes_ref(ticket) for ticket in torn], missing)
        except GitError:
            pass
        for ticket in torn:
            views[ticket] = _view(session, ticket, claims.get(ticket, {}), notes_tips.get(ticket))
    return views


def _newest_only(settings: Any, listed: dict[str, str],
                 claims: dict[str, dict[int, str]]) -> dict[str, str]:
    """The refs whose objects a view reads: notes tips and each ticket's newest claim.

    Older epochs are history: reading them would make every listing grow
    with the number of finished claims.
    """
    newest = {settings.claim_ref(ticket, max(epochs)) for ticket, epochs in claims.items()}
    return {ref: oid for ref, oid in listed.items()
            if ref in newest or settings.claim_of_ref(ref) is None}


def unclaimed(session: Session, ticket: str) -> ClaimView:
    """A ticket a listing of every claim showed no ref for: free, its first epoch next."""
    return _view(session, ticket, {}, None)


def read_claim(session: Session, ticket: str, *, for_push: bool = False) -> ClaimView:
    return read_claims(session, [ticket], for_push=for_push)[ticket]


def fetch_every_epoch(session: Session, view: ClaimView) -> None:
    """Fetch the claim tags of a ticket's older epochs that this clone lacks.

    A listing reads only the newest claim; a ticket's history names them
    all, and a clone that never held the earlier claims has none of them.
    """
    settings = session.settings
    listed = {settings.claim_ref(view.ticket, epoch): oid for epoch, oid in view.claims}
    _fetch_missing(session, listed, wildcard_ok=False)


def _fetch_missing(session: Session, listed: dict[str, str], *, wildcard_ok: bool) -> None:
    local = session.local
    missing = [ref for ref, oid in listed.items() if not local.has(oid)]
    if not missing:
        return
    if wildcard_ok and len(missing) > WILDCARD_THRESHOLD:
        prefixes = sorted({session.settings.ref_prefix, session.settings.notes_prefix})
        sources = [f"{prefix}*" for prefix in prefixes]
    else:
        sources = missing
    try:
        session.transport.fetch(sources)
    except GitError as failure:
        # A ref may have moved or vanished between listing and fetching, or the
        # server cannot send one object (malformed, or a tag of a missing
        # object), which fails the whole fetch. Fetch what is there now, halving
        # the set around failures, so that one bad claim spoils only itself:
        # its view comes back unknown.
        current = session.transport.list_refs(missing)
        _fetch_around_failures(session, [ref for ref in missing if ref in current], failure)


BISECT_FETCH_LIMIT = 64  # fetches spent isolating unfetchable refs


def _fetch_around_failures(session: Session, refs: list[str], failure: GitError) -> None:
    """Fetch `refs`, splitting any failing set in halves down to single refs.

    k bad refs among n cost about 2k·log2(n/k) fetches; past the limit the
    rest is left unfetched (those claims read as unknown, and unknown claims
    are reported, never reaped). When anything failed, one more listing tells
    a server that cannot send some objects from one that went away: the
    latter is an error (exit 3), not a remote full of unreadable claims.
    """
    budget = BISECT_FETCH_LIMIT
    pending = [refs] if refs else []
    failed = False
    while pending and budget > 0:
        batch = pending.pop()
        budget -= 1
        try:
            session.transport.fetch(batch)
        except GitError:
            failed = True
            if len(batch) > 1:
                middle = len(batch) // 2
                pending.extend([batch[middle:], batch[:middle]])
    if failed or pending:
        try:
            session.transport.list_refs(refs[:1])
        except GitError:
            raise failure from None
