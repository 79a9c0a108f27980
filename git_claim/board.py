"""The board: every claim on the remote as rows, for `git claim list`.

Rows are plain dicts with stable field names (the `--json` output); the
table is rendered from the same rows, with foreign text made safe.
"""

from __future__ import annotations

from typing import Any

from .claims import ClaimView, read_claims
from .clock import format_duration, iso, now
from .record import EVENT_HEARTBEAT, OUTCOME_STATES, STATE_HELD
from .safetext import clean
from .session import Session

STATE_ORDER = {"live": 0, "stale": 1, "ending": 2, "blocked": 3, "done": 4, "unknown": 5}


def claim_state(view: ClaimView, *, ttl: float, max_skew: float, at: float) -> str:
    """live, stale, ending (a release or reap is recorded), done, blocked, unknown."""
    if view.record is None:
        return "free"
    if view.record.state in OUTCOME_STATES:
        return view.record.state
    if view.record.state != STATE_HELD:
        return "unknown"
    if view.ended_by is not None:
        return "ending"
    age = view.age(at)
    return "stale" if age is not None and age > ttl + max_skew else "live"


def row(session: Session, view: ClaimView, *, at: float, ours: set[str]) -> dict[str, Any]:
    settings = session.settings
    record = view.record
    state = claim_state(view, ttl=settings.ttl, max_skew=settings.max_skew, at=at)
    age = view.age(at)
    heartbeat = view.note.time if view.note and view.note.event == EVENT_HEARTBEAT else None
    reap_in = None
    if state in ("live", "stale") and age is not None:
        reap_in = max(0.0, settings.ttl + settings.max_skew - age)
    return {
        "ticket": view.ticket,
        "ref": view.ref,
        "state": state,
        "agent": record.agent if record else None,
        "host": record.host if record else None,
        "claimed_at": iso(record.time) if record and record.time else None,
        "age_seconds": round(at - record.time) if record and record.time else None,
        "last_heartbeat": iso(heartbeat) if heartbeat else None,
        "beats": view.beats,
        "reap_in_seconds": round(reap_in) if reap_in is not None else None,
        "reason": record.reason if record else None,
        "ours": view.oid in ours,
        "tag": view.oid,
        "seed_pattern": bool(record and record.seed_pattern),
        "problem": record.problem if record and record.problem else None,
    }


def board_rows(session: Session) -> list[dict[str, Any]]:
    views = read_claims(session)
    ours = {record.tag for record in session.store.all()}
    at = now()
    rows = [row(session, view, at=at, ours=ours) for view in views.values()]
    rows.sort(key=lambda r: (STATE_ORDER.get(r["state"], 9), -(r["age_seconds"] or 0),
                             r["ticket"]))
    return rows


def render_table(rows: list[dict[str, Any]]) -> str:
    if not rows:
        return "no claims\n"
    header = ("TICKET", "STATE", "HOLDER", "AGE", "HEARTBEAT", "REAP IN")
    lines = [header]
    for r in rows:
        mark = "*" if r["ours"] else " "
        lines.append((
            mark + clean(r["ticket"], 40), r["state"], clean(r["agent"] or "?", 40),
            format_duration(r["age_seconds"]) if r["age_seconds"] is not None else "-",
            _local_time(r["last_heartbeat"]) if r["last_heartbeat"] else "-",
            format_duration(r["reap_in_seconds"]) if r["reap_in_seconds"] is not None else "-",
        ))
    widths = [max(len(line[i]) for line in lines) for i in range(len(header))]
    text = ["  ".join(cell.ljust(widths[i]) for i, cell in enumerate(line)).rstrip()
            for line in lines]
    return "\n".join(text) + "\n"


def _local_time(stamp: str) -> str:
    from datetime import datetime, timezone

    parsed = datetime.strptime(stamp, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=timezone.utc)
    return parsed.astimezone().strftime("%H:%M:%S")
