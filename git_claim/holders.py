"""Who holds a claim, in words, and which claims are ours.

The words are those of every refusal and every lost claim ("640 is held by
asif-laptop since 12:03 (4 min ago)", "640 is no longer yours (reaped by
ci-reaper at 12:31)"), said the same way by claim, release, heartbeat and
verify. Which claims are ours comes from our ownership records
(git_claim.ownership): the tags we made, not an agent name.
This module never prints.
"""

from __future__ import annotations

from .claims import ClaimView
from .clock import format_duration, local_hhmm, now
from .ownership import Ownership
from .record import EVENT_HANDED, EVENT_REAPED, OUTCOME_STATES, STATE_UNKNOWN, parse_liveness
from .safetext import clean
from .session import Session


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
    if view.handed_to is not None:
        at = f" at {local_hhmm(record.time)}" if record.time else ""
        by = clean(view.handed_from or "an unknown agent", 80)
        mine = (": take it up with `git claim " + ticket + "`"
                if me is not None and view.handed_to == me else "")
        return f"{ticket} is held by {who} (handed off by {by}{at}, not yet taken up){mine}"
    if me is not None and record.agent == me:
        return (f"{ticket} is held by {who}{when}, under your agent name but not by this"
                " process (another claim attempt, or an old claim of yours)")
    return f"{ticket} is held by {who}{when}"


def lost_message(session: Session, view: ClaimView, mine: Ownership) -> str:
    """'640 is no longer yours (reaped by ci-reaper at 12:31)': what became of our claim."""
    ticket = clean(view.ticket)
    raw = session.local.note_on(view.notes_tip, mine.tag)
    if raw is not None:
        note = parse_liveness(raw)
        if note.ends_claim:
            at = f" at {local_hhmm(note.time)}" if note.time else ""
            if note.event == EVENT_HANDED:
                return (f"{ticket} is no longer yours (handed to {clean(note.to, 80)}"
                        f" by {clean(note.agent, 80)}{at})")
            verb = "reaped" if note.event == EVENT_REAPED else "released"
            return f"{ticket} is no longer yours ({verb} by {clean(note.agent, 80)}{at})"
    if view.oid is not None and view.oid != mine.tag:
        return f"{ticket} is no longer yours (another claim is in force: {describe_holder(view)})"
    if mine.tag in dict(view.claims).values():
        return f"{ticket} is no longer yours (its claim was superseded)"
    return f"{ticket} is no longer yours (the claim is gone from the remote)"


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
