"""Pushes whose outcome the client never hears, on git daemon and smart HTTP.

The agent under test reaches the server through a FaultProxy; the other
agents of the world talk to the server directly. A ServerGate holds the
server after it applied a ref update (reference-transaction, `committed`) or
before (pre-receive), while the proxy cuts the connection. A release or a
reap is one note on the ticket's notes ref: there is no later step to cut.
"""

from __future__ import annotations

import pytest

from agents import PausePoint, board, claim_in_force, claim_tags_in, ticket_state, with_env
from faultkit import ServerGate, claim_refs, finish, through

NETWORK = [("git", "libgit2"), ("git", "git"), ("http", "libgit2"), ("http", "git")]
OLD = "-100"  # a claim made by this clock looks 100 s old to everyone else
TTL = ["--ttl", "10s", "--max-skew", "0"]


def worlds(*pairs):
    """Parametrize a test over (scheme, transport) pairs, as `net_world`."""
    return pytest.mark.parametrize("net_world", pairs, ids=[f"{s}-{t}" for s, t in pairs],
                                   indirect=True)


@pytest.fixture(params=NETWORK, ids=[f"{s}-{t}" for s, t in NETWORK])
def net_world(make_world, request):
    scheme, transport = request.param
    return make_world(scheme, transport)


def reaper(world, name: str):
    agent = world.agent(name)
    agent.git("config", "claim.heartbeat", "1s")
    return agent


# --------------------------------------------------------------------------
# claim


def test_claim_applied_but_unreported_is_settled_by_its_own_tag(net_world, proxy_for):
    world = net_world
    proxy = proxy_for(world)
    alice, bob = through(world.agent("alice"), proxy), world.agent("bob")
    gate = ServerGate(world.repo, world.root / "gate", "refs/claims/640", op="create")
    gate.arm()
    process = alice.popen("claim", "640", "--json")
    gate.wait_reached(process)
    applied = claim_refs(world.repo)["refs/claims/640"]
    # applied and unreported is already the lock: nobody else can take it
    assert bob.claim("640").code == 1
    assert proxy.cut() >= 1  # alice never hears the server's report
    gate.go()
    outcome = finish(process)
    assert outcome.code == 0, outcome
    assert outcome.json()["tag"] == applied
    mine = board(alice)["640"]  # the claim alice's checkout made, settled as hers
    assert mine["ours"] is True and mine["tag"] == applied, mine
    assert claim_refs(world.repo) == {"refs/claims/640": applied}  # no orphan claim
    assert claim_tags_in(world.repo.path, "640", "alice") == [applied]  # no second nonce
    assert claim_tags_in(alice.workdir / ".git", "640", "alice") == [applied]
    assert alice.claim("verify", "640").code == 0


@worlds(("git", "git"), ("http", "libgit2"))
def test_claim_cut_before_its_upload_is_retried_with_the_same_tag(net_world, proxy_for):
    world = net_world
    proxy = proxy_for(world)
    alice = through(world.agent("alice"), proxy)
    proxy.set_mode("cut-upload")
    outcome = alice.claim("640", "--json")
    assert outcome.code == 0, (outcome, proxy.events)
    assert "cut-upload" in proxy.events, (outcome, proxy.events)
    landed = claim_refs(world.repo)["refs/claims/640"]
    assert outcome.json()["tag"] == landed
    assert claim_tags_in(alice.workdir / ".git", "640", "alice") == [landed]
    assert claim_tags_in(world.repo.path, "640", "alice") == [landed]
    assert alice.claim("verify", "640").code == 0


@worlds(("http", "git"))
def test_claim_that_cannot_reach_the_server_exits_3_and_a_retry_keeps_the_nonce(
        net_world, proxy_for, tmp_path):
    world = net_world
    proxy = proxy_for(world)
    alice = through(world.agent("alice"), proxy)
    proxy.set_mode("refuse")
    unread = alice.claim("640")  # a claim reads the ticket first: nothing is minted
    assert unread.code == 3, unread
    assert "claimed" not in unread.stdout
    assert claim_refs(world.repo) == {}
    assert claim_tags_in(alice.workdir / ".git", "640", "alice") == []  # nothing minted
    # The ticket read, the server goes away before the push: the tag stays pending.
    proxy.set_mode("pass")
    point = PausePoint(tmp_path / "pause", "claim:before-push")
    process = alice.popen("claim", "640", env=point.env(alice.env))
    point.wait_reached(process)
    proxy.cut(then="refuse")
    point.go()
    failed = finish(process)
    assert failed.code == 3, failed
    assert "claimed" not in failed.stdout
    assert claim_refs(world.repo) == {}
    (pending,) = claim_tags_in(alice.workdir / ".git", "640", "alice")  # minted, not landed
    assert alice.claim("verify", "640").code == 1  # a pending claim is not a claim
    proxy.set_mode("pass")
    retry = alice.claim("640")
    assert retry.code == 0, retry
    landed = claim_refs(world.repo)["refs/claims/640"]
    assert landed == pending  # the same tag, so the same nonce: no second claim minted
    assert claim_tags_in(alice.workdir / ".git", "640", "alice") == [landed]


@worlds(("http", "libgit2"))
def test_claim_cut_while_the_server_holds_it_before_applying(net_world, proxy_for):
    """The first push is still in flight at the server when the client retries."""
    world = net_world
    proxy = proxy_for(world)
    alice = through(world.agent("alice"), proxy)
    gate = ServerGate(world.repo, world.root / "gate", "refs/claims/640", hook="pre-receive")
    gate.arm()
    process = alice.popen("claim", "640", "--json")
    gate.wait_reached(process)
    assert claim_refs(world.repo) == {}  # held before anything is applied
    proxy.cut()
    outcome = finish(process)
    gate.go()  # the first push now goes on at the server, as if it had never been cut
    assert outcome.code == 0, outcome
    landed = claim_refs(world.repo)["refs/claims/640"]
    assert outcome.json()["tag"] == landed
    assert board(alice)["640"]["ours"] is True
    assert claim_tags_in(alice.workdir / ".git", "640", "alice") == [landed]
    assert alice.claim("verify", "640").code == 0


# --------------------------------------------------------------------------
# release and reap: the note is the whole change; a retry never touches a newer claim


@worlds(("git", "libgit2"), ("http", "git"))
def test_release_applied_unreported_then_a_new_claim_survives_the_retry(net_world, proxy_for):
    world = net_world
    proxy = proxy_for(world)
    alice, bob = through(world.agent("alice"), proxy), world.agent("bob")
    assert alice.claim("640").code == 0
    mine = claim_in_force(world.repo, "640")
    gate = ServerGate(world.repo, world.root / "gate", "refs/notes/claims/640")
    gate.arm()  # the released note lands; alice never hears it
    process = alice.popen("release", "640")
    gate.wait_reached(process)
    proxy.cut(then="refuse")  # alice hears nothing and cannot re-read either
    gate.go()
    first = finish(process)
    assert first.code == 3, first
    assert "released" not in first.stdout
    after = ticket_state(world.repo, "640")
    assert (after.state, after.event, after.tag) == ("free", "released", mine), after
    taken = bob.claim("640", "--json")
    assert taken.code == 0, taken  # her release did free it
    newer = taken.json()["tag"]
    proxy.set_mode("pass")
    retry = alice.release("640")
    assert retry.code == 0, retry  # her release did happen; repeating it succeeds
    state = ticket_state(world.repo, "640")
    assert (state.state, state.in_force, state.epoch) == ("held", newer, 2), state
    assert state.claims == {1: mine, 2: newer}  # nothing rewritten or deleted
    assert claim_refs(world.repo) == {"refs/claims/640": mine, "refs/claims/640@2": newer}
    assert alice.claim("heartbeat", "640").code == 1
    assert bob.claim("verify", "640").code == 0


@worlds(("http", "libgit2"), ("git", "git"))
def test_reap_applied_unreported_then_a_new_claim_survives_the_retry(net_world, proxy_for):
    world = net_world
    proxy = proxy_for(world)
    alice, bob = world.agent("alice"), world.agent("bob")
    carol = through(reaper(world, "carol"), proxy)
    assert alice.cmd("claim", "640", env=with_env(alice, GIT_CLAIM_CLOCK_OFFSET=OLD)).code == 0
    old = claim_in_force(world.repo, "640")
    gate = ServerGate(world.repo, world.root / "gate", "refs/notes/claims/640")
    gate.arm()
    process = carol.popen("reap", *TTL, "--json")
    gate.wait_reached(process)
    proxy.cut(then="refuse")
    gate.go()
    first = finish(process)
    assert first.code == 3, first
    after = ticket_state(world.repo, "640")
    assert (after.state, after.event, after.tag) == ("free", "reaped", old), after
    taken = bob.claim("640", "--json")
    assert taken.code == 0, taken
    newer = taken.json()["tag"]
    proxy.set_mode("pass")
    retry = carol.cmd("reap", *TTL, "--json")
    assert retry.code == 0, retry
    report = retry.json()
    assert report["reaped"] == [] and [e["ticket"] for e in report["live"]] == ["640"], report
    state = ticket_state(world.repo, "640")
    assert (state.state, state.in_force, state.epoch) == ("held", newer, 2), state
    assert claim_refs(world.repo) == {"refs/claims/640": old, "refs/claims/640@2": newer}
    assert bob.claim("verify", "640").code == 0
    events = [e["event"] for e in bob.claim("log", "640", "--json").json()]
    assert events.count("reaped") == 1, events


@worlds(("http", "libgit2"))
def test_a_slow_link_changes_no_outcome(net_world, proxy_for):
    """Two agents race for a ticket, one of them through a link that delays every reply."""
    world = net_world
    proxy = proxy_for(world)
    proxy.delay = 0.1
    alice, bob = through(world.agent("alice"), proxy), world.agent("bob")
    racers = {agent.name: agent.popen("claim", "640", "--json") for agent in (alice, bob)}
    outcomes = {name: finish(process) for name, process in racers.items()}
    assert sorted(o.code for o in outcomes.values()) == [0, 1], outcomes
    winner = next(name for name, o in outcomes.items() if o.code == 0)
    loser = ({"alice", "bob"} - {winner}).pop()
    assert claim_refs(world.repo) == {"refs/claims/640": outcomes[winner].json()["tag"]}
    assert f"640 is held by {winner}" in outcomes[loser].stdout + outcomes[loser].stderr
    loser_agent = alice if loser == "alice" else bob
    assert board(loser_agent)["640"]["ours"] is False  # the winner's claim is not the loser's
    assert loser_agent.claim("verify", "640").code == 1
