"""A claim attempt that died before its push, and what the clone does to it meanwhile.

The pending record keeps the tag so a retry pushes the same claim. If that
tag never left the clone and `git gc --prune=now` removed it, the next
claim must mint a new one, never fail forever on a tag that is gone.
"""

from __future__ import annotations

from agents import PausePoint, ticket_state


def test_a_pending_tag_pruned_from_the_clone_is_replaced(make_world):
    world = make_world("git", "git")
    alice = world.agent("alice")
    pause = PausePoint(world.root / "pauses", "claim:before-push")
    dying = alice.popen("claim", "77", env=pause.env(alice.env))
    pause.wait_reached(dying)
    pause.kill(dying)
    assert ticket_state(world.repo, "77").state == "free"
    alice.git("gc", "-q", "--prune=now")
    again = alice.claim("77")
    assert again.code == 0, again
    state = ticket_state(world.repo, "77")
    assert state.state == "held" and state.agent == "alice" and state.epoch == 1
    assert alice.release("77").code == 0
