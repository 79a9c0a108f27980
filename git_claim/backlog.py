"""Picking work: `git claim --next`, the rules on a direct claim, and resuming.

The tracker only says what exists, how it is labelled and what it waits on;
the claim ref is still the lock. The rules themselves live in `picking`;
this module reads what they judge (the backlog, the remote's claims, this
checkout's records) and claims. Picking is contention-aware: one listing of
the remote's claim refs removes what is taken, and each agent walks the top
candidates of the highest tier in its own order (a hash of its identity),
so agents starting together spread over the backlog instead of all pushing
for the top ticket. Unless claim.spread is set, how many top candidates
each spreads over follows how many agents the same listing shows active
lately, and widens with each race lost: it costs no round trip of its own.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING

from .claims import ClaimView, read_claim, read_claims, unclaimed
from .clock import now
from .errors import GitError, RefusedError, TrackerError
from .lock import ClaimResult, claim
from .pickrules import Rules
from .record import EVENT_HANDED, EVENT_HEARTBEAT, EVENT_RELEASED, STATE_HELD
from .safetext import clean
from .session import Session

if TYPE_CHECKING:
    from .picking import Judgement, Remote
    from .tracker.base import Ticket, Tracker

# The rules themselves (`picking`) and the tracker interface are imported by the
# functions that judge: a named claim with no backlog and no tracker (the
# common `git claim T`) builds its Rules and never judges, so it loads neither.

LOST = "lost to another agent"
MAX_LOSSES_PER_TICKET = 5  # races one --next loses on one ticket before it gives that one up


@dataclass
class NextResult:
    ticket: Ticket
    claim: ClaimResult
    pushes: int
    skipped: dict[str, int] = field(default_factory=dict)
    resumed: bool = False  # a live claim of ours no process was working on


def rules_for(session: Session, *, labels: Sequence[str] = (), exclude: Sequence[str] = (),
              gate: bool = True, capabilities: frozenset[str] | None = None,
              for_next: bool = True) -> Rules:
    """The rules as settings and the command line set them.

    A direct claim (`for_next` False) is judged by the gate, dependencies
    and capabilities only: the WIP limits shape what an agent picks, and a
    human naming a ticket has chosen it.
    """
    settings = session.settings
    return Rules(agent=settings.agent, gate=gate, gate_label=settings.gate_label,
                 approved_label=settings.approved_label, labels=tuple(labels),
                 exclude=tuple(exclude), dependencies=settings.dependencies,
                 parents_wait=settings.parents_wait,
                 capabilities=capabilities if capabilities is not None
                 else settings.capabilities,
                 max_per_agent=settings.max_per_agent if for_next else 0,
                 wip=settings.wip if for_next else {},
                 priority_labels=settings.priority_labels, spread=settings.spread)


def read_remote(session: Session, views: Mapping[str, ClaimView] | None = None) -> Remote:
    """The remote's claims as the rules read them, and this agent's count.

    A live claim of this agent counts against claim.maxPerAgent unless a
    live process of this checkout is working on it (`git claim run`, or a
    worker that holds its record): several workers sharing a name each have
    a limit of their own, while a claim left by `git claim --next` (no
    process) counts until it is released.
    """
    from .picking import Remote

    if views is None:
        views = read_claims(session)
    agent = session.settings.agent
    taken: dict[str, tuple[str, str]] = {}
    mine = 0
    supervised = _supervised_tags(session)
    for ticket, view in views.items():
        if view.oid is None:
            continue
        record = view.record
        taken[ticket] = (record.state if record else "unknown", record.agent if record else "")
        if record is not None and record.state == STATE_HELD and record.agent == agent \
                and view.oid not in supervised:
            mine += 1
    settings = session.settings
    seen = agents_seen(views.values(), at=now(), within=settings.ttl + settings.max_skew)
    return Remote(taken=taken, mine=mine, agents=len(seen | {agent}))


ACTIVE_EVENTS = (EVENT_HEARTBEAT, EVENT_RELEASED, EVENT_HANDED)  # written by working agents


def agents_seen(views: Iterable[ClaimView], *, at: float, within: float) -> set[str]:
    """The agents that claimed, beat or released within `within` seconds before `at`.

    Read from what a listing already holds (each ticket's newest claim and its
    latest note), so it costs no round trip. The window is the TTL plus the
    clock skew tolerated: an agent silent for longer would be reaped, and is
    not picking now. A reaper's or a reopening's note says nothing of who works.
    """
    seen: set[str] = set()
    for view in views:
        record, note = view.record, view.note
        if record is not None and record.agent and record.time is not None \
                and at - record.time <= within:
            seen.add(record.agent)
        if note is not None and note.event in ACTIVE_EVENTS and note.agent \
                and note.time is not None and at - note.time <= within:
            seen.add(note.agent)
    return seen


def _supervised_tags(session: Session) -> set[str]:
    """Tags of this agent's claims that another live process of this checkout holds.

    Pending records count too: a process between its push and the record of
    its win is working on that claim as much as one running its command.
    """
    store = session.store
    return {record.tag for record in store.all()
            if record.agent == session.settings.agent and store.supervised_elsewhere(record)}


def labels_for_gate(session: Session, ticket: Ticket, tracker: Tracker | None) -> Ticket:
    """Fill in labels (and links) a plain id list cannot carry, from the configured tracker."""
    if ticket.labels_known or ticket.labels_problem:
        # a labels field we cannot read is neither "no labels" nor the tracker's
        # word (the line said something, and may have meant the gate): fails closed
        return ticket
    if tracker is None:
        # No tracker to ask: the source has no labels, so nothing says design:required.
        return replace(ticket, labels=(), labels_known=True)
    try:
        filled = tracker.ticket(ticket.id)
    except TrackerError:
        return replace(ticket, labels=(), labels_known=False)
    return with_backlog_links(filled, ticket)


def with_backlog_links(filled: Ticket, listed: Ticket) -> Ticket:
    """The tracker's ticket, with what the backlog line itself says kept.

    A backlog line that names blockers, sub-issues or a priority is the
    team's word on them; the tracker adds what the line lacks (labels).
    """
    if not (listed.blocked_by or listed.children or listed.priority is not None
            or not listed.links_known):
        return filled
    return replace(filled, blocked_by=listed.blocked_by + filled.blocked_by,
                   children=listed.children + filled.children,
                   links_known=listed.links_known and filled.links_known,
                   links_problem=listed.links_problem or filled.links_problem,
                   priority=listed.priority if listed.priority is not None
                   else filled.priority)


def refusal_message(judgement: Judgement, rules: Rules) -> str:
    """One line saying why the rules refuse a named ticket (a direct claim)."""
    from .picking import COUNT_WORDS, State

    ticket = clean(judgement.ticket.id)
    state, detail = judgement.state, clean(judgement.detail, 300)
    override = " (a human may pass --no-gate)"
    if state is State.LABELS_UNKNOWN:
        if detail:
            return f"{ticket}: {detail}, and the rules fail closed" + override
        return (f"{ticket}: its labels are unknown, and the design gate fails closed"
                + override)
    if state is State.GATED:
        return (f"{ticket} needs design approval (labelled {rules.gate_label},"
                f" not {rules.approved_label})")
    if state is State.WAITING:
        return f"{ticket} is waiting on {detail}, still open" + override
    if state is State.LINKS_UNKNOWN:
        return (f"{ticket}: its dependencies cannot be read ({detail}), and the rule fails"
                " closed" + override)
    if state is State.CYCLE:
        return f"{ticket} is in a dependency cycle: {detail}" + override
    if state is State.SUB_ISSUES:
        return (f"{ticket} waits on its open sub-issues {detail} (claim.parentsWait)"
                + override)
    if state is State.NEEDS:
        return (f"{ticket} needs {detail}, which this agent cannot do (--can or"
                " claim.capabilities)" + override)
    return f"{ticket}: {COUNT_WORDS[state]}"


def ticket_for_rules(session: Session, ticket_id: str, source: Tracker | None,
                     tracker: Tracker | None) -> Ticket:
    """What is known of a named ticket: the backlog file's line, else the tracker's.

    The file comes first because it is what `--next` reads: a gate a file
    sets applies to a direct claim too. A ticket nobody lists, with no
    tracker to ask, has no labels and no links.
    """
    from .tracker.base import Ticket

    listed: Ticket | None = None
    if source is not None:
        try:
            listed = source.ticket(ticket_id)
        except TrackerError:
            listed = None
    if listed is not None and (listed.labels_known or listed.labels_problem):
        return listed  # what the line says, even unreadable labels (they fail closed)
    base = listed or Ticket(ticket_id, labels_known=False)
    if tracker is None:
        return replace(base, labels=(), labels_known=True)
    try:
        filled = tracker.ticket(ticket_id)
    except TrackerError as error:
        raise TrackerError(f"cannot read the labels of {clean(ticket_id)} from {tracker.name}:"
                           f" {error.message}; the design gate fails closed"
                           " (a human may pass --no-gate)") from None
    return with_backlog_links(filled, base)


def check_rules(session: Session, ticket_id: str, *, source: Tracker | None,
                tracker: Tracker | None, rules: Rules) -> Ticket | None:
    """`git claim T`: the gate, dependencies and capabilities (RefusedError, exit 1).

    None when nothing can be known (no source, no tracker): the ticket is
    claimed as named, as before there were rules.
    """
    if source is None and tracker is None:
        return None
    from .picking import Remote, find_cycles, judge

    ticket = ticket_for_rules(session, ticket_id, source, tracker)
    remote = Remote()
    if any(link.local and link.open is not False for link in ticket.blocked_by + ticket.children):
        # a blocker released --done through git-claim counts as done: ask the remote
        taken = {}
        for link in ticket.blocked_by + ticket.children:
            if link.local and link.open is not False:
                view = read_claim(session, link.id)
                if view.record is not None and view.oid is not None:
                    taken[link.id] = (view.record.state, view.record.agent)
        remote = Remote(taken=taken)
    backlog = source.backlog() if source is not None else [ticket]
    cycles = find_cycles(backlog, remote) if rules.dependencies else {}
    judgement = judge(ticket, rules, remote, cycles=cycles, wip_held={})
    if not judgement.eligible:
        raise RefusedError(refusal_message(judgement, rules))
    return ticket


def resumable(session: Session, views: Mapping[str, ClaimView]) -> list[str]:
    """Live claims of this agent that no live process works on: a run that died.

    Ours means a record in this checkout with the claim's own tag (a claim
    made elsewhere under the same name is not resumed: nothing here proves
    it ours); a pending one too, when its push landed and its process died
    before recording the win (claim adopts it). Oldest first, so work is
    finished in the order it was begun.
    """
    store = session.store
    agent = session.settings.agent
    found = []
    for record in store.all():
        if record.agent != agent or record.worktree_copy:
            continue
        view = views.get(record.ticket)
        if view is None or view.oid != record.tag or not view.held:
            continue
        if store.supervised_elsewhere(record):
            continue
        found.append((record.claimed_at, record.ticket))
    return [ticket for _, ticket in sorted(found)]


def claim_next(session: Session, backlog: Sequence[Ticket], *, tracker: Tracker | None,
               rules: Rules, progress: Callable[[int], None] | None = None,
               skip_ids: Collection[str] = (), resume: bool = False) -> NextResult:
    """Claim one eligible ticket; on a lost race try the next; RefusedError when none is left.

    `skip_ids`: tickets a drain (`run --until-empty`) already ran, never picked again.
    `resume`: first take back a live claim of ours that no process works on.
    """
    from .picking import COUNT_WORDS, State, find_cycles, judge, judge_all, pick_order, wip_counts

    # One listing, whose fetch of the claims this clone lacks (others' new
    # claims: nearly always some) shares its connection, then one push.
    views = read_claims(session)
    if resume:
        resumed = _resume(session, views, backlog, skip_ids)
        if resumed is not None:
            return resumed
    if tracker is None:
        backlog = [replace(t, labels=(), labels_known=True)
                   if not t.labels_known and not t.labels_problem else t for t in backlog]
    remote = read_remote(session, views)
    judgements = judge_all(backlog, rules, remote, skip_ids=skip_ids)
    if progress is not None:
        progress(len(backlog))
    # Labels a plain id list lacks are asked of the tracker ticket by ticket,
    # only for tickets that every other rule lets through.
    candidates = [j for j in judgements
                  if j.eligible or (j.state is State.LABELS_UNKNOWN and tracker is not None)]
    chosen = {j.ticket.id for j in candidates}
    verdicts: dict[str, str] = {j.ticket.id: COUNT_WORDS[j.state] for j in judgements
                                if j.ticket.id not in chosen}
    from . import backlog_cache

    backlog_cache.save(session.location.common_dir, [j.ticket for j in candidates], backlog)
    pushes = losses = 0
    order = pick_order(candidates, rules, remote)
    cycles = find_cycles(backlog, remote) if rules.dependencies else {}
    lost_on: dict[str, int] = {}
    while order:
        ticket = order.pop(0)
        if not ticket.labels_known:
            ticket = labels_for_gate(session, ticket, tracker)
            judgement = judge(ticket, rules, remote, cycles=cycles,
                              wip_held=wip_counts(backlog, remote, rules), skip_ids=skip_ids)
            if not judgement.eligible:
                verdicts[ticket.id] = COUNT_WORDS[judgement.state]
                continue
        pushes += 1
        try:
            won = claim(session, ticket.id, no_gate=not rules.gate, reuse=False,
                        view=views.get(ticket.id) or unclaimed(session, ticket.id),
                        describe_loss=False)
        except RefusedError:
            verdicts[ticket.id] = LOST
            losses += 1
            lost_on[ticket.id] = lost_on.get(ticket.id, 0) + 1
            # a ticket lost may be free again by the next listing (its winner
            # released it): it is judged again with the rest, a few times at most
            again = [ticket] if lost_on[ticket.id] < MAX_LOSSES_PER_TICKET else []
            fresh = _still_free(session, backlog, [*again, *order], rules, verdicts, skip_ids,
                                losses)
            if fresh is not None:
                order, remote, views = fresh
            continue
        return NextResult(ticket, won, pushes, _counts(verdicts))
    skipped = _counts(verdicts)
    summary = ", ".join(f"{count} {reason}" for reason, count in sorted(skipped.items()))
    raise RefusedError(f"nothing eligible ({summary or 'the backlog is empty'})",
                       skipped=skipped, pushes=pushes)


def _counts(verdicts: Mapping[str, str]) -> dict[str, int]:
    counts: dict[str, int] = {}
    for words in verdicts.values():
        counts[words] = counts.get(words, 0) + 1
    return counts


def _still_free(session: Session, backlog: Sequence[Ticket], order: Sequence[Ticket],
                rules: Rules, verdicts: dict[str, str], skip_ids: Collection[str],
                losses: int) -> tuple[list[Ticket], Remote, dict[str, ClaimView]] | None:
    """After a lost race: the rest of the order judged again on a fresh listing.

    A loss means others are claiming from the same candidates, so most of
    this agent's next ones may be gone too, and the WIP counts may have
    moved. One listing (and a fetch of the new claims and notes) costs less
    than a claim push lost on each, and spreading anew over what is left
    keeps the losers of one round from colliding again on the next (an
    adaptive spread widens with the agents this listing shows and the races
    lost). None
    when the listing fails: the agent then goes on in the order it had.
    """
    from .picking import COUNT_WORDS, State, find_cycles, judge, pick_order, wip_counts

    try:
        views = read_claims(session)
    except GitError:
        return None
    remote = read_remote(session, views)
    cycles = find_cycles(backlog, remote) if rules.dependencies else {}
    held = wip_counts(backlog, remote, rules)
    left = []
    for ticket in order:
        judgement = judge(ticket, rules, remote, cycles=cycles, wip_held=held,
                          skip_ids=skip_ids)
        if judgement.eligible or (judgement.state is State.LABELS_UNKNOWN):
            left.append(judgement)
            if verdicts.get(ticket.id) == LOST:
                del verdicts[ticket.id]  # lost once, free again: a candidate like any
        elif verdicts.get(ticket.id) != LOST:
            verdicts[ticket.id] = COUNT_WORDS[judgement.state]
    return pick_order(left, rules, remote, losses=losses), remote, views


def _resume(session: Session, views: Mapping[str, ClaimView], backlog: Sequence[Ticket],
            skip_ids: Collection[str]) -> NextResult | None:
    """Take back the oldest live claim of ours that no process works on, else take up
    a ticket handed to this agent: work begun is finished before new work."""
    from .tracker.base import Ticket

    titles = {ticket.id: ticket for ticket in backlog}
    ours = resumable(session, views)
    for ticket_id in ours + _handed_to_us(session, views):
        if ticket_id in skip_ids:
            continue
        try:
            won = claim(session, ticket_id, reuse=True)
        except RefusedError:
            continue  # another process of ours took it back first
        ticket = titles.get(ticket_id) or Ticket(ticket_id)
        # a claim of ours taken back is resumed; a hand-off taken up is a new claim
        resumed = ticket_id in ours and won.tag == views[ticket_id].oid
        return NextResult(ticket, won, 0 if resumed else 1, {}, resumed=resumed)
    return None


def _handed_to_us(session: Session, views: Mapping[str, ClaimView]) -> list[str]:
    """Tickets another agent handed to this one (`git release T --to AGENT`)."""
    agent = session.settings.agent
    return sorted(ticket for ticket, view in views.items() if view.handed_to == agent)
