"""Reading claims from the remote: one listing, one fetch of what we lack.

A ticket's state on the remote is two refs: the claim ref (who holds it, or
its outcome) and the ticket's notes ref (heartbeats and the decisions that end
a claim). Tag and note objects are immutable, so whatever is already in the
local object database is never fetched again.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Callable, Sequence

from .clock import now
from .errors import GitError
from .clock import iso
from .record import (EVENT_HEARTBEAT, EVENT_REOPENED, OUTCOME_STATES, STATE_HELD, STATE_UNKNOWN,
                     ClaimRecord, LivenessRecord, parse_claim, parse_liveness)
from .session import Session

CACHE_NAMESPACE = "refs/claim-cache/"
WILDCARD_THRESHOLD = 32  # above this many missing refs, fetch by pattern


def cache_ref(ref: str) -> str:
    return CACHE_NAMESPACE + ref[len("refs/"):]


@dataclass(frozen=True)
class ClaimView:
    """One ticket as the remote showed it at one listing."""

    ticket: str
    ref: str
    oid: str | None  # the claim ref's value; None: the ticket is free
    record: ClaimRecord | None
    notes_tip: str | None
    note: LivenessRecord | None  # the latest note on `oid`, if any

    @property
    def state(self) -> str:
        return "free" if self.record is None else self.record.state

    @property
    def held(self) -> bool:
        return self.record is not None and self.record.state == STATE_HELD

    @property
    def ended_by(self) -> LivenessRecord | None:
        """A recorded release or reap that the claim ref does not show yet (roll forward)."""
        if self.held and self.note is not None and self.note.ends_claim:
            return self.note
        return None

    @property
    def reopening(self) -> LivenessRecord | None:
        """A recorded end of a done or blocked outcome not completed yet (roll forward).

        A reopening, or a forced release of an outcome that a stale push had
        put back: either way the outcome ref is to be deleted.
        """
        if self.record is not None and self.record.state in OUTCOME_STATES \
                and self.note is not None and (self.note.event == EVENT_REOPENED
                                               or self.note.ends_claim):
            return self.note
        return None

    @property
    def unfinished(self) -> LivenessRecord | None:
        """A decided change (release, reap, reopening) that the claim ref does not show yet."""
        return self.ended_by or self.reopening

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


def _view(session: Session, ticket: str, oid: str | None, notes_tip: str | None) -> ClaimView:
    ref = session.settings.claim_ref(ticket)
    if oid is None:
        return ClaimView(ticket, ref, None, None, notes_tip, None)
    info = session.local.read_tag(oid)
    if info is None:
        record = ClaimRecord(ticket=ticket, state=STATE_UNKNOWN, agent="", version=None,
                             problem="claim object could not be read")
    elif info.target_type != "blob" and info.target_type != "commit" or not info.raw_message:
        record = ClaimRecord(ticket=ticket, state=STATE_UNKNOWN, agent=info.tagger_name,
                             time=info.tagger_time, version=None,
                             problem=f"claim ref points to a {info.target_type}, not a claim tag")
    else:
        record = parse_claim(ticket, info.raw_message, tagger_name=info.tagger_name,
                             tagger_time=info.tagger_time)
    note_bytes = session.local.note_on(notes_tip, oid)
    note = parse_liveness(note_bytes) if note_bytes is not None else None
    if note is not None and _final(record, note) and \
            not session.local.note_set_by(notes_tip, oid):
        record = _put_back(record, note)
    return ClaimView(ticket, ref, oid, record, notes_tip, note)


def _final(record: ClaimRecord, note: LivenessRecord) -> bool:
    """The note ends this claim (or reopens this outcome): the ref should not show it."""
    if record.state == STATE_HELD:
        return note.ends_claim
    return record.state in OUTCOME_STATES and (note.event == EVENT_REOPENED or note.ends_claim)


def _put_back(record: ClaimRecord, note: LivenessRecord) -> ClaimRecord:
    """A claim whose ending is not the latest event of its ticket: put back by a stale push.

    Every state change writes the ticket's notes ref, and nothing writes it
    between the decision that ends a claim and the completion of that end. So
    a decided but unfinished end is always the newest notes commit. A claim
    ref that shows an ended claim (or a reopened outcome) whose note is older
    than that came back from a copy: a `git push --tags [--force]` or
    `--mirror` from a stale clone. It is neither rolled forward nor taken
    over; it is reported, so a human can look (`git release --force`).
    """
    when = f" at {iso(note.time)}" if note.time else ""
    what = "claim" if record.state == STATE_HELD else f"{record.state} outcome"
    return replace(record, state=STATE_UNKNOWN,
                   problem=f"an old {what} of {record.agent or 'an unknown agent'}"
                           f" ({note.event}{when}) was pushed back, perhaps by a stale"
                           " `git push --tags` or `--mirror`")


def read_claims(session: Session, tickets: Sequence[str] | None = None, *,
                progress: Callable[[int, int], None] | None = None) -> dict[str, ClaimView]:
    """The remote's claims (all, or just `tickets`), objects fetched as needed."""
    settings = session.settings
    if tickets is None:
        patterns = [settings.ref_prefix, settings.notes_prefix]
    else:
        patterns = [r for t in tickets for r in (settings.claim_ref(t), settings.notes_ref(t))]
    listed = _list(session, patterns, exact=tickets is not None)
    _fetch_missing(session, listed, wildcard_ok=tickets is None)
    claim_oids: dict[str, str] = {}
    notes_tips: dict[str, str] = {}
    for ref, oid in listed.items():
        ticket = settings.ticket_of_ref(ref)
        if ticket is not None and "/" not in ticket:
            claim_oids[ticket] = oid
            continue
        ticket = settings.ticket_of_notes_ref(ref)
        if ticket is not None and "/" not in ticket:
            notes_tips[ticket] = oid
    names: list[str] = list(tickets) if tickets is not None else list(claim_oids)
    views: dict[str, ClaimView] = {}
    for count, ticket in enumerate(names, 1):
        views[ticket] = _view(session, ticket, claim_oids.get(ticket), notes_tips.get(ticket))
        if progress is not None:
            progress(count, len(names))
    return views


def read_claim(session: Session, ticket: str) -> ClaimView:
    return read_claims(session, [ticket])[ticket]


def _list(session: Session, patterns: list[str], *, exact: bool) -> dict[str, str]:
    listed = session.transport.list_refs(patterns)
    if exact:
        wanted = set(patterns)
        listed = {ref: oid for ref, oid in listed.items() if ref in wanted}
    return listed


def _fetch_missing(session: Session, listed: dict[str, str], *, wildcard_ok: bool) -> None:
    local = session.local
    missing = [ref for ref, oid in listed.items() if not local.has(oid)]
    if not missing:
        return
    if wildcard_ok and len(missing) > WILDCARD_THRESHOLD:
        prefixes = sorted({session.settings.ref_prefix, session.settings.notes_prefix})
        specs = [f"+{p}*:{cache_ref(p)}*" for p in prefixes]
    else:
        specs = [f"+{ref}:{cache_ref(ref)}" for ref in missing]
    try:
        session.transport.fetch(specs)
    except GitError as failure:
        # A ref may have moved or vanished between listing and fetching, or the
        # server cannot send one object (malformed, or a tag of a missing
        # object), which fails the whole fetch. Fetch what is there now, halving
        # the set around failures, so that one bad claim spoils only itself:
        # its view comes back unknown.
        current = session.transport.list_refs(missing)
        specs = [f"+{ref}:{cache_ref(ref)}" for ref in missing if ref in current]
        _fetch_around_failures(session, specs, failure)


BISECT_FETCH_LIMIT = 64  # fetches spent isolating unfetchable refs


def _fetch_around_failures(session: Session, specs: list[str], failure: GitError) -> None:
    """Fetch `specs`, splitting any failing set in halves down to single refs.

    k bad refs among n cost about 2k·log2(n/k) fetches; past the limit the
    rest is left unfetched (those claims read as unknown, and unknown claims
    are reported, never reaped). When anything failed, one more listing tells
    a server that cannot send some objects from one that went away: the
    latter is an error (exit 3), not a remote full of unreadable claims.
    """
    budget = BISECT_FETCH_LIMIT
    pending = [specs] if specs else []
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
            session.transport.list_refs([spec.lstrip("+").split(":", 1)[0] for spec in specs[:1]])
        except GitError:
            raise failure from None
