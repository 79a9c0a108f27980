"""`git claim compact`: history goes, the lock and the log stay.

Each claim of a ticket is a new ref; compaction deletes the superseded
ones. It must never delete the newest (the claim in force, or the one a
claimer reads to choose the next epoch) nor the first (a claimer that read
the ticket before it was ever claimed creates that bare ref unguarded),
must be safe while agents claim and release, and must leave `git claim log`
as it was.
"""

from __future__ import annotations

import pytest

from agents import remote_refs, ticket_state


@pytest.mark.parametrize("scheme,transport", [("path", "libgit2"), ("git", "git"),
                                              ("http", "libgit2")])
def test_compaction_keeps_the_newest_and_the_history(make_world, scheme, transport):
    world = make_world(scheme, transport)
    alice, bob, admin = world.agent("alice"), world.agent("bob"), world.agent("admin")
    for _ in range(3):
        assert alice.claim("1").code == 0
        assert alice.release("1").code == 0
    assert bob.claim("1").code == 0  # 1@4, held
    assert alice.claim("2").code == 0
    assert alice.release("2", "--done").code == 0
    before = ticket_state(world.repo, "1")
    assert before.epoch == 4 and before.state == "held"
    log_before = alice.claim("log", "1", "--json").json()

    dry = admin.claim("compact", "--dry-run", "--json")
    assert dry.code == 0, dry
    # the first claim (the bare ref) and the newest stay; the ones between go
    assert sorted(dry.json()["superseded"]) == ["refs/claims/1@2", "refs/claims/1@3"]
    assert set(remote_refs(world.repo)) >= {"refs/claims/1", "refs/claims/1@2"}

    done = admin.claim("compact")
    assert done.code == 0, done
    assert done.stdout.strip() == "deleted 2 superseded claims of 2 tickets"
    claims = sorted(r for r in remote_refs(world.repo) if r.startswith("refs/claims/"))
    assert claims == ["refs/claims/1", "refs/claims/1@4", "refs/claims/2"]
    after = ticket_state(world.repo, "1")
    assert after.state == "held" and after.tag == before.tag
    assert ticket_state(world.repo, "2").state == "done"
    assert alice.claim("log", "1", "--json").json() == log_before
    assert alice.claim("1").code == 1  # still bob's
    assert bob.claim("heartbeat", "1").code == 0
    assert bob.release("1").code == 0
    again = alice.claim("1")
    assert again.code == 0 and "refs/claims/1@5" in again.stdout, again
    assert admin.claim("compact").stdout.strip() == "deleted 1 superseded claim of 2 tickets"
    claims = sorted(r for r in remote_refs(world.repo) if r.startswith("refs/claims/"))
    assert claims == ["refs/claims/1", "refs/claims/1@5", "refs/claims/2"]


def test_compaction_while_agents_claim_never_makes_two_holders(make_world):
    """Four agents claim and release one ticket in turns while compaction runs."""
    world = make_world("git", "libgit2")
    agents = [world.agent(f"a{i}") for i in range(4)]
    admin = world.agent("admin")
    holders = []
    for round_ in range(6):
        running = [agent.popen("claim", "7", "--json") for agent in agents]
        compacting = admin.popen("claim", "compact")
        results = [(agent, process.communicate(timeout=120)) for agent, process
                   in zip(agents, running, strict=True)]
        compacting.communicate(timeout=120)
        assert compacting.returncode == 0
        winners = [agent for (agent, _), process in zip(results, running, strict=True)
                   if process.returncode == 0]
        assert len(winners) == 1, (round_, results)
        state = ticket_state(world.repo, "7")
        assert state.state == "held" and state.agent == winners[0].name
        holders.append((state.epoch, winners[0].name))
        assert winners[0].release("7").code == 0
    epochs = [epoch for epoch, _ in holders]
    assert epochs == sorted(set(epochs)), holders  # every claim a new epoch, in order
