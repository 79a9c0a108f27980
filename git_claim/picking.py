"""The picking rules: which backlog tickets this agent may take, and in what order.

One judgement serves `--next`, a direct claim and `git claim ready`, so the
three can never disagree on what is eligible. The rules, in the order they
are applied (the first that refuses a ticket names its state):

1. closed, already run by this drain, held / done / blocked on the remote;
2. the wanted and excluded labels of the command line;
3. the human design gate (fails closed when labels are unknown);
4. dependencies: an open blocker, a blocker that cannot be read, a cycle,
   and (claim.parentsWait) open sub-issues;
5. capabilities: `needs:<capability>` labels this agent lacks;
6. work-in-progress limits: this agent's live claims (claim.maxPerAgent)
   and the team's per label (claim.wip.<label>);
7. priority tiers, highest first, and within a tier the contention spread
   (claim.spread, else adapted to the agents seen recently: adaptive_spread).

Everything here is pure: the callers read the backlog and the remote's
claims once and pass them in. Nothing here prints, fetches or pushes.
"""

from __future__ import annotations

import hashlib
from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from enum import Enum

from .pickconfig import DEFAULT_PRIORITY_LABELS, parse_capabilities, parse_priority_labels
from .pickrules import Rules
from .record import STATE_BLOCKED, STATE_DONE
from .tracker.base import Link, Ticket

CAPABILITY_PREFIX = "needs:"
DEFAULT_TIER = 2  # a ticket without a priority counts as medium
SPREAD_FLOOR = 32  # the adaptive spread never goes below the old fixed default
SPREAD_PER_AGENT = 2  # candidates per agent seen recently
MAX_SPREAD_DOUBLINGS = 6  # lost races that each double the spread (x64 at most)


__all__ = ["DEFAULT_PRIORITY_LABELS", "Judgement", "Remote", "Rules", "State", "adaptive_spread",
           "judge", "judge_all", "parse_capabilities", "parse_priority_labels", "pick_order",
           "spread_for"]


class State(str, Enum):
    """Where a ticket stands for this agent; `value` is what `ready --json` prints."""

    ELIGIBLE = "eligible"
    CLOSED = "closed"
    ALREADY_RUN = "already-run"
    HELD = "held"
    DONE = "done"
    BLOCKED = "blocked"
    FILTERED = "filtered"
    EXCLUDED = "excluded"
    GATED = "gated"
    LABELS_UNKNOWN = "labels-unknown"
    WAITING = "waiting"
    LINKS_UNKNOWN = "dependencies-unknown"
    CYCLE = "cycle"
    SUB_ISSUES = "sub-issues-open"
    NEEDS = "needs-capability"
    AGENT_LIMIT = "agent-limit"
    WIP = "wip-limit"


# The words a "nothing eligible (...)" line counts each state under. The
# first three predate the rules of this module and scripts match them.
COUNT_WORDS: Mapping[State, str] = {
    State.CLOSED: "closed",
    State.ALREADY_RUN: "already run by this drain",
    State.HELD: "claimed, done or blocked",
    State.DONE: "claimed, done or blocked",
    State.BLOCKED: "claimed, done or blocked",
    State.FILTERED: "without the wanted labels",
    State.EXCLUDED: "excluded by label",
    State.GATED: "needs design approval",
    State.LABELS_UNKNOWN: "labels unknown (gate fails closed)",
    State.WAITING: "waiting on an open blocker",
    State.LINKS_UNKNOWN: "dependencies unknown (fails closed)",
    State.CYCLE: "in a dependency cycle",
    State.SUB_ISSUES: "waiting on open sub-issues",
    State.NEEDS: "needs a capability this agent lacks",
    State.AGENT_LIMIT: "over this agent's claim limit",
    State.WIP: "over a team WIP limit",
}


@dataclass(frozen=True)
class Remote:
    """What the remote's claims say, reduced to what the rules read.

    `taken`: ticket -> (state, holder) for every claim in force ("held",
    "done", "blocked", or "unknown" for an unreadable one). `mine`: how
    many live claims count against this agent's limit. `agents`: how many
    agents showed a sign of life lately (a claim, a heartbeat, a release),
    this one included: what the default spread adapts to.
    """

    taken: Mapping[str, tuple[str, str]] = field(default_factory=dict)
    mine: int = 0
    agents: int = 1


@dataclass(frozen=True)
class Judgement:
    ticket: Ticket
    state: State
    detail: str = ""  # "octo", "#12, #13", "frontend", "in-review (2 of 2)"
    tier: int = DEFAULT_TIER

    @property
    def eligible(self) -> bool:
        return self.state is State.ELIGIBLE


def _lower(labels: Iterable[str]) -> set[str]:
    return {label.lower() for label in labels}  # GitHub labels ignore case


def tier_of(ticket: Ticket, rules: Rules) -> int:
    """The ticket's priority tier: stated outright, else its highest priority label."""
    if ticket.priority is not None:
        return ticket.priority
    tiers = [rules.priority_labels[label] for label in _lower(ticket.labels)
             if label in rules.priority_labels]
    return min(tiers) if tiers else DEFAULT_TIER


def needed_capabilities(ticket: Ticket) -> list[str]:
    """The names of the ticket's `needs:<name>` labels (`needs:` alone names nothing)."""
    names = (label[len(CAPABILITY_PREFIX):].strip().lower() for label in ticket.labels
             if label.lower().startswith(CAPABILITY_PREFIX))
    return sorted(name for name in names if name)


def link_open(link: Link, remote: Remote) -> bool:
    """Whether a blocker or sub-issue still waits: open at its source and not
    released `--done` through git-claim (that counts at once, before the
    tracker closes it). A state the source does not give counts as open."""
    if link.local and remote.taken.get(link.id, ("", ""))[0] == STATE_DONE:
        return False
    return link.open is not False


Cycles = Mapping[str, tuple[list[str], int]]
MAX_CYCLE_SHOWN = 8  # ids a cycle's detail names before it says how many more


def find_cycles(tickets: Iterable[Ticket], remote: Remote) -> dict[str, tuple[list[str], int]]:
    """Ticket id -> (the ids of its dependency cycle in blocking order, its place there).

    Only open blockers of this backlog make edges. Iterative (a backlog may
    hold 100,000 tickets), and each ticket is visited once, so a cycle is
    reported, never looped on; its members share one list.
    """
    edges: dict[str, list[str]] = {}
    for ticket in tickets:
        edges[ticket.id] = [link.id for link in ticket.blocked_by
                            if link.local and link_open(link, remote)]
    edges = {node: [n for n in targets if n in edges] for node, targets in edges.items()}
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    on_stack: set[str] = set()
    stack: list[str] = []
    cycles: dict[str, tuple[list[str], int]] = {}
    counter = 0
    for root in edges:
        if root in index:
            continue
        work: list[tuple[str, int]] = [(root, 0)]
        while work:
            node, position = work.pop()
            if position == 0:
                index[node] = low[node] = counter
                counter += 1
                stack.append(node)
                on_stack.add(node)
            targets = edges[node]
            if position < len(targets):
                work.append((node, position + 1))
                target = targets[position]
                if target not in index:
                    work.append((target, 0))
                elif target in on_stack:
                    low[node] = min(low[node], index[target])
                continue
            if low[node] == index[node]:
                component = []
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    component.append(member)
                    if member == node:
                        break
                if len(component) > 1 or node in edges[node]:
                    ordered = list(reversed(component))
                    for place, member in enumerate(ordered):
                        cycles[member] = (ordered, place)
            if work:
                parent = work[-1][0]
                low[parent] = min(low[parent], low[node])
    return cycles


def judge(ticket: Ticket, rules: Rules, remote: Remote, *, cycles: Cycles,
          wip_held: Mapping[str, int], skip_ids: Collection[str] = ()) -> Judgement:
    """The first rule that refuses `ticket`, or ELIGIBLE, with its tier."""
    tier = tier_of(ticket, rules)

    def refuse(state: State, detail: str = "") -> Judgement:
        return Judgement(ticket, state, detail, tier)

    if not ticket.open:
        return refuse(State.CLOSED)
    if ticket.id in skip_ids:
        return refuse(State.ALREADY_RUN)
    taken = remote.taken.get(ticket.id)
    if taken is not None:
        state, holder = taken
        named = {STATE_DONE: State.DONE, STATE_BLOCKED: State.BLOCKED}.get(state, State.HELD)
        return refuse(named, holder)
    have = _lower(ticket.labels)
    if ticket.labels_known and not all(label.lower() in have for label in rules.labels):
        return refuse(State.FILTERED)
    if ticket.labels_known and any(label.lower() in have for label in rules.exclude):
        return refuse(State.EXCLUDED)
    if not ticket.labels_known and ticket.labels_problem:
        # a capability or a gate may hide in labels nobody can read
        return refuse(State.LABELS_UNKNOWN, ticket.labels_problem)
    if rules.gate:
        if not ticket.labels_known:
            return refuse(State.LABELS_UNKNOWN)
        if rules.gate_label.lower() in have and rules.approved_label.lower() not in have:
            return refuse(State.GATED, rules.gate_label)
    if rules.dependencies:
        refusal = _dependency_refusal(ticket, rules, remote, cycles)
        if refusal is not None:
            return refuse(*refusal)
    missing = [name for name in needed_capabilities(ticket) if name not in rules.capabilities]
    if missing:
        return refuse(State.NEEDS, ", ".join(missing))
    if rules.max_per_agent and remote.mine >= rules.max_per_agent:
        return refuse(State.AGENT_LIMIT, f"{remote.mine} of {rules.max_per_agent}")
    for label in sorted(have):
        limit = rules.wip.get(label)
        if limit is not None and wip_held.get(label, 0) >= limit:
            return refuse(State.WIP, f"{label} ({wip_held.get(label, 0)} of {limit})")
    return Judgement(ticket, State.ELIGIBLE, "", tier)


def _dependency_refusal(ticket: Ticket, rules: Rules, remote: Remote,
                        cycles: Cycles) -> tuple[State, str] | None:
    if not ticket.links_known:
        return State.LINKS_UNKNOWN, ticket.links_problem or "they could not be read"
    if ticket.id in cycles:
        return State.CYCLE, cycle_text(*cycles[ticket.id])
    waiting = [link.id for link in ticket.blocked_by if link_open(link, remote)]
    if waiting:
        return State.WAITING, ", ".join(_shown(name) for name in waiting)
    if rules.parents_wait:
        open_children = [link.id for link in ticket.children if link_open(link, remote)]
        if open_children:
            return State.SUB_ISSUES, ", ".join(_shown(name) for name in open_children)
    return None


def cycle_text(cycle: list[str], place: int) -> str:
    """`4 -> 5 -> 4`, from this ticket round to it again; a long cycle is cut short
    (`1 -> 2 -> ... -> 1 (50000 tickets)`), so each detail stays small."""
    if len(cycle) <= MAX_CYCLE_SHOWN:
        turn = cycle[place:] + cycle[:place]
        return " -> ".join(turn + turn[:1])
    shown = [cycle[(place + step) % len(cycle)] for step in range(MAX_CYCLE_SHOWN - 1)]
    return " -> ".join([*shown, "...", cycle[place]]) + f" ({len(cycle)} tickets)"


def _shown(ticket_id: str) -> str:
    """`#12` for a ticket of this backlog, `octo/other#3` as the source named it."""
    return ticket_id if "#" in ticket_id else f"#{ticket_id}"


def wip_counts(tickets: Iterable[Ticket], remote: Remote, rules: Rules) -> dict[str, int]:
    """Live claims per limited label, across the team (what the backlog's labels say)."""
    counts: dict[str, int] = {}
    if not rules.wip:
        return counts
    for ticket in tickets:
        taken = remote.taken.get(ticket.id)
        if taken is None or taken[0] != "held":
            continue
        for label in _lower(ticket.labels):
            if label in rules.wip:
                counts[label] = counts.get(label, 0) + 1
    return counts


def judge_all(backlog: Sequence[Ticket], rules: Rules, remote: Remote, *,
              skip_ids: Collection[str] = ()) -> list[Judgement]:
    """Every ticket of the backlog judged, in backlog order."""
    cycles = find_cycles(backlog, remote) if rules.dependencies else {}
    held = wip_counts(backlog, remote, rules)
    return [judge(ticket, rules, remote, cycles=cycles, wip_held=held, skip_ids=skip_ids)
            for ticket in backlog]


def spread_order(tickets: Sequence[Ticket], agent: str, spread: int) -> list[Ticket]:
    """The top `spread` candidates in this agent's own order, then the rest in order."""
    top = list(tickets[:spread])
    top.sort(key=lambda t: hashlib.sha1(f"{agent}\0{t.id}".encode()).digest())
    return top + list(tickets[spread:])


def adaptive_spread(agents: int, losses: int = 0) -> int:
    """The spread when claim.spread is not set: room for every agent seen lately.

    Of k agents picking at the same moment, each in an order of its own over
    the top S candidates, one shares its first try with another with a chance
    of about 1 - e^(-k/S): 63% at S = k, 39% at S = 2k (fewer in practice, as
    agents rarely list at the same instant and each sees the claims made
    before its listing), while the top of the backlog still goes first. Agents that
    start together see no claim of one another yet, so each race this agent
    loses doubles the spread of its next try (a loss is proof of more
    contention than the listing showed), up to MAX_SPREAD_DOUBLINGS.
    """
    doublings = min(max(losses, 0), MAX_SPREAD_DOUBLINGS)
    return max(SPREAD_FLOOR, SPREAD_PER_AGENT * agents) << doublings


def spread_for(rules: Rules, remote: Remote, losses: int = 0) -> int:
    """claim.spread when set (it always wins), else the adaptive spread."""
    return rules.spread or adaptive_spread(remote.agents, losses)


def pick_order(candidates: Sequence[Judgement], rules: Rules, remote: Remote | None = None,
               *, losses: int = 0) -> list[Ticket]:
    """Highest tier first; within a tier, backlog order with this agent's spread.

    Spreading inside a tier keeps agents that start together from colliding
    without any of them taking lower-priority work while higher work is free.
    `losses`: races this pick has lost so far (they widen an adaptive spread).
    """
    spread = spread_for(rules, remote if remote is not None else Remote(), losses)
    tiers: dict[int, list[Ticket]] = {}
    for judgement in candidates:
        tiers.setdefault(judgement.tier, []).append(judgement.ticket)
    order: list[Ticket] = []
    for tier in sorted(tiers):
        order += spread_order(tiers[tier], rules.agent, spread)
    return order


def count_words(judgements: Iterable[Judgement]) -> dict[str, int]:
    """The "nothing eligible" counts: each refused ticket under its rule's words."""
    counts: dict[str, int] = {}
    for judgement in judgements:
        if judgement.eligible:
            continue
        words = COUNT_WORDS[judgement.state]
        counts[words] = counts.get(words, 0) + 1
    return counts
