"""The board: every claim on the remote as rows, for `git claim list`.

Rows carry stable field names (the `--json` output); the table is rendered
from the same rows by the CLI, with foreign text made safe. A row's state
and "reap in" come from the reaper's own staleness rule (liveness.staleness),
so the board never calls a claim stale before `git reap` would free it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from .claims import ClaimView, read_claims
from .clock import iso, now
from .liveness import reaper_memory, staleness
from .reaper_memory import ReaperMemory
from .record import EVENT_HEARTBEAT, OUTCOME_STATES, STATE_HELD
from .session import Session
from .states import ClaimState

STATE_ORDER = {ClaimState.LIVE: 0, ClaimState.STALE: 1, ClaimState.BLOCKED: 3,
               ClaimState.DONE: 4, ClaimState.UNKNOWN: 5}


def claim_state(view: ClaimView, *, ttl: float, max_skew: float, at: float,
                seen_for: float | None = None) -> ClaimState:
    """live, stale, done, blocked, unknown; free for a ticket with no claim in force."""
    if view.record is None:
        return ClaimState.FREE
    if view.record.state in OUTCOME_STATES:
        return ClaimState(view.record.state)
    if view.record.state != STATE_HELD:
        return ClaimState.UNKNOWN
    judged = staleness(view, ttl=ttl, max_skew=max_skew, at=at, seen_for=seen_for)
    return ClaimState.STALE if judged.stale else ClaimState.LIVE


@dataclass(frozen=True)
class BoardRow:
    """One ticket whose newest claim is in force."""

    ticket: str
    ref: str
    state: ClaimState
    agent: str | None
    host: str | None
    claimed_at: str | None
    age_seconds: int | None
    last_heartbeat: str | None
    beats: int
    reap_in_seconds: int | None  # 0 once stale: `git reap` frees it now
    reason: str | None
    ours: bool
    tag: str | None
    seed_pattern: bool
    problem: str | None
    epoch: int
    handed_from: str | None = None  # a hand-off to `agent` not yet taken up: who handed it

    def as_dict(self) -> dict[str, Any]:
        return {"ticket": self.ticket, "ref": self.ref, "state": self.state.value,
                "agent": self.agent, "host": self.host, "claimed_at": self.claimed_at,
                "age_seconds": self.age_seconds, "last_heartbeat": self.last_heartbeat,
                "beats": self.beats, "reap_in_seconds": self.reap_in_seconds,
                "reason": self.reason, "ours": self.ours, "tag": self.tag,
                "seed_pattern": self.seed_pattern, "problem": self.problem,
                "epoch": self.epoch, "handed_from": self.handed_from}


def row(session: Session, view: ClaimView, *, at: float, ours: set[str],
        memory: ReaperMemory | None = None) -> BoardRow:
    settings = session.settings
    record = view.record
    seen_for = memory.remembered_for(view) if memory is not None else None
    state = claim_state(view, ttl=settings.ttl, max_skew=settings.max_skew, at=at,
                        seen_for=seen_for)
    heartbeat = view.note.time if view.note and view.note.event == EVENT_HEARTBEAT else None
    reap_in = None
    if state in (ClaimState.LIVE, ClaimState.STALE):
        judged = staleness(view, ttl=settings.ttl, max_skew=settings.max_skew, at=at,
                           seen_for=seen_for)
        if judged.reap_in is not None:
            # rounded up: "0s" only once the reaper agrees it is stale
            reap_in = 0 if judged.stale else max(1, math.ceil(judged.reap_in))
    return BoardRow(
        ticket=view.ticket, ref=view.ref, state=state,
        agent=record.agent if record else None,
        host=record.host if record else None,
        claimed_at=iso(record.time) if record and record.time else None,
        age_seconds=round(at - record.time) if record and record.time else None,
        last_heartbeat=iso(heartbeat) if heartbeat else None,
        beats=view.beats, reap_in_seconds=reap_in,
        reason=record.reason if record else None,
        ours=view.oid in ours, tag=view.oid,
        seed_pattern=bool(record and record.seed_pattern),
        problem=record.problem if record and record.problem else None,
        epoch=view.epoch, handed_from=view.handed_from if view.handed_to is not None else None)


def board_rows(session: Session) -> list[BoardRow]:
    """Every claim in force, by state then age; judged as this clone's reaper would."""
    views = read_claims(session)
    agent = session.settings.agent  # ours: what this agent may release (holders.my_records)
    ours = {record.tag for record in session.store.all()
            if record.agent == agent or record.worktree_copy}
    at = now()
    memory = reaper_memory(session)
    rows = [row(session, view, at=at, ours=ours, memory=memory) for view in views.values()
            if view.record is not None]  # a free ticket's old claims are history, not rows
    rows.sort(key=lambda r: (STATE_ORDER.get(r.state, 9), -(r.age_seconds or 0), r.ticket))
    return rows
