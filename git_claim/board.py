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

STATE_ORDER = {"live": 0, "stale": 1, "blocked": 3, "done": 4, "unknown": 5}


def claim_state(view: ClaimView, *, ttl: float, max_skew: float, at: float) -> str:
    """live, stale, done, blocked, unknown (free tickets have no row)."""
    if view.record is None:
        return "free"
    if view.record.state in OUTCOME_STATES:
        return view.record.state
    if view.record.state != STATE_HELD:
        return "unknown"
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
        "epoch": view.epoch,
    }


def board_rows(session: Session) -> list[dict[str, Any]]:
    views = read_claims(session)
    ours = {record.tag for record in session.store.all()}
    at = now()
    rows = [row(session, view, at=at, ours=ours) for view in views.values()
            if view.record is not None]  # a free ticket's old claims are history, not rows
    rows.sort(key=lambda r: (STATE_ORDER.get(r["state"], 9), -(r["age_seconds"] or 0),
                             r["ticket"]))
    return rows


COLOURS = {"live": "32", "stale": "33", "blocked": "31", "done": "34",
           "unknown": "31;1"}
HEADER = ("TICKET", "STATE", "HOLDER", "AGE", "HEARTBEAT", "REAP IN", "TITLE")
MIN_SHRINK = {2: 12, 6: 10}  # HOLDER and TITLE give way first, down to these widths


def render_table(rows: list[dict[str, Any]], *, width: int | None = None, colour: bool = False,
                 titles: dict[str, str] | None = None) -> str:
    """A table sorted as given, fitted to `width` columns; colour only when asked."""
    if not rows:
        return "no claims\n"
    titles = titles or {}
    lines = [HEADER]
    for r in rows:
        mark = "*" if r["ours"] else " "
        lines.append((
            mark + clean(r["ticket"], 64), r["state"], clean(r["agent"] or "?", 80),
            format_duration(r["age_seconds"]) if r["age_seconds"] is not None else "-",
            _local_time(r["last_heartbeat"]) if r["last_heartbeat"] else "-",
            format_duration(r["reap_in_seconds"]) if r["reap_in_seconds"] is not None else "-",
            clean(titles.get(r["ticket"], ""), 200),
        ))
    if not any(line[6] for line in lines[1:]):  # no tracker titles: no empty column
        lines = [line[:6] for line in lines]
    widths = [max(len(line[i]) for line in lines) for i in range(len(lines[0]))]
    if width:
        shrinkable = (6, 2) if len(widths) == len(HEADER) else (2,)
        for column in shrinkable:  # the title first, then the holder
            excess = sum(widths) + 2 * (len(widths) - 1) - width
            if excess > 0:
                widths[column] = max(MIN_SHRINK[column], widths[column] - excess)
    text = []
    for index, line in enumerate(lines):
        cells = [_fit(cell, widths[i]) for i, cell in enumerate(line)]
        rendered = "  ".join(cell.ljust(widths[i]) for i, cell in enumerate(cells)).rstrip()
        if colour and index > 0 and line[1] in COLOURS:
            state_at = len(cells[0].ljust(widths[0])) + 2
            state = cells[1].ljust(widths[1])
            rendered = (rendered[:state_at] + f"\x1b[{COLOURS[line[1]]}m{state}\x1b[0m"
                        + rendered[state_at + len(state):])
        elif colour and index == 0:
            rendered = f"\x1b[1m{rendered}\x1b[0m"
        text.append(rendered)
    return "\n".join(text) + "\n"


def _fit(cell: str, width: int) -> str:
    return cell if len(cell) <= width else cell[: max(0, width - 1)] + "…"


def _local_time(stamp: str) -> str:
    from datetime import datetime, timezone

    parsed = datetime.strptime(stamp, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=timezone.utc)
    return parsed.astimezone().strftime("%H:%M:%S")
