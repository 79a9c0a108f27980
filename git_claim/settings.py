"""Settings: command-line flags over environment over `git config claim.*` over defaults.

The table of keys here is the one the README and man pages document.
"""

from __future__ import annotations

import getpass
import hashlib
import os
import re
import socket
from collections.abc import Mapping
from dataclasses import dataclass, field

from .clock import parse_duration
from .errors import UsageError
from .gateway.discovery import Location
from .pickconfig import (
    DEFAULT_PRIORITY_LABELS,
    parse_capabilities,
    parse_priority_labels,
)

DEFAULTS = {
    "claim.remote": "origin",
    "claim.refPrefix": "refs/claims/",
    "claim.notesPrefix": "refs/notes/claims/",
    "claim.transport": "auto",
    "claim.ttl": "15m",
    "claim.maxSkew": "5m",
    "claim.heartbeat": "5m",
    "claim.branchPrefix": "claim/",
    "claim.source": "",
    "claim.tracker": "",
    "claim.gateLabel": "design:required",
    "claim.approvedLabel": "design:approved",
    "claim.label": "in-progress",
    "claim.blockedLabel": "blocked",
    "claim.spread": "auto",
    "claim.project": "",
    "claim.projectOwner": "@me",
    "claim.projectStatus": "In Progress",
    "claim.trackerTimeout": "20s",
    "claim.worktree": "false",
    "claim.worktreeDir": "",
    "claim.assign": "",
    "claim.idPattern": "",
    "claim.dependencies": "true",
    "claim.parentsWait": "false",
    "claim.capabilities": "",
    "claim.maxPerAgent": "1",
    "claim.priorityLabels": DEFAULT_PRIORITY_LABELS,
}
WIP_PREFIX = "claim.wip."  # claim.wip.<label> N: the team's limit of live claims per label
AGENT_VARIABLE = "GIT_CLAIM_AGENT"
MAX_AGENT_LENGTH = 100


@dataclass(frozen=True)
class Settings:
    remote: str
    ref_prefix: str
    notes_prefix: str
    transport: str
    agent: str
    host: str
    ttl: float
    max_skew: float
    heartbeat: float
    branch_prefix: str
    source: str = ""
    tracker: str = ""
    gate_label: str = "design:required"
    approved_label: str = "design:approved"
    claim_label: str = "in-progress"
    blocked_label: str = "blocked"
    spread: int = 0  # 0: `auto`, adapted to the agents seen lately (picking.adaptive_spread)
    project: str = ""
    project_owner: str = "@me"
    project_status: str = "In Progress"
    tracker_timeout: float = 20.0
    worktree: bool = False
    worktree_dir: str = ""
    assign: str = ""
    id_pattern: re.Pattern[str] | None = None
    dependencies: bool = True
    parents_wait: bool = False
    capabilities: frozenset[str] = frozenset()
    max_per_agent: int = 1  # for --next; 0: no limit
    wip: Mapping[str, int] = field(default_factory=dict)  # lower-case label -> limit
    priority_labels: Mapping[str, int] = field(default_factory=dict)

    def claim_ref(self, ticket: str, epoch: int = 1) -> str:
        """The ref of a ticket's `epoch`-th claim: refs/claims/640, then 640@2, 640@3, ...

        Claim refs are only ever created (see docs/protocol.md): each claim of
        a ticket is a new ref, and the epoch doubles as a fencing token. The
        first keeps the bare name, so a hand-made `git tag -a claim/640` is
        the first claim of 640 in tags mode. Ticket ids never contain '@'.
        """
        return self.ref_prefix + ticket + ("" if epoch == 1 else f"{EPOCH_MARK}{epoch}")

    def claim_of_ref(self, ref: str) -> tuple[str, int] | None:
        """(ticket, epoch) of a claim ref; None for a ref that is not one."""
        if not ref.startswith(self.ref_prefix):
            return None
        return parse_claim_name(ref[len(self.ref_prefix):])

    def notes_ref(self, ticket: str) -> str:
        return self.notes_prefix + ticket

    def ticket_of_notes_ref(self, ref: str) -> str | None:
        return ref[len(self.notes_prefix):] if ref.startswith(self.notes_prefix) else None


EPOCH_MARK = "@"
# int() refuses longer digit strings; a claim never makes one (it adds 1 to the largest epoch)
MAX_EPOCH_DIGITS = 4000


def parse_claim_name(name: str) -> tuple[str, int] | None:
    """(ticket, epoch) of a claim ref's name under its prefix: `640` or `640@2`.

    The one reading of claim names, for the client and the server-side guard
    alike, so the two never disagree on which refs are claims.
    """
    if EPOCH_MARK not in name:
        return (name, 1) if name and "/" not in name else None
    ticket, _, number = name.rpartition(EPOCH_MARK)
    if not ticket or "/" in ticket or not (number.isascii() and number.isdigit()) \
            or number.startswith("0") or len(number) > MAX_EPOCH_DIGITS or int(number) < 2:
        return None
    return ticket, int(number)


def _get(config: dict[str, list[str]], key: str) -> str:
    values = config.get(key.lower())
    return values[-1] if values else DEFAULTS[key]


def _prefix(value: str, key: str) -> str:
    if not value.startswith("refs/") or not value.endswith("/") or ".." in value \
            or any(c in value for c in " ~^:?*[\\") or "//" in value:
        raise UsageError(f"{key} must look like refs/<name>/ (ending in '/'), not {value!r}")
    return value


def default_agent(location: Location) -> str:
    """user@host:dir-hash: two agents in two worktrees of one machine differ."""
    place = location.worktree or location.git_dir
    digest = hashlib.sha1(str(place).encode()).hexdigest()[:4]
    try:
        user = getpass.getuser()
    except (KeyError, OSError):
        user = "agent"
    return f"{user}@{short_host()}:{place.name}-{digest}"


def short_host() -> str:
    return socket.gethostname().split(".")[0] or "localhost"


def check_agent(agent: str) -> str:
    if not agent or len(agent) > MAX_AGENT_LENGTH or any(
            c in agent for c in "<>") or not agent.isprintable():
        raise UsageError(f"invalid agent name {agent!r}: 1 to {MAX_AGENT_LENGTH} printable"
                         " characters without '<' or '>'")
    return agent


def load_settings(location: Location, config: dict[str, list[str]], *,
                  agent: str | None = None, remote: str | None = None,
                  ttl: str | None = None, max_skew: str | None = None,
                  transport: str | None = None, source: str | None = None) -> Settings:
    if agent is not None:
        chosen_agent = agent
    elif os.environ.get(AGENT_VARIABLE) is not None:
        chosen_agent = os.environ[AGENT_VARIABLE]
    else:
        chosen_agent = (config.get("claim.agent") or [""])[-1] or default_agent(location)
    return Settings(
        remote=remote or _get(config, "claim.remote"),
        ref_prefix=_prefix(_get(config, "claim.refPrefix"), "claim.refPrefix"),
        notes_prefix=_prefix(_get(config, "claim.notesPrefix"), "claim.notesPrefix"),
        transport=transport or _get(config, "claim.transport"),
        agent=check_agent(chosen_agent),
        host=short_host(),
        ttl=parse_duration(ttl or _get(config, "claim.ttl"), what="TTL"),
        max_skew=parse_duration(max_skew or _get(config, "claim.maxSkew"), what="max skew"),
        heartbeat=parse_duration(_get(config, "claim.heartbeat"), what="heartbeat interval"),
        branch_prefix=_get(config, "claim.branchPrefix"),
        source=source if source is not None else _get(config, "claim.source"),
        tracker=_get(config, "claim.tracker") or (
            "gh" if (source if source is not None else _get(config, "claim.source")) == "gh"
            else ""),
        gate_label=_get(config, "claim.gateLabel"),
        approved_label=_get(config, "claim.approvedLabel"),
        claim_label=_get(config, "claim.label"),
        blocked_label=_get(config, "claim.blockedLabel"),
        spread=_spread(_get(config, "claim.spread")),
        project=_get(config, "claim.project"),
        project_owner=_get(config, "claim.projectOwner"),
        project_status=_get(config, "claim.projectStatus"),
        tracker_timeout=parse_duration(_get(config, "claim.trackerTimeout"),
                                       what="tracker timeout"),
        worktree=_get(config, "claim.worktree").lower() in _TRUE,
        worktree_dir=_get(config, "claim.worktreeDir"),
        assign=_get(config, "claim.assign"),
        id_pattern=_id_pattern(_get(config, "claim.idPattern")),
        dependencies=_flag(_get(config, "claim.dependencies"), "claim.dependencies"),
        parents_wait=_flag(_get(config, "claim.parentsWait"), "claim.parentsWait"),
        capabilities=parse_capabilities(_get(config, "claim.capabilities")),
        max_per_agent=_count(_get(config, "claim.maxPerAgent"), "claim.maxPerAgent"),
        wip=_wip_limits(config),
        priority_labels=_priority_labels(_get(config, "claim.priorityLabels")),
    )


_TRUE = ("true", "yes", "on", "1")
_FALSE = ("false", "no", "off", "0", "")


def _flag(value: str, key: str) -> bool:
    """A git boolean, as `git config --type=bool` reads it."""
    if value.lower() in _TRUE:
        return True
    if value.lower() in _FALSE:
        return False
    raise UsageError(f"{key} must be true or false, not {value!r}")


def _count(value: str, key: str, *, zero: str = " (0 for no limit)") -> int:
    """A whole number, 0 or more; `zero` says what 0 means, for the error."""
    if not (value.strip().isascii() and value.strip().isdigit()):
        raise UsageError(f"{key} must be a whole number{zero}, not {value!r}")
    return int(value)


def _wip_limits(config: dict[str, list[str]]) -> dict[str, int]:
    """The team's limits of live claims per label (labels compared without case).

    `claim.wip.<label> N` where the label can be a git key name (letters,
    digits, `-`, dots); `claim.wipLimit LABEL=N`, one value per label, for
    any other label (`area:ui=2`).
    """
    limits: dict[str, int] = {}
    for key, values in config.items():
        if key.startswith(WIP_PREFIX) and len(key) > len(WIP_PREFIX) and values:
            limits[key[len(WIP_PREFIX):].lower()] = _count(values[-1], key, zero="")
    for value in config.get("claim.wiplimit", []):
        label, sep, number = value.rpartition("=")
        if not sep or not label.strip():
            raise UsageError(f"claim.wipLimit takes LABEL=N, not {value!r}")
        limits[label.strip().lower()] = _count(number, "claim.wipLimit", zero="")
    return limits


def _priority_labels(value: str) -> dict[str, int]:
    try:
        return parse_priority_labels(value)
    except ValueError as error:
        raise UsageError(f"claim.priorityLabels takes LABEL=TIER pairs (tiers 0 to 4),"
                         f" not {str(error)!r}") from None


def _id_pattern(value: str) -> re.Pattern[str] | None:
    """claim.idPattern: a regular expression every ticket id given to claim must match
    in full (`[0-9]+`, `PROJ-[0-9]+`), so that a word of another shape is refused
    before anything is claimed. Empty (the default): any id parse_ticket accepts."""
    if not value:
        return None
    try:
        return re.compile(value)
    except re.error as error:
        raise UsageError(f"claim.idPattern {value!r} is not a regular expression: {error}")\
            from None


def _spread(value: str) -> int:
    """`claim.spread`: a number of candidates, or `auto` (0): adapt to the agents seen."""
    if value.strip().lower() == "auto":
        return 0
    try:
        number = int(value)
    except ValueError:
        number = 0
    if number < 1:
        raise UsageError(f"claim.spread must be a positive whole number or auto, not {value!r}")
    return number
