"""The contention spread of `--next`: claim.spread when set, else adapted to the agents seen.

The rule itself is pure (`picking.adaptive_spread`, `spread_for`, `pick_order`;
`backlog.agents_seen` reads only views a listing already holds), so it is
tested here on values; the last test starts agents together against a real
server and checks that the adaptive default leaves each with a ticket of its
own.
"""

from __future__ import annotations

import json
import os
import subprocess

from git_claim.backlog import agents_seen
from git_claim.claims import ClaimView
from git_claim.picking import (
    MAX_SPREAD_DOUBLINGS,
    SPREAD_FLOOR,
    Judgement,
    Remote,
    Rules,
    State,
    adaptive_spread,
    pick_order,
    spread_for,
)
from git_claim.record import ClaimRecord, LivenessRecord
from git_claim.tracker.base import Ticket

NOW = 1_800_000_000.0
WINDOW = 20 * 60.0


def candidates(count: int, tier: int = 2) -> list[Judgement]:
    return [Judgement(Ticket(str(n)), State.ELIGIBLE, tier=tier) for n in range(1, count + 1)]


def ids(tickets: list[Ticket]) -> list[str]:
    return [ticket.id for ticket in tickets]


def test_the_adaptive_spread_keeps_the_old_default_as_its_floor():
    assert adaptive_spread(0) == adaptive_spread(1) == adaptive_spread(16) == SPREAD_FLOOR == 32
    assert adaptive_spread(17) == 34 and adaptive_spread(64) == 128 and adaptive_spread(500) == 1000


def test_each_lost_race_doubles_the_adaptive_spread_up_to_a_bound():
    assert [adaptive_spread(1, losses) for losses in range(4)] == [32, 64, 128, 256]
    assert adaptive_spread(40, 1) == 160
    most = adaptive_spread(1, MAX_SPREAD_DOUBLINGS)
    assert adaptive_spread(1, MAX_SPREAD_DOUBLINGS + 5) == most == 32 << MAX_SPREAD_DOUBLINGS
    assert adaptive_spread(1, -3) == 32


def test_claim_spread_when_set_always_wins():
    rules = Rules(agent="a", spread=5)
    assert spread_for(rules, Remote(agents=300), losses=4) == 5
    assert spread_for(Rules(agent="a"), Remote(agents=300), losses=0) == 600
    assert spread_for(Rules(agent="a"), Remote(), losses=1) == 64


def test_pick_order_spreads_over_as_many_top_candidates_as_the_rule_says():
    backlog = candidates(300)
    for remote, losses, spread in [(Remote(), 0, 32), (Remote(agents=40), 0, 80),
                                   (Remote(agents=40), 1, 160), (Remote(agents=5), 2, 128)]:
        order = ids(pick_order(backlog, Rules(agent="spread-test"), remote, losses=losses))
        assert sorted(order[:spread], key=int) == [str(n) for n in range(1, spread + 1)]
        assert order[spread:] == [str(n) for n in range(spread + 1, 301)]  # the rest in order
        assert order[:spread] != sorted(order[:spread], key=int)  # an order of its own
    strict = ids(pick_order(backlog, Rules(agent="spread-test", spread=1), Remote(agents=90),
                            losses=3))
    assert strict == [str(n) for n in range(1, 301)]


def test_the_spread_stays_within_a_tier():
    urgent = candidates(3, tier=0)
    rest = [Judgement(Ticket(str(n)), State.ELIGIBLE, tier=2) for n in range(4, 200)]
    order = ids(pick_order(rest + urgent, Rules(agent="x"), Remote(agents=100), losses=2))
    assert sorted(order[:3]) == ["1", "2", "3"]


def claim_view(ticket: str, agent: str, age: float, note: LivenessRecord | None = None,
               *, freed: bool = False) -> ClaimView:
    record = ClaimRecord(ticket=ticket, state="held", agent=agent, time=NOW - age)
    return ClaimView(ticket, f"refs/claims/{ticket}", None if freed else "a" * 40,
                     None if freed else record, "b" * 40 if note else None, note)


def note(event: str, agent: str, age: float) -> LivenessRecord:
    return LivenessRecord(event=event, time=NOW - age, agent=agent, holder=agent)


def test_the_agents_seen_are_those_that_claimed_beat_or_released_lately():
    views = [
        claim_view("1", "fresh", 60),
        claim_view("2", "old", WINDOW + 60),  # silent past the window: not picking now
        claim_view("3", "beating", 3 * WINDOW, note("heartbeat", "beating", 120)),
        claim_view("4", "done", 3 * WINDOW, note("released", "done", 10), freed=True),
        claim_view("5", "dead", 3 * WINDOW, note("reaped", "reaper", 5), freed=True),
        claim_view("6", "skewed", -90),  # a clock a little ahead still counts
        claim_view("7", "fresh", 30),  # one agent counts once
        claim_view("8", "", 5),  # an unreadable claim names no one
        ClaimView("9", "refs/claims/9", None, None, None, None),  # free, never claimed
    ]
    assert agents_seen(views, at=NOW, within=WINDOW) == {"fresh", "beating", "done", "skewed"}
    assert agents_seen([], at=NOW, within=WINDOW) == set()


def test_claim_spread_auto_or_a_number_and_nothing_else(make_world, tmp_path):
    world = make_world("path", "libgit2")
    backlog = tmp_path / "backlog.txt"
    backlog.write_text("".join(f"{n}\n" for n in range(1, 41)))
    alice = world.agent("alice")
    alice.git("config", "claim.source", str(backlog))
    for value in ("auto", "AUTO", "1", "500"):
        alice.git("config", "claim.spread", value)
        assert alice.claim("ready").code == 0
    alice.git("config", "claim.spread", "1")
    order = [entry["ticket"] for entry in alice.claim("ready", "--json").json()["tickets"]]
    assert order == [str(n) for n in range(1, 41)]
    for value in ("0", "-2", "wide", ""):
        alice.git("config", "claim.spread", value)
        refused = alice.claim("ready")
        assert refused.code == 2 and "claim.spread must be a positive whole number or auto" \
            in refused.stderr, refused


AGENTS = int(os.environ.get("GIT_CLAIM_SPREAD_AGENTS", "16"))


def test_agents_starting_together_hold_distinct_tickets_with_the_adaptive_spread(
        make_world, tmp_path):
    world = make_world("git", "libgit2")
    backlog = tmp_path / "backlog.txt"
    backlog.write_text("".join(f"{n}\n" for n in range(1, 2 * AGENTS + 9)))  # more than 32
    agents = [world.agent(f"together-{index}") for index in range(AGENTS)]
    read_end, write_end = os.pipe()
    processes = []
    try:
        for agent in agents:
            # each waits on the shared pipe; closing it releases all of them at once
            processes.append(subprocess.Popen(
                ["sh", "-c", 'read _; exec "$@" </dev/null', "gate", "git", "claim", "--next",
                 "--from", str(backlog), "--json"], cwd=agent.workdir, env=agent.env,
                stdin=read_end, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True))
    finally:
        os.close(read_end)
        os.close(write_end)
    outcomes = [process.communicate(timeout=300) for process in processes]
    codes = [process.returncode for process in processes]
    assert codes == [0] * AGENTS, outcomes
    won = [json.loads(out)["ticket"] for out, _err in outcomes]
    assert len(set(won)) == AGENTS, sorted(won)
    listed = subprocess.run(["git", "--git-dir", str(world.repo.path), "for-each-ref",
                             "--format=%(refname)", "refs/claims/"], capture_output=True,
                            text=True, check=True, env=world.env).stdout.split()
    assert sorted(ref[len("refs/claims/"):] for ref in listed) == sorted(won)
    pushes = sum(json.loads(out)["pushes"] for out, _err in outcomes)
    assert pushes >= AGENTS
