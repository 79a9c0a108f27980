"""The machine-readable records the protocol writes into git objects.

Two kinds of record exist. A *claim record* is the message of the annotated
tag a claim ref points to (state `held`, or an outcome `done`/`blocked`). A
*liveness record* is the text of a git note on a claim tag (heartbeat,
release, reap, hand-off). Both are git trailers ("Key: value" lines), so `git show` and
`git notes show` stay readable, and both are parsed defensively: anyone with
push access can write them, so parsing never raises and is bounded.
"""

from __future__ import annotations

import re
import secrets
from dataclasses import dataclass, field

from .clock import iso, parse_iso

FORMAT_VERSION = 1
MAX_RECORD_BYTES = 64 * 1024  # what we read of a foreign message; the rest is ignored
NONCE_BYTES = 16  # 128 bits

STATE_HELD = "held"
STATE_DONE = "done"
STATE_BLOCKED = "blocked"
STATE_UNKNOWN = "unknown"
OUTCOME_STATES = (STATE_DONE, STATE_BLOCKED)

EVENT_HEARTBEAT = "heartbeat"
EVENT_RELEASED = "released"
EVENT_REAPED = "reaped"
EVENT_REOPENED = "reopened"  # on an outcome tag: the ticket is to be freed
# The holder passed its claim to the agent named by Claim-To: the claim has ended,
# and the ticket waits for that agent alone to take it up (as the next epoch).
EVENT_HANDED = "handed"

_TRAILER = re.compile(r"([A-Za-z][A-Za-z0-9-]*):[ \t]*(.*)\Z")
_SEED_PAIR = re.compile(r"([A-Za-z_][A-Za-z0-9_-]*)=(\S+)")


def new_nonce() -> str:
    return secrets.token_hex(NONCE_BYTES)


def one_line(value: str) -> str:
    """Values are single trailer lines: fold newlines so a reason cannot forge a key."""
    return " ".join(value.split())


def _decode(raw: bytes) -> str:
    return raw[:MAX_RECORD_BYTES].decode("utf-8", errors="replace")


def _trailers(text: str) -> dict[str, str]:
    found: dict[str, str] = {}
    for line in text.splitlines():
        match = _TRAILER.match(line.strip())
        if match:
            found.setdefault(match.group(1).lower(), match.group(2).strip())
    return found


MAX_NUMBER = 10**12  # seq and TTL beyond this are absurd: treat as unreadable


def _int_or_none(text: str | None) -> int | None:
    if text is None or len(text) > 20:
        return None
    try:
        number = int(text)
    except ValueError:
        return None
    return number if -MAX_NUMBER <= number <= MAX_NUMBER else None


@dataclass(frozen=True)
class ClaimRecord:
    """What a claim ref says: who holds the ticket, or how it ended."""

    ticket: str
    state: str
    agent: str
    host: str = ""
    time: float | None = None
    nonce: str = ""
    base: str = ""
    reason: str = ""
    claim_of: str = ""  # for outcomes: the claim tag they ended
    forced_by: str = ""
    no_gate: bool = False
    version: int | None = FORMAT_VERSION
    seed_pattern: bool = False  # made by hand: `git tag -a claim/T -m "agent=… nonce=…"`
    problem: str = ""  # why it could not be parsed (state unknown)
    epoch: int = 0  # the claim's place in its ticket's log (0: not recorded, an older claim)
    handed_from: str = ""  # a claim that took up a hand-off: the agent who handed it

    def to_message(self) -> str:
        headline = f"{self.state if self.state != STATE_HELD else 'claim'} {self.ticket}"
        lines = [
            f"Claim-Ticket: {self.ticket}",
            f"Claim-State: {self.state}",
            f"Claim-Agent: {one_line(self.agent)}",
            f"Claim-Host: {one_line(self.host)}",
            f"Claim-Time: {iso(self.time or 0)}",
            f"Claim-Nonce: {self.nonce}",
        ]
        if self.base:
            lines.append(f"Claim-Base: {self.base}")
        if self.reason:
            lines.append(f"Claim-Reason: {one_line(self.reason)}")
        if self.claim_of:
            lines.append(f"Claim-Of: {self.claim_of}")
        if self.forced_by:
            lines.append(f"Claim-Forced-By: {one_line(self.forced_by)}")
        if self.no_gate:
            lines.append("Claim-No-Gate: true")
        if self.epoch:
            lines.append(f"Claim-Epoch: {self.epoch}")
        if self.handed_from:
            lines.append(f"Claim-Handed-From: {one_line(self.handed_from)}")
        lines.append(f"Claim-Version: {FORMAT_VERSION}")
        return headline + "\n\n" + "\n".join(lines) + "\n"


def new_claim(ticket: str, *, agent: str, host: str, time: float, base: str,
              no_gate: bool = False, epoch: int = 0, handed_from: str = "") -> ClaimRecord:
    return ClaimRecord(ticket=ticket, state=STATE_HELD, agent=agent, host=host, time=time,
                       nonce=new_nonce(), base=base, no_gate=no_gate, epoch=epoch,
                       handed_from=handed_from)


def parse_claim(ticket: str, raw_message: bytes, *, tagger_name: str = "",
                tagger_time: float | None = None) -> ClaimRecord:
    """Parse a claim tag's message; never raises. Unparseable claims come back `unknown`."""
    text = _decode(raw_message)
    trailers = _trailers(text)
    if "claim-nonce" in trailers or "claim-state" in trailers:
        state = trailers.get("claim-state", STATE_HELD).lower()
        if state not in (STATE_HELD, *OUTCOME_STATES):
            state = STATE_UNKNOWN
        time = parse_iso(trailers.get("claim-time", ""))
        problem = ""
        if time is None:
            problem = "no valid Claim-Time"
            time = tagger_time
        if not trailers.get("claim-nonce"):
            problem = "no Claim-Nonce"
        if problem and state == STATE_HELD:
            state = STATE_UNKNOWN
        return ClaimRecord(
            ticket=trailers.get("claim-ticket", ticket), state=state,
            agent=trailers.get("claim-agent", tagger_name), host=trailers.get("claim-host", ""),
            time=time, nonce=trailers.get("claim-nonce", ""), base=trailers.get("claim-base", ""),
            reason=trailers.get("claim-reason", ""), claim_of=trailers.get("claim-of", ""),
            forced_by=trailers.get("claim-forced-by", ""),
            no_gate=trailers.get("claim-no-gate", "").lower() == "true",
            version=_int_or_none(trailers.get("claim-version")), problem=problem,
            epoch=max(0, _int_or_none(trailers.get("claim-epoch")) or 0),
            handed_from=trailers.get("claim-handed-from", ""),
        )
    seed = dict(_SEED_PAIR.findall(text))
    if "nonce" in seed or "agent" in seed:
        return ClaimRecord(ticket=ticket, state=STATE_HELD, agent=seed.get("agent", tagger_name),
                           host=seed.get("host", ""), time=tagger_time,
                           nonce=seed.get("nonce", ""), version=None, seed_pattern=True)
    return ClaimRecord(ticket=ticket, state=STATE_UNKNOWN, agent=tagger_name, time=tagger_time,
                       version=None, problem="not a claim record")


@dataclass(frozen=True)
class LivenessRecord:
    """One event in a claim's life, kept as the note on its claim tag."""

    event: str
    time: float | None
    agent: str
    seq: int = 0
    ttl: float | None = None  # reaps: the TTL that judged the claim stale
    outcome: str = ""  # releases: "free", "done" or "blocked"
    reason: str = ""
    forced_by: str = ""
    holder: str = ""  # the claim's holder, so the history survives the claim tag
    to: str = ""  # hand-offs: the agent the claim is handed to
    problem: str = ""
    extra: dict[str, str] = field(default_factory=dict)

    def to_text(self) -> str:
        lines = [
            f"Claim-Event: {self.event}",
            f"Claim-Time: {iso(self.time or 0)}",
            f"Claim-Agent: {one_line(self.agent)}",
            f"Claim-Seq: {self.seq}",
        ]
        if self.holder:
            lines.append(f"Claim-Holder: {one_line(self.holder)}")
        if self.ttl is not None:
            lines.append(f"Claim-TTL: {int(self.ttl)}")
        if self.outcome:
            lines.append(f"Claim-Outcome: {self.outcome}")
        if self.reason:
            lines.append(f"Claim-Reason: {one_line(self.reason)}")
        if self.forced_by:
            lines.append(f"Claim-Forced-By: {one_line(self.forced_by)}")
        if self.to:
            lines.append(f"Claim-To: {one_line(self.to)}")
        lines.append(f"Claim-Version: {FORMAT_VERSION}")
        return "\n".join(lines) + "\n"

    @property
    def ends_claim(self) -> bool:
        return self.event in (EVENT_RELEASED, EVENT_REAPED, EVENT_HANDED)


def parse_liveness(raw: bytes) -> LivenessRecord:
    """Parse a note; never raises. A note we cannot read is an event `unknown`."""
    trailers = _trailers(_decode(raw))
    event = trailers.get("claim-event", "unknown").lower()
    if event not in (EVENT_HEARTBEAT, EVENT_RELEASED, EVENT_REAPED, EVENT_REOPENED,
                     EVENT_HANDED):
        event = "unknown"
    to = trailers.get("claim-to", "")
    if event == EVENT_HANDED and not to:
        event = "unknown"  # a hand-off to no one: unreadable, so never taken as an end
    time = parse_iso(trailers.get("claim-time", ""))
    ttl = _int_or_none(trailers.get("claim-ttl"))
    return LivenessRecord(
        event=event, time=time, agent=trailers.get("claim-agent", ""),
        seq=_int_or_none(trailers.get("claim-seq")) or 0,
        ttl=float(ttl) if ttl is not None else None,
        outcome=trailers.get("claim-outcome", "").lower(), reason=trailers.get("claim-reason", ""),
        forced_by=trailers.get("claim-forced-by", ""), holder=trailers.get("claim-holder", ""),
        to=to if event == EVENT_HANDED else "",
        problem="" if event != "unknown" and time is not None else "unreadable note",
    )


def frees_ticket(record: ClaimRecord, note: LivenessRecord) -> bool:
    """Whether a ticket's newest claim, with this latest note, leaves the ticket free.

    A release as free and a reap end a claim (an unreadable one too: that is
    how `git release --force` clears it); a release as done or blocked keeps
    the outcome in force until a reopening; a reopening frees an outcome,
    whether a note recorded it or (older remotes) an outcome tag. A hand-off
    ends its claim too, so the next epoch may be created; but the ticket is
    then free for the agent it names alone (claims.py reads it so, as
    handed_to), which is the reader's judgement, not the protocol's.
    """
    if note.event == EVENT_REOPENED:
        return True
    if record.state in OUTCOME_STATES:
        return False  # an outcome tag stays until it is reopened
    if note.event in (EVENT_REAPED, EVENT_HANDED):
        return True
    if note.event == EVENT_RELEASED:
        return note.outcome not in OUTCOME_STATES
    return False
