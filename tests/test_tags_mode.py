"""Tags mode (`claim.refPrefix refs/tags/claim/`): a hand-made tag is the first claim.

A human's `git tag -a claim/640 -m "agent=… nonce=…"` pushed by hand is
epoch 1 of ticket 640; once it ends, agents claim `claim/640@2`, and so on.
"""

from __future__ import annotations

from agents import remote_refs, ticket_state


def test_a_hand_made_claim_then_the_next_epochs(make_world, transport):
    world = make_world("git", transport)
    human, agent = world.agent("human"), world.agent("agent")
    agent.git("config", "claim.refPrefix", "refs/tags/claim/")
    human.git("tag", "-a", "claim/640", "-m", "agent=asif-laptop nonce=abc123")
    human.git("push", "-q", "origin", "refs/tags/claim/640")
    refused = agent.claim("640")
    assert refused.code == 1 and "640 is held by asif-laptop since" in refused.stderr
    forced = agent.release("640", "--force")
    assert forced.code == 0, forced
    state = ticket_state(world.repo, "640", prefix="refs/tags/claim/")
    assert state.state == "free" and state.epoch == 1
    won = agent.claim("640", "--json")
    assert won.code == 0, won
    assert won.json()["ref"] == "refs/tags/claim/640@2" and won.json()["epoch"] == 2
    state = ticket_state(world.repo, "640", prefix="refs/tags/claim/")
    assert state.state == "held" and state.agent == "agent" and state.epoch == 2
    assert "refs/tags/claim/640" in remote_refs(world.repo)  # the hand-made claim stays
    assert agent.release("640", "--done").code == 0
    assert ticket_state(world.repo, "640", prefix="refs/tags/claim/").state == "done"
    log = agent.claim("log", "640", "--json").json()
    assert [(e["event"], e["epoch"]) for e in log][:3] == [("claimed", 1), ("released", 1),
                                                          ("claimed", 2)]
